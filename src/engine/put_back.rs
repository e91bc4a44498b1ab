//! Putting hosts back: the one way a set of hosts goes to a release they
//! had, whoever asks (a rollout that stopped, a blue-green idle colour
//! after an interrupt or a failed probe, `abort`, `rollback`, `rollback
//! --to`). On each host: switch back, the journal line, after_rollback and
//! the health check ([`switch_back`]); then its outcome. In waves, the batch
//! hooks go around each wave and the policy says when to stop.

use std::time::{Duration, Instant};

use futures_util::future::join_all;

use super::batch::{self, WaveResult};
use super::fleet::Node;
use super::policy::{self, BackFor};
use super::switch::switch_back;
use super::{Context, Failed, Failure, HostOutcome, balancer, deadman, hooks};
use crate::release::ReleaseId;
use crate::report::{Event, HostResult, Level, Phase};

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
        take_out(ctx, node, env).await;
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
        put_in(ctx, node, env, &result).await;
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

/// `drain_local` and `drain_wait` before a host that takes requests goes
/// back. A failing drain is said, and the host goes back all the same: a
/// release being undone is not kept because the load balancer's script
/// failed.
async fn take_out(ctx: &Context, node: &Node, env: &[(String, String)]) {
    if let Err(e) = balancer::take_out(ctx, env).await {
        let text = format!("{e}; it goes back all the same, while it may take requests");
        ctx.message(Level::Warn, Some(node.name()), text);
    }
    tokio::time::sleep(ctx.config.hooks.drain_wait).await;
}

/// `undrain_local` once a drained host is back on its previous release
/// (by hoist or by its watchdog); one that is not stays drained, and that
/// is said.
async fn put_in(ctx: &Context, node: &Node, env: &[(String, String)], result: &Result<(), Failed>) {
    let back = match result {
        Ok(()) => true,
        Err(failed) => matches!(failed.failure, Failure::SelfReverted(_)),
    };
    let said = match back {
        true => balancer::put_in(ctx, env)
            .await
            .err()
            .map(|e| format!("{e}; the host stays out of the load balancer")),
        false => {
            Some("not back on its previous release: it stays out of the load balancer".to_string())
        }
    };
    if let Some(text) = said {
        ctx.message(Level::Warn, Some(node.name()), text);
    }
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

/// How a rollback in waves goes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InWaves {
    pub why: BackFor,
    /// The first wave is the canary's host(s).
    pub canary: bool,
    /// `before_batch_local` and `after_batch_local` around each wave.
    pub batch_hooks: bool,
}

/// How going back in waves ended.
pub(crate) struct WentBack {
    /// The outcome of each host that went back or tried to.
    pub moved: Vec<(usize, HostOutcome)>,
    /// Hosts whose wave never went, with their outcome as it was.
    pub unmoved: Vec<(usize, HostOutcome)>,
    /// Why it stopped before the last wave, if it did.
    pub stopped: Option<String>,
}

impl WentBack {
    /// Every host went back and none was left.
    pub(crate) fn all_back(&self) -> bool {
        self.stopped.is_none()
            && self
                .moved
                .iter()
                .all(|(_, o)| o.result != HostResult::Failed)
    }
}

/// Puts `waves` back one after the other (in the order given), each wave
/// together and, with `batch_hooks`, between `before_batch_local` and
/// `after_batch_local` (`HOIST_RESULT` `rolled_back`, or `failed` with the
/// hosts that could not go back): a load balancer's drain and enable hooks
/// take a wave out of the pool while it restarts. When to stop is the
/// policy's ([`policy::rollback_stops`]). An undo is announced once, with
/// `reason`; `hoist rollback`'s waves are its run's waves (`wave_started`,
/// `wave_done`).
pub(crate) async fn in_waves(
    ctx: &Context,
    waves: Vec<Vec<Back<'_>>>,
    how: InWaves,
    reason: &str,
) -> WentBack {
    let count = waves.len();
    if how.why == BackFor::Undo && count > 0 {
        ctx.emit(Event::RollbackStarted {
            hosts: waves
                .iter()
                .flatten()
                .map(|b| b.node.name().to_string())
                .collect(),
            reason: reason.to_string(),
        });
    }
    let mut outcomes = Vec::new();
    let mut stopped = None;
    let mut waves = waves.into_iter().enumerate();
    // The wave that did not go, with those after it.
    let mut unmoved: Vec<Back> = Vec::new();
    for (w, wave) in waves.by_ref() {
        if policy::rollback_stops_before(how.why, ctx.cancel.is_cancelled()) {
            stopped = Some("interrupted".to_string());
            unmoved = wave;
            break;
        }
        match one_wave(ctx, wave, how, w, count).await {
            Err((wave, why)) => {
                stopped = Some(why);
                unmoved = wave;
                break;
            }
            Ok((ended, stop)) => {
                outcomes.extend(ended);
                if stop.is_some() {
                    stopped = stop;
                    break;
                }
            }
        }
    }
    unmoved.extend(waves.flat_map(|(_, wave)| wave));
    let left: Vec<&str> = unmoved.iter().map(|b| b.node.name()).collect();
    if let Some(why) = &stopped
        && !left.is_empty()
    {
        ctx.message(
            Level::Error,
            None,
            format!(
                "rollback stopped: {why}; not rolled back (still where they were): {}",
                left.join(", ")
            ),
        );
    }
    WentBack {
        moved: outcomes,
        unmoved: unmoved.into_iter().map(|b| (b.i, b.outcome)).collect(),
        stopped,
    }
}

