//! How one host ended, whatever the command: one `HostOutcome`, typed
//! failures, and the two places that turn an outcome into what a user sees
//! (the `host_done`/`host_failed` event and the summary row).

use std::time::Duration;

use super::ms;
use super::policy::Refusal;
use super::preflight::Problem;
use crate::exit::Exit;
use crate::report::Summary;
use crate::report::{Event, HostResult, HostSummary, Phase};
use crate::transport::TransportError;

/// Why one host failed: typed, because the engine acts on it, and carrying
/// the last lines the host printed. The phase it failed in is kept beside it
/// (in [`Failed`] and [`HostOutcome`]), never guessed from the text.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// Unreachable, host key, authentication, a timeout, a lost connection.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A remote or local command (a hook, a step script) exited non-zero.
    #[error("{what} failed{}", code.map(|c| format!(" with exit code {c}")).unwrap_or_else(|| " (killed)".into()))]
    Command {
        what: String,
        code: Option<u32>,
        tail: Vec<String>,
    },
    /// The command of `hoist exec` exited non-zero (that is its result, not an error of hoist's).
    #[error("exit code {}", code.map(|c| c.to_string()).unwrap_or("none".into()))]
    Exit { code: Option<u32> },
    #[error("health check failed: {reason}")]
    Health { reason: String, tail: Vec<String> },
    /// The host cannot take this run (checked before anything is written).
    #[error(transparent)]
    Preflight(Problem),
    /// The host cannot be rolled back to a target the fleet agrees on.
    #[error(transparent)]
    Refused(Refusal),
    /// Going back failed; the host is on neither release for sure.
    #[error("rollback failed: {0}")]
    Rollback(Box<Failure>),
    /// A switch found the lock no longer held this run's token (forced
    /// open, then maybe taken by another run), so it changed nothing.
    #[error("not switched: the lock is no longer this run's ({0})")]
    LockLost(String),
    /// A rollback found no release on the host to leave.
    #[error("has no current release")]
    NoRelease,
    /// The dead-man switch: a fresh connection to the host failed once its
    /// part was over; its watchdog puts it back by itself.
    #[error("unreachable after its switch ({0}); its watchdog puts it back by itself")]
    Unconfirmed(String),
    /// The dead-man switch: the host's watchdog put it back by itself
    /// before hoist confirmed it.
    #[error("went back by itself before hoist confirmed it ({0})")]
    SelfReverted(String),
    #[error("interrupted")]
    Interrupted,
    #[error("stopped: the rollout was halted")]
    Halted,
    /// The host answered something hoist does not read: an answer it
    /// cannot parse, or one far larger than any host's (its probe, its
    /// lock line, a manifest).
    #[error("{0}")]
    Answer(String),
    /// Anything else: a local hook that could not start, a record read back
    /// as text.
    #[error("{0}")]
    Other(String),
}

impl Failure {
    pub(crate) fn tail(&self) -> Vec<String> {
        match self {
            Failure::Command { tail, .. } | Failure::Health { tail, .. } => tail.clone(),
            Failure::Rollback(inner) => inner.tail(),
            _ => Vec::new(),
        }
    }

    /// This failure, in the phase it happened in.
    pub(crate) fn at(self, phase: Phase) -> Failed {
        Failed {
            phase,
            failure: self,
        }
    }
}

/// A failure and the phase it happened in.
#[derive(Debug)]
pub(crate) struct Failed {
    pub phase: Phase,
    pub failure: Failure,
}

impl From<Failed> for Failure {
    fn from(failed: Failed) -> Failure {
        failed.failure
    }
}

/// `result.map_err(at(Phase::Switch))`: tags a step's failure with its phase.
pub(crate) fn at(phase: Phase) -> impl FnOnce(Failure) -> Failed {
    move |failure| failure.at(phase)
}

/// How one host ended in one run of any command.
#[derive(Debug)]
pub(crate) struct HostOutcome {
    pub host: String,
    pub result: HostResult,
    /// Where it failed (a failed host), else `None`.
    pub phase: Option<Phase>,
    pub failure: Option<Failure>,
    /// The release the host is on at the end, when known.
    pub release: Option<String>,
    pub elapsed: Duration,
    /// A word on a host that is done: "rolled back", "already on the target".
    pub note: Option<String>,
    /// Bytes sent to the host for the release, when any were.
    pub sent: Option<u64>,
}

