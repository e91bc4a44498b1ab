//! A stopped rollout's switched hosts going back, wave by wave, and the
//! pruning of old releases after a clean one.

use futures_util::future::join_all;

use super::{HostRun, Run};
use crate::engine::batch::{self, Back, WaveResult};
use crate::engine::fleet::Node;
use crate::engine::{Failure, HostOutcome, strategy};
use crate::report::{Event, HostResult, Level, Phase};

/// The switched hosts of a rollout that stopped go back, wave by wave
/// (`waves` in the order they go), each wave between `before_batch_local`
/// and `after_batch_local` (`HOIST_RESULT` `rolled_back`, or `failed` with
/// the hosts that could not go back): a load balancer's drain and enable
/// hooks take a wave out of the pool while it restarts. A failing local
/// hook stops it there. Returns whether every host made it.
pub(super) async fn roll_back(
    run: &Run<'_>,
    hosts: &mut [HostRun],
    waves: &[Vec<usize>],
    reason: &str,
) -> bool {
    let (ctx, nodes) = (run.ctx, run.nodes);
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
        let target = hosts[wave[0]].previous.clone();
        let version = target
            .as_ref()
            .and_then(|t| nodes[wave[0]].journal.version_of(t))
            .unwrap_or_default();
        let members: Vec<&Node> = wave.iter().map(|&i| &nodes[i]).collect();
        let env = batch::env(ctx, target.as_ref(), &version, &members);
        let hooks = async {
            batch::before(ctx, &env).await?;
            let not_back = undo(run, hosts, wave, "").await;
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
            Err(why) if wave.iter().all(|&i| hosts[i].back) => {
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
                    .filter(|&&i| !hosts[i].back)
                    .map(|&i| nodes[i].name())
                    .collect();
                if !left.is_empty() {
                    ctx.message(
                        Level::Error,
                        None,
                        format!(
                            "rollback stopped: {why}; still on {}: {}",
                            run.id,
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
pub(super) async fn undo(
    run: &Run<'_>,
    hosts: &mut [HostRun],
    which: &[usize],
    reason: &str,
) -> Vec<usize> {
    let (ctx, nodes) = (run.ctx, run.nodes);
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
            target: hosts[i].previous.clone(),
            from: run.id.clone(),
        })
        .collect();
    let results = batch::go_back(ctx, &wave).await;
    let mut not_back = Vec::new();
    for (&i, (result, elapsed)) in which.iter().zip(results) {
        let host = &mut hosts[i];
        host.back = true;
        let name = nodes[i].name();
        match result {
            Ok(()) => {
                let back = host.previous.as_ref().map(|p| p.to_string());
                let mut done =
                    HostOutcome::ok(name, back.clone(), elapsed).with_note("rolled back");
                done.result = HostResult::RolledBack;
                ctx.report(&done);
                // A host that failed keeps its failure in the summary, marked as put back.
                host.outcome.result = HostResult::RolledBack;
                host.outcome.release = back;
            }
            Err(failed) => {
                not_back.push(i);
                let failure = Failure::Rollback(Box::new(failed.failure));
                let release = host.outcome.release.take();
                host.outcome = HostOutcome::failed(
                    name,
                    failure.at(Phase::Rollback),
                    release,
                    host.outcome.elapsed + elapsed,
                );
                ctx.report(&host.outcome);
            }
        }
    }
    not_back
}

/// Old releases beyond keep_releases go; never current nor the rollback target.
pub(super) async fn prune(run: &Run<'_>, hosts: &[HostRun]) {
    let (ctx, id) = (run.ctx, run.id);
    let keep = ctx.config.app.keep_releases;
    join_all(run.nodes.iter().zip(hosts).map(|(node, host)| async move {
        if host.outcome.result != HostResult::Ok {
            return;
        }
        let mut releases: Vec<_> = node.probe.releases.iter().map(|(r, _)| r.clone()).collect();
        releases.push(id.clone());
        let mut protect = vec![id];
        if let Some(previous) = &host.previous {
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
