//! `hoist deploy`: preflight, lock, waves (upload, unpack, hooks, switch,
//! health), rollback on failure, unlock.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::sync::CancellationToken;

use super::fleet::{self, Node};
use super::lock::{self, LockError, LockInfo};
use super::{Context, Failure, health, hooks, ms};
use crate::artifact::Artifact;
use crate::config::{OnFailure, Pause};
use crate::exit::Exit;
use crate::journal::{Entry, Kind};
use crate::release::ReleaseId;
use crate::report::{Event, HostResult, HostSummary, Level, Phase, Reporter};
use crate::strategy::{self, Wave, WaveKind};

#[derive(Debug, Clone, Default)]
pub struct DeployOptions {
    /// Carry the last failed or interrupted deploy on, with its release id.
    pub resume: bool,
}

/// Where one host stands during and after the rollout.
#[derive(Debug, Clone)]
struct HostRun {
    result: HostResult,
    /// `current` was pointed at the new release by this run.
    switched: bool,
    /// The release it was on before.
    previous: Option<ReleaseId>,
    /// The release it is on now.
    now: Option<ReleaseId>,
    error: Option<String>,
    elapsed: Duration,
}

pub async fn run(ctx: &Context, opts: DeployOptions) -> i32 {
    let Some(spec) = ctx.config.artifact.clone() else {
        ctx.message(
            Level::Error,
            None,
            format!("{} has no [artifact] to deploy", ctx.config.path.display()),
        );
        return ctx.finish("deploy", Exit::Usage, None, Vec::new());
    };
    let prepared = tokio::task::spawn_blocking(move || Artifact::prepare(&spec)).await;
    let artifact = match prepared {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            ctx.message(Level::Error, None, format!("{e:#}"));
            return ctx.finish("deploy", Exit::Usage, None, Vec::new());
        }
        Err(e) => {
            ctx.message(Level::Error, None, e.to_string());
            return ctx.finish("deploy", Exit::Failed, None, Vec::new());
        }
    };
    let strategy = &ctx.config.strategy;
    let has_canary_pause = strategy::hosts_of(strategy.canary, ctx.hosts.len()) > 0
        && strategy::hosts_of(strategy.canary, ctx.hosts.len()) < ctx.hosts.len()
        && strategy.canary_pause == Pause::Manual;
    if has_canary_pause && !ctx.yes && !ctx.interactive {
        ctx.message(
            Level::Error,
            None,
            "canary_pause is \"manual\" and there is no terminal to ask: pass --yes to promote the canary without asking, or set canary_pause to a duration",
        );
        return ctx.finish("deploy", Exit::Usage, None, Vec::new());
    }

    let (nodes, unreached) = fleet::reach(ctx).await;
    let mut problems = unreached
        .iter()
        .map(|u| (u.host.clone(), u.phase, u.failure.to_string(), u.elapsed))
        .collect::<Vec<_>>();
    fleet::report_unreached(ctx, &unreached);

    let id = if opts.resume {
        match resume_target(&nodes, &artifact) {
            Ok(id) => id,
            Err(e) => {
                ctx.message(Level::Error, None, e);
                fleet::close_all(&nodes).await;
                return ctx.finish("deploy", Exit::Usage, None, Vec::new());
            }
        }
    } else {
        ReleaseId::new(chrono::Utc::now(), &artifact.content_sha)
    };
    ctx.emit(Event::RunStarted {
        command: "deploy".into(),
        app: ctx.config.app.name.clone(),
        release: Some(id.to_string()),
        version: Some(artifact.version.clone()),
        hosts: ctx.hosts.iter().map(|h| h.name.clone()).collect(),
    });

    for node in &nodes {
        let mut reasons = preflight_problems(node, &artifact);
        if let Some(line) = &node.probe.lock {
            reasons.push(format!("locked by {}", LockInfo::describe(line)));
        }
        for reason in reasons {
            ctx.emit(Event::HostFailed {
                host: node.name().to_string(),
                phase: Phase::Preflight,
                error: reason.clone(),
                tail: Vec::new(),
                elapsed_ms: 0,
            });
            problems.push((
                node.name().to_string(),
                Phase::Preflight,
                reason,
                Duration::ZERO,
            ));
        }
    }
    if !problems.is_empty() {
        fleet::close_all(&nodes).await;
        let locked_only = unreached.is_empty()
            && problems
                .iter()
                .all(|(_, _, reason, _)| reason.starts_with("locked by "));
        let exit = if locked_only {
            Exit::Locked
        } else {
            Exit::Preflight
        };
        let hosts = summaries_untouched(ctx, &nodes, &problems);
        return ctx.finish("deploy", exit, Some(id.to_string()), hosts);
    }

    if let Err(e) = lock::acquire(ctx, &nodes, Some(id.as_str()), None).await {
        let exit = report_lock_error(ctx, e);
        fleet::close_all(&nodes).await;
        let hosts = summaries_untouched(ctx, &nodes, &[]);
        return ctx.finish("deploy", exit, Some(id.to_string()), hosts);
    }

    let (exit, runs) = rollout(ctx, &nodes, &artifact, &id).await;
    lock::release(ctx, &nodes).await;
    fleet::close_all(&nodes).await;
    let hosts = nodes
        .iter()
        .zip(runs)
        .map(|(node, run)| HostSummary {
            host: node.name().to_string(),
            result: run.result,
            release: run.now.map(|r| r.to_string()),
            error: run.error,
            elapsed_ms: ms(run.elapsed),
        })
        .collect();
    ctx.finish("deploy", exit, Some(id.to_string()), hosts)
}

