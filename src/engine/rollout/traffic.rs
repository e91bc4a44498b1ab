//! `[traffic]` in a rolling deploy: after the canary wave each weight in
//! turn, each step held while the health checks and gates sample it; a
//! failure sets the weight to 0 before anything goes back, and once all of
//! it is back, 0 with every host as the baseline; once every wave is done,
//! 100 with every host on the new release.

use super::{HostRun, Run};
use crate::engine::fleet::Node;
use crate::engine::rollout_plan::TrafficStep;
use crate::engine::traffic::{self, Weight};
use crate::report::Level;

/// One step after the canary wave: `set_local` at its weight. `Err`: why
/// the rollout stops, the weight already set to 0. The step is then held
/// by the caller, like any bake.
pub(super) async fn set_step(
    run: &Run<'_>,
    hosts: &[HostRun],
    t: &TrafficStep,
) -> Result<(), String> {
    if let Err(e) = set(run, hosts, t.weight, Some(t.index)).await {
        let reason = format!("set_local did not pass at {}: {e}", t.label());
        zero(run, hosts).await;
        return Err(reason);
    }
    Ok(())
}

/// Sets the weight to 0 if this run set it above 0 (or carried a canary
/// that has traffic): before a rollback. A failing `set_local` is said.
pub(super) async fn zero(run: &Run<'_>, hosts: &[HostRun]) {
    let set_above_zero = run.weight.lock().unwrap().is_some_and(|w| w > 0);
    if !set_above_zero {
        return;
    }
    if let Err(e) = set(run, hosts, 0, None).await {
        run.ctx.message(
            Level::Error,
            None,
            format!("could not set the traffic weight to 0 before going back: set_local {e}"),
        );
    }
}

/// Once every host this run moved is back on the old release after the
/// weight was set: 0 with no host on the new release and every host as
/// the baseline, so that the balancer ends as it began (each host its
/// whole share) instead of keeping the hosts that went back out of the
/// traffic. A failing `set_local` is said.
pub(super) async fn rebalanced(run: &Run<'_>, hosts: &[HostRun]) {
    if run.weight.lock().unwrap().is_none() || run.ctx.config.blue_green.is_some() {
        return;
    }
    if let Err(e) = set(run, hosts, 0, None).await {
        run.ctx.message(
            Level::Error,
            None,
            format!("every host is back on its release, but set_local with every host as the baseline did not pass: {e}; the hosts that went back may still have no traffic"),
        );
    }
}

/// Once every wave is done: 100 with every host on the new release. Not
/// for a blue-green colour: its weights come after its rollout, against
/// the live colour.
pub(super) async fn done(run: &Run<'_>, hosts: &[HostRun]) -> Result<(), String> {
    if run.ctx.config.blue_green.is_some() {
        return Ok(());
    }
    set(run, hosts, 100, None).await
}

/// `set_local` at `weight`, the hosts on the new release right now as
/// the canary, the others as the baseline.
async fn set(
    run: &Run<'_>,
    hosts: &[HostRun],
    weight: u8,
    step: Option<usize>,
) -> Result<(), String> {
    let Some(config) = &run.ctx.config.traffic else {
        return Ok(());
    };
    *run.weight.lock().unwrap() = Some(weight);
    let on_new = |i: usize| {
        !hosts[i].back && (hosts[i].switched || run.nodes[i].probe.current.as_ref() == Some(run.id))
    };
    let (canary, baseline): (Vec<usize>, Vec<usize>) =
        (0..run.nodes.len()).partition(|&i| on_new(i));
    let nodes =
        |which: Vec<usize>| -> Vec<&Node> { which.into_iter().map(|i| &run.nodes[i]).collect() };
    let (canary, baseline) = (nodes(canary), nodes(baseline));
    let w = Weight {
        weight,
        step,
        steps: config.steps.len(),
        canary,
        baseline,
        colors: None,
    };
    traffic::set(run.ctx, Some(run.id), &run.artifact.version, &w).await
}
