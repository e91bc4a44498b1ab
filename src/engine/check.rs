//! `hoist check`: can every selected host take a deploy? Changes nothing.

use serde_json::{Value, json};

use super::Context;
use super::fleet;
use super::lock::LockInfo;
use crate::artifact::Artifact;
use crate::config::Host;
use crate::exit::Exit;
use crate::report::{Event, Level, Row};

pub async fn run(ctx: &Context) -> i32 {
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
    let needed_kb = match ctx.config.artifact.clone() {
        Some(spec) => match tokio::task::spawn_blocking(move || Artifact::prepare(&spec)).await {
            Ok(Ok(a)) => Some(a.needed_kb()),
            _ => None,
        },
        None => None,
    };
    let (nodes, unreached) = fleet::reach(ctx).await;
    let mut all_ok = true;
    for host in &ctx.hosts {
        let row = if let Some(node) = nodes.iter().find(|n| n.name() == host.name) {
            let p = &node.probe;
            let mut problems = Vec::new();
            if let Some(path) = &p.not_writable {
                problems.push(format!("{path} not writable"));
            }
            if !p.missing_tools.is_empty() {
                problems.push(format!("missing {}", p.missing_tools.join(", ")));
            }
            if let (Some(free), Some(need)) = (p.free_kb, needed_kb)
                && free < need
            {
                problems.push(format!("{free} KiB free, {need} KiB needed"));
            }
            if let Some(lock) = &p.lock {
                problems.push(format!("locked by {}", LockInfo::describe(lock)));
            }
            all_ok &= problems.is_empty();
            Row {
                table: "check",
                cells: vec![
                    ("host", json!(host.name)),
                    ("ok", json!(problems.is_empty())),
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
                        p.lock
                            .as_deref()
                            .map(|l| json!(LockInfo::describe(l)))
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
                ],
                marked: !problems.is_empty(),
            }
        } else {
            all_ok = false;
            let why = unreached
                .iter()
                .find(|u| u.host == host.name)
                .map(|u| u.failure.to_string())
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
                    ("problem", json!(why)),
                ],
                marked: true,
            }
        };
        ctx.emit(Event::Row(row));
    }
    fleet::close_all(&nodes).await;
    ctx.finish(
        "check",
        if all_ok { Exit::Ok } else { Exit::Preflight },
        None,
        Vec::new(),
    )
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
