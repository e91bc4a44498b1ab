//! The rollout executor: it runs a [`RolloutPlan`] wave by wave (each
//! wave's hosts in parallel, the steps the plan puts between waves, uploads
//! where the plan puts them), stops as the failure policy says, and puts
//! back every host the rollout switched when it stops.

mod back;
mod between;
mod confirm;
mod host;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::future::join_all;
use tokio_util::sync::CancellationToken;

use super::ahead::{Ahead, Uploading};
use super::batch::{self, WaveResult};
use super::delivery::Delivery;
use super::fleet::Node;
use super::once::Once;
use super::policy::{self, HostState};
use super::rollout_plan::{RolloutPlan, Shape, Upload};
use super::{Context, HostOutcome, hooks, strategy};
use crate::artifact::Artifact;
use crate::config::{Amount, OnFailure, Strategy};
use crate::exit::Exit;
use crate::release::ReleaseId;
use crate::report::{Event, HostResult, Level};
use back::{prune, roll_back, undo};
use between::between;
use host::host_rollout;

/// Where one host stands during and after the rollout.
#[derive(Debug)]
struct HostRun {
    outcome: HostOutcome,
    /// `current` was pointed at the new release by this run.
    switched: bool,
    /// The release it was on before.
    previous: Option<ReleaseId>,
    /// Bytes sent to it for the release.
    sent: Option<u64>,
    /// This run's rollback already took it back (or tried to).
    back: bool,
}

impl HostRun {
    fn untouched(node: &Node) -> HostRun {
        HostRun {
            outcome: HostOutcome::skipped(node.name(), node.current()),
            switched: false,
            previous: node.probe.current.clone(),
            sent: None,
            back: false,
        }
    }

    fn state(&self) -> HostState {
        HostState {
            failed: self.outcome.result == HostResult::Failed,
            switched: self.switched,
        }
    }
}

/// What shapes one rollout beyond the strategy table.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    pub canary: Amount,
    pub max_failures: Amount,
    /// Stop after the canary wave (and its bake): `deploy --until canary`.
    pub until_canary: bool,
    /// Hosts already on the release since an earlier run of this deploy (a
    /// canary being promoted), with the release each was on before: they
    /// count as switched, so a failure rolls them back too.
    pub carried: Vec<(usize, Option<ReleaseId>)>,
    /// Confirm the dead-man switch of every host that stays switched at
    /// the end; `false` leaves that to the caller (blue-green confirms
    /// once traffic went to the colour and its probe passed).
    pub confirm: bool,
}

impl Setup {
    pub(crate) fn of(strategy: &Strategy) -> Setup {
        Setup {
            canary: strategy.canary,
            max_failures: strategy.max_failures,
            until_canary: false,
            carried: Vec::new(),
            confirm: true,
        }
    }

    /// The plan this rollout runs over `nodes` for release `id`: hosts
    /// already on it (a resumed deploy) are left out.
    pub(crate) fn plan(
        &self,
        ctx: &Context,
        nodes: &[Node],
        id: &ReleaseId,
        once: bool,
    ) -> RolloutPlan {
        let pending = pending(nodes, id);
        let shape = Shape {
            strategy: &ctx.config.strategy,
            canary: self.canary,
            health: ctx.config.health.is_some(),
            once,
            until_canary: self.until_canary,
        };
        RolloutPlan::new(shape, &pending)
    }
}

/// The nodes not yet on `id`, by index.
fn pending(nodes: &[Node], id: &ReleaseId) -> Vec<usize> {
    (0..nodes.len())
        .filter(|&i| nodes[i].probe.current.as_ref() != Some(id))
        .collect()
}

/// One rollout under way: what its waves and hosts share.
struct Run<'a> {
    ctx: &'a Context,
    nodes: &'a [Node],
    artifact: &'a Artifact,
    /// The artifact, and what the run learns delivering it.
    delivery: Delivery<'a>,
    id: &'a ReleaseId,
    once: Option<Once>,
    /// Cancelled when the rollout stops: no host starts after it.
    halt: CancellationToken,
    /// Why the rollout stops; the first reason given is the one said.
    halted: Mutex<Option<String>>,
    failures: AtomicUsize,
    /// How many hosts may fail before the rollout stops.
    allowed: usize,
}

