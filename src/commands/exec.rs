//! `hoist exec -- CMD`: one command on the selected hosts in parallel. Each
//! line is shown as it comes, prefixed by its host (`--group-output`: each
//! host's output whole once all are done). Ctrl-C stops the command on every
//! host, then the per-host table is shown.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde_json::json;
use tokio::sync::mpsc;

use crate::engine::fleet::{self, Node};
use crate::engine::layout::q;
use crate::engine::{Context, Failure, HostOutcome, ms};
use crate::exit::Exit;
use crate::report::{Event, Level, OutputStream, Phase, Row};
use crate::transport::{Chunk, Output};

/// A line longer than this without a newline is shown in pieces.
const MAX_LINE: usize = 64 * 1024;

/// Runs in `current` when the host has one, else in deploy_to, else where the shell starts.
fn script(node: &Node, command: &str) -> String {
    let d = q(&node.layout.deploy_to);
    format!(
        "cd {d}/current 2>/dev/null || cd {d} 2>/dev/null; exec sh -c {}",
        q(command)
    )
}

fn emit_line(ctx: &Context, host: &str, stream: OutputStream, line: &[u8]) {
    let text = String::from_utf8_lossy(line);
    ctx.emit(Event::HostOutput {
        host: host.to_string(),
        stream,
        line: text.trim_end_matches('\r').to_string(),
    });
}

fn emit_output(ctx: &Context, host: &str, out: &Output) {
    for (stream, bytes) in [
        (OutputStream::Stdout, &out.stdout),
        (OutputStream::Stderr, &out.stderr),
    ] {
        for line in String::from_utf8_lossy(bytes).lines() {
            emit_line(ctx, host, stream, line.as_bytes());
        }
    }
}

/// Cuts one host's streamed output into lines, per stream.
#[derive(Default)]
struct Lines {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Lines {
    /// The complete lines `chunk` finishes.
    fn push(&mut self, chunk: Chunk) -> Vec<(OutputStream, Vec<u8>)> {
        let (stream, buf, data) = match chunk {
            Chunk::Stdout(data) => (OutputStream::Stdout, &mut self.stdout, data),
            Chunk::Stderr(data) => (OutputStream::Stderr, &mut self.stderr, data),
        };
        buf.extend_from_slice(&data);
        let mut lines = Vec::new();
        while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let rest = buf.split_off(nl + 1);
            let mut line = std::mem::replace(buf, rest);
            line.pop();
            lines.push((stream, line));
        }
        if buf.len() > MAX_LINE {
            lines.push((stream, std::mem::take(buf)));
        }
        lines
    }

    /// What is left without a final newline.
    fn finish(self) -> Vec<(OutputStream, Vec<u8>)> {
        [
            (OutputStream::Stdout, self.stdout),
            (OutputStream::Stderr, self.stderr),
        ]
        .into_iter()
        .filter(|(_, rest)| !rest.is_empty())
        .collect()
    }
}

/// How one host's command went: its exit code, or why it has none.
type Ran = Result<Option<u32>, Failure>;

/// Runs the command on `node`, each line reported as it comes.
async fn streamed(ctx: &Context, node: &Node, command: &str) -> Ran {
    let (sink, mut chunks) = mpsc::unbounded_channel();
    let script = script(node, command);
    let run = node.conn.stream(&script, sink, ctx.cancel.clone());
    let show = async {
        let mut lines = Lines::default();
        while let Some(chunk) = chunks.recv().await {
            for (stream, line) in lines.push(chunk) {
                emit_line(ctx, node.name(), stream, &line);
            }
        }
        for (stream, line) in lines.finish() {
            emit_line(ctx, node.name(), stream, &line);
        }
    };
    let (result, ()) = tokio::join!(run, show);
    Ok(result?)
}

/// Runs the command on `node` within the command timeout, output kept.
async fn whole(node: &Node, command: &str) -> Result<Output, Failure> {
    node.run(&script(node, command), None).await
}

pub(crate) async fn run(ctx: &Context, command: &str, group_output: bool) -> Exit {
    let (nodes, unreached) = fleet::reach(ctx).await;
    fleet::report_all(ctx, &unreached);
    let at_once = ctx.parallel.available_permits();
    if nodes.len() > at_once {
        ctx.message(
            Level::Warn,
            None,
            format!(
                "{} hosts, at most {at_once} at once: the others start as the first ones end, so a command that never ends (tail -F) never reaches them; --parallel {} runs it on all at once",
                nodes.len(),
                nodes.len()
            ),
        );
    }
    let mut pending: FuturesUnordered<_> = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| async move {
            let _permit = ctx.parallel.acquire().await.expect("semaphore open");
            let started = Instant::now();
            if ctx.cancel.is_cancelled() {
                return (i, Err(Failure::Interrupted), None, Duration::ZERO);
            }
            ctx.phase(node.name(), Phase::Exec);
            if !group_output {
                let ran = streamed(ctx, node, command).await;
                return (i, ran, None, started.elapsed());
            }
            match whole(node, command).await {
                Ok(out) => (i, Ok(out.code), Some(out), started.elapsed()),
                Err(e) => (i, Err(e), None, started.elapsed()),
            }
        })
        .collect();
    let mut done = Vec::new();
    while let Some(finished) = pending.next().await {
        done.push(finished);
    }
    drop(pending);
    done.sort_by_key(|d| d.0);
    let interrupted = ctx.cancel.is_cancelled();
    let mut hosts = Vec::new();
    for (i, ran, output, elapsed) in done {
        let node = &nodes[i];
        if let Some(out) = &output {
            emit_output(ctx, node.name(), out);
        }
        let code = ran.as_ref().ok().copied().flatten();
        let release = node.current();
        let outcome = match ran {
            Ok(Some(0)) => HostOutcome::ok(node.name(), release, elapsed),
            Ok(None) if interrupted => HostOutcome::failed(
                node.name(),
                Failure::Interrupted.at(Phase::Exec),
                release,
                elapsed,
            ),
            Ok(code) => HostOutcome::failed(
                node.name(),
                Failure::Exit { code }.at(Phase::Exec),
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
    let exit = if interrupted {
        Exit::Interrupted
    } else if hosts.iter().all(|h| h.failure.is_none()) {
        Exit::Ok
    } else {
        Exit::Failed
    };
    ctx.finish(exit, None, &hosts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(lines: Vec<(OutputStream, Vec<u8>)>) -> Vec<(OutputStream, String)> {
        lines
            .into_iter()
            .map(|(s, l)| (s, String::from_utf8(l).unwrap()))
            .collect()
    }

    #[test]
    fn chunks_become_lines_as_soon_as_they_are_whole() {
        let mut lines = Lines::default();
        assert!(lines.push(Chunk::Stdout(b"par".to_vec())).is_empty());
        assert_eq!(
            text(lines.push(Chunk::Stdout(b"tial\nnext\nla".to_vec()))),
            [
                (OutputStream::Stdout, "partial".into()),
                (OutputStream::Stdout, "next".into())
            ]
        );
        assert_eq!(
            text(lines.push(Chunk::Stderr(b"oops\n".to_vec()))),
            [(OutputStream::Stderr, "oops".into())]
        );
        assert_eq!(text(lines.finish()), [(OutputStream::Stdout, "la".into())]);
    }
}
