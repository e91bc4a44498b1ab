//! Events the engine emits, and the one trait that renders them.
//! The engine never prints: the TTY view, plain lines and NDJSON are three
//! renderers of the same events.

use serde::{Deserialize, Serialize};

/// What a host is doing right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Connect,
    Preflight,
    Lock,
    Upload,
    Unpack,
    /// The release is on the host, uploaded ahead of its wave, which has
    /// not started yet.
    Ready,
    /// Shared paths linked into the release, `[[files]]` written.
    Link,
    BeforeSwitchOnce,
    BeforeSwitch,
    Switch,
    AfterSwitch,
    Health,
    /// The dead-man switch: the host confirmed over a fresh connection
    /// once its part of the rollout is over.
    Confirm,
    /// Running `[diagnose]` commands on a host that failed.
    Diagnose,
    Prune,
    Rollback,
    AfterRollback,
    Unlock,
    Exec,
    /// `files push`: the `[[files]]` written to `shared/`.
    Files,
    /// `files push`: `hooks.after_files`.
    AfterFiles,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::Preflight => "preflight",
            Phase::Lock => "lock",
            Phase::Upload => "upload",
            Phase::Unpack => "unpack",
            Phase::Ready => "ready",
            Phase::Link => "link",
            Phase::BeforeSwitchOnce => "before_switch_once",
            Phase::BeforeSwitch => "before_switch",
            Phase::Switch => "switch",
            Phase::AfterSwitch => "after_switch",
            Phase::Health => "health",
            Phase::Confirm => "confirm",
            Phase::Diagnose => "diagnose",
            Phase::Prune => "prune",
            Phase::Rollback => "rollback",
            Phase::AfterRollback => "after_rollback",
            Phase::Unlock => "unlock",
            Phase::Exec => "exec",
            Phase::Files => "files",
            Phase::AfterFiles => "after_files",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// The result of one host, as the summary reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostResult {
    /// On the new release (or the command succeeded).
    Ok,
    /// Failed; see `error`.
    Failed,
    /// Was switched, then put back on its previous release.
    RolledBack,
    /// Never touched by this run.
    Skipped,
    /// Could not be reached at preflight and was skipped, within
    /// `strategy.max_unreachable`; `deploy --resume` reaches it later.
    Unreachable,
}

