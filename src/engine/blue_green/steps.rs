//! `[traffic]` in a blue-green deploy: once the idle colour is healthy,
//! weights between the colours instead of one switch. Each step's
//! `set_local` gives the idle colour its share (`HOIST_CANARY_HOSTS`) and
//! the live one the rest (`HOIST_BASELINE_HOSTS`), then the step is held
//! while the idle colour's health checks and the gates sample it, as the
//! rolling steps are ([`bake::hold`]). A failure sets the weight to 0
//! first, then `[diagnose]`, then the idle colour goes back.

use super::{Colours, go_back};
use crate::artifact::Artifact;
use crate::config::BlueGreen;
use crate::config::traffic::Traffic;
use crate::engine::bake::{self, Baked, Spoiled};
use crate::engine::fleet::Node;
use crate::engine::rollout_plan::TrafficStep;
use crate::engine::traffic::{self, Weight};
use crate::engine::{Context, Failure, HostOutcome, analysis, batch, diagnose, hooks, policy};
use crate::exit::Exit;
use crate::release::ReleaseId;
use crate::report::{Level, Phase};

/// What a blue-green deploy does between its idle colour's last wave and
/// the switch, as a value: `hoist plan` shows it and the deploy runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Handover {
    /// Each held in turn (none without `[traffic]`, or with no colour live).
    pub steps: Vec<TrafficStep>,
    /// `set_local` at 100% before `switch_local`: the last step was below
    /// 100, or there were none to take (no colour live yet).
    pub full: bool,
}

/// The handover for `traffic` when a colour is `live` (or none is yet:
/// nothing to weigh the new colour against, so all of it at once).
pub(crate) fn handover(traffic: Option<&Traffic>, live: bool) -> Handover {
    let Some(traffic) = traffic else {
        return Handover {
            steps: Vec::new(),
            full: false,
        };
    };
    if !live {
        return Handover {
            steps: Vec::new(),
            full: true,
        };
    }
    let of = traffic.steps.len();
    let steps = traffic
        .steps
        .iter()
        .enumerate()
        .map(|(i, &weight)| TrafficStep {
            index: i + 1,
            of,
            weight,
            bake: traffic.step_bake,
        })
        .collect();
    Handover {
        steps,
        full: traffic.steps.last() != Some(&100),
    }
}

/// `hoist rollback` with `[traffic]`: `set_local` at 100% to `color`
/// (its hosts as the canary, the other colour's as the baseline), before
/// `switch_local`. Nothing without `[traffic]`.
pub(crate) async fn all_to(
    ctx: &Context,
    bg: &BlueGreen,
    nodes: &[Node],
    color: &str,
    release: Option<&ReleaseId>,
) -> Result<(), String> {
    let Some(t) = &ctx.config.traffic else {
        return Ok(());
    };
    let Some(to) = bg.colors.iter().find(|c| c.name == color) else {
        return Ok(());
    };
    let other = bg.colors.iter().find(|c| c.name != color);
    let (canary, baseline): (Vec<&Node>, Vec<&Node>) = nodes
        .iter()
        .partition(|n| to.hosts.iter().any(|h| h == n.name()));
    let version = release
        .and_then(|r| nodes.iter().find_map(|n| n.journal.version_of(r)))
        .unwrap_or_default();
    let w = Weight {
        weight: 100,
        step: None,
        steps: t.steps.len(),
        canary,
        baseline,
        colors: Some((color, other.map_or("", |c| c.name.as_str()))),
    };
    traffic::set(ctx, release, &version, &w).await
}

/// Why the steps stopped.
enum Stop {
    /// `set_local` did not pass.
    SetLocal(String),
    /// A gate failed, or a host went back by itself: said whole.
    Said(String),
    /// The idle host at this index of the targets turned unhealthy.
    Unhealthy(usize, Failure),
    Interrupted,
}

