//! The Batch data plane, one account per host (`{account}.{region}.batch.azure.com`): pools
//! (get, list, resize, stop resize, enable/disable/evaluate autoscale, delete), nodes, account
//! node counts, jobs and tasks with task counts. Errors use Batch's OData body. Requests need an
//! Entra token for `https://batch.core.windows.net/`; without `Authorization` the answer is 400
//! `MissingRequiredHeader`, as Batch gives it.

pub mod formula;
mod jobs;
pub mod pools;

use std::collections::{BTreeMap, HashMap};

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

use crate::http::{self, Incoming, azure_time};
use crate::state::Shared;
use crate::tokens::{self, TokenError};
use jobs::{Job, Task, TaskState};
use pools::{Allocation, AutoScale, NodeState, Pool, SeedPool};

const ODATA_JSON: &str = "application/json;odata=minimalmetadata";
const AUDIENCE: &str = "https://batch.core.windows.net/";

#[derive(Debug, Default)]
pub struct Batch {
    accounts: HashMap<String, Account>,
}

#[derive(Debug)]
pub struct Account {
    pub dedicated_core_quota: u32,
    pub low_priority_core_quota: u32,
    pools: BTreeMap<String, Pool>,
    jobs: BTreeMap<String, Job>,
    last_sample: Option<OffsetDateTime>,
}

impl Default for Account {
    fn default() -> Self {
        Account {
            dedicated_core_quota: 100,
            low_priority_core_quota: 100,
            pools: BTreeMap::new(),
            jobs: BTreeMap::new(),
            last_sample: None,
        }
    }
}

/// An account's quotas, as seeded through the control surface.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedAccount {
    pub account: String,
    pub dedicated_core_quota: Option<u32>,
    pub low_priority_core_quota: Option<u32>,
}

impl Batch {
    pub fn seed_account(&mut self, seed: &SeedAccount) {
        let account = self
            .accounts
            .entry(seed.account.to_ascii_lowercase())
            .or_default();
        if let Some(quota) = seed.dedicated_core_quota {
            account.dedicated_core_quota = quota;
        }
        if let Some(quota) = seed.low_priority_core_quota {
            account.low_priority_core_quota = quota;
        }
    }

    pub fn seed_pool(&mut self, seed: &SeedPool, now: OffsetDateTime) -> Result<(), String> {
        let account = self
            .accounts
            .entry(seed.account.to_ascii_lowercase())
            .or_default();
        let mut pool = Pool::from_seed(seed, now);
        if let Some(formula) = &seed.auto_scale_formula {
            formula::check_syntax(formula).map_err(|e| e.to_string())?;
            pool.auto_scale = Some(AutoScale {
                formula: formula.clone(),
                interval: Duration::minutes(15),
                next_evaluation: now,
                last_run: None,
            });
        }
        account.pools.insert(seed.id.clone(), pool);
        Ok(())
    }
}

/// A Batch error in the OData shape; `values` are `{key, value}` pairs.
pub fn error(
    account: &str,
    status: StatusCode,
    code: &str,
    message: &str,
    values: &[(&str, &str)],
) -> Response {
    let request_id = http::new_id();
    let mut body = json!({
        "odata.metadata": format!("https://{account}.batch.azure.com/$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element"),
        "code": code,
        "message": {"lang": "en-US", "value": format!("{message}\nRequestId:{request_id}\nTime:{}", azure_time(OffsetDateTime::now_utc()))},
    });
    if !values.is_empty() {
        body["values"] = json!(
            values
                .iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect::<Vec<_>>()
        );
    }
    let mut response = http::json(status, ODATA_JSON, &body);
    decorate(&mut response, &request_id);
    response
}

fn decorate(response: &mut Response, request_id: &str) {
    http::set_header(response, "request-id", request_id);
    http::set_header(response, "dataserviceversion", "3.0");
    http::set_header(response, "server", "Microsoft-HTTPAPI/2.0");
}

