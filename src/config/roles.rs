//! Fleets with shape: each group's `[groups.<g>.hooks|health|diagnose]`
//! laid key by key over the top-level tables into each host's [`Role`]
//! (two groups of a host that disagree on a key are an error naming both),
//! the group's throttle and strategy, and the zones hosts are in.

use std::collections::BTreeMap;
use std::time::Duration;

use super::ConfigError;
use super::doc::Doc;
use super::file::{RawGroupHealth, RawGroupHooks, RawOverrides, RawThrottle};
use super::model::{
    Amount, GroupStrategy, Health, HealthCheck, Hooks, Host, Role, Throttle, WaveBy, Zones,
};
use super::values::{AmountOrNone, Dur, Name, WaveByValue};

/// One key a group overrides, with its value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Commands(Vec<String>),
    /// `None`: `enabled = false`, no check.
    Check(Option<HealthCheck>),
    Retries(u32),
    Time(Duration),
    /// A strategy key, as written (the ordered group's waves use it).
    Strategy(String),
}

/// What one group's tables override, resolved.
#[derive(Debug, Clone, Default)]
pub struct Override {
    /// ("hooks.after_switch", value): the keys it sets for its hosts.
    settings: Vec<(&'static str, Value)>,
    pub throttle: Throttle,
    pub strategy: GroupStrategy,
}

pub fn throttle(raw: Option<RawThrottle>) -> Throttle {
    raw.map_or_else(Throttle::default, |t| Throttle {
        before_switch: t.before_switch.map(|n| n.0),
        after_switch: t.after_switch.map(|n| n.0),
        after_rollback: t.after_rollback.map(|n| n.0),
    })
}

impl Override {
    /// `[groups.<group>.*]` as written in `doc`.
    pub fn read(group: &str, raw: RawOverrides, doc: &Doc) -> Result<Override, ConfigError> {
        let mut own = Override::default();
        if let Some(hooks) = raw.hooks {
            own.hooks(hooks);
        }
        if let Some(health) = raw.health {
            own.health(health)
                .map_err(|(key, e)| doc.error(&["groups", group, "health", key], e))?;
        }
        if let Some(commands) = raw.diagnose.and_then(|d| d.commands) {
            own.settings
                .push(("diagnose.commands", Value::Commands(commands.0)));
        }
        if let Some(s) = raw.strategy {
            own.strategy = GroupStrategy {
                canary: s.canary.map(|a| a.0),
                batch: s.batch.map(|b| b.0),
                parallel: s.parallel.map(|p| p.0),
            };
            let g = &own.strategy;
            for (key, set) in [
                ("strategy.canary", g.canary.map(|a| format!("{a:?}"))),
                ("strategy.batch", g.batch.as_ref().map(|b| format!("{b:?}"))),
                ("strategy.parallel", g.parallel.map(|p| p.to_string())),
            ] {
                if let Some(value) = set {
                    own.settings.push((key, Value::Strategy(value)));
                }
            }
        }
        Ok(own)
    }

    fn hooks(&mut self, raw: RawGroupHooks) {
        for (key, list) in [
            ("hooks.before_switch", raw.before_switch),
            ("hooks.after_switch", raw.after_switch),
            ("hooks.after_rollback", raw.after_rollback),
            ("hooks.after_files", raw.after_files),
        ] {
            if let Some(list) = list {
                self.settings.push((key, Value::Commands(list.0)));
            }
        }
        self.throttle = throttle(raw.throttle);
    }

    fn health(&mut self, raw: RawGroupHealth) -> Result<(), (&'static str, String)> {
        let tuned = raw.retries.is_some()
            || raw.interval.is_some()
            || raw.timeout.is_some()
            || raw.grace.is_some();
        let check = match (raw.enabled, raw.command, raw.http) {
            (Some(false), None, None) if !tuned => Some(None),
            (Some(false), ..) => {
                return Err((
                    "enabled",
                    "enabled = false leaves this group's hosts without a health check; remove the other keys".into(),
                ));
            }
            (_, Some(_), Some(_)) => {
                return Err(("command", "set one of `command` or `http`, not both".into()));
            }
            (_, Some(command), None) if command.trim().is_empty() => {
                return Err(("command", "the command is empty".into()));
            }
            (_, Some(command), None) => Some(Some(HealthCheck::Command(command))),
            (_, None, Some(url)) => {
                super::resolve::check_http_url(&url).map_err(|e| ("http", e))?;
                Some(Some(HealthCheck::Http(url)))
            }
            (_, None, None) => None,
        };
        if let Some(check) = check {
            self.settings.push(("health.check", Value::Check(check)));
        }
        if let Some(r) = raw.retries {
            let r = r.0.min(u32::MAX as usize) as u32;
            self.settings.push(("health.retries", Value::Retries(r)));
        }
        for (key, d) in [
            ("health.interval", raw.interval),
            ("health.timeout", raw.timeout.map(|t| Dur(t.0))),
            ("health.grace", raw.grace),
        ] {
            if let Some(d) = d {
                self.settings.push((key, Value::Time(d.0)));
            }
        }
        Ok(())
    }
}

/// What every host's role starts from.
pub struct Top<'a> {
    pub hooks: &'a Hooks,
    pub health: Option<&'a Health>,
    pub diagnose: &'a [String],
    /// `[hooks] after_rollback` was written (else it follows after_switch).
    pub after_rollback_set: bool,
}

