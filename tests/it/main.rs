//! hoist's integration tests, one binary: `cargo test --test it MODULE::`.

mod support;

mod blue_green;
mod blue_green_interrupts;
mod both_transports;
mod canary;
mod cli;
mod delta_apps;
mod delta_ssh;
mod deploy_local;
mod deploy_ssh;
mod exec_ending;
mod faults;
mod fleets;
mod install;
mod labels_and_paths;
mod hook_daemons;
mod host_files;
mod hostile_artifacts;
mod github_actions;
mod large_fleets;
mod misleading_output;
mod one_host;
mod lock_races;
mod load_balanced;
mod real_apps;
mod refused_hosts;
mod rollout_ssh;
mod secrets;
mod ssh_transport;
mod three_am;
mod transport_faults;
mod upload_ssh;
mod url_pull;
