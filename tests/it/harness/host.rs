//! `FunctionsHost`: plays the Azure Functions host's side of the custom-handler protocol, as
//! `shared/reference/functions-host-and-adf.md` describes it from the host's source.
//!
//! - Start: a free loopback port; the executable from `host.json` (relative to the app root,
//!   `%VAR%` expanded in its arguments); the host's environment variables; `GET /` polled every
//!   25 ms until any HTTP answer, failing after 30 s or when the process exits.
//! - HTTP functions: the route from `function.json` under `routePrefix`, `methods` enforced (a
//!   mismatch does not match: 404), `authLevel` enforced with the key from `x-functions-key` or else
//!   `code` (401, empty body), then the original request forwarded: method, path, rebuilt query
//!   (`code` kept, repeated keys joined), all headers plus the host's three, the body only when
//!   `Content-Length > 0`; the handler's answer returned verbatim, redirects not followed.
//! - Timers: `POST /{FunctionName}` with a chunked `{"Data":{binding: TimerInfo},"Metadata":{"sys"}}`;
//!   the answer must be 2xx `application/json` (or `text/json`) shaped `{Outputs, Logs,
//!   ReturnValue}`, or the invocation fails. Runs of one timer are serialized.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::function_app::{AuthLevel, FunctionApp, Trigger, url_decode};
use super::process::{Lines, Process, clean_command};

pub const HOST_VERSION: &str = "4.1037.0.0";
/// The host's own readiness timeout (`HttpWorkerOptions.InitializationTimeout`).
const INITIALIZATION_TIMEOUT: Duration = Duration::from_secs(30);
/// The front end's hard limit for an HTTP-triggered call.
const HTTP_TIMEOUT: Duration = Duration::from_secs(230);

/// The keys the host holds. The master key satisfies every level; host and function keys satisfy
/// `function`.
#[derive(Debug, Clone)]
pub struct Keys {
    pub master: String,
    pub host_default: String,
    pub per_function: HashMap<String, String>,
}

impl Default for Keys {
    fn default() -> Self {
        Keys {
            master: "master-key-0123456789".into(),
            host_default: "host-default-key-0123456789".into(),
            per_function: HashMap::new(),
        }
    }
}

/// Which key a test call presents, and how.
#[derive(Debug, Clone)]
pub enum Key {
    None,
    Header(String),
    Query(String),
    HeaderAndQuery { header: String, query: String },
}

/// What the host answers a caller.
#[derive(Debug)]
pub struct HostResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// Whether the handler was called at all (false for host-side 404 and 401).
    pub reached_handler: bool,
}

impl HostResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// How a timer is fired.
#[derive(Debug, Clone, Copy, Default)]
pub struct TimerFire {
    pub past_due: bool,
}

/// A completed timer invocation as the host records it.
#[derive(Debug)]
pub struct TimerInvocation {
    pub succeeded: bool,
    pub status: u16,
    pub logs: Vec<String>,
    pub return_value: Value,
}

/// The handler broke the protocol: the host cannot read its answer.
#[derive(Debug)]
pub struct ProtocolViolation(pub String);

pub struct FunctionsHost {
    pub app: FunctionApp,
    pub keys: Keys,
    pub port: u16,
    client: reqwest::Client,
    settings: BTreeMap<String, String>,
    process: Option<Process>,
    timer_locks: HashMap<String, Arc<Mutex<()>>>,
    public_url_is_handler: bool,
    _workdir: Option<TempDir>,
}

/// Builds and starts a host for this repository's app.
pub struct HostBuilder {
    settings: BTreeMap<String, String>,
    keys: Keys,
    public_url_is_handler: bool,
}

impl HostBuilder {
    /// An app setting (environment variable) for the handler.
    pub fn setting(mut self, name: &str, value: &str) -> Self {
        self.settings.insert(name.into(), value.into());
        self
    }

    /// Sets `COMPUTEBRIDGE_PUBLIC_URL` to the handler's own address once its port is chosen: in
    /// Azure the app's public address reaches the handler through the host; here jobs (local
    /// processes in the emulator) call the handler directly.
    pub fn public_url_is_handler(mut self) -> Self {
        self.public_url_is_handler = true;
        self
    }

