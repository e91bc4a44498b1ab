//! `hoist status`: where each host is, read-only.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use futures_util::future::join_all;

use crate::config::BlueGreen;
use crate::engine::fleet::{self, Node};
use crate::engine::preflight::Problem;
use crate::engine::{Context, blue_green, deadman, diagnose, policy};
use crate::exit::Exit;
use crate::journal::{Entry, Journal};
use crate::release::ReleaseId;
use crate::report::{Diagnostics, Event, Level, Row, style};

/// A field of a journal line that `status` shows when some host has it.
type Stamped = fn(&Entry) -> Option<String>;

/// The environment, reason, source release and CI run of a switch.
const STAMPED: [(&str, Stamped); 4] = [
    ("env", |e| e.env.clone()),
    ("reason", |e| e.reason.clone()),
    ("promoted_from", |e| e.promoted_from.clone()),
    ("ci_url", |e| e.ci_url.clone()),
];

/// A host whose current release was switched to by a run of another
/// environment than the one asked about: said, never taken for this one.
fn other_env(asked: Option<&str>, switch: Option<&Entry>) -> Option<String> {
    let asked = asked?;
    let by = switch?.env.as_deref()?;
    (by != asked).then(|| {
        format!(
            "its current release was switched to by a run for environment {by}, not {asked}: is this host in the right [env.{asked}]?"
        )
    })
}

pub(super) fn opt(v: Option<String>) -> Value {
    v.map(Value::String).unwrap_or(Value::Null)
}

/// The release most hosts are on: the one the others "differ" from.
fn majority<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> Option<ReleaseId> {
    let mut counts: BTreeMap<&ReleaseId, usize> = BTreeMap::new();
    for n in nodes {
        if let Some(c) = &n.probe.current {
            *counts.entry(c).or_default() += 1;
        }
    }
    // Ties go to the newest release.
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(b.0)))
        .map(|(r, _)| r.clone())
}

/// Blue-green: which colour is live by the journals, said in words.
fn live_line(nodes: &[Node], bg: &BlueGreen) -> (Option<String>, String) {
    let colors = &bg.colors;
    let records = blue_green::traffic_records(nodes);
    let now = chrono::Utc::now();
    let color = match policy::live_color(&records) {
        policy::Live::Unknown => {
            return match &bg.live {
                Some(named) => {
                    let other = colors
                        .iter()
                        .find(|c| &c.name != named)
                        .map(|c| c.name.as_str());
                    (
                        Some(named.clone()),
                        format!(
                            "live colour: {named} by blue_green.live (no switch recorded yet): the first deploy goes to {}",
                            other.unwrap_or_default()
                        ),
                    )
                }
                None => (
                    None,
                    format!(
                        "no colour is live yet: the first deploy goes to {} and makes it live",
                        colors[0].name
                    ),
                ),
            };
        }
        policy::Live::Disagree => {
            let said: Vec<String> = records.iter().map(|r| r.describe(now)).collect();
            return (
                None,
                format!(
                    "live colour unknown: the journals disagree ({}); deploy and rollback stop until told which is live with --live {} or --live {}",
                    said.join(", "),
                    colors[0].name,
                    colors[1].name
                ),
            );
        }
        policy::Live::Agreed(color) => color,
    };
    let idle = colors
        .iter()
        .find(|c| c.name != color)
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let text = format!("live colour: {color} ({idle} is idle)");
    (Some(color), text)
}

