//! `hoist exec -- CMD`: one command on the selected hosts in parallel.

use std::time::Instant;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde_json::json;

use super::fleet::{self, Node};
use super::{Context, Failure, ms};
use crate::exit::Exit;
use crate::remote::q;
use crate::report::{Event, HostResult, HostSummary, OutputStream, Phase, Row};
use crate::transport::Output;

/// Runs in `current` when the host has one, else in deploy_to, else where the shell starts.
fn script(node: &Node, command: &str) -> String {
    let d = q(&node.layout.deploy_to);
    format!(
        "cd {d}/current 2>/dev/null || cd {d} 2>/dev/null; exec sh -c {}",
        q(command)
    )
}

fn emit_output(ctx: &Context, host: &str, out: &Output) {
    for (stream, bytes) in [
        (OutputStream::Stdout, &out.stdout),
        (OutputStream::Stderr, &out.stderr),
    ] {
        for line in String::from_utf8_lossy(bytes).lines() {
            ctx.emit(Event::HostOutput {
                host: host.to_string(),
                stream,
                line: line.to_string(),
            });
        }
    }
}

pub async fn run(ctx: &Context, command: &str, group_output: bool) -> i32 {
    let (nodes, unreached) = fleet::reach(ctx).await;
    fleet::report_unreached(ctx, &unreached);
    let mut pending: FuturesUnordered<_> = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| async move {
            let _permit = ctx.parallel.acquire().await.expect("semaphore open");
            let started = Instant::now();
            ctx.phase(node.name(), Phase::Exec);
            let result: Result<Output, Failure> = node.run(&script(node, command), None).await;
            (i, result, started.elapsed())
        })
        .collect();
    let mut done = Vec::new();
    while let Some((i, result, elapsed)) = pending.next().await {
        if !group_output && let Ok(out) = &result {
            emit_output(ctx, nodes[i].name(), out);
        }
        done.push((i, result, elapsed));
    }
    drop(pending);
    done.sort_by_key(|d| d.0);
    let mut hosts = Vec::new();
    let mut all_ok = unreached.is_empty();
    for (i, result, elapsed) in &done {
        let node = &nodes[*i];
        if group_output && let Ok(out) = result {
            emit_output(ctx, node.name(), out);
        }
        let (code, error) = match result {
            Ok(out) => (out.code, None),
            Err(e) => (None, Some(e.to_string())),
        };
        let ok = code == Some(0);
        all_ok &= ok;
        ctx.emit(Event::Row(Row {
            table: "exec",
            cells: vec![
                ("host", json!(node.name())),
                ("exit_code", json!(code)),
                ("elapsed_ms", json!(ms(*elapsed))),
                ("error", json!(error)),
            ],
            marked: !ok,
        }));
        hosts.push(HostSummary {
            host: node.name().to_string(),
            result: if ok {
                HostResult::Ok
            } else {
                HostResult::Failed
            },
            release: node.probe.current.as_ref().map(|c| c.to_string()),
            error: error.or_else(|| {
                (!ok).then(|| {
                    format!(
                        "exit code {}",
                        code.map(|c| c.to_string()).unwrap_or("none".into())
                    )
                })
            }),
            elapsed_ms: ms(*elapsed),
        });
    }
    for u in &unreached {
        hosts.push(HostSummary {
            host: u.host.clone(),
            result: HostResult::Failed,
            release: None,
            error: Some(u.failure.to_string()),
            elapsed_ms: ms(u.elapsed),
        });
    }
    fleet::close_all(&nodes).await;
    ctx.finish(
        "exec",
        if all_ok { Exit::Ok } else { Exit::Failed },
        None,
        hosts,
    )
}
