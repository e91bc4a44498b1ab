//! Reaching the selected hosts: connect, then read each one's state in one
//! round trip. Nothing here writes to a host.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::future::join_all;
use tokio::sync::SemaphorePermit;

use super::layout::{Layout, Mark, PROBE_MAX, Probe};
use super::{Context, Failed, Failure, HostOutcome};
use crate::config::{Host, HostTransport};
use crate::exit::Exit;
use crate::journal::Journal;
use crate::release::ReleaseId;
use crate::report::{Event, Phase};
use crate::transport::local::LocalHost;
use crate::transport::ssh::{ConnectRetry, Retries, SshHost};
use crate::transport::{DEPLOY_SESSIONS, Input, Output, Transport, TransportError};

/// A connected host and what hoist knows of it.
pub(crate) struct Node {
    pub host: Host,
    pub conn: Arc<dyn Transport>,
    pub layout: Layout,
    pub probe: Probe,
    pub journal: Journal,
}

impl Node {
    pub fn name(&self) -> &str {
        &self.host.name
    }

    pub(crate) async fn run(&self, script: &str, stdin: Option<Input>) -> Result<Output, Failure> {
        self.run_for(script, stdin, self.host.command_timeout).await
    }

    pub(crate) async fn run_for(
        &self,
        script: &str,
        stdin: Option<Input>,
        timeout: Duration,
    ) -> Result<Output, Failure> {
        Ok(self.conn.exec(script, stdin, timeout).await?)
    }

    /// Runs a script that must succeed; a non-zero exit is a [`Failure::Command`].
    pub(crate) async fn must(
        &self,
        what: &str,
        script: &str,
        stdin: Option<Input>,
    ) -> Result<Output, Failure> {
        self.must_within(what, script, stdin, self.host.command_timeout)
            .await
    }

    /// [`Node::must`], keeping the last `keep` bytes of each output stream.
    pub(crate) async fn must_keeping(
        &self,
        what: &str,
        script: &str,
        keep: usize,
    ) -> Result<Output, Failure> {
        let timeout = self.host.command_timeout;
        let out = self.conn.exec_keeping(script, None, timeout, keep).await?;
        if out.success() {
            Ok(out)
        } else {
            Err(Failure::Command {
                what: what.to_string(),
                code: out.code,
                tail: super::tail_lines(&out.stderr, &out.stdout, 10),
            })
        }
    }

    /// [`Node::must`] within `timeout` instead of the command timeout.
    pub(crate) async fn must_within(
        &self,
        what: &str,
        script: &str,
        stdin: Option<Input>,
        timeout: Duration,
    ) -> Result<Output, Failure> {
        let out = self.run_for(script, stdin, timeout).await?;
        if out.success() {
            Ok(out)
        } else {
            Err(Failure::Command {
                what: what.to_string(),
                code: out.code,
                tail: super::tail_lines(&out.stderr, &out.stdout, 10),
            })
        }
    }

    /// Reads the host's state again (after changes). An answer over
    /// [`PROBE_MAX`] is not read: the host fails.
    pub(crate) async fn refresh(&mut self) -> Result<(), Failure> {
        let out = self
            .must_keeping("probe", &self.layout.probe(), PROBE_MAX)
            .await?;
        if out.cut > 0 {
            return Err(Failure::Answer(format!(
                "its state (the probe's answer) is over {} MiB, which no host's is: not read; look at .hoist/journal and .hoist/lock under deploy_to",
                PROBE_MAX >> 20
            )));
        }
        self.probe = Probe::parse(&out.stdout_str()).map_err(Failure::Answer)?;
        self.journal = Journal::parse(&self.probe.journal);
        Ok(())
    }

    /// The bound on a small bookkeeping command (freeing the lock): what a
    /// responsive host answers in, so that a host whose link died during the
    /// run does not hold the end of the run back by a whole command timeout.
    pub fn quick_limit(&self) -> Duration {
        let responsive = match &self.host.transport {
            HostTransport::Ssh(target) => target.connect_timeout.max(Duration::from_secs(5)),
            HostTransport::Local { .. } => self.host.command_timeout,
        };
        responsive.min(self.host.command_timeout)
    }

    /// This host stopped the run before anything was changed.
    pub(crate) fn stopped(&self, failed: Failed) -> HostOutcome {
        HostOutcome::failed(self.name(), failed, self.current(), Duration::ZERO)
    }

    /// The release `current` points at, as text.
    pub fn current(&self) -> Option<String> {
        self.probe.current.as_ref().map(|c| c.to_string())
    }

