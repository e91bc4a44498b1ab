//! hoist: push a release to many hosts over SSH, switch them in waves,
//! check their health, and roll back when anything fails.

pub mod artifact;
pub mod cli;
pub mod commands;
pub mod config;
pub mod engine;
pub mod exit;
pub mod interrupt;
pub mod journal;
pub mod release;
pub mod remote;
pub mod report;
pub mod select;
pub mod strategy;
pub mod transport;

use clap::Parser;

/// Runs the command line; returns the process exit code.
pub fn run() -> i32 {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit::Exit::Usage.code()
            } else {
                0
            };
        }
    };
    commands::execute(cli)
}
