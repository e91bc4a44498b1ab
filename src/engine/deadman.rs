//! The dead-man switch (issue 25): before a host's `current` moves, a
//! watchdog is started on it ([`arm`]) that puts it back by itself unless
//! hoist keeps it waiting (a heartbeat over the run's connection every few
//! seconds) and, once the host's part is over, confirms it over a fresh
//! connection ([`confirm`]), which proves the host can still be reached
//! after its switch. A host hoist puts back itself is disarmed
//! ([`disarm`]). `strategy.deadman_timeout = "0s"` arms nothing.

pub(crate) mod scripts;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;
use tokio_util::sync::CancellationToken;

use super::fleet::{self, Node, Turn};
use super::{Context, Failed, Failure, HostOutcome, app_layout, hooks};
use crate::journal::{Entry, Kind};
use crate::release::ReleaseId;
use crate::report::{Event, HostResult, Level, Phase, Reporter};
use crate::transport::{Transport, TransportError};
use scripts::{Settled, Watchdog};

/// The watchdogs this run armed, by host, and the hosts whose watchdog
/// went back by itself while the run was alive.
#[derive(Default)]
pub(crate) struct Watch {
    armed: Mutex<HashMap<String, Armed>>,
    reverted: Arc<Mutex<Vec<String>>>,
}

/// One armed host: its heartbeat task's stop, and what it was armed for.
struct Armed {
    stop: CancellationToken,
    release: ReleaseId,
    previous: Option<ReleaseId>,
}

impl Watch {
    fn take(&self, host: &str) -> Option<Armed> {
        let armed = self
            .armed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(host);
        if let Some(armed) = &armed {
            armed.stop.cancel();
        }
        armed
    }

    /// Whether the host's watchdog went back by itself during this run.
    pub(crate) fn reverted(&self, host: &str) -> bool {
        let reverted = self.reverted.lock().unwrap_or_else(|e| e.into_inner());
        reverted.iter().any(|h| h == host)
    }

    /// The hosts still armed (nothing confirmed or disarmed them).
    pub(crate) fn still_armed(&self) -> Vec<String> {
        let armed = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        let mut hosts: Vec<String> = armed.keys().cloned().collect();
        hosts.sort();
        hosts
    }
}

/// The whole seconds of a timeout (at least one).
fn secs(timeout: Duration) -> u64 {
    timeout.as_secs_f64().ceil().max(1.0) as u64
}

/// How often the deadline is pushed on: a quarter of the timeout, between
/// one and five seconds.
pub(crate) fn interval(timeout: Duration) -> Duration {
    (timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(5))
}

/// Why a watchdog goes back, in the journal and the events.
pub(crate) fn reason(timeout: Duration) -> String {
    format!(
        "no heartbeat or confirmation from hoist for {}",
        humantime::format_duration(timeout)
    )
}

/// Starts the watchdog on `node`, armed for `id` (coming from `previous`),
/// and its heartbeat. Nothing when `deadman_timeout` is zero.
pub(crate) async fn arm(
    ctx: &Context,
    node: &Node,
    id: &ReleaseId,
    previous: Option<&ReleaseId>,
) -> Result<(), Failed> {
    let timeout = ctx.config.strategy.deadman_timeout;
    if timeout.is_zero() {
        return Ok(());
    }
    let lines = journal_lines(ctx, node, id, previous, timeout);
    let dog = Watchdog {
        layout: &node.layout,
        run: &ctx.run_id,
        armed: id,
        previous,
        after_rollback: after_rollback(ctx, node, id, previous),
        reverted: lines[0].clone(),
        reverted_hook_failed: lines[1].clone(),
        freed: lines[2].clone(),
    };
    // Beside the run's shell, as every heartbeat: a host that grants no
    // second session cannot be kept waiting, so it is not armed.
    let armed = node
        .conn
        .exec_beside(&dog.arm(secs(timeout)), node.quick_limit())
        .await;
    let out = match armed {
        Err(e @ TransportError::TooFewSessions { .. }) => {
            ctx.message(
                Level::Warn,
                Some(node.name()),
                format!("the dead-man switch is not armed: it needs a second session ({e})"),
            );
            return Ok(());
        }
        other => other.map_err(|e| Failure::from(e).at(Phase::Switch))?,
    };
    if !out.success() {
        return Err(Failure::Command {
            what: "arming the dead-man switch".into(),
            code: out.code,
            tail: super::tail_lines(&out.stderr, &out.stdout, 10),
        }
        .at(Phase::Switch));
    }
    let stop = CancellationToken::new();
    let beat = Heartbeat {
        conn: node.conn.clone(),
        script: scripts::heartbeat(&node.layout, &ctx.run_id, secs(timeout)),
        every: interval(timeout),
        limit: node.quick_limit(),
        host: node.name().to_string(),
        from: id.clone(),
        to: previous.cloned(),
        reason: reason(timeout),
        reporter: ctx.reporter.clone(),
        reverted: ctx.deadman.reverted.clone(),
    };
    tokio::spawn(beat.run(stop.clone()));
    let armed = Armed {
        stop,
        release: id.clone(),
        previous: previous.cloned(),
    };
    let replaced = ctx
        .deadman
        .armed
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(node.name().to_string(), armed);
    if let Some(old) = replaced {
        old.stop.cancel();
    }
    Ok(())
}

