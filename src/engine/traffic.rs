//! `[traffic]` `set_local`: one weight set on the load balancer, with the
//! hosts on the new release and on the old one named. Shared by the
//! rolling executor (steps after the canary) and blue-green (steps between
//! the colours).

use super::fleet::Node;
use super::{Context, batch, hooks};
use crate::release::ReleaseId;
use crate::report::Event;

/// One weight to set.
pub(crate) struct Weight<'a> {
    /// Percent of the traffic the new release gets.
    pub weight: u8,
    /// The step (1-based) of how many; none for the weight set to 0 when
    /// the rollout stops or to 100 once it is done.
    pub step: Option<usize>,
    pub steps: usize,
    /// On the new release right now.
    pub canary: Vec<&'a Node>,
    /// On the old one.
    pub baseline: Vec<&'a Node>,
    /// Blue-green: the colour of `canary`, and of `baseline`
    /// (`HOIST_COLOR`, `HOIST_PREVIOUS_COLOR`).
    pub colors: Option<(&'a str, &'a str)>,
}

/// Runs `set_local` for `w` (one load-balancer hook at a time), says so
/// (a `traffic_step` event), and returns why it did not pass. Nothing
/// without `[traffic]`.
pub(crate) async fn set(
    ctx: &Context,
    release: Option<&ReleaseId>,
    version: &str,
    w: &Weight<'_>,
) -> Result<(), String> {
    let Some(traffic) = &ctx.config.traffic else {
        return Ok(());
    };
    let mut env = batch::env(ctx, release, version, &w.canary);
    env.extend(variables(w));
    let ran = {
        let _one = ctx.throttle.load_balancer().await;
        hooks::run_local(ctx, "set_local", &traffic.set_local, &env).await
    };
    let error = ran.err().map(|e| e.to_string());
    ctx.emit(Event::TrafficStep {
        step: w.step,
        steps: w.steps,
        weight: w.weight,
        canary: names(&w.canary),
        baseline: names(&w.baseline),
        color: w.colors.map(|(c, _)| c.to_string()),
        outcome: if error.is_none() { "ok" } else { "failed" }.into(),
        error: error.clone(),
    });
    match error {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

/// HOIST_WEIGHT and who is on which side, names and addresses.
fn variables(w: &Weight<'_>) -> Vec<(String, String)> {
    let addresses = |nodes: &[&Node]| {
        nodes
            .iter()
            .map(|n| batch::address(n))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let colors = w.colors.into_iter().flat_map(|(color, previous)| {
        [
            ("HOIST_COLOR".to_string(), color.to_string()),
            ("HOIST_PREVIOUS_COLOR".to_string(), previous.to_string()),
        ]
    });
    let mut vars: Vec<(String, String)> = vec![
        ("HOIST_WEIGHT".into(), w.weight.to_string()),
        ("HOIST_CANARY_HOSTS".into(), names(&w.canary).join(" ")),
        ("HOIST_BASELINE_HOSTS".into(), names(&w.baseline).join(" ")),
        ("HOIST_CANARY_ADDRESSES".into(), addresses(&w.canary)),
        ("HOIST_BASELINE_ADDRESSES".into(), addresses(&w.baseline)),
    ];
    vars.extend(colors);
    vars
}

fn names(nodes: &[&Node]) -> Vec<String> {
    nodes.iter().map(|n| n.name().to_string()).collect()
}