/// `host`'s role: `top` with its groups' overrides. Two of its groups
/// setting one key differently is an error naming both and the key.
pub fn role(
    host: &Host,
    top: &Top,
    overrides: &BTreeMap<String, Override>,
) -> Result<Role, String> {
    let mut chosen: BTreeMap<&str, (&str, &Value)> = BTreeMap::new();
    for group in &host.groups {
        let Some(own) = overrides.get(group) else {
            continue;
        };
        for (key, value) in &own.settings {
            match chosen.get(key) {
                Some((other, set)) if *set != value => {
                    return Err(format!(
                        "host `{}` is in groups `{other}` and `{group}`, which set `{key}` differently; set it in one of them only",
                        host.name
                    ));
                }
                Some(_) => {}
                None => {
                    chosen.insert(key, (group, value));
                }
            }
        }
    }
    let mut role = Role {
        hooks: top.hooks.clone(),
        health: top.health.cloned(),
        diagnose: top.diagnose.to_vec(),
        zone: None,
        overrides: Vec::new(),
    };
    if let Some((_, Value::Check(check))) = chosen.get("health.check") {
        role.health = check.clone().map(|check| Health {
            check: check.clone(),
            ..top.health.cloned().unwrap_or_else(|| Health::new(check))
        });
    }
    for (key, (group, value)) in &chosen {
        role.overrides.push((key.to_string(), group.to_string()));
        let health = role.health.as_mut();
        match (*key, value, health) {
            ("hooks.before_switch", Value::Commands(c), _) => role.hooks.before_switch = c.clone(),
            ("hooks.after_switch", Value::Commands(c), _) => {
                role.hooks.after_switch = c.clone();
                if !top.after_rollback_set && !chosen.contains_key("hooks.after_rollback") {
                    role.hooks.after_rollback = c.clone();
                }
            }
            ("hooks.after_rollback", Value::Commands(c), _) => {
                role.hooks.after_rollback = c.clone()
            }
            ("hooks.after_files", Value::Commands(c), _) => role.hooks.after_files = c.clone(),
            ("diagnose.commands", Value::Commands(c), _) => role.diagnose = c.clone(),
            // Read by the plan from the ordered group itself.
            ("health.check" | "strategy.canary" | "strategy.batch" | "strategy.parallel", ..) => {}
            ("health.retries", Value::Retries(r), Some(h)) => h.retries = *r,
            ("health.interval", Value::Time(d), Some(h)) => h.interval = *d,
            ("health.timeout", Value::Time(d), Some(h)) => h.timeout = *d,
            ("health.grace", Value::Time(d), Some(h)) => h.grace = *d,
            (key, _, None) => {
                return Err(format!(
                    "group `{group}` sets `{key}` for host `{}`, which has no health check; set `command` or `http` in [groups.{group}.health] or in [health]",
                    host.name
                ));
            }
            (key, value, _) => unreachable!("{key} = {value:?}"),
        }
    }
    Ok(role)
}

/// The zone keys of `[strategy]`, as written.
pub struct ZoneKeys {
    pub wave_by: Option<WaveByValue>,
    pub zones: Option<Vec<Name>>,
    pub first_zone_bake: Option<Dur>,
    pub zone_bake: Option<Dur>,
    pub min_healthy_per_zone: Option<AmountOrNone>,
}

impl ZoneKeys {
    pub fn empty() -> ZoneKeys {
        ZoneKeys {
            wave_by: None,
            zones: None,
            first_zone_bake: None,
            zone_bake: None,
            min_healthy_per_zone: None,
        }
    }

    /// The zone keys written without `wave_by = "zone"`.
    fn stray(&self) -> Option<&'static str> {
        [
            ("zones", self.zones.is_some()),
            ("first_zone_bake", self.first_zone_bake.is_some()),
            ("zone_bake", self.zone_bake.is_some()),
            ("min_healthy_per_zone", self.min_healthy_per_zone.is_some()),
        ]
        .into_iter()
        .find_map(|(key, set)| set.then_some(key))
    }
}

