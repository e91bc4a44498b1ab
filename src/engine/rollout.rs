//! The waves of a deploy, the failure policy, and the rollback of every
//! host the deploy switched.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use futures_util::future::join_all;
use tokio_util::sync::CancellationToken;

use super::ahead::{Ahead, Passed, Uploading};
use super::bake::{Spoiled, bake};
use super::batch::{self, Back, WaveResult};
use super::fleet::Node;
use super::once::Once;
use super::payload::deliver;
use super::policy::{self, HostState};
use super::strategy::{self, Wave, WaveKind};
use super::switch::switch_to;
use super::{Context, Failed, Failure, HostOutcome, at, diagnose, health, hooks, shared};
use crate::artifact::Artifact;
use crate::config::{Amount, OnFailure, Pause, Strategy};
use crate::exit::Exit;
use crate::release::ReleaseId;
use crate::report::{Event, HostResult, Level, Phase};

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
pub(crate) struct Plan {
    pub canary: Amount,
    pub max_failures: Amount,
    /// Stop after the canary wave (and its bake): `deploy --until canary`.
    pub until_canary: bool,
    /// Hosts already on the release since an earlier run of this deploy (a
    /// canary being promoted), with the release each was on before: they
    /// count as switched, so a failure rolls them back too.
    pub carried: Vec<(usize, Option<ReleaseId>)>,
}

impl Plan {
    pub(crate) fn of(strategy: &Strategy) -> Plan {
        Plan {
            canary: strategy.canary,
            max_failures: strategy.max_failures,
            until_canary: false,
            carried: Vec::new(),
        }
    }
}