/// Why a reachable host cannot take this deploy.
fn preflight_problems(node: &Node, artifact: &Artifact) -> Vec<String> {
    let mut reasons = Vec::new();
    if let Some(path) = &node.probe.not_writable {
        reasons.push(format!(
            "{} cannot be created: {path} is not writable",
            node.layout.deploy_to
        ));
    }
    if !node.probe.missing_tools.is_empty() {
        reasons.push(format!(
            "missing tools: {}",
            node.probe.missing_tools.join(", ")
        ));
    }
    let holds_it = already_held(node, artifact).is_some();
    if let Some(free) = node.probe.free_kb
        && !holds_it
        && free < artifact.needed_kb()
    {
        reasons.push(format!(
            "not enough free space: {} KiB free, {} KiB needed",
            free,
            artifact.needed_kb()
        ));
    }
    reasons
}

/// A release on this host made from the same content, if any.
fn already_held(node: &Node, artifact: &Artifact) -> Option<ReleaseId> {
    node.probe
        .releases
        .iter()
        .rev()
        .find(|(_, sum)| sum.as_deref() == Some(artifact.content_sha.as_str()))
        .map(|(id, _)| id.clone())
}

fn summaries_untouched(
    ctx: &Context,
    nodes: &[Node],
    problems: &[(String, Phase, String, Duration)],
) -> Vec<HostSummary> {
    ctx.hosts
        .iter()
        .map(|h| {
            let problem = problems.iter().find(|p| p.0 == h.name);
            let current = nodes
                .iter()
                .find(|n| n.name() == h.name)
                .and_then(|n| n.probe.current.as_ref().map(|c| c.to_string()));
            HostSummary {
                host: h.name.clone(),
                result: if problem.is_some() {
                    HostResult::Failed
                } else {
                    HostResult::Skipped
                },
                release: current,
                error: problem.map(|p| p.2.clone()),
                elapsed_ms: problem.map(|p| ms(p.3)).unwrap_or(0),
            }
        })
        .collect()
}

pub(crate) fn report_lock_error(ctx: &Context, e: LockError) -> Exit {
    match e {
        LockError::Held(held) => {
            for h in held {
                ctx.emit(Event::HostFailed {
                    host: h.host,
                    phase: Phase::Lock,
                    error: format!("locked by {}", LockInfo::describe(&h.line)),
                    tail: Vec::new(),
                    elapsed_ms: 0,
                });
            }
            Exit::Locked
        }
        LockError::Failed(failed) => {
            for (host, f) in failed {
                ctx.emit(Event::HostFailed {
                    host,
                    phase: Phase::Lock,
                    error: f.to_string(),
                    tail: f.tail(),
                    elapsed_ms: 0,
                });
            }
            Exit::Preflight
        }
    }
}

