//! hoist: push a release to many hosts over SSH, switch them in waves,
//! check their health, and roll back when anything fails.

mod artifact;
mod cli;
mod commands;
pub mod config;
mod delta;
mod engine;
pub mod exit;
mod freeze;
#[cfg(test)]
mod host_shells;
mod ignore;
mod interrupt;
mod journal;
mod local_command;
mod manifest;
mod release;
pub mod report;
mod secret_env;
mod secrets;
mod select;
pub mod transport;

use clap::Parser;

/// hoist's command line as clap defines it. `hoist --help` and the man pages
/// (`examples/man.rs`) are both made from this one value, so they cannot
/// disagree.
pub fn command() -> clap::Command {
    <cli::Cli as clap::CommandFactory>::command()
}

/// Runs the command line; returns the process exit code.
pub fn run() -> i32 {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit::Exit::Usage.code()
            } else {
                exit::Exit::Ok.code()
            };
        }
    };
    // The one place an exit becomes a process exit code.
    commands::execute(cli).code()
}
