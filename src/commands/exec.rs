//! `hoist exec -- CMD`: one command on the selected hosts in parallel.

use std::time::Instant;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde_json::json;

use crate::engine::fleet::{self, Node};
use crate::engine::layout::q;
use crate::engine::{Context, Failure, HostOutcome, ms};
use crate::exit::Exit;
use crate::report::{Event, OutputStream, Phase, Row};
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

pub(crate) async fn run(ctx: &Context, command: &str, group_output: bool) -> Exit {
    let (nodes, unreached) = fleet::reach(ctx).await;
    fleet::report_all(ctx, &unreached);
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
    for (i, result, elapsed) in done {
        let node = &nodes[i];
        if group_output && let Ok(out) = &result {
            emit_output(ctx, node.name(), out);
        }
        let code = result.as_ref().ok().and_then(|out| out.code);
        let release = node.probe.current.as_ref().map(|c| c.to_string());
        let outcome = match result {
            Ok(out) if out.success() => HostOutcome::ok(node.name(), release, elapsed),
            Ok(out) => HostOutcome::failed(
                node.name(),
                Failure::Exit { code: out.code }.at(Phase::Exec),
                release,
                elapsed,
            ),
            Err(e) => HostOutcome::failed(node.name(), e.at(Phase::Exec), release, elapsed),
        };
        let ok = outcome.failure.is_none();
        ctx.emit(Event::Row(Row {
            table: "exec",
            cells: vec![
                ("host", json!(node.name())),
                ("exit_code", json!(code)),
                ("elapsed_ms", json!(ms(elapsed))),
                (
                    "error",
                    json!(match &outcome.failure {
                        Some(Failure::Exit { .. }) | None => None,
                        Some(f) => Some(f.to_string()),
                    }),
                ),
            ],
            marked: !ok,
        }));
        hosts.push(outcome);
    }
    hosts.extend(unreached);
    fleet::close_all(&nodes).await;
    let all_ok = hosts.iter().all(|h| h.failure.is_none());
    ctx.finish(
        "exec",
        if all_ok { Exit::Ok } else { Exit::Failed },
        None,
        &hosts,
    )
}