/// One wave of [`in_waves`], wave `w` of `count`, going back: how its hosts
/// ended and, when the policy stops the rollback after it, why; or, when
/// its `before_batch_local` failed, the wave (which never went) and why.
async fn one_wave<'a>(
    ctx: &Context,
    wave: Vec<Back<'a>>,
    how: InWaves,
    w: usize,
    count: usize,
) -> Result<(Vec<(usize, HostOutcome)>, Option<String>), (Vec<Back<'a>>, String)> {
    let names: Vec<String> = wave.iter().map(|b| b.node.name().to_string()).collect();
    announce(ctx, how, w, count, &names);
    let target = wave[0].target.clone();
    let version = target
        .as_ref()
        .and_then(|t| wave[0].node.journal.version_of(t))
        .unwrap_or_default();
    let members: Vec<&Node> = wave.iter().map(|b| b.node).collect();
    let env = batch::env(ctx, target.as_ref(), &version, &members);
    if how.batch_hooks
        && let Err(why) = batch::before(ctx, &env).await
    {
        return Err((wave, why));
    }
    let ended = together(ctx, wave, how.why, None).await;
    let not_back: Vec<&str> = ended
        .iter()
        .filter(|(_, o)| o.result == HostResult::Failed)
        .map(|(_, o)| o.host.as_str())
        .collect();
    let result = if not_back.is_empty() {
        WaveResult::RolledBack
    } else {
        WaveResult::Failed
    };
    let after = match how.batch_hooks {
        true => batch::after(ctx, &env, result, &not_back).await,
        false => Ok(()),
    };
    if how.why == BackFor::Rollback {
        ctx.emit(Event::WaveDone {
            wave: w + 1,
            ok: names.len() - not_back.len(),
            failed: not_back.len(),
            skipped: 0,
            interrupted: false,
        });
    }
    let not_back_said = (!not_back.is_empty()).then(|| {
        format!(
            "{} could not go back to {}",
            not_back.join(", "),
            target
                .as_ref()
                .map_or("no release".into(), |t| t.to_string())
        )
    });
    let stop = match after {
        Err(why) if policy::rollback_stops(how.why, true, false) => Some(why),
        Err(why) => {
            ctx.message(
                Level::Warn,
                None,
                format!("{why}; {} went back all the same", names.join(", ")),
            );
            None
        }
        Ok(()) => None,
    };
    let stop =
        stop.or_else(|| not_back_said.filter(|_| policy::rollback_stops(how.why, false, true)));
    Ok((ended, stop))
}

/// Says that wave `w` of `count` goes back: as the run's wave for `hoist
/// rollback`, as a line for an undo in more than one wave.
fn announce(ctx: &Context, how: InWaves, w: usize, count: usize, names: &[String]) {
    match how.why {
        BackFor::Rollback => ctx.emit(Event::WaveStarted {
            wave: w + 1,
            waves: count,
            kind: if w == 0 && how.canary {
                "canary"
            } else {
                "batch"
            }
            .into(),
            hosts: names.to_vec(),
            group: None,
            zone: None,
        }),
        BackFor::Undo if count > 1 => ctx.message(
            Level::Info,
            None,
            format!("rollback wave {}/{count}: {}", w + 1, names.join(", ")),
        ),
        BackFor::Undo => {}
    }
}
