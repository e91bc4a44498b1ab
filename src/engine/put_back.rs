//! Putting hosts back: the one way a set of hosts goes to a release they
//! had, whoever asks (a rollout that stopped, a blue-green idle colour
//! after an interrupt or a failed probe, `abort`, `rollback`, `rollback
//! --to`). On each host: switch back, the journal line, after_rollback and
//! the health check ([`switch_back`]); then its outcome. In waves, the batch
//! hooks go around each wave and the policy says when to stop.

use std::time::{Duration, Instant};

use futures_util::future::join_all;

use super::fleet::Node;
use super::policy::BackFor;
use super::switch::switch_back;
use super::{Context, Failed, Failure, HostOutcome, balancer, deadman, hooks};
use crate::release::ReleaseId;
use crate::report::{Event, HostResult, Phase};

mod waves;

pub(crate) use waves::{InWaves, in_waves};

/// One host going back.
pub(crate) struct Back<'a> {
    /// The caller's index of the host.
    pub i: usize,
    pub node: &'a Node,
    /// Where it goes (`None`: no release at all, after a first deploy).
    pub target: Option<ReleaseId>,
    /// The release it leaves.
    pub from: ReleaseId,
    /// How it ended so far: a failure it had is kept once it is back.
    pub outcome: HostOutcome,
    /// It takes requests (it is in the load balancer's pool): with
    /// `drain_local` set, it is drained around its switch back.
    pub in_pool: bool,
}

impl<'a> Back<'a> {
    /// Host `i` going from `from` to `target`, untouched so far.
    pub(crate) fn new(
        i: usize,
        node: &'a Node,
        target: Option<ReleaseId>,
        from: ReleaseId,
    ) -> Self {
        Back {
            i,
            node,
            target,
            from,
            outcome: HostOutcome::skipped(node.name(), node.current()),
            in_pool: true,
        }
    }
}

impl<'a> Back<'a> {
    /// As [`Back::new`], taking how the host ended so far out of `slot`
    /// (the outcome it ends with goes back there).
    pub(crate) fn taking(
        i: usize,
        node: &'a Node,
        target: Option<ReleaseId>,
        from: ReleaseId,
        slot: &mut HostOutcome,
    ) -> Self {
        let untouched = HostOutcome::skipped(node.name(), node.current());
        Back {
            outcome: std::mem::replace(slot, untouched),
            ..Back::new(i, node, target, from)
        }
    }
}

/// The hosts `nodes` that a rollback to `target` moves, each as a [`Back`];
/// the others end here (reported): already on it (ok), or with no release
/// at all (failed).
pub(crate) fn moving<'a>(
    ctx: &Context,
    nodes: &'a [Node],
    which: impl Iterator<Item = usize>,
    target: &ReleaseId,
) -> (Vec<Back<'a>>, Vec<(usize, HostOutcome)>) {
    let mut backs = Vec::new();
    let mut ended = Vec::new();
    for i in which {
        let node = &nodes[i];
        match &node.probe.current {
            Some(current) if current == target => {
                let ok = HostOutcome::ok(node.name(), Some(target.to_string()), Duration::ZERO)
                    .with_note("already on the target");
                ended.push((i, ok));
            }
            Some(current) => backs.push(Back::new(i, node, Some(target.clone()), current.clone())),
            None => {
                let failure = Failure::NoRelease.at(Phase::Rollback);
                ended.push((
                    i,
                    HostOutcome::failed(node.name(), failure, None, Duration::ZERO),
                ));
            }
        }
    }
    for (_, outcome) in &ended {
        ctx.report(outcome);
    }
    (backs, ended)
}

/// Puts `backs` back together, at most `parallel` at once, after saying
/// why (`reason`, as `rollback_started`) when given. Returns each host's
/// outcome, reported, in the order given.
pub(crate) async fn together(
    ctx: &Context,
    backs: Vec<Back<'_>>,
    why: BackFor,
    reason: Option<String>,
) -> Vec<(usize, HostOutcome)> {
    if let Some(reason) = reason {
        ctx.emit(Event::RollbackStarted {
            hosts: backs.iter().map(|b| b.node.name().to_string()).collect(),
            reason,
        });
    }
    let results = join_all(backs.iter().map(|back| async move {
        let _permit = ctx.parallel.acquire().await.expect("semaphore open");
        let started = Instant::now();
        (back_one(ctx, back).await, started.elapsed())
    }))
    .await;
    backs
        .into_iter()
        .zip(results)
        .map(|(back, (result, elapsed))| {
            let i = back.i;
            let mut outcome = ended(why, back, result, elapsed);
            // Said without the bytes its release took: going back sends none.
            let sent = outcome.sent.take();
            ctx.report(&outcome);
            outcome.sent = sent;
            (i, outcome)
        })
        .collect()
}