pub(crate) async fn run(ctx: &Context, last_failure: bool) -> Exit {
    if last_failure {
        return show_last_failure(ctx).await;
    }
    let (nodes, unreached) = fleet::reach(ctx).await;
    let common = majority(&nodes);
    // Blue-green: each colour runs its own release by design, so a host
    // differs only from the rest of its colour.
    let colour_of = |host: &str| {
        ctx.config.blue_green.as_ref().and_then(|bg| {
            bg.colors
                .iter()
                .position(|c| c.hosts.iter().any(|h| h == host))
        })
    };
    let common_of = |host: &str| {
        let colour = colour_of(host);
        majority(nodes.iter().filter(|n| colour_of(n.name()) == colour))
    };
    let blue_green = ctx
        .config
        .blue_green
        .as_ref()
        .map(|bg| (bg, live_line(&nodes, bg)));
    let journals: Vec<&Journal> = nodes.iter().map(|n| &n.journal).collect();
    let waiting = policy::waiting(&journals);
    // Extra cells, only where they mean something: the colour of each host
    // on a blue-green fleet, the release waiting for promotion.
    let extra = |host: &str| {
        let mut cells = Vec::new();
        if let Some((bg, (live, _))) = &blue_green {
            let color = bg.colors.iter().find(|c| c.hosts.iter().any(|h| h == host));
            cells.push(("color", opt(color.map(|c| c.name.clone()))));
            cells.push((
                "live",
                json!(color.is_some_and(|c| Some(&c.name) == live.as_ref())),
            ));
        }
        if let Ok(Some(w)) = &waiting {
            cells.push(("waiting", json!(w.release.to_string())));
        }
        cells
    };
    // What the journals say of each current release's switch, in columns
    // only where some host's journal says it.
    let stamped: Vec<(&'static str, Stamped)> = STAMPED
        .into_iter()
        .filter(|(_, of)| {
            nodes.iter().any(|n| {
                let current = n.probe.current.as_ref();
                current
                    .and_then(|c| n.journal.last_switch_to(c))
                    .is_some_and(|e| of(e).is_some())
            })
        })
        .collect();
    // Hosts that went back by itself since their last deploy: a column
    // when some host did.
    let reverted = nodes.iter().any(|n| n.journal.self_reverted().is_some());
    deadman::tell_found(ctx, &nodes);
    for host in &ctx.hosts {
        let row = if let Some(node) = nodes.iter().find(|n| n.name() == host.name) {
            let current = node.probe.current.as_ref();
            let switch = current.and_then(|c| node.journal.last_switch_to(c));
            let lock = node.probe.lock_state().map(|state| state.describe());
            let differs = current != common_of(&host.name).as_ref();
            let mut cells = vec![
                ("host", json!(host.name)),
                ("release", opt(current.map(|c| c.to_string()))),
                (
                    "version",
                    opt(current.and_then(|c| node.journal.version_of(c))),
                ),
                ("since", opt(switch.map(|s| s.ts.clone()))),
                ("by", opt(switch.map(|s| s.by.clone()))),
                ("lock", opt(lock)),
                ("reachable", json!(true)),
                ("differs", json!(differs)),
            ];
            cells.extend(extra(&host.name));
            if !ctx.config.app.files.is_empty() {
                let changed = node.journal.files_changed().map(|e| e.ts.clone());
                cells.push(("files_changed", opt(changed)));
            }
            for (name, of) in &stamped {
                cells.push((*name, opt(switch.and_then(of))));
            }
            let went_back = node.journal.self_reverted();
            if reverted {
                let said = went_back.map(|e| {
                    style::self_reverted(
                        e.previous.as_deref().unwrap_or_default(),
                        e.release.as_deref(),
                        &deadman::found_reason(e),
                        Some(&e.ts),
                    )
                });
                cells.push(("self_reverted", opt(said)));
            }
            let elsewhere = other_env(ctx.config.env.as_deref(), switch);
            if let Some(text) = &elsewhere {
                ctx.message(Level::Warn, Some(&host.name), text.clone());
            }
            if let Some(target) = &node.probe.current_dangling {
                cells.push((
                    "error",
                    json!(Problem::CurrentMissing(target.clone()).to_string()),
                ));
            }
            Row {
                table: "status",
                cells,
                marked: differs
                    || node.probe.current_dangling.is_some()
                    || elsewhere.is_some()
                    || went_back.is_some(),
            }
        } else {
            let why = unreached
                .iter()
                .find(|u| u.host == host.name)
                .and_then(|u| u.error());
            Row {
                table: "status",
                cells: vec![
                    ("host", json!(host.name)),
                    ("release", Value::Null),
                    ("version", Value::Null),
                    ("since", Value::Null),
                    ("by", Value::Null),
                    ("lock", Value::Null),
                    ("reachable", json!(false)),
                    ("differs", json!(true)),
                ]
                .into_iter()
                .chain(extra(&host.name))
                .chain((!ctx.config.app.files.is_empty()).then_some(("files_changed", Value::Null)))
                .chain(stamped.iter().map(|(name, _)| (*name, Value::Null)))
                .chain(reverted.then_some(("self_reverted", Value::Null)))
                .chain([("error", opt(why))])
                .collect(),
                marked: true,
            }
        };
        ctx.emit(Event::Row(row));
    }
    if let Some((_, (_, line))) = &blue_green {
        ctx.message(Level::Info, None, line.clone());
    }
    match &waiting {
        Ok(Some(w)) => ctx.message(
            Level::Info,
            None,
            format!(
                "{} is waiting for promotion on its canary ({}) since {}, by {}: `hoist promote` carries it on, `hoist abort` rolls it back",
                w.release,
                w.canary.join(", "),
                w.since,
                w.by
            ),
        ),
        Ok(None) => {}
        Err(e) => ctx.message(Level::Warn, None, e.clone()),
    }
    fleet::close_all(&nodes).await;
    let exit = if unreached.is_empty() {
        Exit::Ok
    } else {
        Exit::Preflight
    };
    ctx.finish(exit, common.map(|c| c.to_string()), &[])
}

/// `status --last-failure`: the newest failure record kept on the selected
/// hosts (see `engine::diagnose`), whoever's machine ran that deploy.
async fn show_last_failure(ctx: &Context) -> Exit {
    let (nodes, unreached) = fleet::reach(ctx).await;
    fleet::report_all(ctx, &unreached);
    let found = join_all(nodes.iter().map(diagnose::last)).await;
    let mut newest: Option<Diagnostics> = None;
    for (node, result) in nodes.iter().zip(found) {
        match result {
            Ok(Some(record)) => {
                if newest.as_ref().is_none_or(|n| record.at > n.at) {
                    newest = Some(record);
                }
            }
            Ok(None) => {}
            Err(e) => ctx.message(Level::Warn, Some(node.name()), e),
        }
    }
    fleet::close_all(&nodes).await;
    let release = newest.as_ref().map(|n| n.release.clone());
    match newest {
        Some(record) => ctx.emit(Event::HostDiagnostics(record)),
        None => ctx.message(
            Level::Info,
            None,
            "no failure is recorded on the hosts reached (a host keeps one when it fails after its switch)",
        ),
    }
    let exit = if unreached.is_empty() {
        Exit::Ok
    } else {
        Exit::Preflight
    };
    ctx.finish(exit, release, &[])
}
