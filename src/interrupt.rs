//! Ctrl-C and SIGTERM: the first asks the run to stop safely (start nothing
//! new, finish or undo what is in flight, free the lock); the second abandons
//! the cleanup and says where each host was left.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::report::{Event, Level, Reporter, Summary};

/// Forwards every event and remembers what each host was last doing.
pub struct Tracker {
    inner: Arc<dyn Reporter>,
    states: Mutex<BTreeMap<String, String>>,
}

impl Tracker {
    pub fn new(inner: Arc<dyn Reporter>) -> Arc<Tracker> {
        Arc::new(Tracker {
            inner,
            states: Mutex::new(BTreeMap::new()),
        })
    }

    fn states(&self) -> Vec<String> {
        self.states
            .lock()
            .unwrap()
            .iter()
            .map(|(h, s)| format!("{h}: {s}"))
            .collect()
    }
}

impl Reporter for Tracker {
    fn event(&self, event: &Event) {
        let state = match event {
            Event::HostPhase { host, phase } => Some((host, format!("in {phase}"))),
            Event::HostDone { host, release, .. } => Some((
                host,
                format!("done, on {}", release.as_deref().unwrap_or("its release")),
            )),
            Event::HostFailed { host, phase, .. } => Some((host, format!("failed in {phase}"))),
            _ => None,
        };
        if let Some((host, state)) = state {
            self.states.lock().unwrap().insert(host.clone(), state);
        }
        self.inner.event(event);
    }

    fn confirm(&self, question: &str) -> Option<bool> {
        self.inner.confirm(question)
    }

    fn finish(&self) {
        self.inner.finish()
    }
}

/// Listens for SIGINT and SIGTERM for the rest of the run.
pub fn watch(command: &str, cancel: CancellationToken, tracker: Arc<Tracker>) {
    let command = command.to_string();
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
            "cleanup abandoned; the lock may still be held (free it with `hoist unlock --force`). Hosts were left:",
        );
        for state in tracker.states() {
            text.push_str("\n  ");
            text.push_str(&state);
        }
        tracker.event(&Event::Message {
            level: Level::Error,
            host: None,
            text,
        });
        // Even abandoned, a run ends with its summary.
        tracker.event(&Event::Summary(Summary::without_hosts(&command, 130)));
        tracker.finish();
        std::process::exit(130);
    });
}
