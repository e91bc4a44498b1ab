//! `hoist releases`: the releases the fleet holds, read-only.

use std::collections::BTreeMap;

use serde_json::json;

use super::status::opt;
use crate::engine::Context;
use crate::engine::fleet;
use crate::exit::Exit;
use crate::release::ReleaseId;
use crate::report::{Event, Row};

/// Per release: hosts holding it, hosts where it is current, its version,
/// whether it was ever rolled back.
type Holding = (Vec<String>, Vec<String>, Option<String>, bool);

pub(crate) async fn run(ctx: &Context) -> Exit {
    let (nodes, unreached) = fleet::reach(ctx).await;
    fleet::report_all(ctx, &unreached);
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
    // The environment and reason each release was deployed with, where a
    // journal says it.
    let stamp_of = |id: &ReleaseId| {
        let entry = nodes.iter().find_map(|n| n.journal.deploy_of(id));
        (
            entry.and_then(|e| e.env.clone()),
            entry.and_then(|e| e.reason.clone()),
        )
    };
    let stamps: BTreeMap<ReleaseId, (Option<String>, Option<String>)> =
        all.keys().map(|id| (id.clone(), stamp_of(id))).collect();
    let has_env = stamps.values().any(|s| s.0.is_some());
    let has_reason = stamps.values().any(|s| s.1.is_some());
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
            ]
            .into_iter()
            .chain(has_env.then(|| ("env", opt(stamps[&id].0.clone()))))
            .chain(has_reason.then(|| ("reason", opt(stamps[&id].1.clone()))))
            .collect(),
            marked: partial,
        }));
    }
    fleet::close_all(&nodes).await;
    let exit = if unreached.is_empty() {
        Exit::Ok
    } else {
        Exit::Preflight
    };
    ctx.finish(exit, None, &[])
}
