//! A timed `canary_pause` is a bake: the canary's health check runs every
//! `health.interval` for the length of the pause, and the first host whose
//! probes fail `retries` times in a row ends it (the rollout then rolls the
//! canary back). A zone bake is the same over a whole zone, each host with
//! its own check (hosts without one are only waited for).

use std::time::{Duration, Instant};

use futures_util::future::join_all;

use super::fleet::Node;
use super::{Context, Failure, analysis, diagnose, health, ms, policy};
use crate::config::Health;
use crate::release::ReleaseId;
use crate::report::{Event, Phase};

/// Probes are never closer together than this, whatever `health.interval` says.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// How a bake ended early.
pub(crate) enum Spoiled {
    /// The canary host at this index (into the slice given) turned unhealthy.
    Unhealthy(usize, Failure),
    /// An analysis gate stopped it: why.
    Gate(String),
    Interrupted,
    /// A switched host went back by itself (its dead-man switch): only
    /// from [`hold`].
    WentBack,
}

/// One host being baked: the environment its health check gets, and its
/// check (`None`: nothing to probe).
pub(crate) type Baked<'a> = (&'a Node, Vec<(String, String)>, Option<&'a Health>);

/// Bakes `canary` for `length`, probing at the shortest interval of their
/// checks, while `gates` (the analysis gates' samples) run: a gate that
/// fails ends the bake, and the bake ends once they are done too.
pub(crate) async fn bake(
    ctx: &Context,
    step: &str,
    canary: &[Baked<'_>],
    length: Duration,
    gates: impl Future<Output = Result<(), String>>,
) -> Result<(), Spoiled> {
    tokio::pin!(gates);
    let mut gated = false;
    let interval = canary
        .iter()
        .filter_map(|(_, _, check)| check.map(|c| c.interval))
        .min()
        .unwrap_or(length)
        .max(MIN_INTERVAL);
    ctx.emit(Event::BakeStarted {
        step: step.to_string(),
        hosts: canary.iter().map(|(n, ..)| n.name().to_string()).collect(),
        duration_ms: ms(length),
        interval_ms: ms(interval),
    });
    let started = Instant::now();
    let end = started + length;
    let mut failed_in_a_row = vec![0u32; canary.len()];
    let result = loop {
        let next = (Instant::now() + interval).min(end);
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => {}
            _ = ctx.cancel.cancelled() => break Err(Spoiled::Interrupted),
            done = &mut gates, if !gated => match done {
                Ok(()) => gated = true,
                Err(reason) => break Err(Spoiled::Gate(reason)),
            },
        }
        if Instant::now() >= end {
            if gated {
                break Ok(());
            }
            // The gates' last samples.
            break tokio::select! {
                done = &mut gates => done.map_err(Spoiled::Gate),
                _ = ctx.cancel.cancelled() => Err(Spoiled::Interrupted),
            };
        }
        if Instant::now() < next {
            continue; // a gate finished early
        }
        let probes = join_all(canary.iter().map(|(node, env, check)| async move {
            match check {
                Some(check) => Some((health::probe_once(ctx, node, check, env).await, check)),
                None => None,
            }
        }))
        .await;
        let mut spoiled = None;
        for (i, probe) in probes.into_iter().enumerate() {
            match probe {
                None => {}
                Some((Ok(()), _)) => failed_in_a_row[i] = 0,
                Some((Err((reason, tail)), check)) => {
                    failed_in_a_row[i] += 1;
                    if spoiled.is_none() && policy::bake_failed(failed_in_a_row[i], check.retries) {
                        let reason = match failed_in_a_row[i] {
                            1 => format!("unhealthy during the bake: {reason}"),
                            n => {
                                format!("unhealthy during the bake: {reason} ({n} probes in a row)")
                            }
                        };
                        spoiled = Some(Spoiled::Unhealthy(i, Failure::Health { reason, tail }));
                    }
                }
            }
        }
        if let Some(spoiled) = spoiled {
            break Err(spoiled);
        }
    };
    ctx.emit(Event::BakeDone {
        step: step.to_string(),
        gate: match &result {
            Err(Spoiled::Gate(reason)) => Some(reason.clone()),
            _ => None,
        },
        healthy: result.is_ok(),
        interrupted: matches!(result, Err(Spoiled::Interrupted)),
        elapsed_ms: ms(started.elapsed()),
    });
    result
}

/// A step held (a bake between waves, a traffic step): `baked` probed
/// for `d` while the analysis gates sample `who` (as long as their `count`
/// needs, if longer); a switched host found gone back by itself ends it.
/// Shared by the rolling executor and blue-green's traffic steps.
pub(crate) async fn hold(
    ctx: &Context,
    step: &str,
    who: &analysis::Hosts<'_>,
    baked: &[Baked<'_>],
    d: Duration,
) -> Result<(), Spoiled> {
    let gates = &ctx.config.analysis;
    let length = analysis::length(gates, d);
    let sampled = async {
        match gates.is_empty() {
            true => Ok(()),
            false => analysis::step(ctx, step, who, length).await,
        }
    };
    tokio::select! {
        out = bake(ctx, step, baked, length, sampled) => out,
        () = ctx.deadman.found_back() => Err(Spoiled::WentBack),
    }
}

/// After a gate failed (`reason`): `[diagnose]` on each of the step's
/// hosts, with its hook variables.
pub(crate) async fn diagnose_gate(
    ctx: &Context,
    hosts: &[(&Node, Vec<(String, String)>)],
    id: &ReleaseId,
    reason: &str,
) {
    let failed = Failure::Health {
        reason: reason.to_string(),
        tail: Vec::new(),
    }
    .at(Phase::Health);
    join_all(
        hosts
            .iter()
            .map(|(node, env)| diagnose::collect(ctx, node, id, &failed, env)),
    )
    .await;
}
