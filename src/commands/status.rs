//! `hoist status`: where each host is, read-only.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::engine::Context;
use crate::engine::fleet::{self, Node};
use crate::engine::preflight::Problem;
use crate::exit::Exit;
use crate::release::ReleaseId;
use crate::report::{Event, Row};

pub(super) fn opt(v: Option<String>) -> Value {
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

pub(crate) async fn run(ctx: &Context) -> Exit {
    let (nodes, unreached) = fleet::reach(ctx).await;
    let common = majority(&nodes);
    for host in &ctx.hosts {
        let row = if let Some(node) = nodes.iter().find(|n| n.name() == host.name) {
            let current = node.probe.current.as_ref();
            let switch = current.and_then(|c| node.journal.last_switch_to(c));
            let lock = node.probe.lock_state().map(|state| state.describe());
            let differs = current != common.as_ref();
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
            if let Some(target) = &node.probe.current_dangling {
                cells.push((
                    "error",
                    json!(Problem::CurrentMissing(target.clone()).to_string()),
                ));
            }
            Row {
                table: "status",
                cells,
                marked: differs || node.probe.current_dangling.is_some(),
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
    ctx.finish("status", exit, common.map(|c| c.to_string()), &[])
}