impl HostResult {
    pub fn as_str(self) -> &'static str {
        match self {
            HostResult::Ok => "ok",
            HostResult::Failed => "failed",
            HostResult::RolledBack => "rolled_back",
            HostResult::Skipped => "skipped",
            HostResult::Unreachable => "unreachable",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct HostSummary {
    pub host: String,
    pub result: HostResult,
    /// The release the host is on at the end, when known.
    pub release: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub elapsed_ms: u64,
    /// Bytes this machine sent to the host for the release (the upload,
    /// a delta, or only a manifest); absent when it sent none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_bytes: Option<u64>,
    /// A failed host's last lines (of the failing command), as `host_failed` has them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tail: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub command: String,
    pub exit_code: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    pub ok: usize,
    pub failed: usize,
    pub rolled_back: usize,
    pub skipped: usize,
    pub unreachable: usize,
    pub elapsed_ms: u64,
    pub hosts: Vec<HostSummary>,
    /// Where the full log of this run was written, if anywhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_file: Option<String>,
}

impl Summary {
    /// The summary of a run: the counts come from the host rows.
    pub fn new(
        command: &str,
        exit_code: i32,
        release: Option<String>,
        hosts: Vec<HostSummary>,
        elapsed_ms: u64,
        log_file: Option<String>,
    ) -> Summary {
        let count = |r: HostResult| hosts.iter().filter(|h| h.result == r).count();
        Summary {
            command: command.to_string(),
            exit_code,
            release,
            ok: count(HostResult::Ok),
            failed: count(HostResult::Failed),
            rolled_back: count(HostResult::RolledBack),
            skipped: count(HostResult::Skipped),
            unreachable: count(HostResult::Unreachable),
            elapsed_ms,
            hosts,
            log_file,
        }
    }

    /// The summary of a run that reached no host (a plan, a bad file).
    pub fn without_hosts(command: &str, exit_code: i32) -> Summary {
        Summary::new(command, exit_code, None, Vec::new(), 0, None)
    }
}

/// One row of a per-host table (`status`, `check`, `releases`, `exec`).
/// Cells keep their order; JSON gets them as fields of one object.
#[derive(Debug, Clone)]
pub struct Row {
    pub table: &'static str,
    pub cells: Vec<(&'static str, serde_json::Value)>,
    /// Drawn attention to (e.g. a host that differs from the rest).
    pub marked: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        command: String,
        app: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        release: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        version: Option<String>,
        hosts: Vec<String>,
    },
    WaveStarted {
        /// 1-based.
        wave: usize,
        waves: usize,
        /// "canary" or "batch".
        kind: String,
        hosts: Vec<String>,
        /// The ordered group (`strategy.order`) the wave deploys.
        #[serde(skip_serializing_if = "Option::is_none")]
        group: Option<String>,
        /// The zone its hosts are in (`wave_by = "zone"`).
        #[serde(skip_serializing_if = "Option::is_none")]
        zone: Option<String>,
    },
    HostPhase {
        host: String,
        phase: Phase,
    },
    /// A connect failed (refused, reset, timed out) and is tried again.
    ConnectRetry {
        host: String,
        /// 1 for the first retry.
        attempt: u32,
        retries: u32,
        error: String,
        delay_ms: u64,
    },
    UploadProgress {
        host: String,
        bytes: u64,
        total: Option<u64>,
    },
    /// `[relay]`: the host got the release (or the delta it made it
    /// from) from another host, `via`, verified on the host itself.
    Relayed {
        host: String,
        via: String,
    },
    HostOutput {
        host: String,
        stream: OutputStream,
        line: String,
    },
    HostDone {
        host: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        release: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        elapsed_ms: u64,
        /// Bytes sent to the host for the release, when any were.
        #[serde(skip_serializing_if = "Option::is_none")]
        sent_bytes: Option<u64>,
    },
    HostFailed {
        host: String,
        phase: Phase,
        error: String,
        /// The last lines of the failing command's stderr (or output).
        tail: Vec<String>,
        elapsed_ms: u64,
    },
    WaveDone {
        wave: usize,
        ok: usize,
        failed: usize,
        /// Hosts of the wave that were never started (an interrupt, a halt).
        #[serde(skip_serializing_if = "is_zero")]
        skipped: usize,
        /// Ctrl-C or SIGTERM came during the wave.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        interrupted: bool,
    },
    /// What `[diagnose]` found on a host that failed after its switch,
    /// before it was rolled back (or, from `status --last-failure`, kept).
    HostDiagnostics(Diagnostics),
    RollbackStarted {
        hosts: Vec<String>,
        reason: String,
    },
    /// A timed `canary_pause`: the canary is probed every `interval_ms`
    /// for `duration_ms`; a failing probe rolls it back.
    BakeStarted {
        /// Which bake: "canary bake", "wave 2 bake", "zone a bake".
        step: String,
        hosts: Vec<String>,
        duration_ms: u64,
        interval_ms: u64,
    },
    /// The bake is over: the canary stayed healthy, or it was cut short
    /// (by a canary host failing, or by Ctrl-C).
    BakeDone {
        step: String,
        healthy: bool,
        /// An analysis gate ended it: why.
        #[serde(skip_serializing_if = "Option::is_none")]
        gate: Option<String>,
        interrupted: bool,
        elapsed_ms: u64,
    },
    /// One sample of an `[[analysis]]` gate during a bake: what it saw
    /// (`value`: a number, an exit code, one per host, or canary and
    /// baseline) and what it read as (`pass`, `fail`, `inconclusive`,
    /// `error`).
    Analysis {
        gate: String,
        /// The bake: "canary bake", "wave 2 bake", "zone a bake".
        step: String,
        /// This sample's number in the step, of `count`.
        sample: u32,
        count: u32,
        value: serde_json::Value,
        verdict: String,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        dry_run: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// `[traffic]`: `set_local` ran at `weight` (percent of the traffic
    /// the new release gets) with these hosts on the new release
    /// (`canary`) and on the old one (`baseline`).
    TrafficStep {
        /// The step, 1-based, of `steps`; none for the weight set to 0
        /// when the rollout stops, or to 100 once it is done.
        #[serde(skip_serializing_if = "Option::is_none")]
        step: Option<usize>,
        steps: usize,
        weight: u8,
        canary: Vec<String>,
        baseline: Vec<String>,
        /// Blue-green: the colour `canary` is (the one the weight is of).
        #[serde(skip_serializing_if = "Option::is_none")]
        color: Option<String>,
        /// `ok`, or `failed` (set_local did not pass).
        outcome: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Blue-green: `switch_local` sent traffic to `color` (from `previous`).
    Traffic {
        color: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        previous: Option<String>,
        /// Why: a deploy's switch, a rollback, or switching back after a failed probe.
        reason: String,
    },
    /// A host's watchdog put it back by itself (no heartbeat or
    /// confirmation from hoist in time): `current` went from `from` to
    /// `to` (`None`: no release, after a first deploy).
    HostSelfReverted {
        host: String,
        from: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        to: Option<String>,
        reason: String,
        /// When the host says it happened, when hoist read it there.
        #[serde(skip_serializing_if = "Option::is_none")]
        at: Option<String>,
    },
    Message {
        level: Level,
        #[serde(skip_serializing_if = "Option::is_none")]
        host: Option<String>,
        text: String,
    },
    /// `hoist plan`: the rollout as planned (waves, what comes before
    /// each, where each wave's hosts get their release), one event per
    /// colour on a blue-green fleet.
    RolloutPlan(serde_json::Value),
    #[serde(serialize_with = "serialize_row")]
    Row(Row),
    Summary(Summary),
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// `wave 3/4 done: 2 ok, 0 failed`, or what stopped it and how many of
/// its hosts were never started.
pub fn wave_done_text(
    wave: &str,
    ok: usize,
    failed: usize,
    skipped: usize,
    interrupted: bool,
) -> String {
    let how = match (interrupted, skipped) {
        (true, _) => "interrupted",
        (false, 0) => "done",
        (false, _) => "stopped",
    };
    let mut text = format!("wave {wave} {how}: {ok} ok, {failed} failed");
    if skipped > 0 {
        text.push_str(&format!(", {skipped} not started"));
    }
    text
}

fn serialize_row<S: serde::Serializer>(row: &Row, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(row.cells.len() + 2))?;
    map.serialize_entry("table", row.table)?;
    for (k, v) in &row.cells {
        map.serialize_entry(k, v)?;
    }
    map.serialize_entry("marked", &row.marked)?;
    map.end()
}

/// Receives every event of a run. Implementations decide how (or whether) to show it.
pub trait Reporter: Send + Sync {
    fn event(&self, event: &Event);

    /// Asks a yes/no question. `None` when no one can be asked (no TTY, JSON mode).
    fn confirm(&self, _question: &str) -> Option<bool> {
        None
    }

    /// Asks for a secret, not echoed (the become password). `None` when no
    /// one can be asked. The answer is never reported.
    fn ask_secret(&self, _prompt: &str) -> Option<String> {
        None
    }

    /// Called once at the end, after the summary.
    fn finish(&self) {}
}

/// A reporter that keeps every event, for the tests of the reporters and
/// of masking.
#[derive(Default)]
pub struct Recorder(pub std::sync::Mutex<Vec<Event>>);

impl Reporter for Recorder {
    fn event(&self, event: &Event) {
        self.0.lock().unwrap().push(event.clone());
    }
}

mod clock;
mod evidence;
mod json;
mod mask;
mod plain;
mod select;
pub(crate) mod style;
mod table;
mod tty;
mod workflow;

pub use clock::{Clock, ManualClock, SystemClock};
pub use evidence::{Diagnostic, Diagnostics};
pub use json::{Json, line as ndjson_line};
pub use mask::{MASK, MIN_LEN, Mask, Masked};
pub use plain::{Plain, PlainOptions, Stamp, Verbosity};
pub use select::{ColorChoice, ReportOptions, Tee, reporter};
pub use style::Paint;
pub use tty::Tty;
pub use workflow::under_actions;

#[cfg(test)]
mod tests;