    /// The release this host would go back to.
    pub fn rollback_target(&self) -> Option<ReleaseId> {
        self.journal
            .rollback_target(self.probe.current.as_ref(), &|r| self.probe.has_release(r))
    }
}

/// Under the lock just taken: reads again each node that changed since its
/// probe, as `marks` (each node's, in order, as taking the lock read them)
/// show; the others keep what was read, with no round trip. The first
/// failure to read a host, if any.
pub(crate) async fn read_changed(nodes: &mut [Node], marks: &[Mark]) -> Result<(), Failure> {
    let read: Vec<&Mark> = nodes.iter().map(|n| &n.probe.mark).collect();
    let changed = changed(&read, marks);
    let again = nodes
        .iter_mut()
        .zip(changed)
        .filter(|(_, changed)| *changed)
        .map(|(node, _)| node.refresh());
    join_all(again).await.into_iter().collect()
}

/// Which hosts changed between two readings: `read` (the probes') and
/// `now` (the lock's), in the same order. A host without a mark from the
/// lock counts as changed.
pub(crate) fn changed(read: &[&Mark], now: &[Mark]) -> Vec<bool> {
    read.iter()
        .enumerate()
        .map(|(i, read)| !now.get(i).is_some_and(|now| read.unchanged(now)))
        .collect()
}

/// Where `deploy_to` is on the machine that runs the commands.
pub(crate) fn layout_for(host: &Host) -> Layout {
    match &host.transport {
        HostTransport::Local { root } => Layout::new(
            LocalHost::deploy_path(root, &host.deploy_to)
                .to_string_lossy()
                .into_owned(),
        ),
        HostTransport::Ssh(_) => Layout::new(host.deploy_to.clone()),
    }
}

/// One host's turn among the `parallel` hosts worked on at once. It is
/// given back while the host waits to retry a refused connect, so that
/// hosts that refuse cost their backoff once in all, not once per round
/// of `parallel`; the host then waits for a turn again.
pub(crate) struct Turn<'a> {
    ctx: &'a Context,
    host: &'a Host,
    permit: Mutex<Option<SemaphorePermit<'a>>>,
}

impl<'a> Turn<'a> {
    pub async fn take(ctx: &'a Context, host: &'a Host) -> Turn<'a> {
        let permit = ctx.parallel.acquire().await.expect("semaphore open");
        Turn {
            ctx,
            host,
            permit: Mutex::new(Some(permit)),
        }
    }
}

#[async_trait]
impl Retries for Turn<'_> {
    async fn pause(&self, retry: &ConnectRetry) {
        self.ctx.emit(Event::ConnectRetry {
            host: self.host.name.clone(),
            attempt: retry.attempt,
            retries: retry.retries,
            error: retry.reason.clone(),
            delay_ms: super::ms(retry.pause),
        });
        let given_back = self.permit.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(given_back);
        tokio::time::sleep(retry.pause).await;
        let again = self.ctx.parallel.acquire().await.expect("semaphore open");
        *self.permit.lock().unwrap_or_else(|e| e.into_inner()) = Some(again);
    }
}

pub(crate) async fn connect(turn: &Turn<'_>) -> Result<Arc<dyn Transport>, Failure> {
    let host = turn.host;
    match &host.transport {
        HostTransport::Local { .. } => Ok(Arc::new(LocalHost::new(&host.name))),
        HostTransport::Ssh(target) => {
            let conn = SshHost::connect_observed(target, &turn.ctx.ssh, turn).await?;
            Ok(Arc::new(conn))
        }
    }
}

/// Connects to every selected host (at most `parallel` at once) and probes
/// each. Returns the nodes in inventory order, and how the hosts that could
/// not be reached or read failed.
pub(crate) async fn reach(ctx: &Context) -> (Vec<Node>, Vec<HostOutcome>) {
    if let Err(why) = crate::open_files::room_for(ctx.hosts.len()) {
        ctx.message(crate::report::Level::Warn, None, why);
    }
    let tasks = ctx.hosts.iter().map(|host| async move {
        let turn = Turn::take(ctx, host).await;
        let started = Instant::now();
        let unreached = |failure: Failure, phase| {
            HostOutcome::failed(&host.name, failure.at(phase), None, started.elapsed())
        };
        if ctx.cancel.is_cancelled() {
            return Err(unreached(Failure::Interrupted, Phase::Connect));
        }
        ctx.phase(&host.name, Phase::Connect);
        let conn = connect(&turn)
            .await
            .map_err(|failure| unreached(failure, Phase::Connect))?;
        ctx.phase(&host.name, Phase::Preflight);
        let mut node = Node {
            host: host.clone(),
            conn,
            layout: Layout {
                allow_setuid: ctx.config.artifact.as_ref().is_some_and(|a| a.allow_setuid),
                ..layout_for(host)
            },
            probe: Probe::default(),
            journal: Journal::default(),
        };
        match node.refresh().await {
            Ok(()) => Ok(node),
            Err(failure) => {
                node.conn.close().await;
                Err(unreached(failure, Phase::Preflight))
            }
        }
    });
    let mut nodes = Vec::new();
    let mut unreached = Vec::new();
    for result in join_all(tasks).await {
        match result {
            Ok(node) => nodes.push(node),
            Err(u) => unreached.push(u),
        }
    }
    (nodes, unreached)
}

