//! hoist: push a release to many hosts over SSH, switch them in waves,
//! check their health, and roll back when anything fails.

pub mod config;
pub mod report;
pub mod select;
pub mod transport;

/// Runs the command line; returns the process exit code.
pub fn run() -> i32 {
    0
}
