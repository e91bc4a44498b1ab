//! The waves of a deploy, the failure policy, and the rollback of every
//! host the deploy switched.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio_util::sync::CancellationToken;

use super::fleet::Node;
use super::upload::deliver;
use super::{Context, Failure, health, hooks, ms};
use crate::artifact::Artifact;
use crate::config::{OnFailure, Pause};
use crate::exit::Exit;
use crate::journal::{Entry, Kind};
use crate::release::ReleaseId;
use crate::report::{Event, HostResult, Level, Phase};
use crate::strategy::{self, Wave, WaveKind};

/// Where one host stands during and after the rollout.
#[derive(Debug, Clone)]
pub(super) struct HostRun {
    pub(super) result: HostResult,
    /// `current` was pointed at the new release by this run.
    pub(super) switched: bool,
    /// The release it was on before.
    pub(super) previous: Option<ReleaseId>,
    /// The release it is on now.
    pub(super) now: Option<ReleaseId>,
    pub(super) error: Option<String>,
    pub(super) elapsed: Duration,
}

/// The waves, the failure policy, and the rollback. Returns the exit code
/// and where each node stands.
pub(super) async fn rollout(
    ctx: &Context,
    nodes: &[Node],
    artifact: &Artifact,
    id: &ReleaseId,
) -> (Exit, Vec<HostRun>) {
    let strategy = &ctx.config.strategy;
    let runs: Vec<Mutex<HostRun>> = nodes
        .iter()
        .map(|n| {
            Mutex::new(HostRun {
                result: HostResult::Skipped,
                switched: false,
                previous: n.probe.current.clone(),
                now: n.probe.current.clone(),
                error: None,
                elapsed: Duration::ZERO,
            })
        })
        .collect();
    // Hosts already on the release (a resumed deploy) need nothing.
    let pending: Vec<usize> = (0..nodes.len())
        .filter(|&i| {
            let done = nodes[i].probe.current.as_ref() == Some(id);
            if done {
                runs[i].lock().unwrap().result = HostResult::Ok;
            }
            !done
        })
        .collect();
    let waves: Vec<Wave> = strategy::waves(pending.len(), strategy.canary, &strategy.batch)
        .into_iter()
        .map(|w| Wave {
            kind: w.kind,
            hosts: w.hosts.into_iter().map(|i| pending[i]).collect(),
        })
        .collect();
    let allowed = strategy::failures_allowed(strategy.max_failures, pending.len());
    let failures = AtomicUsize::new(0);
    let halt = ctx.cancel.child_token();
    let mut halted: Option<String> = None;

    for (w, wave) in waves.iter().enumerate() {
        if halt.is_cancelled() {
            break;
        }
        let names: Vec<String> = wave
            .hosts
            .iter()
            .map(|&i| nodes[i].name().to_string())
            .collect();
        ctx.emit(Event::WaveStarted {
            wave: w + 1,
            waves: waves.len(),
            kind: wave.kind.as_str().into(),
            hosts: names.clone(),
        });
        let local_env = batch_env(ctx, id, artifact, &names);
        if let Err(e) = hooks::run_local(
            ctx,
            "before_batch_local",
            &ctx.config.hooks.before_batch_local,
            &local_env,
        )
        .await
        {
            ctx.message(Level::Error, None, e.to_string());
            halted = Some(format!("before_batch_local failed: {e}"));
            halt.cancel();
            break;
        }
        join_all(wave.hosts.iter().map(|&i| {
            let runs = &runs;
            let failures = &failures;
            let halt = &halt;
            async move {
                let run = host_rollout(ctx, &nodes[i], artifact, id, halt).await;
                let failed = run.result == HostResult::Failed;
                *runs[i].lock().unwrap() = run;
                if failed && failures.fetch_add(1, Ordering::SeqCst) + 1 > allowed {
                    halt.cancel();
                }
            }
        }))
        .await;
        let wave_failed = wave
            .hosts
            .iter()
            .filter(|&&i| runs[i].lock().unwrap().result == HostResult::Failed)
            .count();
        if let Err(e) = hooks::run_local(
            ctx,
            "after_batch_local",
            &ctx.config.hooks.after_batch_local,
            &local_env,
        )
        .await
        {
            ctx.message(Level::Error, None, e.to_string());
            halted.get_or_insert(format!("after_batch_local failed: {e}"));
            halt.cancel();
        }
        ctx.emit(Event::WaveDone {
            wave: w + 1,
            ok: wave.hosts.len() - wave_failed,
            failed: wave_failed,
        });
        let failed_so_far = failures.load(Ordering::SeqCst);
        if failed_so_far > allowed {
            halted.get_or_insert(format!(
                "{failed_so_far} host(s) failed, more than max_failures allows ({allowed})"
            ));
            halt.cancel();
        }
        if halt.is_cancelled() || w + 1 == waves.len() {
            continue;
        }
        let pause = if wave.kind == WaveKind::Canary {
            strategy.canary_pause.clone()
        } else {
            Pause::For(strategy.batch_pause)
        };
        if let Err(reason) = pause_between(ctx, &pause, waves.len() - w - 1, &waves[w + 1..]).await
        {
            halted = Some(reason);
            halt.cancel();
        }
    }

    let mut runs: Vec<HostRun> = runs.into_iter().map(|m| m.into_inner().unwrap()).collect();
    let interrupted = ctx.cancel.is_cancelled();
    let any_failed = runs.iter().any(|r| r.result == HostResult::Failed);
    if interrupted {
        ctx.message(
            Level::Warn,
            None,
            "interrupted: no new host was started; every host is on a whole release",
        );
        return (Exit::Interrupted, runs);
    }
    if let Some(reason) = halted {
        ctx.message(Level::Error, None, format!("rollout stopped: {reason}"));
        if strategy.on_failure == OnFailure::Stop {
            return (Exit::Failed, runs);
        }
        let back_ok = roll_back_switched(ctx, nodes, &mut runs, id, &reason).await;
        return (
            if back_ok {
                Exit::RolledBack
            } else {
                Exit::Failed
            },
            runs,
        );
    }
    if any_failed {
        return (Exit::Failed, runs);
    }
    prune(ctx, nodes, &runs, id).await;
    (Exit::Ok, runs)
}

