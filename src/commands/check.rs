//! `hoist check`: can every selected host take a deploy? Changes nothing.

use serde_json::{Value, json};

use futures_util::future::join_all;

use crate::artifact::Artifact;
use crate::config::Host;
use crate::engine::layout::Layout;
use crate::engine::{Context, HostOutcome, fleet, preflight, shared, sudo};
use crate::exit::Exit;
use crate::report::{Event, Level, Row};

pub(crate) async fn run(ctx: &Context) -> Exit {
    if ctx.verbose {
        for note in &ctx.config.ssh_config_notes {
            ctx.message(Level::Info, None, note.clone());
        }
        for host in &ctx.hosts {
            for row in settings_rows(host) {
                ctx.emit(Event::Row(row));
            }
        }
    }
    let artifact = match ctx.config.artifact.clone() {
        Some(spec) => match tokio::task::spawn_blocking(move || Artifact::prepare(&spec)).await {
            Ok(Ok(a)) => Some(a),
            _ => None,
        },
        None => None,
    };
    if let Err(e) = shared::check_sources(&ctx.config, &ctx.hosts) {
        ctx.message(Level::Error, None, e);
        return ctx.finish(Exit::Usage, None, &[]);
    }
    let (nodes, unreached) = fleet::reach(ctx).await;
    let short = fleet::check_sessions(ctx, &nodes).await;
    let pull = artifact.as_ref().and_then(|a| a.pull.clone());
    // With artifact.url: can each host reach it (a HEAD request)?
    let reaches: Vec<Option<Result<(), String>>> = join_all(nodes.iter().map(|node| {
        let pull = pull.clone();
        async move {
            let pull = pull?;
            let _permit = ctx.parallel.acquire().await.expect("semaphore open");
            Some(
                node.must("reaching artifact.url", &Layout::reach_url(&pull.url), None)
                    .await
                    .map(|_| ())
                    .map_err(|e| {
                        let tail = e.tail().join(" ");
                        format!(
                            "cannot reach {}: {}",
                            pull.url,
                            if tail.is_empty() { e.to_string() } else { tail }
                        )
                    }),
            )
        }
    }))
    .await;
    let shared_problems = shared::problems(ctx, &nodes).await;
    let become_works = sudo::check(ctx, &nodes).await;
    let mut all_ok = true;
    for host in &ctx.hosts {
        let row = if let Some(i) = nodes.iter().position(|n| n.name() == host.name) {
            let node = &nodes[i];
            let p = &node.probe;
            let mut found = preflight::problems(
                p,
                &node.layout.deploy_to,
                artifact.as_ref().map(preflight::Wants::of),
            );
            found.extend(
                shared_problems
                    .iter()
                    .filter(|(n, _)| *n == i)
                    .map(|(_, p)| p.clone()),
            );
            let become_cell = become_works[i].clone().map(|works| match works {
                Ok(()) => json!("ok"),
                Err(why) => {
                    found.push(preflight::Problem::Become {
                        user: ctx.config.hooks.become_user.clone().unwrap_or_default(),
                        reason: why.clone(),
                    });
                    json!(why)
                }
            });
            let sessions = short.iter().find(|o| o.host == host.name);
            let url = reaches[i].as_ref();
            let ok = found.iter().all(|p| p.is_warning())
                && sessions.is_none()
                && url.is_none_or(|r| r.is_ok());
            let problems: Vec<String> = found
                .iter()
                .map(ToString::to_string)
                .chain(sessions.and_then(HostOutcome::error))
                .chain(url.and_then(|r| r.clone().err()))
                .collect();
            all_ok &= ok;
            let mut cells = vec![
                ("host", json!(host.name)),
                ("ok", json!(ok)),
                ("connect", json!("ok")),
                ("writable", json!(p.not_writable.is_none())),
                ("free_kb", json!(p.free_kb)),
                (
                    "tools",
                    json!(if p.missing_tools.is_empty() {
                        "ok".to_string()
                    } else {
                        p.missing_tools.join(",")
                    }),
                ),
                (
                    "lock",
                    p.lock_state()
                        .map(|state| json!(state.describe()))
                        .unwrap_or(Value::Null),
                ),
                (
                    "problem",
                    if problems.is_empty() {
                        Value::Null
                    } else {
                        json!(problems.join("; "))
                    },
                ),
            ];
            if let Some(cell) = become_cell {
                cells.insert(cells.len() - 1, ("become", cell));
            }
            let mut row = Row {
                table: "check",
                cells,
                marked: !problems.is_empty(),
            };
            if let Some(reached) = url {
                // Before `problem`, the last cell.
                let at = row.cells.len() - 1;
                row.cells.insert(
                    at,
                    ("url", json!(if reached.is_ok() { "ok" } else { "failed" })),
                );
            }
            row
        } else {
            all_ok = false;
            let why = unreached
                .iter()
                .find(|u| u.host == host.name)
                .and_then(|u| u.error())
                .unwrap_or_default();
            Row {
                table: "check",
                cells: vec![
                    ("host", json!(host.name)),
                    ("ok", json!(false)),
                    ("connect", json!("failed")),
                    ("writable", Value::Null),
                    ("free_kb", Value::Null),
                    ("tools", Value::Null),
                    ("lock", Value::Null),
                    ("become", Value::Null),
                    ("problem", json!(why)),
                ]
                .into_iter()
                .filter(|(k, _)| *k != "become" || ctx.config.hooks.become_user.is_some())
                .collect(),
                marked: true,
            }
        };
        ctx.emit(Event::Row(row));
    }
    fleet::close_all(&nodes).await;
    ctx.finish(if all_ok { Exit::Ok } else { Exit::Preflight }, None, &[])
}

/// `check -v`: each effective SSH setting of a host and where it came from
/// (deploy.toml's tables, ~/.ssh/config's Host blocks, or the default).
fn settings_rows(host: &Host) -> Vec<Row> {
    crate::config::ssh_settings_rows(host)
        .into_iter()
        .map(|(key, value, from)| Row {
            table: "settings",
            cells: vec![
                ("host", json!(host.name)),
                ("setting", json!(key)),
                ("value", json!(value)),
                ("from", json!(from)),
            ],
            marked: false,
        })
        .collect()
}