    pub async fn start(self) -> FunctionsHost {
        let workdir = TempDir::new("host");
        let app = FunctionApp::package_repository(&workdir.0.join("app"));
        let mut host = FunctionsHost::new(app, self.keys, self.settings);
        host.public_url_is_handler = self.public_url_is_handler;
        host._workdir = Some(workdir);
        host.spawn().await.unwrap_or_else(|e| panic!("{e}"));
        host
    }
}

impl FunctionsHost {
    pub fn builder() -> HostBuilder {
        HostBuilder {
            settings: BTreeMap::from([
                ("FUNCTIONS_WORKER_RUNTIME".into(), "Custom".into()),
                ("SCALE_DOWN_SCHEDULE".into(), "0 */5 * * * *".into()),
                ("RECONCILE_SCHEDULE".into(), "0 * * * * *".into()),
            ]),
            keys: Keys::default(),
            public_url_is_handler: false,
        }
    }

    /// A host for an app folder whose handler already listens on `port` (used to check this
    /// harness against a handler whose behaviour is known).
    pub fn attach(app_root: &Path, port: u16, settings: &[(&str, &str)]) -> FunctionsHost {
        let app = FunctionApp::load(app_root).unwrap();
        let settings = settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut host = FunctionsHost::new(app, Keys::default(), settings);
        host.port = port;
        host
    }

    fn new(app: FunctionApp, keys: Keys, settings: BTreeMap<String, String>) -> FunctionsHost {
        let timer_locks = app
            .functions
            .iter()
            .map(|f| (f.name.clone(), Arc::new(Mutex::new(()))))
            .collect();
        FunctionsHost {
            app,
            keys,
            port: 0,
            client: super::client_builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(HTTP_TIMEOUT)
                .build()
                .unwrap(),
            settings,
            process: None,
            timer_locks,
            public_url_is_handler: false,
            _workdir: None,
        }
    }

    async fn spawn(&mut self) -> Result<(), String> {
        if self.app.functions.is_empty() {
            return Err("the app has no functions: the host would not start the handler".into());
        }
        self.port = free_port();
        let worker_id = uuid::Uuid::new_v4().to_string();
        let mut env = self.settings.clone();
        for (name, value) in [
            ("FUNCTIONS_HTTPWORKER_PORT", self.port.to_string()),
            ("FUNCTIONS_HTTPWORKER_ID", worker_id.clone()),
            ("FUNCTIONS_CUSTOMHANDLER_PORT", self.port.to_string()),
            ("FUNCTIONS_CUSTOMHANDLER_WORKER_ID", worker_id),
            (
                "FUNCTIONS_APP_ROOT_PATH",
                self.app.root.display().to_string(),
            ),
        ] {
            env.insert(name.into(), value);
        }
        if self.public_url_is_handler {
            env.insert(
                "COMPUTEBRIDGE_PUBLIC_URL".into(),
                format!("http://127.0.0.1:{}", self.port),
            );
        }
        let working_directory = self.app.root.join(&self.app.host.working_directory);
        let executable = working_directory.join(&self.app.host.executable);
        let mut command = clean_command(&executable);
        command.current_dir(&working_directory).envs(&env);
        for argument in &self.app.host.arguments {
            command.arg(expand_settings(argument, &env));
        }
        let mut process =
            Process::spawn(command).map_err(|e| format!("cannot start handler: {e}"))?;
        let probe = super::client();
        let deadline = tokio::time::Instant::now() + INITIALIZATION_TIMEOUT;
        loop {
            if let Some(status) = process.exited() {
                return Err(format!(
                    "handler exited ({status}) before answering the readiness probe:\n{}",
                    process.lines.text()
                ));
            }
            match probe
                .get(format!("http://127.0.0.1:{}/", self.port))
                .send()
                .await
            {
                Ok(_) => break,
                Err(e) if e.is_connect() => {}
                Err(_) => break,
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "Initializing HttpWorker timed out.\n{}",
                    process.lines.text()
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.process = Some(process);
        Ok(())
    }

    /// Kills the handler at once (SIGKILL: no graceful shutdown), as a crashed or recycled worker.
    pub async fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.child.kill().await;
        }
    }

