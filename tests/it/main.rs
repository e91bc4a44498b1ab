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
mod environments;
mod exec_ending;
mod faults;
mod fleets;
mod github_actions;
mod hook_daemons;
mod host_files;
mod hostile_artifacts;
mod install;
mod labels_and_paths;
mod large_fleets;
mod load_balanced;
mod lock_races;
mod misleading_output;
mod one_host;
mod plan_agrees;
mod real_apps;
mod refused_hosts;
mod rollout_ssh;
mod secrets;
mod ssh_transport;
mod three_am;
mod transport_faults;
mod upload_ssh;
mod url_pull;