/// The journal lines the watchdog writes, split around their time (which
/// the host fills in): gone back, gone back with after_rollback failed,
/// the lock freed.
fn journal_lines(
    ctx: &Context,
    node: &Node,
    id: &ReleaseId,
    previous: Option<&ReleaseId>,
    timeout: Duration,
) -> [(String, String); 3] {
    const TS: &str = "@HOIST_TS@";
    let split = |entry: Entry| {
        let line = entry.to_line();
        let (before, after) = line.split_once(TS).expect("the time is in the line");
        (before.to_string(), after.to_string())
    };
    let why = reason(timeout);
    let reverted = |message: String| Entry {
        ts: TS.to_string(),
        release: previous.map(|p| p.to_string()),
        previous: Some(id.to_string()),
        version: previous.and_then(|p| node.journal.version_of(p)),
        run: Some(ctx.run_id.clone()),
        message: Some(message),
        ..Entry::new(Kind::SelfReverted, &ctx.by)
    };
    let freed = Entry {
        ts: TS.to_string(),
        run: Some(ctx.run_id.clone()),
        message: Some(format!(
            "freed by the watchdog of run {}: {why}",
            ctx.run_id
        )),
        ..Entry::new(Kind::Unlock, &ctx.by)
    };
    [
        split(reverted(why.clone())),
        split(reverted(format!("{why}; after_rollback failed"))),
        split(freed),
    ]
}

/// The after_rollback hooks as the watchdog runs them: in the previous
/// release, with the variables hoist gives them, as the `become` user
/// when set (sudo without a password: none is ever left on a host), and
/// without the run's secrets (never written to a host).
fn after_rollback(
    ctx: &Context,
    node: &Node,
    id: &ReleaseId,
    previous: Option<&ReleaseId>,
) -> Vec<String> {
    let Some(previous) = previous else {
        return Vec::new();
    };
    let version = node.journal.version_of(previous).unwrap_or_default();
    let env = hooks::host_env(ctx, node, previous, Some(id), &version);
    let dir = node.layout.release_path(previous);
    ctx.config
        .hooks
        .after_rollback
        .iter()
        .map(|hook| {
            let script = node.layout.hook(&dir, &env, hook);
            match &ctx.config.hooks.become_user {
                Some(user) => app_layout::as_user(user, false, &script),
                None => script,
            }
        })
        .collect()
}

/// One host's heartbeat, over the run's connection.
struct Heartbeat {
    conn: Arc<dyn Transport>,
    script: String,
    every: Duration,
    limit: Duration,
    host: String,
    from: ReleaseId,
    to: Option<ReleaseId>,
    reason: String,
    reporter: Arc<dyn Reporter>,
    reverted: Arc<Mutex<Vec<String>>>,
}

impl Heartbeat {
    /// Until stopped, or until the watchdog is found gone (it went back):
    /// then that is told. A heartbeat that fails is tried again at the
    /// next beat; the watchdog waits out the timeout meanwhile.
    async fn run(self, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.every) => {}
            }
            // Never cut once sent (the run's shell must not lose its place).
            let answer = self.conn.exec_beside(&self.script, self.limit).await;
            let Ok(out) = answer else { continue };
            if stop.is_cancelled() {
                return;
            }
            if out.stdout_str().trim() == "gone" {
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
                return;
            }
        }
    }
}

/// Confirms `node` over a fresh connection: its watchdog exits. A host
/// that cannot be reached fails (its watchdog puts it back); one whose
/// watchdog went back already fails too, and that is told. Nothing for
/// a host this run did not arm.
pub(crate) async fn confirm(ctx: &Context, node: &Node) -> Result<(), Failed> {
    let Some(armed) = ctx.deadman.take(node.name()) else {
        return Ok(());
    };
    let unconfirmed = |e: String| Failure::Unconfirmed(e).at(Phase::Confirm);
    let conn = {
        let turn = Turn::take(ctx, &node.host).await;
        fleet::connect(&turn)
            .await
            .map_err(|e| unconfirmed(e.to_string()))?
    };
    let script = scripts::settle(&node.layout, &ctx.run_id);
    let answer = conn.exec_beside(&script, node.quick_limit()).await;
    conn.close().await;
    let out = answer.map_err(|e| unconfirmed(e.to_string()))?;
    match Settled::parse(&out.stdout_str()) {
        Some(Settled::Settled) => Ok(()),
        Some(Settled::Gone) => {
            let why = reason(ctx.config.strategy.deadman_timeout);
            told(ctx, node.name(), &armed);
            Err(Failure::SelfReverted(why).at(Phase::Confirm))
        }
        None => Err(unconfirmed(format!(
            "the confirmation answered {:?}",
            out.stdout_str().trim()
        ))),
    }
}