    /// Everything the handler wrote to stdout and stderr.
    pub fn handler_output(&self) -> Lines {
        self.process
            .as_ref()
            .map(|p| p.lines.clone())
            .unwrap_or_default()
    }

    /// The handler's own address, for protocol checks below the host.
    pub fn handler_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// A JSON call with the master key (as ADF's activities call with a function key); returns
    /// the status and the parsed body (`Null` when it is not JSON).
    pub async fn api(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let response = self
            .call(
                method,
                path,
                Key::Header(self.keys.master.clone()),
                &[("content-type", "application/json")],
                body.map(|b| b.to_string().into_bytes()),
            )
            .await;
        let json = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        (response.status, json)
    }

    /// A caller's request to the app's public URL (`path_and_query` like `/api/health?x=1`).
    pub async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        key: Key,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> HostResponse {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let mut query_pairs = parse_query(query);
        let mut request_headers = HeaderMap::new();
        request_headers.insert("host", HeaderValue::from_static("localhost:7071"));
        for (name, value) in headers {
            request_headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        match &key {
            Key::None => {}
            Key::Header(k) => {
                request_headers.insert("x-functions-key", HeaderValue::from_str(k).unwrap());
            }
            Key::Query(k) => query_pairs.push(("code".into(), k.clone())),
            Key::HeaderAndQuery { header, query } => {
                request_headers.insert("x-functions-key", HeaderValue::from_str(header).unwrap());
                query_pairs.push(("code".into(), query.clone()));
            }
        }

        let not_reached = |status: u16| HostResponse {
            status,
            headers: HeaderMap::new(),
            body: Vec::new(),
            reached_handler: false,
        };
        let Some((function, _route_values)) = self.app.match_route(method.as_str(), path) else {
            return not_reached(404);
        };
        let Trigger::Http {
            auth_level,
            http_in_and_out,
            ..
        } = &function.trigger
        else {
            unreachable!("match_route returns HTTP functions only")
        };
        if !self.authorized(&function.name, *auth_level, &request_headers, &query_pairs) {
            return not_reached(401);
        }
        assert!(
            self.app.host.forwarding && *http_in_and_out,
            "function {} would use the JSON payload protocol for HTTP, which this harness does not play",
            function.name
        );

        // Forward: same method and path, query rebuilt from the parsed collection.
        let query = rebuild_query(&query_pairs);
        let url = format!(
            "http://127.0.0.1:{}{}{}",
            self.port,
            path,
            if query.is_empty() {
                String::new()
            } else {
                format!("?{query}")
            }
        );
        let mut forwarded = request_headers.clone();
        let user_agent = match forwarded.get("user-agent").and_then(|v| v.to_str().ok()) {
            Some(ua) => format!("{ua} Azure-Functions-Host/{HOST_VERSION}"),
            None => format!("Azure-Functions-Host/{HOST_VERSION}"),
        };
        forwarded.insert("user-agent", HeaderValue::from_str(&user_agent).unwrap());
        forwarded.insert(
            "x-azure-functions-hostversion",
            HeaderValue::from_static(HOST_VERSION),
        );
        forwarded.insert(
            "x-azure-functions-invocationid",
            HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).unwrap(),
        );
        let mut request = self.client.request(method, url).headers(forwarded);
        if let Some(body) = body.filter(|b| !b.is_empty()) {
            request = request.body(body);
        }
        match request.send().await {
            Ok(response) => HostResponse {
                status: response.status().as_u16(),
                headers: response.headers().clone(),
                body: response
                    .bytes()
                    .await
                    .map(|b| b.to_vec())
                    .unwrap_or_default(),
                reached_handler: true,
            },
            Err(_) => HostResponse {
                reached_handler: true,
                ..not_reached(500)
            },
        }
    }

