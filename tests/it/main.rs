//! hoist's integration tests, one binary: `cargo test --test it MODULE::`.

mod support;

mod blue_green;
mod both_transports;
mod canary;
mod cli;
mod delta_apps;
mod delta_ssh;
mod deploy_local;
mod deploy_ssh;
mod faults;
mod fleets;
mod large_fleets;
mod real_apps;
mod rollout_ssh;
mod ssh_transport;
mod three_am;
mod transport_faults;
mod upload_ssh;
