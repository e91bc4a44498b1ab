//! `hoist status` and `hoist releases`: where the fleet is, read-only.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::Context;
use super::fleet::{self, Node};
use super::lock::LockInfo;
use crate::exit::Exit;
use crate::release::ReleaseId;
use crate::report::{Event, Row};

fn opt(v: Option<String>) -> Value {
    v.map(Value::String).unwrap_or(Value::Null)
}

/// The release most hosts are on: the one the others "differ" from.
fn majority(nodes: &[Node]) -> Option<ReleaseId> {
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

pub async fn status(ctx: &Context) -> i32 {
    let (nodes, unreached) = fleet::reach(ctx).await;
    let common = majority(&nodes);
    for host in &ctx.hosts {
        let row = if let Some(node) = nodes.iter().find(|n| n.name() == host.name) {
            let current = node.probe.current.as_ref();
            let switch = current.and_then(|c| node.journal.last_switch_to(c));
            let lock = node.probe.lock.as_deref().map(LockInfo::describe);
            let differs = current != common.as_ref();
            Row {
                table: "status",
                cells: vec![
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
                ],
                marked: differs,
            }
        } else {
            let why = unreached
                .iter()
                .find(|u| u.host == host.name)
                .map(|u| u.failure.to_string());
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
                    ("error", opt(why)),
                ],
                marked: true,
            }
        };
        ctx.emit(Event::Row(row));
    }
    fleet::close_all(&nodes).await;
    let exit = if unreached.is_empty() {
        Exit::Ok
    } else {
        Exit::Preflight
    };
    ctx.finish("status", exit, common.map(|c| c.to_string()), Vec::new())
}

/// Per release: hosts holding it, hosts where it is current, its version,
/// whether it was ever rolled back.
type Holding = (Vec<String>, Vec<String>, Option<String>, bool);

pub async fn releases(ctx: &Context) -> i32 {
    let (nodes, unreached) = fleet::reach(ctx).await;
    fleet::report_unreached(ctx, &unreached);
    let mut all: BTreeMap<ReleaseId, Holding> = BTreeMap::new();
    for node in &nodes {
        let bad = node.journal.bad_releases();
        for (id, _) in &node.probe.releases {
            let entry = all.entry(id.clone()).or_default();
            entry.0.push(node.name().to_string());
            if node.probe.current.as_ref() == Some(id) {
                entry.1.push(node.name().to_string());
            }
            if entry.2.is_none() {
                entry.2 = node.journal.version_of(id);
            }
            entry.3 |= bad.iter().any(|b| b == id.as_str());
        }
    }
    let total = nodes.len();
    for (id, (on, current, version, rolled_back)) in all.into_iter().rev() {
        let partial = on.len() < total;
        ctx.emit(Event::Row(Row {
            table: "releases",
            cells: vec![
                ("release", json!(id.to_string())),
                ("version", opt(version)),
                ("hosts", json!(on.len())),
                ("of", json!(total)),
                ("current_on", json!(current)),
                ("rolled_back", json!(rolled_back)),
            ],
            marked: partial,
        }));
    }
    fleet::close_all(&nodes).await;
    let exit = if unreached.is_empty() {
        Exit::Ok
    } else {
        Exit::Preflight
    };
    ctx.finish("releases", exit, None, Vec::new())
}
