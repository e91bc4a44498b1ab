//! One armed host's heartbeat: its watchdog's deadline pushed on, over
//! the run's connection, beside the run's shell.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::release::ReleaseId;
use crate::report::{Event, Level, Reporter};
use crate::transport::{Transport, TransportError};

/// One host's heartbeat, over the run's connection.
pub(super) struct Heartbeat {
    pub conn: Arc<dyn Transport>,
    pub script: String,
    pub every: Duration,
    pub limit: Duration,
    pub host: String,
    pub from: ReleaseId,
    pub to: Option<ReleaseId>,
    pub reason: String,
    pub reporter: Arc<dyn Reporter>,
    pub reverted: Arc<Mutex<Vec<String>>>,
    /// `deadman_timeout`, for what is said when it cannot be kept waiting.
    pub timeout: Duration,
    /// Set while the host is being confirmed or disarmed: that ends the
    /// watchdog, so a "gone" then is the settling's to read, not ours.
    pub settling: Arc<AtomicBool>,
    /// Cancelled when this host is found gone back (see [`super::Watch`]).
    pub found_back: CancellationToken,
}

impl Heartbeat {
    /// Until stopped, or until the watchdog is found gone (it went back):
    /// then that is told. A heartbeat that fails is tried again at the
    /// next beat; the watchdog waits out the timeout meanwhile.
    pub(super) async fn run(self, stop: CancellationToken) {
        let mut warned = false;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.every) => {}
            }
            // Never cut once sent (the run's shell must not lose its place).
            let answer = self.conn.exec_beside(&self.script, self.limit).await;
            let out = match answer {
                Ok(out) => out,
                // A host that grants one session per connection (its sshd's
                // MaxSessions 1) is kept waiting only while the run's shell
                // is idle: said once, and it goes on beating.
                Err(e @ TransportError::TooFewSessions { .. }) => {
                    if !warned {
                        warned = true;
                        self.reporter.event(&Event::Message {
                            level: Level::Warn,
                            host: Some(self.host.clone()),
                            text: format!(
                                "its dead-man switch is kept waiting only between the run's commands ({e}): a command longer than {} sends it back by itself",
                                humantime::format_duration(self.timeout)
                            ),
                        });
                    }
                    continue;
                }
                Err(_) => continue,
            };
            if stop.is_cancelled() {
                return;
            }
            if out.stdout_str().trim() == "gone" && !self.settling.load(Ordering::SeqCst) {
                self.reverted
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(self.host.clone());
                self.reporter.event(&Event::HostSelfReverted {
                    host: self.host.clone(),
                    from: self.from.to_string(),
                    to: self.to.as_ref().map(|t| t.to_string()),
                    reason: self.reason.clone(),
                    at: None,
                });
                self.found_back.cancel();
                return;
            }
        }
    }
}
