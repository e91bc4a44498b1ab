//! The engine: the steps every command is made of (reach the fleet, judge
//! preflight, lock, upload, hooks, switch, health, the rollout and its
//! policy), and the scripts they send to hosts (`layout`). It never prints:
//! everything goes to the reporter as events; each host ends as one
//! [`HostOutcome`].

mod ahead;
pub(crate) mod analysis;
pub(crate) mod app_layout;
pub(crate) mod bake;
pub(crate) mod balancer;
pub(crate) mod batch;
pub(crate) mod blue_green;
pub(crate) mod deadman;
pub(crate) mod delivery;
pub(crate) mod diagnose;
pub(crate) mod files;
pub(crate) mod fleet;
pub(crate) mod health;
pub(crate) mod hooks;
pub(crate) mod layout;
pub(crate) mod layout_release;
pub(crate) mod lock;
mod once;
mod outcome;
pub(crate) mod payload;
pub(crate) mod policy;
pub(crate) mod preflight;
pub(crate) mod put_back;
pub(crate) mod record;
pub(crate) mod relay;
pub(crate) mod rollout;
pub(crate) mod rollout_plan;
pub(crate) mod run_hooks;
mod run_notes;
pub(crate) mod shared;
pub(crate) mod strategy;
pub(crate) mod sudo;
pub(crate) mod switch;
pub(crate) mod throttle;
pub(crate) mod traffic;
pub(crate) mod upload;

pub(crate) use outcome::{Failed, Failure, HostOutcome, at, summary};
pub(crate) use run_notes::RunNotes;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Host};
use crate::exit::Exit;
use crate::report::{Event, Level, Phase, Reporter};
use crate::transport::ssh::SshContext;

/// Everything one run of a command shares.
pub(crate) struct Context {
    /// The command being run, as typed ("deploy", "files push").
    pub command: &'static str,
    pub config: Arc<Config>,
    /// The selected hosts, in inventory order.
    pub hosts: Vec<Host>,
    pub reporter: Arc<dyn Reporter>,
    pub ssh: Arc<SshContext>,
    /// Ctrl-C and SIGTERM: start nothing new, finish or undo what is in flight.
    pub cancel: CancellationToken,
    /// The most hosts worked on at once (connections, uploads).
    pub parallel: Arc<Semaphore>,
    pub yes: bool,
    /// `--lock-wait`: how long to wait for a held lock (zero: exit 4 at once).
    pub lock_wait: Duration,
    /// `-v`: say more (e.g. `check` shows where each SSH setting came from).
    pub verbose: bool,
    /// A person is at a terminal and may be asked.
    pub interactive: bool,
    /// user@machine, written into locks and journals.
    pub by: String,
    /// Unique to this run: marks its lock and journal lines.
    pub run_id: String,
    pub log_file: Option<PathBuf>,
    pub started: Instant,
    /// `become`: the sudo password of this run, set once its preflight
    /// knows whether one is needed (`None` inside: none needed).
    pub become_password: std::sync::OnceLock<Option<sudo::Password>>,
    /// The `[[files]]` of every selected host, read by [`shared::load`].
    pub files: std::sync::OnceLock<shared::Files>,
    /// What the end of the run must say (the lock taken from it, lost journal lines).
    pub notes: RunNotes,
    /// The dead-man switches this run armed.
    pub deadman: deadman::Watch,
    /// The secret values of this run, masked in everything reported.
    pub mask: Arc<crate::report::Mask>,
    /// The secrets read from local commands before anything was touched.
    pub secrets: Arc<crate::secrets::Secrets>,
    /// `hooks.throttle`: the most hosts running a hook at once.
    pub throttle: Arc<throttle::Throttles>,
}

impl Context {
    pub fn emit(&self, event: Event) {
        self.reporter.event(&event);
    }

    pub fn phase(&self, host: &str, phase: Phase) {
        self.emit(Event::HostPhase {
            host: host.to_string(),
            phase,
        });
    }

    pub fn message(&self, level: Level, host: Option<&str>, text: impl Into<String>) {
        self.emit(Event::Message {
            level,
            host: host.map(str::to_string),
            text: text.into(),
        });
    }

    /// Shows how one host ended (`host_done` or `host_failed`).
    pub fn report(&self, outcome: &HostOutcome) {
        if let Some(event) = outcome.event() {
            self.emit(event);
        }
    }

    /// Runs the run-level end hooks (`on_success_local`, `on_failure_local`)
    /// of the commands that have them, emits the summary (always the last
    /// event of a run) and returns the exit.
    pub fn finish(&self, exit: Exit, release: Option<String>, hosts: &[HostOutcome]) -> Exit {
        let exit = self.settle_notes(exit);
        let armed = self.deadman.still_armed();
        if !armed.is_empty() {
            self.message(
                Level::Warn,
                None,
                format!(
                    "{} could not be put back or confirmed: each goes back by itself within {} if it is still on this run's release",
                    armed.join(", "),
                    humantime::format_duration(self.config.strategy.deadman_timeout)
                ),
            );
        }
        let summary = outcome::summary(
            self.command,
            exit,
            release,
            hosts,
            self.started.elapsed(),
            self.log_file.as_ref().map(|p| p.display().to_string()),
        );
        // Before the summary, which is always the last event.
        run_hooks::at_end(self, &summary);
        self.emit(Event::Summary(summary));
        self.reporter.finish();
        exit
    }
}

pub fn ms(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

/// The last `n` non-empty lines of a command's stderr, or of its stdout when
/// stderr is empty.
pub fn tail_lines(stderr: &[u8], stdout: &[u8], n: usize) -> Vec<String> {
    let pick = if stderr.iter().any(|b| !b.is_ascii_whitespace()) {
        stderr
    } else {
        stdout
    };
    let text = String::from_utf8_lossy(pick);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

/// `user@machine` of whoever runs hoist.
pub fn whoami() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .or_else(user_from_passwd)
        .unwrap_or_else(|| "unknown".into());
    let machine = gethostname::gethostname().to_string_lossy().into_owned();
    format!("{user}@{machine}")
}

/// The name of the user this process runs as, from /etc/passwd.
fn user_from_passwd() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").ok()?.uid().to_string();
    std::fs::read_to_string("/etc/passwd")
        .ok()?
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == uid)
        .map(|f| f[0].to_string())
}

/// A random token identifying one run.
pub fn new_run_id() -> String {
    use sha2::{Digest, Sha256};
    let seed = format!(
        "{}-{}-{:?}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default(),
        std::thread::current().id()
    );
    hex::encode(&Sha256::digest(seed.as_bytes())[..6])
}