/// The waves, the failure policy (see `policy`), and the rollback: the I/O
/// loop around the policy's decisions. Returns the exit and how each node ended.
pub(crate) async fn rollout(
    ctx: &Context,
    nodes: &[Node],
    artifact: &Artifact,
    id: &ReleaseId,
    plan: &Plan,
) -> (Exit, Vec<HostOutcome>) {
    let strategy = &ctx.config.strategy;
    let runs: Vec<Mutex<HostRun>> = nodes
        .iter()
        .map(|n| Mutex::new(HostRun::untouched(n)))
        .collect();
    for (i, previous) in &plan.carried {
        let mut run = runs[*i].lock().unwrap();
        run.switched = true;
        run.previous = previous.clone();
    }
    // Hosts already on the release (a resumed deploy) need nothing.
    let pending: Vec<usize> = (0..nodes.len())
        .filter(|&i| {
            let done = nodes[i].probe.current.as_ref() == Some(id);
            if done {
                runs[i].lock().unwrap().outcome.result = HostResult::Ok;
            }
            !done
        })
        .collect();
    let waves: Vec<Wave> = strategy::waves(pending.len(), plan.canary, &strategy.batch)
        .into_iter()
        .map(|w| Wave {
            kind: w.kind,
            hosts: w.hosts.into_iter().map(|i| pending[i]).collect(),
        })
        .collect();
    let first = waves
        .first()
        .and_then(|w| w.hosts.first())
        .map(|&i| &nodes[i]);
    let once = Once::new(ctx, nodes, first, id);
    let once = once.as_ref();
    let allowed = strategy::failures_allowed(plan.max_failures, pending.len());
    let failures = AtomicUsize::new(0);
    let halt = ctx.cancel.child_token();
    // Why the rollout stops; the first reason given is the one said.
    let halted: Mutex<Option<String>> = Mutex::new(None);
    let stop = |reason: String| {
        halted.lock().unwrap().get_or_insert(reason);
        halt.cancel();
    };
    // Every host a wave's own rollback took back made it.
    let mut wave_backs_ok = true;
    // "rollout stopped" was said, before a wave's own rollback.
    let mut stop_said = false;
    // Uploads ahead of the next wave, made during the wave before it.
    let mut following: Option<Ahead> = None;
    // Whether host `i`'s part of the rollout started (what was made ahead
    // for a host that never started is taken back).
    let started = |i: usize| runs[i].lock().unwrap().sent.is_some();

    for (w, wave) in waves.iter().enumerate() {
        if halt.is_cancelled() {
            break;
        }
        // What the rollout waits for after the wave before this one; the
        // hosts of this wave get their upload meanwhile.
        let pause = match w.checked_sub(1).map(|p| &waves[p]) {
            Some(before) if plan.until_canary && before.kind == WaveKind::Canary => break,
            Some(before) => Some(pause_after(strategy, before.kind)),
            None => None,
        };
        let ahead = following
            .take()
            .unwrap_or_else(|| Ahead::before(pause.as_ref(), &wave.hosts));
        let next = waves
            .get(w + 1)
            .filter(|_| uploads_during(strategy, wave.kind, once.is_some() && w == 0))
            .map(|next| Ahead::during(&next.hosts));
        let uploading = Uploading::new(wave.hosts.len());
        let over = CancellationToken::new();
        let this_wave = async {
            if let Some(pause) = &pause
                && let Err(reason) =
                    between(ctx, nodes, &runs, &waves, w - 1, pause, artifact, id, plan).await
            {
                stop(reason);
                return;
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
            let members: Vec<&Node> = wave.hosts.iter().map(|&i| &nodes[i]).collect();
            let local_env = batch::env(ctx, Some(id), &artifact.version, &members);
            if let Err(reason) = batch::before(ctx, &local_env).await {
                stop(reason);
                return;
            }
            join_all(wave.hosts.iter().map(|&i| {
                let runs = &runs;
                let failures = &failures;
                let halt = &halt;
                let ahead = &ahead;
                let uploading = &uploading;
                async move {
                    // Waited for before a slot is taken: the upload holds one.
                    let delivered = ahead.take(i).await;
                    let mut passed = uploading.host();
                    let run = host_rollout(
                        ctx,
                        &nodes[i],
                        artifact,
                        id,
                        halt,
                        once,
                        delivered,
                        &mut passed,
                    )
                    .await;
                    if let Some(once) = once {
                        once.settle(nodes[i].name());
                        if once.failed() {
                            halt.cancel();
                        }
                    }
                    let failed = run.outcome.result == HostResult::Failed;
                    *runs[i].lock().unwrap() = run;
                    if failed && policy::halts(failures.fetch_add(1, Ordering::SeqCst) + 1, allowed)
                    {
                        halt.cancel();
                    }
                }
            }))
            .await;
            if let Some(once) = once {
                once.tell_the_others(ctx, nodes).await;
            }
            let failed_here: Vec<usize> = wave
                .hosts
                .iter()
                .copied()
                .filter(|&i| runs[i].lock().unwrap().outcome.result == HostResult::Failed)
                .collect();
            if let Some(once) = once.filter(|o| o.failed()) {
                stop(format!(
                    "before_switch_once did not pass on {}; no host was switched",
                    once.host()
                ));
            }
            let failed_so_far = failures.load(Ordering::SeqCst);
            if policy::halts(failed_so_far, allowed) {
                stop(format!(
                    "{failed_so_far} host(s) failed, more than max_failures allows ({allowed})"
                ));
            }
            // A wave that stops the rollout goes back before its
            // after_batch_local runs: an "enable" hook never puts a
            // host on the failed release back in the pool.
            let reason = halted.lock().unwrap().clone();
            let (result, unhealthy) = match reason {
                Some(reason)
                    if !ctx.cancel.is_cancelled() && strategy.on_failure == OnFailure::Rollback =>
                {
                    let switched: Vec<usize> = wave
                        .hosts
                        .iter()
                        .copied()
                        .filter(|&i| runs[i].lock().unwrap().switched)
                        .collect();
                    ctx.message(Level::Error, None, format!("rollout stopped: {reason}"));
                    stop_said = true;
                    let not_back = undo(ctx, nodes, &runs, &switched, id, &reason).await;
                    wave_backs_ok &= not_back.is_empty();
                    let result = if not_back.is_empty() {
                        WaveResult::RolledBack
                    } else {
                        WaveResult::Failed
                    };
                    (result, not_back)
                }
                _ if ctx.cancel.is_cancelled()
                    && wave
                        .hosts
                        .iter()
                        .any(|&i| runs[i].lock().unwrap().outcome.result != HostResult::Ok) =>
                {
                    (WaveResult::Interrupted, failed_here.clone())
                }
                _ if !failed_here.is_empty() => (WaveResult::Failed, failed_here.clone()),
                _ => (WaveResult::Ok, Vec::new()),
            };
            let unhealthy: Vec<&str> = unhealthy.iter().map(|&i| nodes[i].name()).collect();
            if let Err(reason) = batch::after(ctx, &local_env, result, &unhealthy).await {
                stop(reason);
            }
            let count = |result: HostResult| {
                wave.hosts
                    .iter()
                    .filter(|&&i| runs[i].lock().unwrap().outcome.result == result)
                    .count()
            };
            // Skipped: never started, stopped by an interrupt or the halt;
            // failed: the rest that did not end ok (a rolled-back host too).
            let (wave_ok, wave_skipped) = (count(HostResult::Ok), count(HostResult::Skipped));
            ctx.emit(Event::WaveDone {
                wave: w + 1,
                ok: wave_ok,
                failed: wave.hosts.len() - wave_ok - wave_skipped,
                skipped: wave_skipped,
                interrupted: ctx.cancel.is_cancelled(),
            });
            // `deploy --until canary` stops after the canary and its bake.
            if plan.until_canary
                && wave.kind == WaveKind::Canary
                && !halt.is_cancelled()
                && w + 1 < waves.len()
            {
                let pause = pause_after(strategy, wave.kind);
                if let Err(reason) =
                    between(ctx, nodes, &runs, &waves, w, &pause, artifact, id, plan).await
                {
                    stop(reason);
                }
            }
        };
        let this_wave = async {
            this_wave.await;
            over.cancel();
        };
        let next_uploads = async {
            if let Some(next) = &next {
                // Once this wave's hosts had the link to themselves.
                uploading.past_or(&over).await;
                next.upload(ctx, nodes, artifact, id, &halt).await;
            }
        };
        futures_util::future::join3(
            this_wave,
            ahead.upload(ctx, nodes, artifact, id, &halt),
            next_uploads,
        )
        .await;
        ahead.take_back(ctx, nodes, id, started).await;
        following = next;
    }
    // Made for a wave that never ran.
    if let Some(unused) = following {
        unused.take_back(ctx, nodes, id, started).await;
    }
    let halted = halted.into_inner().unwrap();
    let states: Vec<HostState> = runs.iter().map(|r| r.lock().unwrap().state()).collect();
    let interrupted = ctx.cancel.is_cancelled();
    let verdict = policy::verdict(&states, halted.is_some(), interrupted, strategy.on_failure);
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
        && !stop_said
    {
        ctx.message(Level::Error, None, format!("rollout stopped: {reason}"));
    }
    let mut all_back = wave_backs_ok;
    if let Some(reason) = &halted
        && !verdict.roll_back.is_empty()
    {
        // The last switched wave goes back first; hosts carried from an
        // earlier run (a promoted canary) last.
        let carried: Vec<usize> = plan.carried.iter().map(|(i, _)| *i).collect();
        let left: Vec<Vec<usize>> = waves
            .iter()
            .rev()
            .map(|w| &w.hosts)
            .chain(std::iter::once(&carried))
            .map(|hosts| {
                hosts
                    .iter()
                    .copied()
                    .filter(|i| verdict.roll_back.contains(i) && !runs[*i].lock().unwrap().back)
                    .collect::<Vec<usize>>()
            })
            .filter(|hosts| !hosts.is_empty())
            .collect();
        all_back &= roll_back(ctx, nodes, &runs, &left, id, reason).await;
    }
    let runs: Vec<HostRun> = runs.into_iter().map(|m| m.into_inner().unwrap()).collect();
    if verdict.prune {
        prune(ctx, nodes, &runs, id).await;
    }
    let mut exit = policy::after_rollback(&verdict, all_back);
    if once.is_some_and(Once::failed) && !interrupted {
        exit = policy::after_once_failure(&states);
    }
    (exit, runs.into_iter().map(|r| r.outcome).collect())
}

/// Whether the next wave's hosts upload during a wave of `kind`: after a
/// batch wave the rollout does not wait (a timed `batch_pause` is when
/// they upload instead). Never during the canary's wave: its verdict
/// comes before anything else is sent. Nor during the wave that runs the
/// once hook (`once_here`), whose result then goes to every host: a host
/// busy with its upload would take it on a second session.
fn uploads_during(strategy: &Strategy, kind: WaveKind, once_here: bool) -> bool {
    kind != WaveKind::Canary && strategy.batch_pause.is_zero() && !once_here
}

/// What the rollout waits for after a wave of `kind`.
fn pause_after(strategy: &Strategy, kind: WaveKind) -> Pause {
    if kind == WaveKind::Canary {
        strategy.canary_pause.clone()
    } else {
        Pause::For(strategy.batch_pause)
    }
}

/// Between wave `w` and the next: the canary's bake when `pause` is a
/// duration and there is a health check, else the pause (or the question
/// to promote the canary). `Err` is the reason the rollout stops; a canary
/// host that turned unhealthy is marked failed in `runs`.
#[allow(clippy::too_many_arguments)]
async fn between(
    ctx: &Context,
    nodes: &[Node],
    runs: &[Mutex<HostRun>],
    waves: &[Wave],
    w: usize,
    pause: &Pause,
    artifact: &Artifact,
    id: &ReleaseId,
    plan: &Plan,
) -> Result<(), String> {
    let wave = &waves[w];
    let baked = match (pause, &ctx.config.health) {
        (Pause::For(d), Some(check)) if wave.kind == WaveKind::Canary && !d.is_zero() => {
            let canary: Vec<(&Node, Vec<(String, String)>)> = wave
                .hosts
                .iter()
                .map(|&i| {
                    let previous = runs[i].lock().unwrap().previous.clone();
                    let env =
                        hooks::host_env(ctx, &nodes[i], id, previous.as_ref(), &artifact.version);
                    (&nodes[i], env)
                })
                .collect();
            Some(bake(ctx, &canary, *d, check).await)
        }
        _ => None,
    };
    match baked {
        Some(Ok(())) => Ok(()),
        Some(Err(Spoiled::Interrupted)) => Err("interrupted during the bake".into()),
        Some(Err(Spoiled::Unhealthy(k, failure))) => {
            let i = wave.hosts[k];
            let mut run = runs[i].lock().unwrap();
            let elapsed = run.outcome.elapsed;
            run.outcome = HostOutcome::failed(
                nodes[i].name(),
                failure.at(Phase::Health),
                Some(id.to_string()),
                elapsed,
            );
            ctx.report(&run.outcome);
            Err(format!(
                "the canary {} turned unhealthy during the bake",
                nodes[i].name()
            ))
        }
        None if plan.until_canary && wave.kind == WaveKind::Canary => Ok(()),
        None => pause_between(ctx, pause, waves.len() - w - 1, &waves[w + 1..]).await,
    }
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
#[allow(clippy::too_many_arguments)]
async fn host_rollout(
    ctx: &Context,
    node: &Node,
    artifact: &Artifact,
    id: &ReleaseId,
    halt: &CancellationToken,
    once: Option<&Once>,
    delivered: Option<Result<u64, Failed>>,
    passed: &mut Passed<'_>,
) -> HostRun {
    let _permit = ctx.parallel.acquire().await.expect("semaphore open");
    let started = Instant::now();
    let mut run = HostRun::untouched(node);
    if halt.is_cancelled() {
        return run;
    }
    let result = steps(
        ctx, node, artifact, id, halt, once, delivered, passed, &mut run,
    )
    .await;
    if let Err(failed) = &result
        && policy::diagnoses(run.switched, &failed.failure, ctx.cancel.is_cancelled())
    {
        let previous = run.previous.as_ref();
        let env = hooks::host_env(ctx, node, id, previous, &artifact.version);
        diagnose::collect(ctx, node, id, failed, &env).await;
    }
    let elapsed = started.elapsed();
    let now = if run.switched {
        Some(id.to_string())
    } else {
        run.outcome.release.clone()
    };
    let sent = run.sent;
    run.outcome = match result {
        Ok(()) => HostOutcome::ok(node.name(), Some(id.to_string()), elapsed),
        Err(Failed {
            failure: Failure::Halted | Failure::Interrupted,
            ..
        }) if !run.switched => return run,
        Err(failed) => HostOutcome::failed(node.name(), failed, now, elapsed),
    };
    run.outcome.sent = sent;
    ctx.report(&run.outcome);
    run
}

/// Upload (unless `delivered` ahead of the wave), shared paths and files,
/// the once hook (on its host), before_switch, switch, after_switch,
/// health: each failure is tagged with the phase it happened in.
#[allow(clippy::too_many_arguments)]
async fn steps(
    ctx: &Context,
    node: &Node,
    artifact: &Artifact,
    id: &ReleaseId,
    halt: &CancellationToken,
    once: Option<&Once>,
    delivered: Option<Result<u64, Failed>>,
    passed: &mut Passed<'_>,
    run: &mut HostRun,
) -> Result<(), Failed> {
    let sent = match delivered {
        Some(delivered) => delivered,
        None => deliver(ctx, node, artifact, id, halt).await,
    };
    passed.now();
    run.sent = Some(sent?);
    shared::prepare(ctx, node, id).await?;
    let env = hooks::host_env(ctx, node, id, run.previous.as_ref(), &artifact.version);
    let release_dir = node.layout.release_path(id);
    if let Some(once) = once {
        once.run_on(ctx, node, id, &release_dir, &env).await?;
    }
    hooks::run_remote(
        ctx,
        node,
        Phase::BeforeSwitch,
        &ctx.config.hooks.before_switch,
        &release_dir,
        &env,
    )
    .await
    .map_err(at(Phase::BeforeSwitch))?;
    if halt.is_cancelled() {
        return Err(Failure::Halted.at(Phase::BeforeSwitch));
    }
    if let Some(once) = once {
        once.wait(halt).await.map_err(at(Phase::BeforeSwitch))?;
    }
    switch_to(
        ctx,
        node,
        id,
        run.previous.as_ref(),
        &artifact.version,
        &artifact.content_sha,
    )
    .await?;
    run.switched = true;
    hooks::run_remote(
        ctx,
        node,
        Phase::AfterSwitch,
        &ctx.config.hooks.after_switch,
        &release_dir,
        &env,
    )
    .await
    .map_err(at(Phase::AfterSwitch))?;
    if let Some(check) = &ctx.config.health {
        health::check(ctx, node, check, &env)
            .await
            .map_err(at(Phase::Health))?;
    }
    Ok(())
}

/// The switched hosts of a rollout that stopped go back, wave by wave
/// (`waves` in the order they go), each wave between `before_batch_local`
/// and `after_batch_local` (`HOIST_RESULT` `rolled_back`, or `failed` with
/// the hosts that could not go back): a load balancer's drain and enable
/// hooks take a wave out of the pool while it restarts. A failing local
/// hook stops it there. Returns whether every host made it.
async fn roll_back(
    ctx: &Context,
    nodes: &[Node],
    runs: &[Mutex<HostRun>],
    waves: &[Vec<usize>],
    id: &ReleaseId,
    reason: &str,
) -> bool {
    if waves.is_empty() {
        return true;
    }
    ctx.emit(Event::RollbackStarted {
        hosts: waves
            .iter()
            .flatten()
            .map(|&i| nodes[i].name().to_string())
            .collect(),
        reason: reason.to_string(),
    });
    let mut all_ok = true;
    for (w, wave) in waves.iter().enumerate() {
        let names: Vec<&str> = wave.iter().map(|&i| nodes[i].name()).collect();
        if waves.len() > 1 {
            ctx.message(
                Level::Info,
                None,
                format!(
                    "rollback wave {}/{}: {}",
                    w + 1,
                    waves.len(),
                    names.join(", ")
                ),
            );
        }
        let target = runs[wave[0]].lock().unwrap().previous.clone();
        let first = &nodes[wave[0]];
        let version = target
            .as_ref()
            .and_then(|t| first.journal.version_of(t))
            .unwrap_or_default();
        let members: Vec<&Node> = wave.iter().map(|&i| &nodes[i]).collect();
        let env = batch::env(ctx, target.as_ref(), &version, &members);
        let hooks = async {
            batch::before(ctx, &env).await?;
            let not_back = undo(ctx, nodes, runs, wave, id, "").await;
            let result = if not_back.is_empty() {
                WaveResult::RolledBack
            } else {
                WaveResult::Failed
            };
            let unhealthy: Vec<&str> = not_back.iter().map(|&i| nodes[i].name()).collect();
            batch::after(ctx, &env, result, &unhealthy).await?;
            Ok::<bool, String>(not_back.is_empty())
        };
        match hooks.await {
            Ok(back) => all_ok &= back,
            // Only after_batch_local failed: this wave is back, and the
            // waves still on the failed release go back all the same.
            Err(why) if wave.iter().all(|&i| runs[i].lock().unwrap().back) => {
                ctx.message(
                    Level::Warn,
                    None,
                    format!("{why}; {} went back all the same", names.join(", ")),
                );
            }
            Err(why) => {
                let left: Vec<&str> = waves[w..]
                    .iter()
                    .flatten()
                    .filter(|&&i| !runs[i].lock().unwrap().back)
                    .map(|&i| nodes[i].name())
                    .collect();
                if !left.is_empty() {
                    ctx.message(
                        Level::Error,
                        None,
                        format!(
                            "rollback stopped: {why}; still on {id}: {}",
                            left.join(", ")
                        ),
                    );
                }
                return false;
            }
        }
    }
    all_ok
}

/// The hosts `which` (of one wave) go back to the release they had,
/// together; each is reported. Returns those that could not go back.
/// `reason` non-empty: this is a rollback of its own (a wave that stopped
/// the rollout), announced with it.
async fn undo(
    ctx: &Context,
    nodes: &[Node],
    runs: &[Mutex<HostRun>],
    which: &[usize],
    id: &ReleaseId,
    reason: &str,
) -> Vec<usize> {
    if which.is_empty() {
        return Vec::new();
    }
    if !reason.is_empty() {
        ctx.emit(Event::RollbackStarted {
            hosts: which.iter().map(|&i| nodes[i].name().to_string()).collect(),
            reason: reason.to_string(),
        });
    }
    let wave: Vec<Back> = which
        .iter()
        .map(|&i| Back {
            node: &nodes[i],
            target: runs[i].lock().unwrap().previous.clone(),
            from: id.clone(),
        })
        .collect();
    let results = batch::go_back(ctx, &wave).await;
    let mut not_back = Vec::new();
    for (&i, (result, elapsed)) in which.iter().zip(results) {
        let mut run = runs[i].lock().unwrap();
        run.back = true;
        let name = nodes[i].name();
        match result {
            Ok(()) => {
                let back = run.previous.as_ref().map(|p| p.to_string());
                let mut done =
                    HostOutcome::ok(name, back.clone(), elapsed).with_note("rolled back");
                done.result = HostResult::RolledBack;
                ctx.report(&done);
                // A host that failed keeps its failure in the summary, marked as put back.
                run.outcome.result = HostResult::RolledBack;
                run.outcome.release = back;
            }
            Err(failed) => {
                not_back.push(i);
                let failure = Failure::Rollback(Box::new(failed.failure));
                let release = run.outcome.release.take();
                run.outcome = HostOutcome::failed(
                    name,
                    failure.at(Phase::Rollback),
                    release,
                    run.outcome.elapsed + elapsed,
                );
                ctx.report(&run.outcome);
            }
        }
    }
    not_back
}

/// Old releases beyond keep_releases go; never current nor the rollback target.
async fn prune(ctx: &Context, nodes: &[Node], runs: &[HostRun], id: &ReleaseId) {
    let keep = ctx.config.app.keep_releases;
    join_all(nodes.iter().zip(runs).map(|(node, run)| async move {
        if run.outcome.result != HostResult::Ok {
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