impl Run<'_> {
    fn stop(&self, reason: String) {
        self.halted.lock().unwrap().get_or_insert(reason);
        self.halt.cancel();
    }

    fn halted(&self) -> Option<String> {
        self.halted.lock().unwrap().clone()
    }

    /// The hooks' environment on host `i`, coming from `previous`.
    fn host_env(&self, i: usize, previous: Option<&ReleaseId>) -> Vec<(String, String)> {
        hooks::host_env(
            self.ctx,
            &self.nodes[i],
            self.id,
            previous,
            &self.artifact.version,
        )
    }
}

/// How a wave ended, for what comes after it.
struct WaveEnd {
    /// "rollout stopped" was said, before the wave's own rollback.
    said_stop: bool,
    /// Every host the wave's own rollback took back made it.
    back: bool,
}

/// Runs the rollout of `id` over `nodes` as [`Setup::plan`] plans it:
/// returns the exit and how each node ended.
pub(crate) async fn rollout(
    ctx: &Context,
    nodes: &[Node],
    artifact: &Artifact,
    id: &ReleaseId,
    setup: &Setup,
) -> (Exit, Vec<HostOutcome>) {
    let mut hosts: Vec<HostRun> = nodes.iter().map(HostRun::untouched).collect();
    for (i, previous) in &setup.carried {
        hosts[*i].switched = true;
        hosts[*i].previous = previous.clone();
    }
    for (i, node) in nodes.iter().enumerate() {
        if node.probe.current.as_ref() == Some(id) {
            hosts[i].outcome.result = HostResult::Ok;
        }
    }
    let pending = pending(nodes, id);
    let once = Once::new(ctx, nodes, pending.first().map(|&i| &nodes[i]), id);
    let plan = setup.plan(ctx, nodes, id, once.is_some());
    let run = Run {
        ctx,
        nodes,
        artifact,
        delivery: Delivery::new(artifact),
        id,
        once,
        halt: ctx.cancel.child_token(),
        halted: Mutex::new(None),
        failures: AtomicUsize::new(0),
        allowed: strategy::failures_allowed(setup.max_failures, pending.len()),
    };
    let (mut said_stop, mut waves_back) = (false, true);
    // Uploads ahead of the next wave, made during the wave before it.
    let mut following: Option<Ahead> = None;
    for (w, wave) in plan.waves.iter().enumerate() {
        if run.halt.is_cancelled() {
            break;
        }
        let ahead = following.take().unwrap_or_else(|| match wave.upload {
            Upload::DuringPause => Ahead::during(&wave.hosts),
            _ => Ahead::default(),
        });
        let next = plan
            .waves
            .get(w + 1)
            .filter(|next| next.upload == Upload::DuringPreviousWave)
            .map(|next| Ahead::during(&next.hosts));
        let uploading = Uploading::new(wave.hosts.len());
        let over = CancellationToken::new();
        let this_wave = async {
            let before = match w.checked_sub(1) {
                Some(p) => {
                    between(
                        &run,
                        &mut hosts,
                        &plan.waves[p],
                        wave.before,
                        &plan.waves[w..],
                    )
                    .await
                }
                None => Ok(()),
            };
            match before {
                Err(reason) => run.stop(reason),
                Ok(()) => {
                    if let Some(end) =
                        run_wave(&run, &mut hosts, &plan, w, &ahead, &uploading).await
                    {
                        said_stop |= end.said_stop;
                        waves_back &= end.back;
                    }
                    // `deploy --until canary`: the canary's bake, then stop.
                    if w + 1 == plan.waves.len()
                        && !run.halt.is_cancelled()
                        && let Err(reason) = between(&run, &mut hosts, wave, plan.then, &[]).await
                    {
                        run.stop(reason);
                    }
                }
            }
            over.cancel();
        };
        let next_uploads = async {
            if let Some(next) = &next {
                // Once this wave's hosts had the link to themselves.
                uploading.past_or(&over).await;
                next.upload(ctx, nodes, &run.delivery, id, &run.halt).await;
            }
        };
        futures_util::future::join3(
            this_wave,
            ahead.upload(ctx, nodes, &run.delivery, id, &run.halt),
            next_uploads,
        )
        .await;
        ahead
            .take_back(ctx, nodes, id, |i| hosts[i].sent.is_some())
            .await;
        following = next;
    }
    // Made for a wave that never ran.
    if let Some(unused) = following {
        unused
            .take_back(ctx, nodes, id, |i| hosts[i].sent.is_some())
            .await;
    }
    finish(&run, hosts, &plan, setup, said_stop, waves_back).await
}

