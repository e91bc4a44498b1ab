//! hoist: push a release to many hosts over SSH, switch them in waves,
//! check their health, and roll back when anything fails.

pub mod artifact;
pub mod config;
pub mod journal;
pub mod release;
pub mod remote;
pub mod report;
pub mod strategy;
pub mod transport;

/// Runs the command line; returns the process exit code.
pub fn run() -> i32 {
    0
}
