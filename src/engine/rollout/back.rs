//! A stopped rollout's switched hosts going back (through
//! [`put_back`]), and the pruning of old releases after a clean one.

use futures_util::future::join_all;

use super::drain::undrain_returned;
use super::{HostRun, Run};
use crate::engine::policy::BackFor;
use crate::engine::put_back::{self, Back, InWaves};
use crate::engine::{HostOutcome, strategy};
use crate::report::{HostResult, Level, Phase};

/// The switched hosts of a rollout that stopped go back, wave by wave
/// (`waves` in the order they go), between the batch hooks (see
/// [`put_back::in_waves`]). Returns whether every host made it.
pub(super) async fn roll_back(
    run: &Run<'_>,
    hosts: &mut [HostRun],
    waves: &[Vec<usize>],
    reason: &str,
) -> bool {
    let order: Vec<usize> = waves.concat();
    let waves: Vec<Vec<Back>> = waves.iter().map(|w| backs(run, hosts, w)).collect();
    let how = InWaves {
        why: BackFor::Undo,
        canary: false,
        batch_hooks: true,
    };
    let went = put_back::in_waves(run.ctx, waves, how, reason).await;
    let all_back = went.all_back();
    settle(hosts, went.moved);
    undrain_returned(run, hosts, &order).await;
    // Hosts whose wave never went keep how they ended, and are not back.
    for (i, outcome) in went.unmoved {
        hosts[i].outcome = outcome;
    }
    all_back
}

/// The hosts `which` (of one wave) go back to the release they had,
/// together. Returns those that could not go back. `reason`: this is a
/// rollback of its own (a wave that stopped the rollout), announced with it.
pub(super) async fn undo(
    run: &Run<'_>,
    hosts: &mut [HostRun],
    which: &[usize],
    reason: &str,
) -> Vec<usize> {
    if which.is_empty() {
        return Vec::new();
    }
    let backs = backs(run, hosts, which);
    let ended = put_back::together(run.ctx, backs, BackFor::Undo, Some(reason.to_string())).await;
    let not_back = ended
        .iter()
        .filter(|(_, o)| o.result == HostResult::Failed)
        .map(|(i, _)| *i)
        .collect();
    settle(hosts, ended);
    undrain_returned(run, hosts, which).await;
    not_back
}

/// The hosts `which` going back to the release each was on before.
fn backs<'a>(run: &Run<'a>, hosts: &mut [HostRun], which: &[usize]) -> Vec<Back<'a>> {
    which
        .iter()
        .map(|&i| {
            let (node, target) = (&run.nodes[i], hosts[i].previous.clone());
            // One this run drained is out of the pool already (undrained
            // once back, by `undrain_returned`).
            let in_pool = !hosts[i].drained;
            Back {
                in_pool,
                ..Back::taking(i, node, target, run.id.clone(), &mut hosts[i].outcome)
            }
        })
        .collect()
}

/// Keeps how each host that went back (or tried to) ended.
fn settle(hosts: &mut [HostRun], ended: Vec<(usize, HostOutcome)>) {
    for (i, outcome) in ended {
        hosts[i].back = true;
        hosts[i].outcome = outcome;
    }
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