    /// Shorthand for a GET with no key and no extra headers.
    pub async fn get(&self, path_and_query: &str) -> HostResponse {
        self.call(Method::GET, path_and_query, Key::None, &[], None)
            .await
    }

    fn authorized(
        &self,
        function: &str,
        required: AuthLevel,
        headers: &HeaderMap,
        query: &[(String, String)],
    ) -> bool {
        if required == AuthLevel::Anonymous {
            return true;
        }
        let presented = match headers.get("x-functions-key") {
            Some(value) => value.to_str().ok().map(str::to_owned),
            None => query
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("code"))
                .map(|(_, v)| v.clone()),
        };
        let Some(presented) = presented else {
            return false;
        };
        if presented == self.keys.master {
            return true;
        }
        required == AuthLevel::Function
            && (presented == self.keys.host_default
                || self.keys.per_function.get(function) == Some(&presented))
    }

    /// Fires a timer function the way the host does when its schedule comes due.
    pub async fn fire_timer(
        &self,
        name: &str,
        fire: TimerFire,
    ) -> Result<TimerInvocation, ProtocolViolation> {
        let (binding, schedule_text) = self
            .app
            .timer(name)
            .ok_or_else(|| ProtocolViolation(format!("no timer function named {name}")))?;
        let resolved = expand_settings(schedule_text, &self.settings);
        if resolved.is_empty() {
            return Err(ProtocolViolation(format!(
                "{name}: schedule {schedule_text} resolves to nothing; the app setting is missing"
            )));
        }
        let schedule: computebridge::schedule::Schedule = resolved.parse().map_err(|e| {
            ProtocolViolation(format!(
                "The schedule expression '{resolved}' was not recognized as a valid cron expression or timespan string. ({e})"
            ))
        })?;
        let lock = self.timer_locks[name].clone();
        let _serialized = lock.lock().await;

        let now = time::OffsetDateTime::now_utc();
        let next = schedule.next_after(now).unwrap();
        let after_next = schedule.next_after(next).unwrap();
        // useMonitor defaults to false for schedules that fire more than once a minute: then
        // ScheduleStatus is null.
        let monitored = (after_next - next).whole_seconds() > 60;
        let rfc = |t: time::OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        };
        let schedule_status = if monitored {
            json!({"Last": rfc(now - (after_next - next)), "Next": rfc(next), "LastUpdated": rfc(now)})
        } else {
            Value::Null
        };
        let body = json!({
            "Data": {
                binding: {
                    "Schedule": {"AdjustForDST": true},
                    "ScheduleStatus": schedule_status,
                    "IsPastDue": fire.past_due,
                }
            },
            "Metadata": {
                "sys": {
                    "MethodName": name,
                    "UtcNow": rfc(now),
                    "RandGuid": uuid::Uuid::new_v4().to_string(),
                }
            }
        });
        let bytes = serde_json::to_vec(&body).unwrap();
        let chunked = reqwest::Body::wrap_stream(futures::stream::once(async move {
            Ok::<_, std::io::Error>(bytes)
        }));
        let response = self
            .client
            .post(format!("http://127.0.0.1:{}/{name}", self.port))
            .header("content-type", "application/json; charset=utf-8")
            .header("x-azure-functions-hostversion", HOST_VERSION)
            .header(
                "x-azure-functions-invocationid",
                uuid::Uuid::new_v4().to_string(),
            )
            .header("user-agent", format!("Azure-Functions-Host/{HOST_VERSION}"))
            .body(chunked)
            .send()
            .await
            .map_err(|e| ProtocolViolation(format!("{name}: handler unreachable: {e}")))?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let text = response.text().await.unwrap_or_default();
        let media = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if media != "application/json" && media != "text/json" {
            return Err(ProtocolViolation(format!(
                "{name}: No MediaTypeFormatter is available to read an object of type 'HttpScriptInvocationResult' from content with media type '{content_type}' (status {status}, body {text})"
            )));
        }
        let parsed = parse_invocation_result(&text).map_err(|e| {
            ProtocolViolation(format!(
                "{name}: Invalid HttpResponseMessage: {e}; body {text}"
            ))
        })?;
        Ok(TimerInvocation {
            succeeded: (200..300).contains(&status),
            status,
            logs: parsed.0,
            return_value: parsed.1,
        })
    }

    /// Fails when a `function.json` route has no route in the handler: every declared HTTP
    /// function is called with its declared method and must not get the handler's own
    /// `RouteNotFound` or `MethodNotAllowed`.
    pub async fn unhandled_routes(&self) -> Vec<String> {
        let mut missing = Vec::new();
        for function in &self.app.functions {
            let Trigger::Http { route, methods, .. } = &function.trigger else {
                continue;
            };
            let path = format!(
                "/{}/{}",
                self.app.host.route_prefix,
                route
                    .split('/')
                    .map(|s| if s.starts_with('{') { "probe" } else { s })
                    .collect::<Vec<_>>()
                    .join("/")
            );
            let methods = if methods.is_empty() {
                vec!["GET".to_owned()]
            } else {
                methods.clone()
            };
            for method in methods {
                let response = self
                    .client
                    .request(
                        Method::from_bytes(method.as_bytes()).unwrap(),
                        self.handler_url(&path),
                    )
                    .header("content-type", "application/json")
                    .body("{}")
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                let code = body["error"]["code"].as_str().unwrap_or("");
                if status == 405 || code == "RouteNotFound" || code == "MethodNotAllowed" {
                    missing.push(format!(
                        "{} {method} {path} -> {status} {code}",
                        function.name
                    ));
                }
            }
        }
        missing
    }
}

