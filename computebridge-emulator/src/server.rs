//! The emulator's HTTP server: accepts connections, reads each request whole, applies fault rules,
//! dispatches by service and logs the answer. It runs its own accept loop (not `axum::serve`) so a
//! fault can close a connection without answering.

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use axum::response::Response;
use hyper::body::Incoming as HyperBody;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::http::{self, Incoming};
use crate::requests::LoggedRequest;
use crate::routing::{self, Target};
use crate::state::Shared;
use crate::{aci, batch, control, faults, identity, keyvault};

/// Largest request body read; ACI and Batch bodies are far smaller.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Marks a response that must not be sent: the connection is closed instead.
#[derive(Clone, Copy)]
struct DropConnection;

#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by an injected fault")
    }
}

impl std::error::Error for Dropped {}

/// Serves until `stop` turns true.
pub async fn serve(listener: TcpListener, state: Shared, mut stop: watch::Receiver<bool>) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(_) => continue,
            },
            _ = stop.changed() => return,
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<HyperBody>| {
                let state = state.clone();
                async move {
                    let response = handle(state, request.map(Body::new)).await;
                    if response.extensions().get::<DropConnection>().is_some() {
                        Err(Dropped)
                    } else {
                        Ok(response)
                    }
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(state: Shared, request: Request<Body>) -> Response {
    let (parts, body) = request.into_parts();
    let host = parts
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .or(parts.uri.host())
        .unwrap_or("")
        .to_ascii_lowercase();
    let host = host
        .split(':')
        .next()
        .unwrap_or("")
        .trim_start_matches('[')
        .to_owned();
    let Ok(body) = to_bytes(body, MAX_BODY).await else {
        return http::empty(StatusCode::PAYLOAD_TOO_LARGE);
    };
    let incoming = Incoming {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: http::parse_query(parts.uri.query().unwrap_or("")),
        host,
        headers: parts.headers,
        body,
    };
    let target = routing::classify(&incoming.host, &incoming.path);
    if target == Target::Control {
        return control::handle(&state, &incoming);
    }
    let fault = faults::take(
        &mut state.faults.lock().unwrap(),
        target.service(),
        &incoming,
    );
    let mut response = None;
    if let Some(action) = &fault {
        if let Some(ms) = action.delay_ms {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        if action.drop {
            let mut dropped = http::empty(StatusCode::INTERNAL_SERVER_ERROR);
            dropped.extensions_mut().insert(DropConnection);
            response = Some(dropped);
        } else if let Some(status) = action.status {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut failed = fault_response(
                &target,
                status,
                action.code.as_deref(),
                action.message.as_deref(),
            );
            if let Some(seconds) = action.retry_after {
                http::set_header(&mut failed, "retry-after", &seconds.to_string());
            }
            response = Some(failed);
        }
    }
    let injected = response.is_some();
    let mut response = match response {
        Some(response) => response,
        None => dispatch(&state, &target, &incoming),
    };
    // Azure stamps every answer with its own time; clients measure ages against it.
    http::set_header(&mut response, "date", &http::http_date(state.clock.now()));
    state.log.lock().unwrap().push(LoggedRequest {
        seq: 0,
        service: target.service(),
        method: incoming.method.to_string(),
        host: incoming.host.clone(),
        path: incoming.path.clone(),
        query: incoming
            .query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&"),
        status: response.status().as_u16(),
        fault: injected,
    });
    response
}

fn dispatch(state: &Shared, target: &Target, request: &Incoming) -> Response {
    match target {
        Target::ManagedIdentity => identity::managed_identity(state, request),
        Target::Entra { tenant } => identity::entra_token(state, request, tenant),
        Target::KeyVault { vault } => keyvault::handle(state, vault, request),
        Target::Batch { account } => batch::handle(state, account, request),
        Target::Arm => aci::handle(state, request),
        Target::Control | Target::Unknown => http::json(
            StatusCode::NOT_FOUND,
            "application/json",
            &serde_json::json!({"error": {"code": "UnknownService", "message": format!("the emulator serves no Azure service at host '{}' path '{}'", request.host, request.path)}}),
        ),
    }
}

fn fault_response(
    target: &Target,
    status: StatusCode,
    code: Option<&str>,
    message: Option<&str>,
) -> Response {
    let message = message.unwrap_or("injected by the emulator's fault rules");
    match target {
        Target::Batch { account } => {
            let code = code.unwrap_or(match status.as_u16() {
                500 => "OperationTimedOut",
                503 | 429 => "ServerBusy",
                403 => "AuthenticationFailed",
                _ => "InternalError",
            });
            batch::error(account, status, code, message, &[])
        }
        Target::KeyVault { .. } => {
            let code = code.unwrap_or(match status.as_u16() {
                429 => "Throttled",
                403 => "Forbidden",
                503 => "ServiceUnavailable",
                _ => "InternalServerError",
            });
            keyvault::error(status, code, message, None)
        }
        _ => {
            let code = code.unwrap_or(match status.as_u16() {
                429 => "TooManyRequests",
                403 => "AuthorizationFailed",
                503 => "ServiceUnavailable",
                _ => "InternalServerError",
            });
            aci::arm_error(status, code, message)
        }
    }
}
