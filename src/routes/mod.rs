//! The HTTP surface: one router for both run modes.
//!
//! Paths under `/api/` are the HTTP functions declared in `function-definitions/` (the host forwards
//! the original request, `routePrefix` `api` included). `/{FunctionName}` paths take the host's
//! invocation protocol for timers. `GET /` answers the host's readiness probe. Unknown paths and
//! methods answer JSON errors like everything else.

mod health;
mod pools;
mod runs;
mod timer_triggers;

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

use crate::auth;
use crate::error::ApiError;
use crate::state::AppState;

/// Builds the service's router. Function keys are checked here only when the process runs
/// standalone; under the Functions host the host checks them before forwarding.
pub fn router(state: AppState) -> Router {
    let mut protected = Router::new()
        .route("/api/pools", get(pools::list_pools))
        .route("/api/pools/{pool}", get(pools::get_pool))
        .route("/api/pools/{pool}/resize", post(pools::resize_pool))
        .route(
            "/api/pools/{pool}/autoscale",
            post(pools::enable_autoscale).delete(pools::disable_autoscale),
        )
        .route(
            "/api/pools/{pool}/autoscale/evaluate",
            post(pools::evaluate_autoscale),
        )
        .route("/api/runs", post(runs::start_run))
        .route("/api/runs/{run_id}", get(runs::get_run))
        .route("/api/runs/{run_id}/logs", get(runs::get_logs))
        .route("/api/runs/{run_id}/cancel", post(runs::cancel_run))
        .route("/ScaleDown", post(timer_triggers::invoke_scale_down))
        .route("/Reconcile", post(timer_triggers::invoke_reconcile));
    if state.checks_function_keys() {
        protected = protected.route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_function_key,
        ));
    }
    Router::new()
        .route("/", get(health::readiness))
        .route("/api/health", get(health::get_health))
        // The job's own call: its per-run token is the credential, and its body may be larger.
        .route(
            "/api/runs/{run_id}/output",
            post(runs::post_output)
                .layer(DefaultBodyLimit::max(crate::runs::output::MAX_BYTES + 1)),
        )
        .merge(protected)
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

async fn route_not_found(uri: Uri) -> ApiError {
    ApiError::route_not_found(uri.path())
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!(
            "{} is not allowed on '{}'",
            request.method(),
            request.uri().path()
        ),
    )
}

/// Logs one line per request: the route template, never the query (it may hold a function key).
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "(unmatched)".to_owned());
    let invocation = request
        .headers()
        .get("x-azure-functions-invocationid")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::info!(
        http.method = %method,
        http.route = %route,
        http.status = response.status().as_u16(),
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        invocation.id = invocation.as_deref().unwrap_or(""),
        "request handled"
    );
    response
}