fn ok_json(status: StatusCode, body: Value, etag: Option<(&str, OffsetDateTime)>) -> Response {
    let mut response = http::json(status, ODATA_JSON, &body);
    decorate(&mut response, &http::new_id());
    if let Some((tag, modified)) = etag {
        http::set_header(&mut response, "etag", tag);
        http::set_header(&mut response, "last-modified", &http::http_date(modified));
    }
    response
}

fn accepted(
    status: StatusCode,
    request: &Incoming,
    etag: Option<(&str, OffsetDateTime)>,
) -> Response {
    let mut response = http::empty(status);
    decorate(&mut response, &http::new_id());
    http::set_header(
        &mut response,
        "dataserviceid",
        &format!("https://{}{}", request.host, request.path),
    );
    if let Some((tag, modified)) = etag {
        http::set_header(&mut response, "etag", tag);
        http::set_header(&mut response, "last-modified", &http::http_date(modified));
    }
    response
}

fn valid_api_version(version: &str) -> bool {
    let date = version.split('.').next().unwrap_or("");
    let parts: Vec<&str> = date.split('-').collect();
    parts.len() == 3
        && parts[0].len() == 4
        && parts.iter().all(|p| p.chars().all(|c| c.is_ascii_digit()))
        && date >= "2018-01-01"
}

pub fn handle(state: &Shared, account_name: &str, request: &Incoming) -> Response {
    let account_name = account_name.to_ascii_lowercase();
    let mut response = route(state, &account_name, request);
    if request.method == Method::POST && !response.headers().contains_key("dataserviceid") {
        http::set_header(
            &mut response,
            "dataserviceid",
            &format!("https://{}{}", request.host, request.path),
        );
    }
    if request
        .header("return-client-request-id")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        && let Some(id) = request.header("client-request-id")
    {
        http::set_header(&mut response, "client-request-id", id);
    }
    response
}

