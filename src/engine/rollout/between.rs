//! What the rollout does between two waves, as the plan says: nothing, a
//! wait, the canary's bake, a zone's bake, or the question to promote the
//! canary.

use super::{HostRun, Run};

use crate::engine::analysis;
use crate::engine::bake::{Baked, Spoiled, diagnose_gate, hold};
use crate::engine::fleet::Node;
use crate::engine::rollout_plan::{PlannedWave, RolloutPlan, Step};
use crate::engine::{HostOutcome, batch, diagnose};
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
            let spoiled = held(run, hosts, &wave.hosts, d, "canary bake", false).await;
            spoiled.map_err(|why| {
                why.said(|name| format!("the canary {name} turned unhealthy during the bake"))
            })
        }
        Step::WaveBake(d) => {
            let baked = healthy(hosts, &wave.hosts);
            ctx.message(
                Level::Info,
                None,
                format!(
                    "wave {} is done: holding {} while its {} host(s) stay healthy",
                    done + 1,
                    humantime::format_duration(d),
                    baked.len()
                ),
            );
            let step = format!("wave {} bake", done + 1);
            let spoiled = held(run, hosts, &baked, d, &step, false).await;
            spoiled.map_err(|why| {
                why.said(|name| {
                    format!(
                        "{name} of wave {} turned unhealthy during the wave bake",
                        done + 1
                    )
                })
            })
        }
        Step::ZoneBake(d) => {
            let zone = wave.zone.as_deref().unwrap_or_default();
            let zone_hosts: Vec<usize> = plan
                .waves
                .iter()
                .filter(|w| w.group == wave.group && w.zone == wave.zone)
                .flat_map(|w| w.hosts.iter().copied())
                .collect();
            let baked = healthy(hosts, &zone_hosts);
            ctx.message(
                Level::Info,
                None,
                format!(
                    "zone {zone} is done: holding {} while its {} host(s) stay healthy",
                    humantime::format_duration(d),
                    baked.len()
                ),
            );
            let step = format!("zone {zone} bake");
            let spoiled = held(run, hosts, &baked, d, &step, false).await;
            spoiled.map_err(|why| {
                why.said(|name| {
                    format!("{name} of zone {zone} turned unhealthy during the zone bake")
                })
            })
        }
        Step::Ask => ask(run, next),
        Step::Traffic(t) => {
            super::traffic::set_step(run, hosts, &t).await?;
            let baked = healthy(hosts, &wave.hosts);
            held_for_traffic(run, hosts, &baked, t.bake, &t.label()).await
        }
    }
}

/// Of `wave`, the hosts this run switched that are healthy.
fn healthy(hosts: &[HostRun], wave: &[usize]) -> Vec<usize> {
    wave.iter()
        .copied()
        .filter(|&i| hosts[i].switched && hosts[i].outcome.result == HostResult::Ok)
        .collect()
}

/// Why a bake stopped the rollout.
enum Stopped {
    /// This host turned unhealthy (now failed in `hosts`).
    Host(String),
    /// Said whole: a gate failed, or Ctrl-C.
    Said(String),
}

impl Stopped {
    fn said(self, host: impl FnOnce(&str) -> String) -> String {
        match self {
            Stopped::Host(name) => host(&name),
            Stopped::Said(reason) => reason,
        }
    }
}

/// A traffic step (`step` names it) held for `d` on the hosts `baked`:
/// as [`held`], the weight set to 0 first when it fails.
async fn held_for_traffic(
    run: &Run<'_>,
    hosts: &mut [HostRun],
    baked: &[usize],
    d: std::time::Duration,
    step: &str,
) -> Result<(), String> {
    let spoiled = held(run, hosts, baked, d, step, true).await;
    spoiled.map_err(|why| why.said(|name| format!("{name} turned unhealthy during the {step}")))
}

/// Bakes the hosts `baked` for `d` (the bake `step`), each with its own
/// health check, while the analysis gates sample them (as long as their
/// `count` needs, if longer). A failed gate runs `[diagnose]` on `baked`.
/// `traffic`: a traffic step, whose failure sets the weight to 0 before
/// anything else (a host turned unhealthy is diagnosed too).
async fn held(
    run: &Run<'_>,
    hosts: &mut [HostRun],
    baked: &[usize],
    d: std::time::Duration,
    step: &str,
    traffic: bool,
) -> Result<(), Stopped> {
    let ctx = run.ctx;
    let who = analysis::Hosts {
        canary: (0..run.nodes.len())
            .filter(|&i| hosts[i].switched && hosts[i].outcome.result == HostResult::Ok)
            .map(|i| &run.nodes[i])
            .collect(),
        baseline: (0..run.nodes.len())
            .filter(|&i| !hosts[i].switched)
            .map(|i| &run.nodes[i])
            .collect(),
        step: baked
            .iter()
            .map(|&i| (&run.nodes[i], run.host_env(i, hosts[i].previous.as_ref())))
            .collect(),
        env: {
            let members: Vec<&Node> = baked.iter().map(|&i| &run.nodes[i]).collect();
            batch::env(ctx, Some(run.id), &run.artifact.version, &members)
        },
    };
    let list: Vec<Baked> = baked
        .iter()
        .map(|&i| {
            let node = &run.nodes[i];
            let env = run.host_env(i, hosts[i].previous.as_ref());
            (node, env, node.host.role.health.as_ref())
        })
        .collect();
    let baked_out = hold(ctx, step, &who, &list, d).await;
    if traffic && matches!(baked_out, Err(Spoiled::Gate(_) | Spoiled::Unhealthy(..))) {
        super::traffic::zero(run, hosts).await;
    }
    match baked_out {
        Ok(()) => Ok(()),
        // A host found gone back by itself (its dead-man switch) ends the bake.
        Err(Spoiled::WentBack) => Err(Stopped::Said(format!(
            "a switched host went back by itself during the {step} (its dead-man switch)"
        ))),
        Err(Spoiled::Interrupted) => Err(Stopped::Said("interrupted during the bake".into())),
        Err(Spoiled::Gate(reason)) => {
            diagnose_gate(ctx, &who.step, run.id, &reason).await;
            Err(Stopped::Said(reason))
        }
        Err(Spoiled::Unhealthy(k, failure)) => {
            let i = baked[k];
            let name = run.nodes[i].name();
            let failure = failure.at(Phase::Health);
            if traffic {
                let env = run.host_env(i, hosts[i].previous.as_ref());
                diagnose::collect(ctx, &run.nodes[i], run.id, &failure, &env).await;
            }
            let host = &mut hosts[i];
            host.outcome = HostOutcome::failed(
                name,
                failure,
                Some(run.id.to_string()),
                host.outcome.elapsed,
            );
            run.ctx.report(&host.outcome);
            Err(Stopped::Host(name.to_string()))
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