/// Shows how each of these hosts ended.
pub(crate) fn report_all(ctx: &Context, outcomes: &[HostOutcome]) {
    for outcome in outcomes {
        ctx.report(outcome);
    }
}

/// Checks that every node grants the sessions a deploy holds at once (see
/// [`DEPLOY_SESSIONS`]); how each one that does not failed. Bounded per host
/// by its command timeout.
pub(crate) async fn check_sessions(ctx: &Context, nodes: &[Node]) -> Vec<HostOutcome> {
    let checks = nodes.iter().map(|node| async move {
        let _permit = ctx.parallel.acquire().await.expect("semaphore open");
        let started = Instant::now();
        let limit = node.host.command_timeout;
        let result =
            match tokio::time::timeout(limit, node.conn.check_sessions(DEPLOY_SESSIONS)).await {
                Ok(result) => result,
                Err(_) => Err(TransportError::Timeout {
                    what: format!("opening {DEPLOY_SESSIONS} sessions"),
                    after: limit,
                }),
            };
        result.err().map(|e| {
            let failed = Failure::from(e).at(Phase::Preflight);
            HostOutcome::failed(node.name(), failed, node.current(), started.elapsed())
        })
    });
    join_all(checks).await.into_iter().flatten().collect()
}

pub(crate) async fn close_all(nodes: &[Node]) {
    join_all(nodes.iter().map(|n| n.conn.close())).await;
}

/// Ends a run that stopped before any change: closes the connections and
/// emits the summary of every selected host (see [`untouched`]).
pub(crate) async fn stop_untouched(
    ctx: &Context,
    exit: Exit,
    release: Option<String>,
    nodes: &[Node],
    failed: Vec<HostOutcome>,
) -> Exit {
    close_all(nodes).await;
    let hosts = untouched(ctx, nodes, failed);
    ctx.finish(exit, release, &hosts)
}

/// Every selected host of a run that stopped before any change: the hosts
/// that stopped it as they failed (the first failure of each), the rest
/// untouched on the release they have.
fn untouched(ctx: &Context, nodes: &[Node], mut failed: Vec<HostOutcome>) -> Vec<HostOutcome> {
    ctx.hosts
        .iter()
        .map(|h| match failed.iter().position(|o| o.host == h.name) {
            Some(i) => {
                let first = failed.remove(i);
                failed.retain(|o| o.host != h.name);
                first
            }
            None => {
                let node = nodes.iter().find(|n| n.name() == h.name);
                HostOutcome::skipped(&h.name, node.and_then(Node::current))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(current: &str, size: u64) -> Mark {
        Mark {
            current: Some(format!("current releases/{current}")),
            journal_size: Some(size),
        }
    }

    #[test]
    fn only_hosts_that_changed_since_their_probe_are_read_again() {
        let read = [
            mark("v2", 300),
            mark("v2", 300),
            mark("v2", 300),
            mark("v2", 300),
        ];
        let now = [
            // Unchanged: kept as read.
            mark("v2", 300),
            // Another run appended to its journal.
            mark("v2", 420),
            // `current` moved.
            mark("v3", 300),
            // An answer without the mark's lines (an older form).
            Mark::default(),
        ];
        let read: Vec<&Mark> = read.iter().collect();
        assert_eq!(changed(&read, &now), [false, true, true, true]);
        // A host the lock gave no mark for is read again.
        assert_eq!(changed(&read, &now[..1]), [false, true, true, true]);
        // A probe without a journal size (none was read) never matches.
        let unread = Mark::default();
        assert_eq!(changed(&[&unread], &[Mark::default()]), [true]);
    }
}