fn route(state: &Shared, account_name: &str, request: &Incoming) -> Response {
    let fail = |status, code: &str, message: &str, values: &[(&str, &str)]| {
        error(account_name, status, code, message, values)
    };
    match request.header("authorization") {
        None => {
            return fail(
                StatusCode::BAD_REQUEST,
                "MissingRequiredHeader",
                "A required HTTP header was not specified.",
                &[("HeaderName", "Authorization")],
            );
        }
        Some(value) if value.starts_with("SharedKey") => {
            return fail(
                StatusCode::FORBIDDEN,
                "AuthenticationFailed",
                "Server failed to authenticate the request. The emulator accepts only Microsoft Entra tokens, not Shared Key.",
                &[(
                    "AuthenticationErrorDetail",
                    "Shared Key authentication is not emulated",
                )],
            );
        }
        Some(_) => {}
    }
    if let Err(problem) = tokens::validate(request.bearer(), AUDIENCE) {
        let detail = match problem {
            TokenError::WrongAudience { found } => format!(
                "The token audience {found} is invalid; expected https://batch.core.windows.net/"
            ),
            TokenError::Expired => "The access token has expired".to_owned(),
            TokenError::Missing | TokenError::Malformed => {
                "The access token is missing or malformed".to_owned()
            }
        };
        return fail(
            StatusCode::FORBIDDEN,
            "AuthenticationFailed",
            "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.",
            &[("AuthenticationErrorDetail", &detail)],
        );
    }
    let Some(api_version) = request.query("api-version") else {
        return fail(
            StatusCode::BAD_REQUEST,
            "MissingRequiredQueryParameter",
            "A query parameter that's mandatory for this request is not specified.",
            &[("QueryParameterName", "api-version")],
        );
    };
    if !valid_api_version(api_version) {
        return fail(
            StatusCode::BAD_REQUEST,
            "InvalidQueryParameterValue",
            "Value for one of the query parameters specified in the request URI is invalid.",
            &[
                ("QueryParameterName", "api-version"),
                ("QueryParameterValue", api_version),
            ],
        );
    }
    let now = state.clock.now();
    let timings = &state.options.timings;
    let mut batch = state.batch.lock().unwrap();
    let Some(account) = batch.accounts.get_mut(account_name) else {
        return fail(
            StatusCode::NOT_FOUND,
            "AccountNotFound",
            &format!(
                "The Batch account '{account_name}' does not exist in the emulator; seed it first."
            ),
            &[],
        );
    };
    advance_account(state, account_name, account, now);
    let base = format!("https://{}", request.host);
    let segments = request.segments();
    let body = || request.json().unwrap_or(Value::Null);
    match (request.method.clone(), segments.as_slice()) {
        (Method::GET, ["pools"]) => {
            let items: Vec<Value> = account.pools.values().map(|p| p.to_json(&base)).collect();
            ok_json(
                StatusCode::OK,
                json!({"odata.metadata": format!("{base}/$metadata#pools"), "value": items}),
                None,
            )
        }
        (Method::GET, ["nodecounts"]) => {
            let items: Vec<Value> = account.pools.values().map(|p| p.counts_json()).collect();
            ok_json(
                StatusCode::OK,
                json!({"odata.metadata": format!("{base}/$metadata#poolnodecounts"), "value": items}),
                None,
            )
        }
        (method, ["pools", pool_id, rest @ ..]) => {
            let quota = quota_left(account, pool_id);
            let running: HashMap<String, u32> = running_by_node(account);
            let Some(pool) = account.pools.get_mut(*pool_id) else {
                return fail(
                    StatusCode::NOT_FOUND,
                    "PoolNotFound",
                    "The specified pool does not exist.",
                    &[],
                );
            };
            let mutation = method == Method::POST || method == Method::DELETE;
            if mutation && pool.deleting_since.is_some() {
                return fail(
                    StatusCode::CONFLICT,
                    "PoolBeingDeleted",
                    "The specified pool has been marked for deletion and is being reclaimed.",
                    &[],
                );
            }
            match (method, rest) {
                (Method::GET, []) => {
                    let etag = pool.etag.clone();
                    let mut body = pool.to_json(&base);
                    body["odata.metadata"] = json!(format!("{base}/$metadata#pools/@Element"));
                    ok_json(StatusCode::OK, body, Some((&etag, pool.last_modified)))
                }
                (Method::GET, ["nodes"]) => {
                    let items: Vec<Value> = pool
                        .nodes
                        .iter()
                        .map(|n| pool.node_json(&base, n, running.get(&n.id).copied().unwrap_or(0)))
                        .collect();
                    ok_json(
                        StatusCode::OK,
                        json!({"odata.metadata": format!("{base}/$metadata#nodes"), "value": items}),
                        None,
                    )
                }
                (Method::DELETE, []) => {
                    pool.deleting_since = Some(now);
                    pool.touch(now);
                    accepted(StatusCode::ACCEPTED, request, None)
                }
                (Method::POST, ["resize"]) => {
                    let body = body();
                    if pool.auto_scale.is_some() {
                        return fail(
                            StatusCode::CONFLICT,
                            "OperationInvalidForCurrentState",
                            "The specified operation is not valid for the current state of the resource: the pool has automatic scaling enabled.",
                            &[],
                        );
                    }
                    if pool.allocation != Allocation::Steady {
                        return fail(
                            StatusCode::CONFLICT,
                            "PoolBeingResized",
                            "The specified pool is being resized.",
                            &[],
                        );
                    }
                    let timeout = match body["resizeTimeout"].as_str() {
                        None => Duration::minutes(15),
                        Some(text) => match pools::parse_iso_duration(text) {
                            Some(d) if d >= Duration::minutes(5) => d,
                            _ => {
                                return fail(
                                    StatusCode::BAD_REQUEST,
                                    "InvalidPropertyValue",
                                    "The value provided for one of the properties in the request body is invalid.",
                                    &[
                                        ("PropertyName", "resizeTimeout"),
                                        ("PropertyValue", text),
                                        ("Reason", "The resize timeout must be at least 5 minutes"),
                                    ],
                                );
                            }
                        },
                    };
                    let targets = (
                        body["targetDedicatedNodes"]
                            .as_u64()
                            .map_or(pool.target_dedicated, |v| v as u32),
                        body["targetLowPriorityNodes"]
                            .as_u64()
                            .map_or(pool.target_low_priority, |v| v as u32),
                    );
                    let option = body["nodeDeallocationOption"]
                        .as_str()
                        .unwrap_or("requeue")
                        .to_ascii_lowercase();
                    if !["requeue", "terminate", "taskcompletion", "retaineddata"]
                        .contains(&option.as_str())
                    {
                        return fail(
                            StatusCode::BAD_REQUEST,
                            "InvalidPropertyValue",
                            "The value provided for one of the properties in the request body is invalid.",
                            &[
                                ("PropertyName", "nodeDeallocationOption"),
                                ("PropertyValue", &option),
                            ],
                        );
                    }
                    let evictions =
                        pool.begin_resize(targets, timeout, &option, quota, now, timings);
                    let etag = pool.etag.clone();
                    let modified = pool.last_modified;
                    apply_evictions(account, pool_id, evictions, now);
                    accepted(StatusCode::ACCEPTED, request, Some((&etag, modified)))
                }
                (Method::POST, ["stopresize"]) => {
                    pool.stop_resize(now, timings);
                    let etag = pool.etag.clone();
                    accepted(
                        StatusCode::ACCEPTED,
                        request,
                        Some((&etag, pool.last_modified)),
                    )
                }
                (Method::POST, ["enableautoscale"]) => {
                    let body = body();
                    if pool.allocation != Allocation::Steady && pool.auto_scale.is_none() {
                        return fail(
                            StatusCode::CONFLICT,
                            "PoolBeingResized",
                            "The specified pool is being resized; automatic scaling cannot be enabled until it is steady.",
                            &[],
                        );
                    }
                    if pool
                        .last_enable_auto_scale
                        .is_some_and(|at| now - at < Duration::seconds(30))
                    {
                        return fail(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "TooManyEnableAutoScaleRequests",
                            "Too many enable autoscale requests were made for this pool within 30 seconds.",
                            &[],
                        );
                    }
                    let formula_text = body["autoScaleFormula"]
                        .as_str()
                        .map(str::to_owned)
                        .or(pool.auto_scale.as_ref().map(|a| a.formula.clone()));
                    let Some(formula_text) = formula_text else {
                        return fail(
                            StatusCode::BAD_REQUEST,
                            "InvalidAutoScalingSettings",
                            "An autoscale formula is required to enable automatic scaling.",
                            &[("PropertyName", "autoScaleFormula")],
                        );
                    };
                    if let Err(e) = formula::check_syntax(&formula_text) {
                        return fail(
                            StatusCode::BAD_REQUEST,
                            "AutoScalingFormulaSyntaxError",
                            "The specified autoscale formula has a syntax error.",
                            &[("Message", &e.to_string())],
                        );
                    }
                    let interval = match body["autoScaleEvaluationInterval"].as_str() {
                        None => pool
                            .auto_scale
                            .as_ref()
                            .map_or(Duration::minutes(15), |a| a.interval),
                        Some(text) => match pools::parse_iso_duration(text) {
                            Some(d) if d >= Duration::minutes(5) && d <= Duration::hours(168) => d,
                            _ => {
                                return fail(
                                    StatusCode::BAD_REQUEST,
                                    "InvalidPropertyValue",
                                    "The value provided for one of the properties in the request body is invalid.",
                                    &[
                                        ("PropertyName", "autoScaleEvaluationInterval"),
                                        ("PropertyValue", text),
                                        (
                                            "Reason",
                                            "The interval must be between 5 minutes and 168 hours",
                                        ),
                                    ],
                                );
                            }
                        },
                    };
                    // Batch evaluates a newly enabled formula shortly after, not within the
                    // request: a pool enabled and disabled at once keeps its targets.
                    pool.auto_scale = Some(AutoScale {
                        formula: formula_text,
                        interval,
                        next_evaluation: now + timings.batch_settle,
                        last_run: pool.auto_scale.as_ref().and_then(|a| a.last_run.clone()),
                    });
                    pool.last_enable_auto_scale = Some(now);
                    pool.touch(now);
                    accepted(
                        StatusCode::OK,
                        request,
                        Some((&pool.etag.clone(), pool.last_modified)),
                    )
                }
                (Method::POST, ["disableautoscale"]) => {
                    pool.auto_scale = None;
                    pool.touch(now);
                    let etag = pool.etag.clone();
                    accepted(StatusCode::OK, request, Some((&etag, pool.last_modified)))
                }
                (Method::POST, ["evaluateautoscale"]) => {
                    let body = body();
                    let Some(formula_text) = body["autoScaleFormula"].as_str() else {
                        return fail(
                            StatusCode::BAD_REQUEST,
                            "MissingRequiredProperty",
                            "A required property was not specified in the request body.",
                            &[("PropertyName", "autoScaleFormula")],
                        );
                    };
                    if pool.auto_scale.is_none() {
                        return fail(
                            StatusCode::CONFLICT,
                            "OperationInvalidForCurrentState",
                            "The specified operation is not valid for the current state of the resource: automatic scaling is not enabled on the pool.",
                            &[],
                        );
                    }
                    let result = formula::evaluate(formula_text, &pool.inputs(now));
                    let mut run = pool.run_json(now, &result);
                    run["odata.metadata"] = json!(format!(
                        "{base}/$metadata#Microsoft.Azure.Batch.Protocol.Entities.AutoScaleRun"
                    ));
                    ok_json(StatusCode::OK, run, None)
                }
                _ => invalid_uri(account_name, request),
            }
        }
        (Method::POST, ["jobs"]) => {
            let body = body();
            let (Some(id), Some(pool_id)) =
                (body["id"].as_str(), body["poolInfo"]["poolId"].as_str())
            else {
                return fail(
                    StatusCode::BAD_REQUEST,
                    "MissingRequiredProperty",
                    "A required property was not specified in the request body.",
                    &[("PropertyName", "id or poolInfo.poolId")],
                );
            };
            if account.jobs.contains_key(id) {
                return fail(
                    StatusCode::CONFLICT,
                    "JobExists",
                    "The specified job already exists.",
                    &[],
                );
            }
            let job = Job {
                id: id.to_owned(),
                pool_id: pool_id.to_owned(),
                etag: pools::etag(now),
                created: now,
                tasks: Vec::new(),
            };
            let etag = job.etag.clone();
            account.jobs.insert(id.to_owned(), job);
            accepted(StatusCode::CREATED, request, Some((&etag, now)))
        }
        (Method::GET, ["jobs"]) => {
            let items: Vec<Value> = account.jobs.values().map(|j| j.to_json(&base)).collect();
            ok_json(
                StatusCode::OK,
                json!({"odata.metadata": format!("{base}/$metadata#jobs"), "value": items}),
                None,
            )
        }
        (method, ["jobs", job_id, rest @ ..]) => {
            let Some(job) = account.jobs.get_mut(*job_id) else {
                return fail(
                    StatusCode::NOT_FOUND,
                    "JobNotFound",
                    "The specified job does not exist.",
                    &[],
                );
            };
            match (method, rest) {
                (Method::GET, []) => ok_json(
                    StatusCode::OK,
                    job.to_json(&base),
                    Some((&job.etag.clone(), job.created)),
                ),
                (Method::DELETE, []) => {
                    for task in &mut job.tasks {
                        if let Some(kill) = task.kill.take() {
                            let _ = kill.send(());
                        }
                    }
                    account.jobs.remove(*job_id);
                    accepted(StatusCode::ACCEPTED, request, None)
                }
                (Method::GET, ["taskcounts"]) => {
                    let mut counts = job.counts_json(api_version);
                    counts["odata.metadata"] =
                        json!(format!("{base}/$metadata#taskcounts/@Element"));
                    ok_json(StatusCode::OK, counts, None)
                }
                (Method::GET, ["tasks"]) => {
                    let items: Vec<Value> =
                        job.tasks.iter().map(|t| t.to_json(&base, job)).collect();
                    ok_json(
                        StatusCode::OK,
                        json!({"odata.metadata": format!("{base}/$metadata#tasks"), "value": items}),
                        None,
                    )
                }
                (Method::POST, ["tasks"]) => {
                    let body = body();
                    let (Some(id), Some(command_line)) =
                        (body["id"].as_str(), body["commandLine"].as_str())
                    else {
                        return fail(
                            StatusCode::BAD_REQUEST,
                            "MissingRequiredProperty",
                            "A required property was not specified in the request body.",
                            &[("PropertyName", "id or commandLine")],
                        );
                    };
                    if job.tasks.iter().any(|t| t.id == id) {
                        return fail(
                            StatusCode::CONFLICT,
                            "TaskExists",
                            "The specified task already exists.",
                            &[],
                        );
                    }
                    let environment = body["environmentSettings"]
                        .as_array()
                        .map(|items| {
                            items
                                .iter()
                                .filter_map(|e| {
                                    Some((
                                        e["name"].as_str()?.to_owned(),
                                        e["value"].as_str().unwrap_or("").to_owned(),
                                    ))
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    let task = Task::new(id.to_owned(), command_line.to_owned(), environment, now);
                    let etag = task.etag.clone();
                    job.tasks.push(task);
                    let response = accepted(StatusCode::CREATED, request, Some((&etag, now)));
                    advance_account(state, account_name, account, now);
                    response
                }
                (Method::GET, ["tasks", task_id]) => {
                    match job.tasks.iter().find(|t| t.id == *task_id) {
                        Some(task) => ok_json(
                            StatusCode::OK,
                            task.to_json(&base, job),
                            Some((&task.etag.clone(), task.created)),
                        ),
                        None => fail(
                            StatusCode::NOT_FOUND,
                            "TaskNotFound",
                            "The specified task does not exist.",
                            &[],
                        ),
                    }
                }
                _ => invalid_uri(account_name, request),
            }
        }
        _ => invalid_uri(account_name, request),
    }
}

fn invalid_uri(account: &str, request: &Incoming) -> Response {
    error(
        account,
        StatusCode::BAD_REQUEST,
        "InvalidUri",
        &format!(
            "The requested URI does not represent any resource on the server: {} {}",
            request.method, request.path
        ),
        &[],
    )
}

/// Cores of each kind still free in the account for `pool_id` (its own nodes count as free).
fn quota_left(account: &Account, pool_id: &str) -> (u32, u32) {
    let used = |dedicated: bool| -> u32 {
        account
            .pools
            .values()
            .filter(|p| p.id != pool_id)
            .map(|p| p.current(dedicated) * p.cores_per_node)
            .sum()
    };
    (
        account.dedicated_core_quota.saturating_sub(used(true)),
        account.low_priority_core_quota.saturating_sub(used(false)),
    )
}

fn running_by_node(account: &Account) -> HashMap<String, u32> {
    let mut running = HashMap::new();
    for task in account
        .jobs
        .values()
        .flat_map(|j| &j.tasks)
        .filter(|t| t.state == TaskState::Running)
    {
        if let Some(node) = &task.node_id {
            *running.entry(node.clone()).or_insert(0) += 1;
        }
    }
    running
}

fn evaluate_auto_scale(
    pool: &mut Pool,
    quota: (u32, u32),
    now: OffsetDateTime,
    timings: &crate::state::Timings,
) -> pools::Evictions {
    let Some(auto) = pool.auto_scale.clone() else {
        return pools::Evictions::default();
    };
    let result = formula::evaluate(&auto.formula, &pool.inputs(now));
    let run = pool.run_json(now, &result);
    if let Some(auto) = pool.auto_scale.as_mut() {
        auto.last_run = Some(run);
        auto.next_evaluation = now + auto.interval;
    }
    match result {
        Ok(outputs)
            if pool.allocation == Allocation::Steady
                && (outputs.target_dedicated != pool.current(true)
                    || outputs.target_low_priority != pool.current(false)
                    || outputs.target_dedicated != pool.target_dedicated
                    || outputs.target_low_priority != pool.target_low_priority) =>
        {
            pool.begin_resize(
                (outputs.target_dedicated, outputs.target_low_priority),
                Duration::minutes(15),
                &outputs.deallocation,
                quota,
                now,
                timings,
            )
        }
        _ => pools::Evictions::default(),
    }
}

fn apply_evictions(
    account: &mut Account,
    pool_id: &str,
    evictions: pools::Evictions,
    now: OffsetDateTime,
) {
    for (node_id, requeue) in evictions.interrupted {
        for task in account
            .jobs
            .values_mut()
            .filter(|j| j.pool_id == pool_id)
            .flat_map(|j| j.tasks.iter_mut())
        {
            if task.state == TaskState::Running && task.node_id.as_deref() == Some(node_id.as_str())
            {
                if requeue {
                    task.requeue(now);
                } else {
                    if let Some(kill) = task.kill.take() {
                        let _ = kill.send(());
                    }
                    task.complete(-1, now);
                }
            }
        }
    }
}

/// Advances every account to the clock's current time; called by the emulator's ticker.
pub fn tick(state: &Shared) {
    let now = state.clock.now();
    let mut batch = state.batch.lock().unwrap();
    let names: Vec<String> = batch.accounts.keys().cloned().collect();
    for name in names {
        if let Some(account) = batch.accounts.get_mut(&name) {
            advance_account(state, &name, account, now);
        }
    }
}

fn advance_account(state: &Shared, account_name: &str, account: &mut Account, now: OffsetDateTime) {
    let timings = &state.options.timings;
    // Samples for autoscale metrics, every 30 simulated seconds.
    if account
        .last_sample
        .is_none_or(|at| now - at >= formula::SAMPLE_PERIOD)
    {
        account.last_sample = Some(now);
        let ids: Vec<String> = account.pools.keys().cloned().collect();
        for pool_id in ids {
            let (active, running) =
                account
                    .jobs
                    .values()
                    .filter(|j| j.pool_id == pool_id)
                    .fold((0, 0), |acc, job| {
                        let (a, r, _, _) = job.counts();
                        (acc.0 + a, acc.1 + r)
                    });
            if let Some(pool) = account.pools.get_mut(&pool_id) {
                pool.samples.push((now, active, running));
                let excess = pool.samples.len().saturating_sub(480);
                pool.samples.drain(..excess);
            }
        }
    }
    let ids: Vec<String> = account.pools.keys().cloned().collect();
    for pool_id in ids {
        let quota = quota_left(account, &pool_id);
        let Some(pool) = account.pools.get_mut(&pool_id) else {
            continue;
        };
        if pool
            .deleting_since
            .is_some_and(|since| now - since >= timings.batch_settle)
        {
            account.pools.remove(&pool_id);
            continue;
        }
        pool.advance(now, timings);
        let due = pool
            .auto_scale
            .as_ref()
            .is_some_and(|a| now >= a.next_evaluation);
        if due {
            let evictions = evaluate_auto_scale(pool, quota, now, timings);
            apply_evictions(account, &pool_id, evictions, now);
        }
    }
    // Simulated tasks that are due finish; queued tasks go to idle nodes.
    let mut finished = Vec::new();
    for job in account.jobs.values_mut() {
        for task in job
            .tasks
            .iter_mut()
            .filter(|t| t.simulated_end.is_some_and(|end| end <= now))
        {
            let end = task.simulated_end.unwrap_or(now);
            task.complete(0, end);
            finished.push((
                job.pool_id.clone(),
                task.node_id.clone().unwrap_or_default(),
            ));
        }
    }
    for (pool_id, node_id) in finished {
        if let Some(pool) = account.pools.get_mut(&pool_id) {
            pool.release_node(&node_id, now, timings);
        }
    }
    let Account { pools, jobs, .. } = account;
    for job in jobs.values_mut() {
        let Some(pool) = pools.get_mut(&job.pool_id) else {
            continue;
        };
        for task in job
            .tasks
            .iter_mut()
            .filter(|t| t.state == TaskState::Active)
        {
            let Some(node) = pool
                .nodes
                .iter_mut()
                .find(|n| n.state == NodeState::Idle && n.gone_at.is_none() && !n.leave_when_done)
            else {
                break;
            };
            node.state = NodeState::Running;
            node.state_transition_time = now;
            task.start(&node.id, now);
            if task.simulated_end.is_none() {
                spawn_task(state, account_name, &job.id, &pool.id, task);
            }
        }
    }
}

fn spawn_task(state: &Shared, account: &str, job_id: &str, pool_id: &str, task: &mut Task) {
    let (kill_tx, kill_rx) = tokio::sync::oneshot::channel();
    task.kill = Some(kill_tx);
    let node_id = task.node_id.clone().unwrap_or_default();
    let workdir = std::env::temp_dir().join(format!(
        "computebridge-emulator-batch-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let mut command = tokio::process::Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(&task.command_line)
        .env_clear()
        .kill_on_drop(true);
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    for (name, value) in [
        ("AZ_BATCH_ACCOUNT_NAME", account),
        ("AZ_BATCH_JOB_ID", job_id),
        ("AZ_BATCH_TASK_ID", task.id.as_str()),
        ("AZ_BATCH_POOL_ID", pool_id),
        ("AZ_BATCH_NODE_ID", node_id.as_str()),
    ] {
        command.env(name, value);
    }
    command.env("AZ_BATCH_TASK_WORKING_DIR", &workdir);
    command.envs(
        task.environment
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    let state = state.clone();
    let (account, job_id, task_id, attempt) = (
        account.to_owned(),
        job_id.to_owned(),
        task.id.clone(),
        task.attempt,
    );
    tokio::spawn(async move {
        let _ = std::fs::create_dir_all(&workdir);
        command.current_dir(&workdir);
        let exit_code = match command.spawn() {
            Ok(mut child) => tokio::select! {
                status = child.wait() => status.ok().and_then(|s| s.code()).unwrap_or(-1),
                _ = kill_rx => {
                    let _ = child.kill().await;
                    let _ = std::fs::remove_dir_all(&workdir);
                    return;
                }
            },
            Err(_) => 127,
        };
        let _ = std::fs::remove_dir_all(&workdir);
        let now = state.clock.now();
        let mut batch = state.batch.lock().unwrap();
        let Some(account) = batch.accounts.get_mut(&account) else {
            return;
        };
        let Some(job) = account.jobs.get_mut(&job_id) else {
            return;
        };
        let pool_id = job.pool_id.clone();
        let Some(task) = job
            .tasks
            .iter_mut()
            .find(|t| t.id == task_id && t.attempt == attempt && t.state == TaskState::Running)
        else {
            return;
        };
        task.complete(exit_code, now);
        if let Some(pool) = account.pools.get_mut(&pool_id) {
            pool.release_node(&node_id, now, &state.options.timings);
        }
    });
}
