//! Analysis gates, sampled during the rollout's bakes (a timed
//! canary_pause, `wave_bake`, a zone bake): each gate takes a sample every
//! `interval`, its samples add up as [`gate`] says, and a gate that fails
//! ends the step with the reason the rollout stops.

pub(crate) mod gate;
mod provider;

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::Value;

use super::Context;
use super::fleet::Node;
use crate::config::analysis::Gate;
use crate::report::{Event, Level};
use gate::{Act, Limits, Standing, Tally, WouldHave, act};
use provider::Sample;

/// Who a step's samples are about.
pub(crate) struct Hosts<'a> {
    /// On the new release right now.
    pub canary: Vec<&'a Node>,
    /// Still on the old one.
    pub baseline: Vec<&'a Node>,
    /// The step's hosts, each with its hook variables (`host_command`).
    pub step: Vec<(&'a Node, Vec<(String, String)>)>,
    /// The local hooks' variables (`command`).
    pub env: Vec<(String, String)>,
}

impl Hosts<'_> {
    fn canary_names(&self) -> Vec<&str> {
        self.canary.iter().map(|n| n.name()).collect()
    }

    fn baseline_names(&self) -> Vec<&str> {
        self.baseline.iter().map(|n| n.name()).collect()
    }

    /// A regex of `nodes`: each one's `instance` var, or its name.
    fn regex(&self, nodes: &[&Node]) -> String {
        let names: Vec<&str> = nodes
            .iter()
            .map(|n| n.host.vars.get("instance").map_or(n.name(), String::as_str))
            .collect();
        provider::regex_of(&names)
    }
}

/// How long a step with `gates` lasts at least: every gate with a `count`
/// takes all its samples.
pub(crate) fn length(gates: &[Gate], bake: Duration) -> Duration {
    gates
        .iter()
        .filter_map(|g| g.count.map(|c| g.interval * c))
        .fold(bake, Duration::max)
}

/// Runs every gate over one step of `length` (`step` names it). `Err`:
/// why the rollout stops (a gate failed, or was inconclusive and not let
/// through, or Ctrl-C).
pub(crate) async fn step(
    ctx: &Context,
    step: &str,
    hosts: &Hosts<'_>,
    length: Duration,
) -> Result<(), String> {
    let gates = &ctx.config.analysis;
    let ended = join_all(gates.iter().map(|g| one_gate(ctx, g, step, hosts, length))).await;
    ended.into_iter().collect::<Result<Vec<()>, String>>()?;
    Ok(())
}

/// One gate through one step: its samples until it stands decided.
async fn one_gate(
    ctx: &Context,
    gate: &Gate,
    step: &str,
    hosts: &Hosts<'_>,
    length: Duration,
) -> Result<(), String> {
    let count = gate
        .count
        .unwrap_or_else(|| (length.as_millis() / gate.interval.as_millis().max(1)) as u32)
        .max(1);
    let limits = Limits {
        count,
        failure_limit: gate.failure_limit,
        consecutive_errors: gate.consecutive_errors,
    };
    let mut tally = Tally::default();
    let mut last: Vec<Value> = Vec::new();
    let standing = loop {
        tokio::select! {
            _ = tokio::time::sleep(gate.interval) => {}
            _ = ctx.cancel.cancelled() => return Err("interrupted during the bake".into()),
        }
        // A sample must come before the next is due.
        let timeout = gate.interval.max(Duration::from_secs(5));
        let sample = provider::sample(ctx, &gate.provider, hosts, timeout).await;
        let standing = tally.add(sample.reading, limits);
        emit(ctx, gate, step, &sample, tally.taken, count);
        last.push(sample.value);
        if standing != Standing::Going {
            break standing;
        }
    };
    let values = last
        .iter()
        .rev()
        .take(3)
        .rev()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let what = match standing {
        Standing::Failed => format!(
            "{} of {} sample(s) failed (failure_limit {})",
            tally.failed, tally.taken, gate.failure_limit
        ),
        _ => format!("inconclusive after {} sample(s)", tally.taken),
    };
    let said = format!(
        "gate {} {what} during the {step}; last values: {values}",
        gate.name
    );
    match act(standing, gate.on_inconclusive, gate.dry_run) {
        Act::GoOn => Ok(()),
        Act::Stop => Err(said),
        Act::GoOnInconclusive => {
            ctx.message(
                Level::Warn,
                None,
                format!("{said}; on_inconclusive = \"pass\": going on"),
            );
            Ok(())
        }
        Act::WouldHave(would) => {
            let would = match would {
                WouldHave::Stopped => "stopped the rollout",
                WouldHave::Asked => "paused the rollout to ask",
            };
            ctx.message(
                Level::Warn,
                None,
                format!("{said}; dry_run: it would have {would}; going on"),
            );
            Ok(())
        }
        Act::Ask => {
            let question = format!("{said}. Go on with the rollout?");
            match tokio::task::block_in_place(|| ctx.reporter.confirm(&question)) {
                Some(true) => Ok(()),
                Some(false) => Err(format!("{said}; not let through")),
                None => Err(format!(
                    "{said}; on_inconclusive = \"pause\" and there is no terminal to ask"
                )),
            }
        }
    }
}

fn emit(ctx: &Context, gate: &Gate, step: &str, sample: &Sample, taken: u32, count: u32) {
    ctx.emit(Event::Analysis {
        gate: gate.name.clone(),
        step: step.to_string(),
        sample: taken,
        count,
        value: sample.value.clone(),
        verdict: sample.reading.as_str().to_string(),
        dry_run: gate.dry_run,
        error: sample.error.clone(),
    });
}