impl HostOutcome {
    pub(crate) fn ok(host: &str, release: Option<String>, elapsed: Duration) -> HostOutcome {
        HostOutcome {
            host: host.to_string(),
            result: HostResult::Ok,
            phase: None,
            failure: None,
            release,
            elapsed,
            note: None,
            sent: None,
        }
    }

    /// Never touched by this run.
    pub(crate) fn skipped(host: &str, release: Option<String>) -> HostOutcome {
        HostOutcome {
            result: HostResult::Skipped,
            ..HostOutcome::ok(host, release, Duration::ZERO)
        }
    }

    pub(crate) fn failed(
        host: &str,
        failed: Failed,
        release: Option<String>,
        elapsed: Duration,
    ) -> HostOutcome {
        HostOutcome {
            result: HostResult::Failed,
            phase: Some(failed.phase),
            failure: Some(failed.failure),
            ..HostOutcome::ok(host, release, elapsed)
        }
    }

    pub(crate) fn with_note(mut self, note: impl Into<String>) -> HostOutcome {
        self.note = Some(note.into());
        self
    }

    /// What the summary says went wrong: the failure, and that the host was
    /// put back when it was.
    pub(crate) fn error(&self) -> Option<String> {
        self.failure.as_ref().map(|f| match self.result {
            HostResult::RolledBack => format!("{f}; rolled back"),
            _ => f.to_string(),
        })
    }

    /// The `host_done` or `host_failed` event; none for a host never touched.
    pub(crate) fn event(&self) -> Option<Event> {
        match (self.result, &self.failure) {
            (HostResult::Failed, Some(failure)) => Some(Event::HostFailed {
                host: self.host.clone(),
                phase: self.phase.unwrap_or(Phase::Preflight),
                error: failure.to_string(),
                tail: failure.tail(),
                elapsed_ms: ms(self.elapsed),
            }),
            (HostResult::Skipped, _) => None,
            _ => Some(Event::HostDone {
                host: self.host.clone(),
                release: self.release.clone(),
                message: self.note.clone(),
                elapsed_ms: ms(self.elapsed),
                sent_bytes: self.sent,
            }),
        }
    }

    /// The host's row in the run's summary.
    pub(crate) fn summary(&self) -> HostSummary {
        HostSummary {
            host: self.host.clone(),
            result: self.result,
            release: self.release.clone(),
            error: self.error(),
            elapsed_ms: ms(self.elapsed),
            sent_bytes: self.sent,
            tail: self.failure.as_ref().map(Failure::tail).unwrap_or_default(),
        }
    }
}

/// The summary of a run from how its hosts ended: the one way a summary is
/// built, whether the run ended normally or its cleanup was abandoned.
pub(crate) fn summary(
    command: &str,
    exit: Exit,
    release: Option<String>,
    hosts: &[HostOutcome],
    elapsed: Duration,
    log_file: Option<String>,
) -> Summary {
    Summary::new(
        command,
        exit.code(),
        release,
        hosts.iter().map(HostOutcome::summary).collect(),
        ms(elapsed),
        log_file,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_host_becomes_host_failed_with_its_phase_and_tail() {
        let failure = Failure::Command {
            what: "before_switch hook `x`".into(),
            code: Some(3),
            tail: vec!["boom".into()],
        };
        let o = HostOutcome::failed(
            "web1",
            failure.at(Phase::BeforeSwitch),
            None,
            Duration::from_millis(1500),
        );
        match o.event() {
            Some(Event::HostFailed {
                host,
                phase,
                error,
                tail,
                elapsed_ms,
            }) => {
                assert_eq!(host, "web1");
                assert_eq!(phase, Phase::BeforeSwitch);
                assert_eq!(error, "before_switch hook `x` failed with exit code 3");
                assert_eq!(tail, vec!["boom"]);
                assert_eq!(elapsed_ms, 1500);
            }
            other => panic!("expected host_failed, got {other:?}"),
        }
        assert_eq!(o.summary().result, HostResult::Failed);
    }

    #[test]
    fn a_rolled_back_failure_says_so_in_the_summary() {
        let mut o = HostOutcome::failed(
            "web1",
            Failure::Halted.at(Phase::Health),
            Some("r2".into()),
            Duration::ZERO,
        );
        o.result = HostResult::RolledBack;
        o.release = Some("r1".into());
        let row = o.summary();
        assert_eq!(
            row.error.as_deref(),
            Some("stopped: the rollout was halted; rolled back")
        );
        assert_eq!(row.release.as_deref(), Some("r1"));
    }

    #[test]
    fn a_skipped_host_has_no_event() {
        assert!(HostOutcome::skipped("web1", None).event().is_none());
    }
}
