//! Ctrl-C and SIGTERM: the first asks the run to stop safely (start nothing
//! new, finish or undo what is in flight, free the lock); the second abandons
//! the cleanup and says where each host was left.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::engine::{self, Failure, HostOutcome};
use crate::exit::Exit;
use crate::report::{Event, HostResult, Level, Phase, Reporter};

/// What was last seen of a host.
#[derive(Debug, Clone)]
enum Seen {
    In(Phase),
    Done {
        /// Ok, or RolledBack for a host of a rollback in progress.
        result: HostResult,
        release: Option<String>,
        note: Option<String>,
        elapsed_ms: u64,
    },
    Failed {
        phase: Phase,
        error: String,
        elapsed_ms: u64,
    },
}

/// Forwards every event and remembers what each host was last doing.
pub struct Tracker {
    inner: Arc<dyn Reporter>,
    seen: Mutex<BTreeMap<String, Seen>>,
    /// Hosts a `rollback_started` named: their `host_done` means rolled back.
    going_back: Mutex<BTreeSet<String>>,
}

impl Tracker {
    pub fn new(inner: Arc<dyn Reporter>) -> Arc<Tracker> {
        Arc::new(Tracker {
            inner,
            seen: Mutex::new(BTreeMap::new()),
            going_back: Mutex::new(BTreeSet::new()),
        })
    }

    fn states(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(h, s)| match s {
                Seen::In(phase) => format!("{h}: in {phase}"),
                Seen::Done { release, .. } => format!(
                    "{h}: done, on {}",
                    release.as_deref().unwrap_or("its release")
                ),
                Seen::Failed { phase, .. } => format!("{h}: failed in {phase}"),
            })
            .collect()
    }

    /// How each host stood when the cleanup was abandoned; a host caught
    /// in a phase counts as interrupted there.
    fn outcomes(&self) -> Vec<HostOutcome> {
        let ms = |m: u64| Duration::from_millis(m);
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(host, seen)| match seen.clone() {
                Seen::In(phase) => {
                    HostOutcome::failed(host, Failure::Interrupted.at(phase), None, Duration::ZERO)
                }
                Seen::Done {
                    result,
                    release,
                    note,
                    elapsed_ms,
                } => HostOutcome {
                    result,
                    note,
                    ..HostOutcome::ok(host, release, ms(elapsed_ms))
                },
                Seen::Failed {
                    phase,
                    error,
                    elapsed_ms,
                } => {
                    HostOutcome::failed(host, Failure::Other(error).at(phase), None, ms(elapsed_ms))
                }
            })
            .collect()
    }
}

impl Reporter for Tracker {
    fn event(&self, event: &Event) {
        let seen = match event {
            Event::HostPhase { host, phase } => Some((host, Seen::In(*phase))),
            Event::HostDone {
                host,
                release,
                message,
                elapsed_ms,
                ..
            } => Some((
                host,
                Seen::Done {
                    result: if self.going_back.lock().unwrap().contains(host) {
                        HostResult::RolledBack
                    } else {
                        HostResult::Ok
                    },
                    release: release.clone(),
                    note: message.clone(),
                    elapsed_ms: *elapsed_ms,
                },
            )),
            Event::HostFailed {
                host,
                phase,
                error,
                elapsed_ms,
                ..
            } => Some((
                host,
                Seen::Failed {
                    phase: *phase,
                    error: error.clone(),
                    elapsed_ms: *elapsed_ms,
                },
            )),
            Event::RollbackStarted { hosts, .. } => {
                self.going_back
                    .lock()
                    .unwrap()
                    .extend(hosts.iter().cloned());
                None
            }
            _ => None,
        };
        if let Some((host, seen)) = seen {
            self.seen.lock().unwrap().insert(host.clone(), seen);
        }
        self.inner.event(event);
    }

    fn confirm(&self, question: &str) -> Option<bool> {
        self.inner.confirm(question)
    }

    fn ask_secret(&self, prompt: &str) -> Option<String> {
        self.inner.ask_secret(prompt)
    }

    fn finish(&self) {
        self.inner.finish()
    }
}

/// What the second Ctrl-C needs to end the run with its summary.
pub struct Run {
    pub command: &'static str,
    pub started: Instant,
    pub log_file: Option<String>,
    /// The dead-man switch's timeout when this run arms hosts (`deploy`,
    /// `promote`, with the switch on): what the abandoned hosts do is said.
    pub deadman: Option<std::time::Duration>,
}

/// Listens for SIGINT and SIGTERM for the rest of the run.
pub fn watch(run: Run, cancel: CancellationToken, tracker: Arc<Tracker>) {
    tokio::spawn(async move {
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
        cancel.cancel();
        tracker.event(&Event::Message {
            level: Level::Warn,
            host: None,
            text: "interrupted: starting nothing new, finishing what is in flight and freeing the lock; press Ctrl-C again to abandon the cleanup".into(),
        });
        tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
        let mut text = String::from(
            "cleanup abandoned; the lock may still be held (free it with `hoist unlock`: it is yours). Hosts were left:",
        );
        for state in tracker.states() {
            text.push_str("\n  ");
            text.push_str(&state);
        }
        if let Some(timeout) = run.deadman {
            text.push_str(&format!(
                "\nhosts this run switched and had not confirmed go back by themselves within {} (the dead-man switch)",
                humantime::format_duration(timeout)
            ));
        }
        tracker.event(&Event::Message {
            level: Level::Error,
            host: None,
            text,
        });
        // Even abandoned, a run ends with its summary, built as any other.
        // Not 130: that promises whole releases and a freed lock, and the
        // cleanup that makes sure of both was just given up.
        let summary = engine::summary(
            run.command,
            Exit::Failed,
            None,
            &tracker.outcomes(),
            run.started.elapsed(),
            run.log_file,
        );
        tracker.event(&Event::Summary(summary));
        tracker.finish();
        std::process::exit(Exit::Failed.code());
    });
}