impl Colours<'_> {
    /// The traffic steps before the switch, then 100% where the handover
    /// says. `Err`: how the deploy ends (the weight set to 0, the idle
    /// colour gone back).
    pub(super) async fn steps(
        &self,
        artifact: &Artifact,
        outcomes: &mut [HostOutcome],
    ) -> Result<(), Exit> {
        let ctx = self.ctx;
        let plan = handover(ctx.config.traffic.as_ref(), self.live.is_some());
        if ctx.config.traffic.is_some() && self.live.is_none() {
            ctx.message(
                Level::Info,
                None,
                format!(
                    "no colour is live yet: no traffic steps (nothing to weigh {} against); all the traffic goes to it at once",
                    self.idle
                ),
            );
        }
        for &t in &plan.steps {
            let stopped = match ctx.cancel.is_cancelled() {
                true => Err(Stop::Interrupted),
                false => self.step(t, artifact).await,
            };
            if let Err(stop) = stopped {
                return Err(self.stopped(stop, artifact, outcomes).await);
            }
        }
        if plan.full
            && let Err(e) = self.weigh(100, None, artifact).await
        {
            return Err(self.stopped(Stop::SetLocal(e), artifact, outcomes).await);
        }
        Ok(())
    }

    /// `set_local`: `weight` percent to the idle colour, the rest to the
    /// live one.
    pub(super) async fn weigh(
        &self,
        weight: u8,
        step: Option<usize>,
        artifact: &Artifact,
    ) -> Result<(), String> {
        let ctx = self.ctx;
        let w = Weight {
            weight,
            step,
            steps: ctx.config.traffic.as_ref().map_or(0, |t| t.steps.len()),
            canary: self.targets.iter().collect(),
            baseline: self.others.iter().collect(),
            colors: Some((self.idle, self.live.unwrap_or_default())),
        };
        traffic::set(ctx, Some(self.id), &artifact.version, &w).await
    }

    /// One step: its weight, then held on the idle colour.
    async fn step(&self, t: TrafficStep, artifact: &Artifact) -> Result<(), Stop> {
        let (ctx, label) = (self.ctx, t.label());
        self.weigh(t.weight, Some(t.index), artifact)
            .await
            .map_err(|e| Stop::SetLocal(format!("set_local did not pass at {label}: {e}")))?;
        let env = |node: &Node| {
            let previous = node.probe.current.as_ref();
            hooks::host_env(ctx, node, self.id, previous, &artifact.version)
        };
        let targets: Vec<&Node> = self.targets.iter().collect();
        let who = analysis::Hosts {
            canary: targets.clone(),
            baseline: self.others.iter().collect(),
            step: targets.iter().map(|&n| (n, env(n))).collect(),
            env: batch::env(ctx, Some(self.id), &artifact.version, &targets),
        };
        let baked: Vec<Baked> = targets
            .iter()
            .map(|&n| (n, env(n), n.host.role.health.as_ref()))
            .collect();
        match bake::hold(ctx, &label, &who, &baked, t.bake).await {
            Ok(()) => Ok(()),
            Err(Spoiled::Interrupted) => Err(Stop::Interrupted),
            Err(Spoiled::Gate(reason)) => Err(Stop::Said(reason)),
            Err(Spoiled::Unhealthy(k, failure)) => Err(Stop::Unhealthy(k, failure)),
            Err(Spoiled::WentBack) => Err(Stop::Said(format!(
                "a host of {} went back by itself during the {label} (its dead-man switch)",
                self.idle
            ))),
        }
    }

    /// After a step stopped: the weight to 0 first, then `[diagnose]` (a
    /// failed gate: every idle host; a host turned unhealthy: that one),
    /// then the idle colour goes back. 5 (130 for Ctrl-C) when all of it
    /// went, else 1.
    async fn stopped(&self, stop: Stop, artifact: &Artifact, outcomes: &mut [HostOutcome]) -> Exit {
        let ctx = self.ctx;
        let live = self.live.unwrap_or("the live colour");
        let zeroed = match self.weigh(0, None, artifact).await {
            Ok(()) => true,
            Err(e) => {
                ctx.message(
                    Level::Error,
                    None,
                    format!("could not set the traffic weight to 0 before going back: set_local {e}; send the traffic to {live} by hand"),
                );
                false
            }
        };
        let env = |node: &Node| {
            let previous = node.probe.current.as_ref();
            hooks::host_env(ctx, node, self.id, previous, &artifact.version)
        };
        let reason = match stop {
            Stop::Interrupted => None,
            Stop::SetLocal(reason) => Some(reason),
            Stop::Said(reason) => {
                let hosts: Vec<_> = self.targets.iter().map(|n| (n, env(n))).collect();
                bake::diagnose_gate(ctx, &hosts, self.id, &reason).await;
                Some(reason)
            }
            Stop::Unhealthy(k, failure) => {
                let node = &self.targets[k];
                let failure = failure.at(Phase::Health);
                diagnose::collect(ctx, node, self.id, &failure, &env(node)).await;
                let elapsed = outcomes[k].elapsed;
                let id = Some(self.id.to_string());
                outcomes[k] = HostOutcome::failed(node.name(), failure, id, elapsed);
                ctx.report(&outcomes[k]);
                Some(format!(
                    "{} of {} turned unhealthy during a traffic step",
                    node.name(),
                    self.idle
                ))
            }
        };
        let all: Vec<usize> = (0..self.targets.len()).collect();
        let Some(reason) = reason else {
            let why = format!(
                "interrupted during the traffic steps; the traffic is back on {live} and {} goes back to what it had",
                self.idle
            );
            let back = self.back_after_interrupt(outcomes, &all, why).await;
            return policy::after_interrupted_colour(zeroed && back);
        };
        ctx.message(Level::Error, None, format!("rollout stopped: {reason}"));
        let back = go_back(ctx, self.targets, outcomes, &all, self.id, reason).await;
        policy::after_traffic_back(zeroed && back)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn traffic(steps: &[u8]) -> Traffic {
        Traffic {
            steps: steps.to_vec(),
            set_local: vec!["./lb $HOIST_WEIGHT".into()],
            step_bake: Duration::from_secs(5),
        }
    }

    #[test]
    fn steps_weigh_the_idle_colour_against_the_live_one_and_end_at_100() {
        let t = traffic(&[10, 50, 100]);
        let h = handover(Some(&t), true);
        let weights: Vec<(usize, usize, u8)> =
            h.steps.iter().map(|s| (s.index, s.of, s.weight)).collect();
        assert_eq!(weights, [(1, 3, 10), (2, 3, 50), (3, 3, 100)]);
        assert!(h.steps.iter().all(|s| s.bake == Duration::from_secs(5)));
        assert!(!h.full, "the last step is 100 already");
        // Steps that stop short of 100: the rest follows before the switch.
        assert!(handover(Some(&traffic(&[10, 50])), true).full);
    }

    #[test]
    fn no_colour_live_no_steps_but_all_of_it_at_once_and_no_traffic_no_weights() {
        let t = traffic(&[10, 100]);
        let first = handover(Some(&t), false);
        assert!(first.steps.is_empty());
        assert!(first.full);
        let plain = handover(None, true);
        assert!(plain.steps.is_empty());
        assert!(!plain.full);
    }
}
