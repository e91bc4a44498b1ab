//! The end of a host's watchdog: confirmed over a fresh connection once
//! its part is over, disarmed when hoist puts it back itself; and what is
//! said of a host that went back by itself.

use futures_util::future::join_all;

use super::scripts::{self, Settled};
use super::{Armed, reason};
use crate::engine::fleet::{self, Node, Turn};
use crate::engine::{Context, Failed, Failure, HostOutcome};
use crate::report::{Event, HostResult, Level, Phase};
use crate::transport::Output;

/// Confirms `node` over a fresh connection: its watchdog exits. A host
/// that cannot be reached fails (its watchdog puts it back); one whose
/// watchdog went back already fails too, and that is told. Nothing for
/// a host this run did not arm.
pub(crate) async fn confirm(ctx: &Context, node: &Node) -> Result<(), Failed> {
    // The heartbeat goes on until the answer (a login may take longer than
    // the timeout on a loaded host), its own answers left to this one.
    if !ctx.deadman.settling(node.name()) {
        return Ok(());
    }
    let unconfirmed = |e: String| Failure::Unconfirmed(e).at(Phase::Confirm);
    let script = scripts::settle(&node.layout, &ctx.run_id);
    let answer = over_a_fresh_connection(ctx, node, &script).await;
    let armed = ctx
        .deadman
        .take(node.name())
        .expect("armed until taken here");
    let out = answer.map_err(unconfirmed)?;
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

/// Runs `script` on `node` over a new connection.
async fn over_a_fresh_connection(
    ctx: &Context,
    node: &Node,
    script: &str,
) -> Result<Output, String> {
    let conn = {
        let turn = Turn::take(ctx, &node.host).await;
        fleet::connect(&turn).await.map_err(|e| e.to_string())?
    };
    let answer = conn.exec_beside(script, node.host.command_timeout).await;
    conn.close().await;
    answer.map_err(|e| e.to_string())
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
    if !ctx.deadman.settling(node.name()) {
        return;
    }
    let script = scripts::settle(&node.layout, &ctx.run_id);
    let answer = node.run_for(&script, None, node.quick_limit()).await;
    let armed = ctx
        .deadman
        .take(node.name())
        .expect("armed until taken here");
    match answer {
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

/// Whether `node`'s watchdog went back by itself: found so by its
/// heartbeat, or asked now with one (which changes nothing else). If so,
/// that is told and the host is no longer this run's to confirm or put
/// back; if not, it stays armed.
pub(crate) async fn went_back(ctx: &Context, node: &Node) -> bool {
    let gone = ctx.deadman.reverted(node.name()) || {
        if !ctx.deadman.is_armed(node.name()) {
            return false;
        }
        let script = scripts::heartbeat(&node.layout, &ctx.run_id);
        let answer = node.run_for(&script, None, node.quick_limit()).await;
        matches!(answer, Ok(out) if out.stdout_str().trim() == "gone")
    };
    if gone && let Some(armed) = ctx.deadman.take(node.name()) {
        told(ctx, node.name(), &armed);
    }
    gone
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
        failed.push(format!("{}: {}", nodes[i].name(), why.failure));
        let on = outcomes[i].release.clone();
        let outcome = unconfirmed(nodes[i].name(), why, nodes[i].current(), on, &outcomes[i]);
        ctx.report(&outcome);
        outcomes[i] = outcome;
    }
    failed
}

/// How a host that failed its confirmation (`why`) ends, from `so_far`:
/// rolled back, on `back_on`, when its watchdog went back already; else
/// failed, on `on` as far as is known.
pub(crate) fn unconfirmed(
    name: &str,
    why: Failed,
    back_on: Option<String>,
    on: Option<String>,
    so_far: &HostOutcome,
) -> HostOutcome {
    let reverted = matches!(why.failure, Failure::SelfReverted(_));
    let release = if reverted { back_on } else { on };
    let mut outcome = HostOutcome::failed(name, why, release, so_far.elapsed);
    outcome.sent = so_far.sent;
    if reverted {
        outcome.result = HostResult::RolledBack;
        outcome.note = Some("went back by itself".to_string());
    }
    outcome
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
