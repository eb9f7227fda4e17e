//! The test harness: plays the Functions host (`host`) or runs the binary standalone
//! (`standalone`) around the real, built `computebridge` executable.

pub mod function_app;
pub mod host;
pub mod process;
pub mod standalone;

pub use host::{FunctionsHost, Key, TimerFire};
pub use standalone::Standalone;