/// `wave_by = "zone"`: every host's zone (set in its role) and the zones'
/// order. Every host must be in exactly one zone.
pub fn zones(
    keys: ZoneKeys,
    hosts: &mut [Host],
    groups: &BTreeMap<String, Vec<String>>,
    doc: &Doc,
) -> Result<Option<Zones>, ConfigError> {
    if keys.wave_by.map(|w| w.0) != Some(WaveBy::Zone) {
        return match keys.stray() {
            Some(key) => Err(doc.error(
                &["strategy", key],
                "this key shapes a zone-by-zone rollout: set wave_by = \"zone\" too",
            )),
            None => Ok(None),
        };
    }
    let at = |e: String| doc.error(&["strategy", "zones"], e);
    let listed: Option<Vec<String>> = keys
        .zones
        .map(|z| z.into_iter().map(|n| n.0).collect::<Vec<_>>());
    let order = match &listed {
        Some(list) => {
            if list.is_empty() {
                return Err(at(
                    "list at least one zone (a group of the inventory)".into()
                ));
            }
            for (i, zone) in list.iter().enumerate() {
                if !groups.contains_key(zone) {
                    return Err(at(format!(
                        "{zone:?} is not a group of the inventory (groups: {})",
                        groups.keys().cloned().collect::<Vec<_>>().join(", ")
                    )));
                }
                if list[..i].contains(zone) {
                    return Err(at(format!("{zone:?} is listed twice")));
                }
            }
            for host in hosts.iter_mut() {
                let mine: Vec<&String> = list
                    .iter()
                    .filter(|z| groups[*z].contains(&host.name))
                    .collect();
                match mine.as_slice() {
                    [one] => host.role.zone = Some(one.to_string()),
                    [] => {
                        return Err(at(format!(
                            "host `{}` is in none of the zones; add it to one of: {}",
                            host.name,
                            list.join(", ")
                        )));
                    }
                    [a, b, ..] => {
                        return Err(at(format!(
                            "host `{}` is in zones `{a}` and `{b}`; a host is in one zone",
                            host.name
                        )));
                    }
                }
            }
            list.clone()
        }
        None => {
            let mut names: Vec<String> = Vec::new();
            for host in hosts.iter_mut() {
                let Some(zone) = host.vars.get("zone") else {
                    return Err(doc.error(
                        &["strategy", "wave_by"],
                        format!(
                            "host `{}` has no zone: set vars = {{ zone = \"...\" }} on it or its group, or list zone groups in strategy.zones",
                            host.name
                        ),
                    ));
                };
                host.role.zone = Some(zone.clone());
                if !names.contains(zone) {
                    names.push(zone.clone());
                }
            }
            names.sort();
            names
        }
    };
    let min_healthy = keys.min_healthy_per_zone.map_or(Amount::Hosts(0), |a| a.0);
    for zone in &order {
        let size = hosts
            .iter()
            .filter(|h| h.role.zone.as_ref() == Some(zone))
            .count();
        if size > 0 && size <= min_healthy.of(size) {
            return Err(doc.error(
                &["strategy", "min_healthy_per_zone"],
                format!(
                    "zone {zone} has {size} host(s) and this keeps {} of them in service: none of it could ever be deployed",
                    min_healthy.of(size)
                ),
            ));
        }
    }
    Ok(Some(Zones {
        order,
        from_groups: listed.is_some(),
        first_zone_bake: keys.first_zone_bake.map_or(Duration::ZERO, |d| d.0),
        zone_bake: keys.zone_bake.map_or(Duration::ZERO, |d| d.0),
        min_healthy,
    }))
}

/// `strategy.order`: groups of the inventory, each once, that hold every host.
pub fn order(
    order: Option<Vec<Name>>,
    hosts: &[Host],
    groups: &BTreeMap<String, Vec<String>>,
    doc: &Doc,
) -> Result<Vec<String>, ConfigError> {
    let Some(order) = order else {
        return Ok(Vec::new());
    };
    let order: Vec<String> = order.into_iter().map(|n| n.0).collect();
    let at = |e: String| doc.error(&["strategy", "order"], e);
    if order.is_empty() {
        return Err(at(
            "list the groups in the order they deploy, e.g. [\"migrator\", \"worker\", \"web\"]"
                .into(),
        ));
    }
    for (i, group) in order.iter().enumerate() {
        if !groups.contains_key(group) {
            return Err(at(format!(
                "{group:?} is not a group of the inventory (groups: {})",
                groups.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        if order[..i].contains(group) {
            return Err(at(format!("{group:?} is listed twice")));
        }
    }
    let outside: Vec<&str> = hosts
        .iter()
        .filter(|h| !order.iter().any(|g| h.groups.contains(g)))
        .map(|h| h.name.as_str())
        .collect();
    if !outside.is_empty() {
        return Err(at(format!(
            "every host must be in one of these groups; in none: {}",
            outside.join(", ")
        )));
    }
    Ok(order)
}