/// Wave `w`: between the batch hooks, every host's part in parallel, then
/// the policy: a wave that stops the rollout goes back before its
/// `after_batch_local` runs, so an "enable" hook never puts a host on the
/// failed release back in the pool. `None`: `before_batch_local` failed and
/// the wave never started.
async fn run_wave(
    run: &Run<'_>,
    hosts: &mut [HostRun],
    plan: &RolloutPlan,
    w: usize,
    ahead: &Ahead,
    uploading: &Uploading,
) -> Option<WaveEnd> {
    let (ctx, nodes, wave) = (run.ctx, run.nodes, &plan.waves[w]);
    ctx.emit(Event::WaveStarted {
        wave: w + 1,
        waves: plan.waves.len(),
        kind: wave.kind.as_str().into(),
        hosts: wave
            .hosts
            .iter()
            .map(|&i| nodes[i].name().to_string())
            .collect(),
    });
    let members: Vec<&Node> = wave.hosts.iter().map(|&i| &nodes[i]).collect();
    let local_env = batch::env(ctx, Some(run.id), &run.artifact.version, &members);
    if let Err(reason) = batch::before(ctx, &local_env).await {
        run.stop(reason);
        return None;
    }
    let ended = join_all(wave.hosts.iter().map(|&i| async move {
        // Waited for before a slot is taken: the upload holds one.
        let delivered = ahead.take(i).await;
        let mut passed = uploading.host();
        let host = host_rollout(run, i, delivered, &mut passed).await;
        if let Some(once) = &run.once {
            once.settle(nodes[i].name());
            if once.failed() {
                run.halt.cancel();
            }
        }
        let failed = host.outcome.result == HostResult::Failed;
        if failed && policy::halts(run.failures.fetch_add(1, Ordering::SeqCst) + 1, run.allowed) {
            run.halt.cancel();
        }
        host
    }))
    .await;
    for (&i, host) in wave.hosts.iter().zip(ended) {
        hosts[i] = host;
    }
    if let Some(once) = &run.once {
        once.tell_the_others(ctx, nodes).await;
    }
    let end = end_wave(run, hosts, &wave.hosts).await;
    let unhealthy: Vec<&str> = end.1.iter().map(|&i| nodes[i].name()).collect();
    if let Err(reason) = batch::after(ctx, &local_env, end.0, &unhealthy).await {
        run.stop(reason);
    }
    let count = |result: HostResult| {
        wave.hosts
            .iter()
            .filter(|&&i| hosts[i].outcome.result == result)
            .count()
    };
    // Skipped: never started, stopped by an interrupt or the halt;
    // failed: the rest that did not end ok (a rolled-back host too).
    let (ok, skipped) = (count(HostResult::Ok), count(HostResult::Skipped));
    ctx.emit(Event::WaveDone {
        wave: w + 1,
        ok,
        failed: wave.hosts.len() - ok - skipped,
        skipped,
        interrupted: ctx.cancel.is_cancelled(),
    });
    Some(end.2)
}

