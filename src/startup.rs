//! `Application`: binds the listener, then serves until told to stop. `main` and the tests go
//! through this same path; the run mode decides only the address and whether this process checks
//! keys and fires timers itself.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::azure::error::AzureError;
use crate::config::Config;
use crate::routes;
use crate::scheduler;
use crate::state::{AppState, Mode};
use crate::worker;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot bind the listening address: {0}")]
    Bind(#[from] std::io::Error),
    #[error("cannot set up the Azure credential: {0}")]
    Azure(#[from] AzureError),
}

pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Binds the address the mode calls for: `127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT` under the
    /// host (it always calls IPv4 loopback), the configured address when standalone.
    pub async fn build(config: Config, mode: Mode) -> Result<Application, StartError> {
        let address = match (mode, config.functions_port) {
            (Mode::Functions, Some(port)) => SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            _ => SocketAddr::new(config.bind, config.port),
        };
        let state = AppState::new(config, mode)?;
        tracing::info!(state = %state.store.describe(), "durable state location");
        let listener = TcpListener::bind(address).await?;
        Ok(Application { listener, state })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then lets in-flight requests and timer runs finish.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut timers = (self.state.mode == Mode::Standalone)
            .then(|| scheduler::spawn(self.state.clone(), stop_rx.clone()));
        let worker = tokio::spawn(worker::run(self.state.clone(), stop_rx.clone()));
        let router = routes::router(self.state.clone());
        let mut stop_rx_server = stop_rx;
        let served = axum::serve(self.listener, router)
            .with_graceful_shutdown(async move {
                tokio::select! {
                    _ = shutdown => {}
                    _ = stop_rx_server.changed() => {}
                }
            })
            .await;
        let _ = stop_tx.send(true);
        if let Some(tasks) = timers.as_mut() {
            while tasks.join_next().await.is_some() {}
        }
        let _ = worker.await;
        served
    }
}

/// Completes on Ctrl-C or SIGTERM (what the Functions host and container platforms send).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    tracing::info!("shutdown requested; finishing in-flight work");
}