/// Puts one host back, unless its dead-man switch did it already (found
/// so before, or when its switch back fails: the watchdog frees the lock
/// it took back): then that is its result, and nothing runs twice.
async fn back_one(ctx: &Context, back: &Back<'_>) -> Result<(), Failed> {
    let node = back.node;
    let by_itself = || {
        let why = deadman::reason(ctx.config.strategy.deadman_timeout);
        Failure::SelfReverted(why).at(Phase::Rollback)
    };
    if ctx.deadman.reverted(node.name()) {
        deadman::went_back(ctx, node).await;
        return Err(by_itself());
    }
    let drain = (back.in_pool && balancer::drains(ctx)).then(|| drain_env(ctx, back));
    if let Some(env) = &drain {
        balancer::out_before_going_back(ctx, node.name(), env).await;
    }
    let mut result = switch_back(ctx, node, back.target.as_ref(), &back.from).await;
    match &result {
        // Not switched back: it keeps its watchdog, unless that went back.
        Err(failed) if failed.phase == Phase::Rollback => {
            if deadman::went_back(ctx, node).await {
                result = Err(by_itself());
            }
        }
        // Once back, its watchdog has nothing left to do.
        _ => deadman::disarm(ctx, node).await,
    }
    if let Some(env) = &drain {
        // Back on its previous release, by hoist or by its watchdog.
        let back = match &result {
            Ok(()) => true,
            Err(failed) => matches!(failed.failure, Failure::SelfReverted(_)),
        };
        balancer::in_once_back(ctx, node.name(), env, back).await;
    }
    result
}

/// The variables of the drain hooks around a switch back: those of
/// after_rollback.
fn drain_env(ctx: &Context, back: &Back<'_>) -> Vec<(String, String)> {
    let node = back.node;
    let to = back.target.as_ref().unwrap_or(&back.from);
    let version = node.journal.version_of(to).unwrap_or_default();
    hooks::host_env(ctx, node, to, Some(&back.from), &version)
}

/// A host back on `target` after `so_far`: a failure it had is kept,
/// marked as put back (`note` says how).
fn put_back(
    so_far: HostOutcome,
    name: &str,
    target: Option<String>,
    elapsed: Duration,
    note: &str,
) -> HostOutcome {
    HostOutcome {
        result: HostResult::RolledBack,
        phase: so_far.phase,
        failure: so_far.failure,
        elapsed: so_far.elapsed + elapsed,
        sent: so_far.sent,
        ..HostOutcome::ok(name, target, elapsed).with_note(note)
    }
}

/// How a host that went back (or tried to) ends.
fn ended(why: BackFor, back: Back, result: Result<(), Failed>, elapsed: Duration) -> HostOutcome {
    let name = back.node.name();
    let target = back.target.as_ref().map(|t| t.to_string());
    let so_far = back.outcome;
    match (result, why) {
        (Ok(()), BackFor::Rollback) => HostOutcome::ok(name, target, elapsed),
        (Err(failed), _) if matches!(failed.failure, Failure::SelfReverted(_)) => {
            put_back(so_far, name, target, elapsed, "went back by itself")
        }
        (Ok(()), BackFor::Undo) => put_back(so_far, name, target, elapsed, "rolled back"),
        (Err(failed), why) => {
            // Past the switch back itself, the host is on its target.
            let on = match failed.phase {
                Phase::Rollback => Some(back.from.to_string()),
                _ => target,
            };
            let failure = match why {
                BackFor::Undo => Failure::Rollback(Box::new(failed.failure)),
                BackFor::Rollback => failed.failure,
            };
            HostOutcome::failed(
                name,
                failure.at(Phase::Rollback),
                on,
                so_far.elapsed + elapsed,
            )
        }
    }
}