/// [`confirm`] for many hosts at once: each one's result, in order.
pub(crate) async fn confirm_all<'a>(
    ctx: &Context,
    nodes: impl Iterator<Item = (usize, &'a Node)>,
) -> Vec<(usize, Result<(), Failed>)> {
    join_all(nodes.map(|(i, node)| async move { (i, confirm(ctx, node).await) })).await
}

/// Says that `host` went back by itself, unless its heartbeat said so.
fn told(ctx: &Context, host: &str, armed: &Armed) {
    let mut reverted = ctx
        .deadman
        .reverted
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if reverted.iter().any(|h| h == host) {
        return;
    }
    reverted.push(host.to_string());
    ctx.emit(Event::HostSelfReverted {
        host: host.to_string(),
        from: armed.release.to_string(),
        to: armed.previous.as_ref().map(|p| p.to_string()),
        reason: reason(ctx.config.strategy.deadman_timeout),
        at: None,
    });
}

/// Ends `node`'s watchdog over the run's connection: hoist put the host
/// back itself. A host that cannot be reached keeps its watchdog, which
/// finds it back (and does nothing) or not (and puts it back).
pub(crate) async fn disarm(ctx: &Context, node: &Node) {
    let Some(armed) = ctx.deadman.take(node.name()) else {
        return;
    };
    let script = scripts::settle(&node.layout, &ctx.run_id);
    match node.run_for(&script, None, node.quick_limit()).await {
        Ok(out) if Settled::parse(&out.stdout_str()) == Some(Settled::Gone) => {
            told(ctx, node.name(), &armed);
        }
        Ok(_) => {}
        Err(e) => ctx.message(
            Level::Warn,
            Some(node.name()),
            format!(
                "could not stop its dead-man switch ({e}); it does nothing once it finds the host back"
            ),
        ),
    }
}

/// Confirms each of `nodes` this run armed (see [`confirm`]); a host that
/// fails it ends so in `outcomes` (same order as `nodes`): rolled back
/// when its watchdog went back already (`previous` of each is where),
/// failed when it cannot be reached. Returns why, for each that failed.
pub(crate) async fn confirm_outcomes(
    ctx: &Context,
    nodes: &[Node],
    outcomes: &mut [HostOutcome],
) -> Vec<String> {
    let ended = confirm_all(ctx, nodes.iter().enumerate()).await;
    let mut failed = Vec::new();
    for (i, result) in ended {
        let Err(why) = result else { continue };
        let reverted = matches!(why.failure, Failure::SelfReverted(_));
        failed.push(format!("{}: {}", nodes[i].name(), why.failure));
        let release = match reverted {
            true => nodes[i].current(),
            false => outcomes[i].release.clone(),
        };
        let mut outcome = HostOutcome::failed(nodes[i].name(), why, release, outcomes[i].elapsed);
        outcome.sent = outcomes[i].sent;
        if reverted {
            outcome.result = HostResult::RolledBack;
            outcome.note = Some("went back by itself".to_string());
        }
        ctx.report(&outcome);
        outcomes[i] = outcome;
    }
    failed
}

/// Says, for each of `nodes` whose watchdog went back by itself since its
/// last deploy (its journal says so), when, from which release and why
/// (`status`, and `deploy` and `rollback` when they find one).
pub(crate) fn tell_found(ctx: &Context, nodes: &[Node]) {
    for node in nodes {
        if let Some(entry) = node.journal.self_reverted() {
            ctx.emit(Event::HostSelfReverted {
                host: node.name().to_string(),
                from: entry.previous.clone().unwrap_or_default(),
                to: entry.release.clone(),
                reason: found_reason(entry),
                at: Some(entry.ts.clone()),
            });
        }
    }
}

/// A `self_reverted` journal line's reason, with the run it was armed by.
pub(crate) fn found_reason(entry: &crate::journal::Entry) -> String {
    let why = entry.message.clone().unwrap_or_default();
    match &entry.run {
        Some(run) => format!("{why} (run {run}, by {})", entry.by),
        None => why,
    }
}
