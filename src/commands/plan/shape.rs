//! What `plan` says of a fleet with shape: zones, ordered groups,
//! throttles, and each host's own hooks and health check.

use serde_json::json;

use super::{info, list};
use crate::config::{Amount, Config, Health, HealthCheck, Host};
use crate::report::{Event, Reporter, Row};

/// A health check as `plan` says it.
pub(super) fn describe_health(health: Option<&Health>) -> String {
    match health {
        Some(health) => format!(
            "{} (grace {}, {} retries every {}, timeout {})",
            match &health.check {
                HealthCheck::Command(c) => format!("`{c}` on the host"),
                HealthCheck::Http(u) => format!("GET {u} through the host's connection"),
            },
            humantime::format_duration(health.grace),
            health.retries,
            humantime::format_duration(health.interval),
            humantime::format_duration(health.timeout)
        ),
        None => "(no check)".into(),
    }
}

/// Zones, ordered groups, throttles, and each host's own hooks and health
/// where a group changed them (a `roles` table).
pub(super) fn lines(config: &Config, hosts: &[Host], reporter: &dyn Reporter) {
    let s = &config.strategy;
    if let Some(zones) = &s.zones {
        info(
            reporter,
            format!(
                "zones ({}): {}; waves never mix zones; first_zone_bake {}, zone_bake {} (each host of the zone probed with its own health check); min_healthy_per_zone {}; a failure stops the rollout before the next zone",
                if zones.from_groups {
                    "groups in strategy.zones"
                } else {
                    "vars.zone, sorted"
                },
                zones.order.join(", "),
                humantime::format_duration(zones.first_zone_bake),
                humantime::format_duration(zones.zone_bake),
                match zones.min_healthy {
                    Amount::Hosts(n) => format!("{n} host(s)"),
                    Amount::Percent(p) => format!("{p}% of each zone"),
                }
            ),
        );
    }
    if !s.order.is_empty() {
        let own: Vec<String> = config
            .group_strategies
            .iter()
            .map(|(g, own)| {
                let t = s.for_group(Some(own));
                format!(
                    "{g}: canary {:?}, batch {:?}, parallel {}",
                    t.canary, t.batch, t.parallel
                )
            })
            .collect();
        info(
            reporter,
            format!(
                "order: {} (each group deploys fully, in its own waves, before the next starts; a failure rolls back every switched host of every group){}",
                s.order.join(", then "),
                if own.is_empty() {
                    String::new()
                } else {
                    format!("; {}", own.join("; "))
                }
            ),
        );
    }
    let mut limits: Vec<String> = config
        .hooks
        .throttle
        .limits()
        .iter()
        .map(|(hook, n)| format!("{hook} on at most {n} host(s) at once fleet-wide"))
        .collect();
    for (group, t) in &config.group_throttles {
        limits.extend(
            t.limits()
                .iter()
                .map(|(hook, n)| format!("{hook} on at most {n} host(s) of {group} at once")),
        );
    }
    if !limits.is_empty() {
        info(
            reporter,
            format!(
                "throttle: {} (apart from parallel, which bounds connections and uploads)",
                limits.join("; ")
            ),
        );
    }
    if hosts.iter().all(|h| h.role.overrides.is_empty()) {
        return;
    }
    for host in hosts {
        let role = &host.role;
        let set_by: Vec<String> = role
            .overrides
            .iter()
            .map(|(key, group)| format!("{key} ({group})"))
            .collect();
        reporter.event(&Event::Row(Row {
            table: "roles",
            cells: vec![
                ("host", json!(host.name)),
                ("groups", json!(host.groups.join(","))),
                ("before_switch", json!(list(&role.hooks.before_switch))),
                ("after_switch", json!(list(&role.hooks.after_switch))),
                ("after_rollback", json!(list(&role.hooks.after_rollback))),
                (
                    "health",
                    json!(match role.health.as_ref().map(|h| &h.check) {
                        Some(HealthCheck::Command(c)) => format!("`{c}`"),
                        Some(HealthCheck::Http(u)) => format!("GET {u}"),
                        None => "(no check)".into(),
                    }),
                ),
                ("diagnose", json!(list(&role.diagnose))),
                ("set_by", json!(set_by.join(", "))),
            ],
            marked: !role.overrides.is_empty(),
        }));
    }
}

/// The wave bake and each `[[analysis]]` gate, a line each.
pub(super) fn analysis_lines(config: &crate::config::Config) -> Vec<String> {
    let mut lines = Vec::new();
    let bake = config.strategy.wave_bake;
    if !bake.is_zero() {
        lines.push(format!(
            "wave bake {}: after every wave (the last too) its hosts stay healthy by health check and gates before the rollout goes on (a timed canary bake stands for the canary's)",
            humantime::format_duration(bake)
        ));
    }
    for gate in &config.analysis {
        let count = match gate.count {
            Some(n) => format!("{n} sample(s) per bake"),
            None => "as many samples as the bake holds".into(),
        };
        lines.push(format!(
            "analysis gate {}: {}; every {}, {count}; failure_limit {}, consecutive_errors {}, on_inconclusive {}{}; sampled during the canary bake, wave bakes and zone bakes",
            gate.name,
            gate.provider.describe(),
            humantime::format_duration(gate.interval),
            gate.failure_limit,
            gate.consecutive_errors,
            gate.on_inconclusive.as_str(),
            if gate.dry_run { "; dry run (reports, never stops)" } else { "" }
        ));
    }
    lines
}

/// `[traffic]`: what sets the weights, when, and what a failure does.
pub(super) fn traffic_line(config: &crate::config::Config) -> Option<String> {
    let t = config.traffic.as_ref()?;
    let weights: Vec<String> = t.steps.iter().map(|w| format!("{w}%")).collect();
    let gates: Vec<&str> = config.analysis.iter().map(|g| g.name.as_str()).collect();
    let gates = match gates.as_slice() {
        [] => "the health checks hold".to_string(),
        names => format!(
            "the health checks hold and gates {} sample",
            names.join(", ")
        ),
    };
    if config.blue_green.is_some() {
        let last = match t.steps.last() {
            Some(100) => "",
            _ => ", then 100% (not held)",
        };
        return Some(format!(
            "traffic: between the colours, once the idle colour is healthy: set_local: {} with HOIST_WEIGHT = {} of the traffic to the idle colour in turn (its hosts in HOIST_CANARY_HOSTS, the live colour's in HOIST_BASELINE_HOSTS), each step held {} while {}{last}; then switch_local (if set) and the probe; a failure sets 0% before the idle colour goes back; with no colour live yet, no steps: 100% at once",
            t.set_local.join("; "),
            weights.join(", "),
            humantime::format_duration(t.step_bake),
            gates.replacen("the health checks", "the idle colour's health checks", 1),
        ));
    }
    Some(format!(
        "traffic: after the canary wave, set_local: {} with HOIST_WEIGHT = {} in turn, each step held {} while {gates}; once every wave is done, set_local at 100% with every host; a failure sets 0% before anything goes back",
        t.set_local.join("; "),
        weights.join(", "),
        humantime::format_duration(t.step_bake),
    ))
}
