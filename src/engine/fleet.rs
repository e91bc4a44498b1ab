//! Reaching the selected hosts: connect, then read each one's state in one
//! round trip. Nothing here writes to a host.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio_util::sync::CancellationToken;

use super::layout::{Layout, Probe};
use super::{Context, Failed, Failure, HostOutcome};
use crate::config::{Host, HostTransport};
use crate::exit::Exit;
use crate::journal::Journal;
use crate::release::ReleaseId;
use crate::report::{Event, Level, Phase};
use crate::transport::local::LocalHost;
use crate::transport::ssh::{ConnectRetry, SshHost};
use crate::transport::{DEPLOY_SESSIONS, Input, Output, Transport, TransportError};

/// A connected host and what hoist knows of it.
pub(crate) struct Node {
    pub host: Host,
    pub conn: Arc<dyn Transport>,
    pub layout: Layout,
    pub probe: Probe,
    pub journal: Journal,
    /// The artifact's upload ahead of this host's wave ([`reach_with`]),
    /// until the wave takes it.
    pub staged: Mutex<Option<Staged>>,
}

/// How the upload ahead of a host's wave went.
#[derive(Debug)]
pub(crate) enum Staged {
    /// Verified and unpacked in `.hoist/tmp`, waiting for the wave to
    /// rename it into the release; the bytes sent for it.
    Made(u64),
    /// It failed (nothing of it is left on the host): the host fails in its
    /// wave with this, as its upload there would have.
    Failed(Failed),
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

    /// Reads the host's state again (after changes).
    pub(crate) async fn refresh(&mut self) -> Result<(), Failure> {
        let out = self.must("probe", &self.layout.probe(), None).await?;
        self.probe = Probe::parse(&out.stdout_str()).map_err(Failure::Other)?;
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

pub(crate) async fn connect(ctx: &Context, host: &Host) -> Result<Arc<dyn Transport>, Failure> {
    match &host.transport {
        HostTransport::Local { .. } => Ok(Arc::new(LocalHost::new(&host.name))),
        HostTransport::Ssh(target) => {
            let on_retry = |retry: &ConnectRetry| {
                ctx.emit(Event::ConnectRetry {
                    host: host.name.clone(),
                    attempt: retry.attempt,
                    retries: retry.retries,
                    error: retry.reason.clone(),
                    delay_ms: super::ms(retry.pause),
                })
            };
            let conn = SshHost::connect_observed(target, &ctx.ssh, &on_retry).await?;
            Ok(Arc::new(conn))
        }
    }
}

/// Connects to every selected host (at most `parallel` at once) and probes
/// each. Returns the nodes in inventory order, and how the hosts that could
/// not be reached or read failed.
pub(crate) async fn reach(ctx: &Context) -> (Vec<Node>, Vec<HostOutcome>) {
    let tasks = ctx.hosts.iter().map(|host| async move {
        let _permit = ctx.parallel.acquire().await.expect("semaphore open");
        reach_one(ctx, host).await
    });
    split(join_all(tasks).await)
}

/// [`reach`], and on each host as soon as it is probed, `ahead`: the
/// artifact's upload, while the other hosts are still being reached, so
/// that no host waits for the slowest login before its first byte. `ahead`
/// returns how the upload went, `None` when none was made. It
/// gets a token that is cancelled once the run cannot go on (Ctrl-C, or
/// more than `unreached_allowed` hosts out of reach), and may cancel it
/// itself (a host preflight refuses).
pub(crate) async fn reach_with(
    ctx: &Context,
    unreached_allowed: usize,
    ahead: impl AsyncFn(&Node, &CancellationToken) -> Option<Staged>,
) -> (Vec<Node>, Vec<HostOutcome>) {
    let stop = ctx.cancel.child_token();
    let unreached = AtomicUsize::new(0);
    let (stop, unreached, ahead) = (&stop, &unreached, &ahead);
    let tasks = ctx.hosts.iter().map(|host| async move {
        let _permit = ctx.parallel.acquire().await.expect("semaphore open");
        match reach_one(ctx, host).await {
            Ok(mut node) => {
                if !stop.is_cancelled() {
                    let staged = ahead(&node, stop).await;
                    *node.staged.get_mut().unwrap() = staged;
                }
                Ok(node)
            }
            Err(outcome) => {
                if unreached.fetch_add(1, Ordering::SeqCst) + 1 > unreached_allowed {
                    stop.cancel();
                }
                Err(outcome)
            }
        }
    });
    split(join_all(tasks).await)
}

/// Connects to one host and probes it.
async fn reach_one(ctx: &Context, host: &Host) -> Result<Node, HostOutcome> {
    let started = Instant::now();
    let unreached = |failure: Failure, phase| {
        HostOutcome::failed(&host.name, failure.at(phase), None, started.elapsed())
    };
    if ctx.cancel.is_cancelled() {
        return Err(unreached(Failure::Interrupted, Phase::Connect));
    }
    ctx.phase(&host.name, Phase::Connect);
    let conn = connect(ctx, host)
        .await
        .map_err(|failure| unreached(failure, Phase::Connect))?;
    ctx.phase(&host.name, Phase::Preflight);
    let mut node = Node {
        host: host.clone(),
        conn,
        layout: layout_for(host),
        probe: Probe::default(),
        journal: Journal::default(),
        staged: Mutex::new(None),
    };
    match node.refresh().await {
        Ok(()) => Ok(node),
        Err(failure) => {
            node.conn.close().await;
            Err(unreached(failure, Phase::Preflight))
        }
    }
}

/// The nodes reached, and how the others failed.
fn split(results: Vec<Result<Node, HostOutcome>>) -> (Vec<Node>, Vec<HostOutcome>) {
    let mut nodes = Vec::new();
    let mut unreached = Vec::new();
    for result in results {
        match result {
            Ok(node) => nodes.push(node),
            Err(u) => unreached.push(u),
        }
    }
    (nodes, unreached)
}

/// Removes the uploads made ahead of their waves that no wave took (the
/// run stopped first), and the directories they created.
pub(crate) async fn drop_staged(ctx: &Context, nodes: &[Node]) {
    let left = nodes.iter().filter(|n| {
        let staged = n.staged.lock().unwrap();
        matches!(*staged, Some(Staged::Made(_)))
    });
    join_all(left.map(|node| async move {
        let script = node.layout.drop_staged(&ctx.run_id);
        let dropped = node
            .must_within(
                "removing the upload made ahead of its wave",
                &script,
                None,
                node.quick_limit(),
            )
            .await;
        if let Err(e) = dropped {
            ctx.message(
                Level::Warn,
                Some(node.name()),
                format!("could not remove the upload made ahead of its wave ({e}); the next run to take the lock removes it"),
            );
        }
    }))
    .await;
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
    command: &str,
    exit: Exit,
    release: Option<String>,
    nodes: &[Node],
    failed: Vec<HostOutcome>,
) -> Exit {
    drop_staged(ctx, nodes).await;
    close_all(nodes).await;
    let hosts = untouched(ctx, nodes, failed);
    ctx.finish(command, exit, release, &hosts)
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
