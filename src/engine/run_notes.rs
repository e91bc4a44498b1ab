//! What a run learns on the way that its end must say: the lock taken from
//! it, and hosts whose journal missed a line it wrote.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::Context;
use crate::exit::Exit;
use crate::report::Level;

#[derive(Default)]
pub(crate) struct RunNotes {
    /// What held the lock when a switch found it was no longer this run's.
    lock_lost: Mutex<Option<String>>,
    /// Some host was switched by this run (forward or back).
    switched: AtomicBool,
    /// Hosts whose journal lacks a line this run wrote, in the order met.
    unrecorded: Mutex<Vec<String>>,
}

impl RunNotes {
    pub fn lock_lost(&self, now: String) {
        let mut lost = self.lock_lost.lock().expect("not poisoned");
        lost.get_or_insert(now);
    }

    pub fn switched(&self) {
        self.switched.store(true, Ordering::Relaxed);
    }

    pub fn unrecorded(&self, host: &str) {
        let mut hosts = self.unrecorded.lock().expect("not poisoned");
        if !hosts.iter().any(|h| h == host) {
            hosts.push(host.to_string());
        }
    }
}

impl Context {
    /// Says what the notes hold, just before the summary, and the exit they
    /// make of `exit`: a run the lock was taken from ends 4 when it had
    /// switched nothing, else 1 (its hosts are not all where they should be).
    pub(crate) fn settle_notes(&self, exit: Exit) -> Exit {
        let unrecorded = self.notes.unrecorded.lock().expect("not poisoned").clone();
        if !unrecorded.is_empty() {
            self.message(
                Level::Warn,
                None,
                format!(
                    "history incomplete on {}: a journal line this run wrote there was lost, so `hoist status` and `hoist rollback` may not know what this run did there",
                    unrecorded.join(", ")
                ),
            );
        }
        let lost = self.notes.lock_lost.lock().expect("not poisoned").clone();
        let Some(now) = lost else {
            return exit;
        };
        let switched = self.notes.switched.load(Ordering::Relaxed);
        self.message(
            Level::Error,
            None,
            format!(
                "the lock was taken from this run ({now}; `hoist unlock --force`?), so it switched no host after that{}",
                if switched {
                    "; `hoist status` shows where each host is"
                } else {
                    ""
                }
            ),
        );
        match exit {
            Exit::Interrupted => exit,
            _ if switched => Exit::Failed,
            _ => Exit::Locked,
        }
    }
}