fn batch_env(
    ctx: &Context,
    id: &ReleaseId,
    artifact: &Artifact,
    hosts: &[String],
) -> Vec<(String, String)> {
    vec![
        ("HOIST_APP".into(), ctx.config.app.name.clone()),
        ("HOIST_RELEASE".into(), id.to_string()),
        ("HOIST_VERSION".into(), artifact.version.clone()),
        ("HOIST_DEPLOY_TO".into(), ctx.config.app.deploy_to.clone()),
        ("HOIST_BATCH_HOSTS".into(), hosts.join(" ")),
    ]
}

/// Waits between waves; asks before promoting a canary when told to.
async fn pause_between(
    ctx: &Context,
    pause: &Pause,
    waves_left: usize,
    next: &[Wave],
) -> Result<(), String> {
    match pause {
        Pause::For(d) if d.is_zero() => Ok(()),
        Pause::For(d) => {
            ctx.message(
                Level::Info,
                None,
                format!(
                    "pausing {} before the next wave",
                    humantime::format_duration(*d)
                ),
            );
            tokio::select! {
                _ = tokio::time::sleep(*d) => Ok(()),
                _ = ctx.cancel.cancelled() => Err("interrupted during the pause".into()),
            }
        }
        Pause::Manual => {
            if ctx.yes {
                return Ok(());
            }
            let remaining: usize = next.iter().map(|w| w.hosts.len()).sum();
            let question = format!(
                "The canary is healthy. Promote to the remaining {remaining} host(s) in {waves_left} wave(s)?"
            );
            // The question blocks this thread while a person reads it.
            match tokio::task::block_in_place(|| ctx.reporter.confirm(&question)) {
                Some(true) => Ok(()),
                Some(false) => Err("the canary was not promoted".into()),
                None => {
                    Err("cannot ask to promote the canary without a terminal; pass --yes".into())
                }
            }
        }
    }
}

/// One host's part of the rollout.
async fn host_rollout(
    ctx: &Context,
    node: &Node,
    artifact: &Artifact,
    id: &ReleaseId,
    halt: &CancellationToken,
) -> HostRun {
    let _permit = ctx.parallel.acquire().await.expect("semaphore open");
    let started = Instant::now();
    let mut run = HostRun {
        result: HostResult::Skipped,
        switched: false,
        previous: node.probe.current.clone(),
        now: node.probe.current.clone(),
        error: None,
        elapsed: Duration::ZERO,
    };
    if halt.is_cancelled() {
        return run;
    }
    let outcome = steps(ctx, node, artifact, id, halt, &mut run).await;
    run.elapsed = started.elapsed();
    match outcome {
        Ok(()) => {
            run.result = HostResult::Ok;
            ctx.emit(Event::HostDone {
                host: node.name().to_string(),
                release: Some(id.to_string()),
                message: None,
                elapsed_ms: ms(run.elapsed),
            });
        }
        Err(Failure::Halted | Failure::Interrupted) if !run.switched => {
            run.result = HostResult::Skipped;
        }
        Err(failure) => {
            let phase = current_phase(&run, &failure);
            run.result = HostResult::Failed;
            run.error = Some(failure.to_string());
            ctx.emit(Event::HostFailed {
                host: node.name().to_string(),
                phase,
                error: failure.to_string(),
                tail: failure.tail(),
                elapsed_ms: ms(run.elapsed),
            });
        }
    }
    run
}

fn current_phase(run: &HostRun, failure: &Failure) -> Phase {
    match failure {
        Failure::Health { .. } => Phase::Health,
        Failure::Command { what, .. } if what.starts_with("before_switch") => Phase::BeforeSwitch,
        Failure::Command { what, .. } if what.starts_with("after_switch") => Phase::AfterSwitch,
        _ if run.switched => Phase::Switch,
        _ => Phase::Upload,
    }
}

