//! `hoist status`: where each host is, read-only.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use futures_util::future::join_all;

use crate::engine::fleet::{self, Node};
use crate::engine::preflight::Problem;
use crate::engine::{Context, diagnose};
use crate::exit::Exit;
use crate::release::ReleaseId;
use crate::report::{Diagnostics, Event, Level, Row};

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

pub(crate) async fn run(ctx: &Context, last_failure: bool) -> Exit {
    if last_failure {
        return show_last_failure(ctx).await;
    }
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
    ctx.finish("status", exit, release, &[])
}
