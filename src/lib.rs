//! computebridge: lets Azure Data Factory pipelines run work on Azure Container Instances and Azure
//! Batch, as an Azure Functions custom handler or as a standalone service.
//!
//! # Layout (in reading order)
//! - [`cli`]: which mode the command line asks for.
//! - [`config`]: the one typed configuration; the only reader of the environment.
//! - [`dev`]: the `dev` command: the in-process emulator, seeded, and the config pointing at it.
//! - [`startup`]: binds and serves; shared by both modes and the tests.
//! - [`routes`]: the HTTP surface, one router for both modes.
//! - [`invocation`]: the Functions host's invocation protocol for non-HTTP triggers.
//! - [`pools`]: managed Batch pools: reports, resizes watched until ready, autoscale, scale-down.
//! - [`runs`]: container runs on ACI: start from a template, judge by the group, call back.
//! - [`worker`]: the background loop that advances pool operations and delivers callbacks.
//! - [`timers`]: what the `ScaleDown` and `Reconcile` timers do.
//! - [`scheduler`]: fires the timers in standalone mode.
//! - [`auth`]: function-key checks in standalone mode.
//! - [`azure`]: the cloud, the one credential and the transport every Azure client uses.
//! - [`callbacks`]: callback URL checks and the durable outbox that delivers ADF callbacks.
//! - [`secrets`]: Key Vault references in configuration and the cache that resolves them.
//! - [`error`]: the JSON error every caller sees.
//! - [`schedule`]: NCRONTAB parsing and next-occurrence.
//! - [`secret`]: values that never reach a log or a response.
//! - [`store`]: durable JSON documents with conditional writes (local folder, Blob storage).
//! - [`state`], [`telemetry`]: shared state and logging setup.
//! - [`fingerprint`]: the stable hash behind group names, owner tags and local ETags.

pub mod auth;
pub mod azure;
pub mod callbacks;
pub mod cli;
pub mod config;
pub mod dev;
pub mod error;
pub mod fingerprint;
pub mod invocation;
pub mod pools;
pub mod routes;
pub mod runs;
pub mod schedule;
pub mod scheduler;
pub mod secret;
pub mod secrets;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod timers;
pub mod worker;