/// After a wave's hosts ended: whether it stops the rollout, its own
/// rollback if so, and what `after_batch_local` hears (the result and the
/// hosts not healthy).
async fn end_wave(
    run: &Run<'_>,
    hosts: &mut [HostRun],
    wave: &[usize],
) -> (WaveResult, Vec<usize>, WaveEnd) {
    let ctx = run.ctx;
    let failed_here: Vec<usize> = wave
        .iter()
        .copied()
        .filter(|&i| hosts[i].outcome.result == HostResult::Failed)
        .collect();
    if let Some(once) = run.once.as_ref().filter(|o| o.failed()) {
        run.stop(format!(
            "before_switch_once did not pass on {}; no host was switched",
            once.host()
        ));
    }
    let failed_so_far = run.failures.load(Ordering::SeqCst);
    if policy::halts(failed_so_far, run.allowed) {
        run.stop(format!(
            "{failed_so_far} host(s) failed, more than max_failures allows ({})",
            run.allowed
        ));
    }
    let mut end = WaveEnd {
        said_stop: false,
        back: true,
    };
    let interrupted = ctx.cancel.is_cancelled();
    let (result, unhealthy) = match run.halted() {
        Some(reason) if !interrupted && ctx.config.strategy.on_failure == OnFailure::Rollback => {
            let switched: Vec<usize> = wave
                .iter()
                .copied()
                .filter(|&i| hosts[i].switched)
                .collect();
            ctx.message(Level::Error, None, format!("rollout stopped: {reason}"));
            end.said_stop = true;
            let not_back = undo(run, hosts, &switched, &reason).await;
            end.back = not_back.is_empty();
            let result = if end.back {
                WaveResult::RolledBack
            } else {
                WaveResult::Failed
            };
            (result, not_back)
        }
        _ if interrupted
            && wave
                .iter()
                .any(|&i| hosts[i].outcome.result != HostResult::Ok) =>
        {
            (WaveResult::Interrupted, failed_here)
        }
        _ if !failed_here.is_empty() => (WaveResult::Failed, failed_here),
        _ => (WaveResult::Ok, Vec::new()),
    };
    (result, unhealthy, end)
}

/// After the last wave ran (or the rollout stopped): what is said, the
/// switched hosts going back when the policy says so (the last wave first,
/// hosts carried from an earlier run last), pruning, and the exit.
async fn finish(
    run: &Run<'_>,
    mut hosts: Vec<HostRun>,
    plan: &RolloutPlan,
    setup: &Setup,
    said_stop: bool,
    waves_back: bool,
) -> (Exit, Vec<HostOutcome>) {
    let ctx = run.ctx;
    let interrupted = ctx.cancel.is_cancelled();
    let confirmed = confirm::at_the_end(run, &mut hosts, setup.confirm).await;
    let halted = run.halted();
    let states: Vec<HostState> = hosts.iter().map(HostRun::state).collect();
    let verdict = policy::verdict(
        &states,
        halted.is_some(),
        interrupted,
        ctx.config.strategy.on_failure,
    );
    if interrupted {
        // A blue-green deploy says what comes next itself (its idle colour goes back).
        let next = match ctx.config.blue_green {
            Some(_) => "",
            None => "; `hoist deploy --resume` carries this deploy on with the same release",
        };
        ctx.message(
            Level::Warn,
            None,
            format!("interrupted: no new host was started; every host is on a whole release{next}"),
        );
    } else if let Some(reason) = &halted
        && !said_stop
    {
        ctx.message(Level::Error, None, format!("rollout stopped: {reason}"));
    }
    let mut all_back = waves_back;
    if let Some(reason) = &halted
        && !verdict.roll_back.is_empty()
    {
        let carried: Vec<usize> = setup.carried.iter().map(|(i, _)| *i).collect();
        let left: Vec<Vec<usize>> = plan
            .waves
            .iter()
            .rev()
            .map(|w| &w.hosts)
            .chain(std::iter::once(&carried))
            .map(|wave| {
                wave.iter()
                    .copied()
                    .filter(|i| verdict.roll_back.contains(i) && !hosts[*i].back)
                    .collect::<Vec<usize>>()
            })
            .filter(|wave| !wave.is_empty())
            .collect();
        all_back &= roll_back(run, &mut hosts, &left, reason).await;
    }
    if verdict.prune {
        prune(run, &hosts).await;
    }
    let once_failed = run.once.as_ref().is_some_and(Once::failed) && !interrupted;
    let exit = policy::rollout_exit(&verdict, all_back, once_failed, &states);
    let touched_back = hosts
        .iter()
        .filter(|h| h.switched)
        .all(|h| h.outcome.result == HostResult::RolledBack);
    let exit = policy::after_self_reverts(exit, confirmed > 0, touched_back);
    (exit, hosts.into_iter().map(|h| h.outcome).collect())
}
