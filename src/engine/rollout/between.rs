//! What the rollout does between two waves, as the plan says: nothing, a
//! wait, the canary's bake, a zone's bake, or the question to promote the
//! canary.

use super::{HostRun, Run};
use crate::engine::HostOutcome;
use crate::engine::bake::{Baked, Spoiled, bake};
use crate::engine::rollout_plan::{PlannedWave, RolloutPlan, Step};
use crate::report::{HostResult, Level, Phase};

/// `step`, after wave `done` of `plan`, before the waves `next`. `Err` is
/// the reason the rollout stops; a host that turned unhealthy during a
/// bake is marked failed in `hosts`.
pub(super) async fn between(
    run: &Run<'_>,
    hosts: &mut [HostRun],
    plan: &RolloutPlan,
    done: usize,
    step: Step,
    next: &[PlannedWave],
) -> Result<(), String> {
    let ctx = run.ctx;
    let wave = &plan.waves[done];
    match step {
        Step::Nothing => Ok(()),
        Step::Wait(d) => {
            ctx.message(
                Level::Info,
                None,
                format!(
                    "pausing {} before the next wave",
                    humantime::format_duration(d)
                ),
            );
            tokio::select! {
                _ = tokio::time::sleep(d) => Ok(()),
                _ = ctx.cancel.cancelled() => Err("interrupted during the pause".into()),
            }
        }
        Step::Bake(d) => {
            let spoiled = held(run, hosts, &wave.hosts, d).await;
            spoiled.map_err(|name| format!("the canary {name} turned unhealthy during the bake"))
        }
        Step::ZoneBake(d) => {
            let zone = wave.zone.as_deref().unwrap_or_default();
            let baked: Vec<usize> = plan
                .waves
                .iter()
                .filter(|w| w.group == wave.group && w.zone == wave.zone)
                .flat_map(|w| w.hosts.iter().copied())
                .filter(|&i| hosts[i].switched && hosts[i].outcome.result == HostResult::Ok)
                .collect();
            ctx.message(
                Level::Info,
                None,
                format!(
                    "zone {zone} is done: holding {} while its {} host(s) stay healthy",
                    humantime::format_duration(d),
                    baked.len()
                ),
            );
            let spoiled = held(run, hosts, &baked, d).await;
            spoiled.map_err(|name| {
                format!("{name} of zone {zone} turned unhealthy during the zone bake")
            })
        }
        Step::Ask => ask(run, next),
    }
}

/// Bakes the hosts `baked` for `d`, each with its own health check. `Err`
/// names the host that turned unhealthy (now failed in `hosts`), or says
/// the bake was interrupted.
async fn held(
    run: &Run<'_>,
    hosts: &mut [HostRun],
    baked: &[usize],
    d: std::time::Duration,
) -> Result<(), String> {
    let list: Vec<Baked> = baked
        .iter()
        .map(|&i| {
            let node = &run.nodes[i];
            let env = run.host_env(i, hosts[i].previous.as_ref());
            (node, env, node.host.role.health.as_ref())
        })
        .collect();
    match bake(run.ctx, &list, d).await {
        Ok(()) => Ok(()),
        Err(Spoiled::Interrupted) => Err("interrupted during the bake".into()),
        Err(Spoiled::Unhealthy(k, failure)) => {
            let i = baked[k];
            let name = run.nodes[i].name();
            let host = &mut hosts[i];
            host.outcome = HostOutcome::failed(
                name,
                failure.at(Phase::Health),
                Some(run.id.to_string()),
                host.outcome.elapsed,
            );
            run.ctx.report(&host.outcome);
            Err(name.to_string())
        }
    }
}

/// Asks to promote the canary to the waves `next`.
fn ask(run: &Run<'_>, next: &[PlannedWave]) -> Result<(), String> {
    let ctx = run.ctx;
    if ctx.yes {
        return Ok(());
    }
    let remaining: usize = next.iter().map(|w| w.hosts.len()).sum();
    let question = format!(
        "The canary is healthy. Promote to the remaining {remaining} host(s) in {} wave(s)?",
        next.len()
    );
    // The question blocks this thread while a person reads it.
    match tokio::task::block_in_place(|| ctx.reporter.confirm(&question)) {
        Some(true) => Ok(()),
        Some(false) => Err("the canary was not promoted".into()),
        None => Err("cannot ask to promote the canary without a terminal; pass --yes".into()),
    }
}
