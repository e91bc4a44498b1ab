//! `hoist check`: can every selected host take a deploy? Changes nothing.

use serde_json::{Value, json};

use crate::artifact::Artifact;
use crate::config::{Host, HostKeyChecking, HostTransport};
use crate::engine::layout::LockState;
use crate::engine::lock::LockInfo;
use crate::engine::{Context, fleet, preflight};
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
    let (nodes, unreached) = fleet::reach(ctx).await;
    let mut all_ok = true;
    for host in &ctx.hosts {
        let row = if let Some(node) = nodes.iter().find(|n| n.name() == host.name) {
            let p = &node.probe;
            let found = preflight::problems(node, artifact.as_ref());
            let ok = found.iter().all(|p| p.is_warning());
            let problems: Vec<String> = found.iter().map(ToString::to_string).collect();
            all_ok &= ok;
            Row {
                table: "check",
                cells: vec![
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
                            .map(|state| match state {
                                LockState::File(line) => json!(LockInfo::describe(&line)),
                                LockState::Other(what) => json!(format!(".hoist/lock is {what}")),
                            })
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
        &[],
    )
}

/// `check -v`: each effective SSH setting of a host and where it came from
/// (deploy.toml's tables, ~/.ssh/config's Host blocks, or the default).
fn settings_rows(host: &Host) -> Vec<Row> {
    let HostTransport::Ssh(t) = &host.transport else {
        return Vec::new();
    };
    let paths = |list: &[std::path::PathBuf]| {
        if list.is_empty() {
            "(none)".to_string()
        } else {
            list.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let time = |d: std::time::Duration| humantime::format_duration(d).to_string();
    let jump = if t.jump.is_empty() {
        "(none)".to_string()
    } else {
        t.jump
            .iter()
            .map(|j| {
                let user = j.user.as_deref().unwrap_or(&t.user);
                format!("{user}@{}:{}", j.address, j.port)
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    let settings: Vec<(&str, String)> = vec![
        ("address", t.address.clone()),
        ("port", t.port.to_string()),
        ("user", t.user.clone()),
        ("jump", jump),
        ("identity_files", paths(&t.identity_files)),
        ("identities_only", t.identities_only.to_string()),
        ("known_hosts", paths(&t.known_hosts)),
        (
            "host_key_checking",
            match t.host_key_checking {
                HostKeyChecking::Strict => "strict",
                HostKeyChecking::AcceptNew => "accept-new",
                HostKeyChecking::Off => "off",
            }
            .to_string(),
        ),
        (
            "host_key",
            t.host_key.clone().unwrap_or_else(|| "(none)".into()),
        ),
        ("connect_timeout", time(t.connect_timeout)),
        ("command_timeout", time(host.command_timeout)),
        ("keepalive", time(t.keepalive)),
    ];
    settings
        .into_iter()
        .map(|(key, value)| Row {
            table: "settings",
            cells: vec![
                ("host", json!(host.name)),
                ("setting", json!(key)),
                ("value", json!(value)),
                ("from", json!(t.source_of(key))),
            ],
            marked: false,
        })
        .collect()
}
