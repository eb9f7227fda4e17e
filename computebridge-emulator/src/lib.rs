//! computebridge-emulator: a local emulator of exactly the Azure surfaces computebridge uses,
//! faithful to their REST contracts, for tests and for running computebridge with no Azure
//! account.
//!
//! # Layout
//! - [`start`] / [`Running`]: bind, serve, tick the simulation; in-process or from `main`.
//! - `server`: the accept loop, fault injection, dispatch and the request log.
//! - `routing`: which service a request is for, from the original host.
//! - `identity`: managed-identity and Entra token endpoints; `tokens`: the tokens themselves.
//! - `keyvault`: Key Vault secrets.
//! - `aci`: ARM, resource groups and ACI container groups (`aci::runtime` runs containers).
//! - `batch`: the Batch data plane (`batch::pools`, `batch::jobs`, `batch::formula`).
//! - `control`: `/_emulator/…` seeding, faults, request log, clock; `clock`: simulated time.

mod aci;
mod batch;
mod clock;
pub mod control;
mod faults;
mod http;
mod identity;
mod keyvault;
mod requests;
mod routing;
mod server;
mod state;
mod tokens;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use state::{Options, Timings};

/// How often the simulation advances, in real time.
const TICK: Duration = Duration::from_millis(20);

/// A running emulator; stops when dropped or on [`Running::stop`].
pub struct Running {
    address: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    state: state::Shared,
}

/// Binds `address` (port 0 picks one) and starts serving and simulating.
pub async fn start(address: SocketAddr, options: Options) -> std::io::Result<Running> {
    let listener = TcpListener::bind(address).await?;
    let address = listener.local_addr()?;
    let state = state::Emulator::new(options);
    let (stop, stopped) = watch::channel(false);
    let server = tokio::spawn(server::serve(listener, state.clone(), stopped.clone()));
    let ticker_state = state.clone();
    let mut ticker_stop = stopped;
    let ticker = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {
                    batch::tick(&ticker_state);
                    aci::tick(&ticker_state);
                }
                _ = ticker_stop.changed() => return,
            }
        }
    });
    Ok(Running {
        address,
        stop,
        tasks: vec![server, ticker],
        state,
    })
}

impl Running {
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Seeds state in-process, as `POST /_emulator/seed` does.
    pub fn seed(&self, seed: control::Seed) -> Result<serde_json::Value, String> {
        control::apply_seed(&self.state, seed)
    }

    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