/// `--resume`: the release of the last deploy that did not reach every host.
fn resume_target(nodes: &[Node], artifact: &Artifact) -> Result<ReleaseId, String> {
    let last = nodes
        .iter()
        .flat_map(|n| n.journal.entries.iter())
        .filter(|e| e.event == Kind::Lock && e.release.is_some())
        .max_by(|a, b| a.ts.cmp(&b.ts))
        .and_then(|e| e.release.as_deref().and_then(ReleaseId::parse))
        .ok_or("nothing to resume: no earlier deploy is recorded on these hosts")?;
    if nodes
        .iter()
        .all(|n| n.probe.current.as_ref() == Some(&last))
    {
        return Err(format!(
            "nothing to resume: every selected host is already on {last}"
        ));
    }
    if nodes
        .iter()
        .any(|n| n.journal.bad_releases().iter().any(|b| b == last.as_str()))
    {
        return Err(format!(
            "{last} was rolled back; it cannot be resumed. Deploy anew."
        ));
    }
    if last.hash_prefix() != &artifact.content_sha[..8] {
        return Err(format!(
            "the artifact changed since {last} was deployed (its hash starts {}, the artifact's {}); deploy anew instead of resuming",
            last.hash_prefix(),
            &artifact.content_sha[..8]
        ));
    }
    Ok(last)
}

/// The waves, the failure policy, and the rollback. Returns the exit code
/// and where each node stands.
async fn rollout(
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

/// Puts the release on the host: copied from a release it already holds
/// with the same content, else uploaded, verified and unpacked.
async fn deliver(
    ctx: &Context,
    node: &Node,
    artifact: &Artifact,
    id: &ReleaseId,
    halt: &CancellationToken,
) -> Result<(), Failure> {
    if node.probe.has_release(id) {
        return Ok(());
    }
    if let Some(from) = already_held(node, artifact) {
        ctx.phase(node.name(), Phase::Unpack);
        ctx.message(
            Level::Info,
            Some(node.name()),
            format!("already holds this artifact as {from}; copying it, no upload"),
        );
        node.must(
            "copying the release",
            &node
                .layout
                .copy_release(&from, id, &ctx.run_id, &artifact.content_sha),
            None,
        )
        .await?;
        return Ok(());
    }
    ctx.phase(node.name(), Phase::Upload);
    let file = tokio::fs::File::open(artifact.upload_path())
        .await
        .map_err(|e| Failure::Other(format!("cannot read the artifact: {e}")))?;
    let reader = Progress::new(ctx, node.name(), artifact.transfer_size, file);
    let receive = node.layout.receive(
        id,
        &ctx.run_id,
        artifact.packing,
        &artifact.transfer_sha,
        &artifact.content_sha,
    );
    let upload = node.must("receiving the upload", &receive, Some(Box::new(reader)));
    let result = tokio::select! {
        r = upload => r,
        _ = halt.cancelled() => Err(if ctx.cancel.is_cancelled() { Failure::Interrupted } else { Failure::Halted }),
    };
    if let Err(e) = result {
        // The remote script cleans up after itself; this covers a command
        // that was cut off before its trap could run.
        let _ = node.run(&node.layout.discard(id, &ctx.run_id), None).await;
        return Err(e);
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

/// Counts bytes as they are read and reports them, a few times a second.
struct Progress<R> {
    reporter: Arc<dyn Reporter>,
    host: String,
    total: u64,
    sent: u64,
    last: Instant,
    done: bool,
    inner: R,
}

impl<R> Progress<R> {
    fn new(ctx: &Context, host: &str, total: u64, inner: R) -> Self {
        Progress {
            reporter: ctx.reporter.clone(),
            host: host.to_string(),
            total,
            sent: 0,
            last: Instant::now(),
            done: false,
            inner,
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Progress<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            let read = buf.filled().len() - before;
            this.sent += read as u64;
            if read == 0 && buf.remaining() > 0 && !this.done {
                // End of the artifact: the host now verifies and unpacks it.
                this.done = true;
                this.reporter.event(&Event::UploadProgress {
                    host: this.host.clone(),
                    bytes: this.sent,
                    total: Some(this.total),
                });
                this.reporter.event(&Event::HostPhase {
                    host: this.host.clone(),
                    phase: Phase::Unpack,
                });
            } else if read > 0 && this.last.elapsed() >= Duration::from_millis(100) {
                this.last = Instant::now();
                this.reporter.event(&Event::UploadProgress {
                    host: this.host.clone(),
                    bytes: this.sent,
                    total: Some(this.total),
                });
            }
        }
        poll
    }
}
