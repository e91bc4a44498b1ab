//! One wave of the rollout: the step the plan puts before it, its hosts
//! in parallel between the batch hooks, the uploads made around it, and
//! what the failure policy says once its hosts ended.

use std::sync::atomic::Ordering;

use futures_util::future::join_all;
use tokio_util::sync::CancellationToken;

use super::back::undo;
use super::between::between;
use super::host::host_rollout;
use super::{HostRun, Run};
use crate::config::OnFailure;
use crate::engine::ahead::{Ahead, Uploading};
use crate::engine::batch::{self, WaveResult};
use crate::engine::fleet::Node;
use crate::engine::policy;
use crate::engine::rollout_plan::{RolloutPlan, Upload};
use crate::report::{Event, HostResult, Level};

/// Wave `w` of `plan`, with the step before it and its uploads: `ahead`
/// holds uploads made for it during the wave before; what it returns, the
/// uploads it made for the next wave. `ended` gathers how the waves ended.
pub(super) async fn wave(
    run: &Run<'_>,
    hosts: &mut [HostRun],
    plan: &RolloutPlan,
    w: usize,
    ahead: Option<Ahead>,
    ended: &mut WaveEnd,
) -> Option<Ahead> {
    let (ctx, nodes, id, wave) = (run.ctx, run.nodes, run.id, &plan.waves[w]);
    let ahead = ahead.unwrap_or_else(|| match wave.upload {
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
        match before_wave(run, hosts, plan, w).await {
            Err(reason) => run.stop(reason),
            Ok(()) => {
                if let Some(end) = run_wave(run, hosts, plan, w, &ahead, &uploading).await {
                    ended.said_stop |= end.said_stop;
                    ended.back &= end.back;
                }
                // After the last wave: the canary bake of `--until canary`,
                // the wave bake, traffic steps after a lone canary.
                if w + 1 == plan.waves.len() && !run.halt.is_cancelled() {
                    for &step in &plan.then {
                        if let Err(reason) = between(run, hosts, plan, w, step, &[]).await {
                            run.stop(reason);
                            break;
                        }
                    }
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
    next
}

/// The steps the plan puts before wave `w`, then `min_healthy_per_zone`:
/// the wave may not take its zone below the floor, counting the zone's
/// hosts that failed so far. `Err`: why the rollout stops.
async fn before_wave(
    run: &Run<'_>,
    hosts: &mut [HostRun],
    plan: &RolloutPlan,
    w: usize,
) -> Result<(), String> {
    let wave = &plan.waves[w];
    if let Some(p) = w.checked_sub(1) {
        for &step in &wave.before {
            between(run, hosts, plan, p, step, &plan.waves[w..]).await?;
        }
    }
    let Some(floor) = wave.floor else {
        return Ok(());
    };
    let zone = wave.zone.as_deref();
    let failed = (0..run.nodes.len())
        .filter(|&i| {
            run.nodes[i].host.role.zone.as_deref() == zone
                && hosts[i].outcome.result == HostResult::Failed
        })
        .count();
    if floor.breached(failed, wave.hosts.len()) {
        return Err(format!(
            "wave {} would leave zone {} with {} healthy host(s) ({failed} failed), fewer than min_healthy_per_zone ({})",
            w + 1,
            zone.unwrap_or_default(),
            floor.size.saturating_sub(failed + wave.hosts.len()),
            floor.min
        ));
    }
    Ok(())
}

/// How a wave ended, for what comes after it.
pub(super) struct WaveEnd {
    /// "rollout stopped" was said, before the wave's own rollback.
    pub said_stop: bool,
    /// Every host the wave's own rollback took back made it.
    pub back: bool,
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
        group: wave.group.clone(),
        zone: wave.zone.clone(),
    });
    let members: Vec<&Node> = wave.hosts.iter().map(|&i| &nodes[i]).collect();
    let local_env = batch::env(ctx, Some(run.id), &run.artifact.version, &members);
    if let Err(reason) = batch::before(ctx, &local_env).await {
        run.stop(reason);
        return None;
    }
    let relayed = relay_part(run, &wave.hosts, ahead).await;
    let relayed = &relayed;
    let ended = join_all(wave.hosts.iter().map(|&i| async move {
        // Waited for before a slot is taken: the upload holds one.
        let (delivered, spent) = {
            let mut relayed = relayed.lock().unwrap();
            let spent = relayed.spent.remove(&i).unwrap_or(0);
            (relayed.served.remove(&i), spent)
        };
        let delivered = match delivered {
            Some(d) => Some(d),
            None => ahead.take(i).await,
        };
        let mut passed = uploading.host();
        let host = host_rollout(run, i, delivered, spent, &mut passed).await;
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

/// `[relay]`: the release put on the wave's hosts that need the whole
/// artifact and have no upload made ahead, host to host, before their
/// steps start; a host it did not serve gets its upload as without it.
async fn relay_part(
    run: &Run<'_>,
    hosts: &[usize],
    ahead: &Ahead,
) -> std::sync::Mutex<crate::engine::relay::Relayed> {
    let mine: Vec<usize> = hosts
        .iter()
        .copied()
        .filter(|&i| !ahead.covers(i))
        .collect();
    let relayed = crate::engine::relay::relay_wave(
        run.ctx,
        run.nodes,
        &run.delivery,
        run.id,
        &mine,
        &run.halt,
    )
    .await;
    std::sync::Mutex::new(relayed)
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
            super::traffic::zero(run, hosts).await;
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
