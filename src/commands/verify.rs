//! `hoist verify`: is each host's current release still what was deployed?
//! Each host lists its current release (hashing every file) against the
//! manifest recorded with it; read-only. What `[app] ignore` covers is
//! left out of both; files only added (by the app, most likely) are told
//! apart from files changed or removed.

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::engine::Context;
use crate::engine::fleet::{self, Node};
use crate::engine::layout_release::Listing;
use crate::exit::Exit;
use crate::ignore::Ignore;
use crate::manifest::{Diff, Manifest, display};
use crate::report::{Event, Level, Row};

/// How one host's current release compares with its manifest.
enum Verdict {
    Same,
    Differs {
        diff: Diff,
        recorded: Manifest,
        actual: Manifest,
    },
    NoManifest,
    NoCurrent,
    Failed(String),
}

pub(crate) async fn run(ctx: &Context) -> Exit {
    let (nodes, unreached) = fleet::reach(ctx).await;
    let shared = ctx.config.app.shared_paths();
    let ignore = Ignore::new(&ctx.config.app.ignore).unwrap_or_default();
    let verdicts = join_all(nodes.iter().map(|node| {
        let (shared, ignore) = (&shared, &ignore);
        async move {
            let _permit = ctx.parallel.acquire().await.expect("semaphore open");
            verdict(node, shared, ignore).await
        }
    }))
    .await;
    let mut differs = 0;
    let mut only_added = 0;
    let mut file_rows = Vec::new();
    for host in &ctx.hosts {
        let at = nodes.iter().position(|n| n.name() == host.name);
        let (release, verdict) = match at {
            Some(i) => (nodes[i].current(), &verdicts[i]),
            None => {
                let why = unreached
                    .iter()
                    .find(|u| u.host == host.name)
                    .and_then(|u| u.error())
                    .unwrap_or_default();
                ctx.emit(row(&host.name, None, "unreachable", None, Some(why)));
                continue;
            }
        };
        let event = match verdict {
            Verdict::Same => row(&host.name, release, "ok", None, None),
            Verdict::Differs {
                diff,
                recorded,
                actual,
            } => {
                differs += 1;
                let added = diff.changed.is_empty() && diff.removed.is_empty();
                if added {
                    only_added += 1;
                }
                for (change, paths) in [
                    ("changed", &diff.changed),
                    ("added", &diff.added),
                    ("removed", &diff.removed),
                ] {
                    for path in paths {
                        let how = match change {
                            "changed" => actual
                                .explain(recorded, path)
                                .map_or(change.to_string(), |e| format!("changed ({e})")),
                            _ => change.to_string(),
                        };
                        file_rows.push(Row {
                            table: "verify_files",
                            cells: vec![
                                ("host", json!(host.name)),
                                ("change", json!(how)),
                                ("path", json!(display(path))),
                            ],
                            marked: true,
                        });
                    }
                }
                let result = if added { "added" } else { "differs" };
                row(&host.name, release, result, Some(diff), None)
            }
            Verdict::NoManifest => {
                ctx.message(
                    Level::Warn,
                    Some(&host.name),
                    "its current release has no manifest (deployed before hoist kept them): it cannot be verified until the next deploy",
                );
                row(&host.name, release, "no manifest", None, None)
            }
            Verdict::NoCurrent => row(&host.name, None, "no current release", None, None),
            Verdict::Failed(e) => row(&host.name, release, "error", None, Some(e.clone())),
        };
        ctx.emit(event);
    }
    for r in file_rows {
        ctx.emit(Event::Row(r));
    }
    if only_added > 0 {
        ctx.message(
            Level::Info,
            None,
            format!(
                "{only_added} host(s) only have files added since the switch, none changed or removed: most likely written by the app; list such paths in `ignore` in [app] to leave them out of verify and deltas"
            ),
        );
    }
    fleet::close_all(&nodes).await;
    let failed = verdicts.iter().any(|v| matches!(v, Verdict::Failed(_)));
    let exit = if differs > 0 {
        Exit::Failed
    } else if !unreached.is_empty() || failed {
        Exit::Preflight
    } else {
        Exit::Ok
    };
    ctx.finish(exit, None, &[])
}

/// The shared paths (links into `shared/`, which differ per host) and
/// what `ignore` covers are left out of both sides.
async fn verdict(node: &Node, shared: &[String], ignore: &Ignore) -> Verdict {
    let Some(current) = &node.probe.current else {
        return Verdict::NoCurrent;
    };
    let out = match node
        .must(
            "listing the current release",
            &node.layout.verify_listing(current),
            None,
        )
        .await
    {
        Ok(out) => out,
        Err(e) => return Verdict::Failed(e.to_string()),
    };
    let listing = match Listing::parse(&out.stdout) {
        Ok(l) => l,
        Err(e) => return Verdict::Failed(e),
    };
    let Some(recorded) = listing.recorded else {
        return Verdict::NoManifest;
    };
    let parsed = Manifest::parse(&recorded).and_then(|r| {
        let actual = Manifest::parse(&listing.actual)?;
        Ok((
            r.for_release(shared).without(ignore),
            actual.for_release(shared).without(ignore),
        ))
    });
    match parsed {
        Ok((recorded, actual)) => {
            let diff = actual.diff_from(&recorded);
            if diff.is_empty() {
                Verdict::Same
            } else {
                Verdict::Differs {
                    diff,
                    recorded,
                    actual,
                }
            }
        }
        Err(e) => Verdict::Failed(format!("{e:#}")),
    }
}

fn row(
    host: &str,
    release: Option<String>,
    result: &str,
    diff: Option<&Diff>,
    error: Option<String>,
) -> Event {
    let paths = |list: Option<&Vec<Vec<u8>>>| {
        Value::Array(
            list.map(|l| l.iter().map(|p| json!(display(p))).collect())
                .unwrap_or_default(),
        )
    };
    Event::Row(Row {
        table: "verify",
        cells: vec![
            ("host", json!(host)),
            ("release", release.map(Value::String).unwrap_or(Value::Null)),
            ("result", json!(result)),
            ("changed", paths(diff.map(|d| &d.changed))),
            ("added", paths(diff.map(|d| &d.added))),
            ("removed", paths(diff.map(|d| &d.removed))),
            ("error", error.map(Value::String).unwrap_or(Value::Null)),
        ],
        marked: result != "ok",
    })
}