async fn steps(
    ctx: &Context,
    node: &Node,
    artifact: &Artifact,
    id: &ReleaseId,
    halt: &CancellationToken,
    run: &mut HostRun,
) -> Result<(), Failure> {
    deliver(ctx, node, artifact, id, halt).await?;
    let env = hooks::host_env(ctx, node, id, run.previous.as_ref(), &artifact.version);
    let release_dir = node.layout.release_path(id);
    hooks::run_remote(
        ctx,
        node,
        Phase::BeforeSwitch,
        &ctx.config.hooks.before_switch,
        &release_dir,
        &env,
    )
    .await?;
    if halt.is_cancelled() {
        return Err(Failure::Halted);
    }
    ctx.phase(node.name(), Phase::Switch);
    let entry = Entry {
        release: Some(id.to_string()),
        previous: run.previous.as_ref().map(|p| p.to_string()),
        version: Some(artifact.version.clone()),
        sha256: Some(artifact.content_sha.clone()),
        run: Some(ctx.run_id.clone()),
        ..Entry::new(Kind::Deploy, &ctx.by)
    };
    node.must("switch", &node.layout.switch(id, &entry.to_line()), None)
        .await?;
    run.switched = true;
    run.now = Some(id.clone());
    hooks::run_remote(
        ctx,
        node,
        Phase::AfterSwitch,
        &ctx.config.hooks.after_switch,
        &release_dir,
        &env,
    )
    .await?;
    if let Some(check) = &ctx.config.health {
        health::check(ctx, node, check, &env).await?;
    }
    Ok(())
}

/// Every host this deploy switched goes back to the release it had.
/// Returns whether all of them made it.
async fn roll_back_switched(
    ctx: &Context,
    nodes: &[Node],
    runs: &mut [HostRun],
    id: &ReleaseId,
    reason: &str,
) -> bool {
    let switched: Vec<usize> = (0..nodes.len()).filter(|&i| runs[i].switched).collect();
    if switched.is_empty() {
        return true;
    }
    ctx.emit(Event::RollbackStarted {
        hosts: switched
            .iter()
            .map(|&i| nodes[i].name().to_string())
            .collect(),
        reason: reason.to_string(),
    });
    let results = join_all(switched.iter().map(|&i| {
        let previous = runs[i].previous.clone();
        async move {
            let _permit = ctx.parallel.acquire().await.expect("semaphore open");
            super::rollback::switch_back(ctx, &nodes[i], previous.as_ref(), id).await
        }
    }))
    .await;
    let mut all_ok = true;
    for (&i, result) in switched.iter().zip(results) {
        let run = &mut runs[i];
        match result {
            Ok(()) => {
                run.now = run.previous.clone();
                ctx.emit(Event::HostDone {
                    host: nodes[i].name().to_string(),
                    release: run.now.as_ref().map(|r| r.to_string()),
                    message: Some("rolled back".into()),
                    elapsed_ms: 0,
                });
                // A host that failed keeps its failure in the summary; the
                // others are marked as rolled back.
                if run.result != HostResult::Failed {
                    run.result = HostResult::RolledBack;
                } else {
                    run.error = run.error.take().map(|e| format!("{e}; rolled back"));
                    run.result = HostResult::RolledBack;
                }
            }
            Err(e) => {
                all_ok = false;
                run.result = HostResult::Failed;
                run.error = Some(format!("rollback failed: {e}"));
                ctx.emit(Event::HostFailed {
                    host: nodes[i].name().to_string(),
                    phase: Phase::Rollback,
                    error: format!("rollback failed: {e}"),
                    tail: e.tail(),
                    elapsed_ms: 0,
                });
            }
        }
    }
    all_ok
}

/// Old releases beyond keep_releases go; never current nor the rollback target.
async fn prune(ctx: &Context, nodes: &[Node], runs: &[HostRun], id: &ReleaseId) {
    let keep = ctx.config.app.keep_releases;
    join_all(nodes.iter().zip(runs).map(|(node, run)| async move {
        if run.result != HostResult::Ok {
            return;
        }
        let mut releases: Vec<ReleaseId> =
            node.probe.releases.iter().map(|(r, _)| r.clone()).collect();
        releases.push(id.clone());
        let mut protect = vec![id];
        if let Some(previous) = &run.previous {
            protect.push(previous);
        }
        let doomed = strategy::prune(&releases, keep, &protect);
        if doomed.is_empty() {
            return;
        }
        ctx.phase(node.name(), Phase::Prune);
        if let Err(e) = node
            .must("pruning old releases", &node.layout.prune(&doomed), None)
            .await
        {
            ctx.message(
                Level::Warn,
                Some(node.name()),
                format!("could not prune: {e}"),
            );
        }
    }))
    .await;
}