/// `HttpScriptInvocationResult`: top-level names matched case-insensitively, `Logs` an array of
/// strings, `Outputs` an object, all optional.
fn parse_invocation_result(text: &str) -> Result<(Vec<String>, Value), String> {
    let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let object = value.as_object().ok_or("the answer is not a JSON object")?;
    let field = |name: &str| {
        object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap_or(Value::Null)
    };
    let outputs = field("Outputs");
    if !(outputs.is_null() || outputs.is_object()) {
        return Err("Outputs is not an object".into());
    }
    let logs = match field("Logs") {
        Value::Null => Vec::new(),
        Value::Array(items) => items
            .into_iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or("a Logs entry is not a string")
            })
            .collect::<Result<_, _>>()?,
        _ => return Err("Logs is not an array".into()),
    };
    Ok((logs, field("ReturnValue")))
}

/// `%NAME%` replaced by the setting's value; unset names become empty, as the host does.
fn expand_settings(text: &str, settings: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('%') {
        let Some(len) = rest[start + 1..].find('%') else {
            break;
        };
        out.push_str(&rest[..start]);
        let name = &rest[start + 1..start + 1 + len];
        out.push_str(settings.get(name).map(String::as_str).unwrap_or(""));
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (url_decode(k.as_bytes()), url_decode(v.as_bytes()))
        })
        .collect()
}

/// `QueryHelpers.AddQueryString` over the parsed collection: one entry per key in first-seen
/// order, repeated values joined with commas, everything re-encoded.
fn rebuild_query(pairs: &[(String, String)]) -> String {
    let mut joined: Vec<(String, Vec<String>)> = Vec::new();
    for (key, value) in pairs {
        match joined.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(key)) {
            Some((_, values)) => values.push(value.clone()),
            None => joined.push((key.clone(), vec![value.clone()])),
        }
    }
    joined
        .into_iter()
        .map(|(k, v)| format!("{}={}", encode(&k), encode(&v.join(","))))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "computebridge-{label}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_expand_like_the_host() {
        let settings = BTreeMap::from([("A".to_string(), "1".to_string())]);
        assert_eq!(expand_settings("%A%", &settings), "1");
        assert_eq!(expand_settings("x%A%y%MISSING%z", &settings), "x1yz");
        assert_eq!(expand_settings("50%", &settings), "50%");
    }

    #[test]
    fn query_is_rebuilt_from_the_collection() {
        let pairs = parse_query("k=a&k=b&code=x%2By&empty=");
        assert_eq!(rebuild_query(&pairs), "k=a%2Cb&code=x%2By&empty=");
    }
}
