//! `hoist deploy --dry-run`: the hosts reached and read, and for each what
//! the deploy would do — how its release would reach it, the bytes it
//! would be sent, the files it changes against its current release, the
//! release a rollback would go back to, and who holds its lock — with the
//! waves as `plan` shows them. Nothing is written: no lock, no journal
//! line, no file, no hook.

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::artifact::Artifact;
use crate::engine::delivery::{Delivery, Source};
use crate::engine::fleet::{self, Node};
use crate::engine::layout::LockState;
use crate::engine::payload::{Prediction, predict};
use crate::engine::rollout::Setup;
use crate::engine::{Context, HostOutcome};
use crate::exit::Exit;
use crate::release::ReleaseId;
use crate::report::{Event, Level, Row};

/// Says what a deploy of `id` would do on `nodes` (the hosts it would
/// deploy to) and ends the run with `exit`, the one the deploy would have
/// (3 or 4 when its preflight or the lock would refuse); `failed` are the
/// hosts it already could not take.
pub(super) async fn report(
    ctx: &Context,
    nodes: &[Node],
    failed: &[HostOutcome],
    artifact: &Artifact,
    id: &ReleaseId,
    setup: &Setup,
    exit: Exit,
) -> Exit {
    let once = !ctx.config.hooks.before_switch_once.is_empty();
    let plan = match setup.plan(ctx, nodes, id, once) {
        Ok(plan) => plan,
        Err(refusal) => {
            ctx.message(Level::Error, None, refusal);
            fleet::close_all(nodes).await;
            return ctx.finish(Exit::Usage, Some(id.to_string()), failed);
        }
    };
    ctx.emit(Event::RolloutPlan(
        plan.to_json(|i| nodes[i].name().to_string()),
    ));
    let delivery = Delivery::new(artifact);
    let predictions = join_all(nodes.iter().map(|node| {
        let delivery = &delivery;
        async move {
            let _permit = ctx.parallel.acquire().await.expect("semaphore open");
            predict(ctx, node, delivery, id).await
        }
    }))
    .await;
    let wave_of = |i: usize| plan.waves.iter().position(|w| w.hosts.contains(&i));
    let mut order: Vec<usize> = (0..nodes.len()).collect();
    order.sort_by_key(|&i| wave_of(i).unwrap_or(usize::MAX));
    let mut total = Totals::default();
    for i in order {
        let (node, predicted) = (&nodes[i], &predictions[i]);
        if let Ok(p) = predicted {
            total.add(p);
        }
        ctx.emit(Event::Row(row(node, wave_of(i), predicted)));
    }
    ctx.message(Level::Info, None, total.say(failed.len()));
    fleet::close_all(nodes).await;
    ctx.finish(exit, Some(id.to_string()), failed)
}

/// One host's row of the dry run.
fn row(
    node: &Node,
    wave: Option<usize>,
    predicted: &Result<Prediction, crate::engine::Failed>,
) -> Row {
    let (source, bytes, diff, error) = match predicted {
        Ok(p) => (
            json!(describe(&p.source)),
            json!(p.bytes),
            p.diff.as_ref(),
            Value::Null,
        ),
        Err(e) => (Value::Null, Value::Null, None, json!(e.failure.to_string())),
    };
    let paths = |list: Option<&Vec<Vec<u8>>>| match list {
        Some(list) => json!(
            list.iter()
                .map(|p| crate::manifest::display(p))
                .collect::<Vec<_>>()
        ),
        None => Value::Null,
    };
    let lock = node.probe.lock_state().map(|l| match l {
        LockState::File(line) | LockState::Other(line) => line,
    });
    let marked = lock.is_some() || !error.is_null();
    Row {
        table: "dry_run",
        cells: vec![
            ("wave", wave.map_or(Value::Null, |w| json!(w + 1))),
            ("host", json!(node.name())),
            ("source", source),
            ("bytes", bytes),
            ("added", paths(diff.map(|d| &d.added))),
            ("changed", paths(diff.map(|d| &d.changed))),
            ("removed", paths(diff.map(|d| &d.removed))),
            (
                "rollback_to",
                json!(node.probe.current.as_ref().map(|c| c.to_string())),
            ),
            ("lock", json!(lock)),
            ("error", error),
        ],
        marked,
    }
}

/// How a release would reach a host, in words.
fn describe(source: &Source) -> String {
    match source {
        Source::Has => "already there".into(),
        Source::Copy(from) => format!("copy of {from}"),
        Source::Delta(base) => format!("delta from {base}"),
        Source::Pull => "download by the host".into(),
        Source::Whole => "whole artifact".into(),
    }
}

/// The dry run's totals.
#[derive(Default)]
struct Totals {
    hosts: usize,
    bytes: u64,
    copies: usize,
    deltas: usize,
    downloads: usize,
    wholes: usize,
}

impl Totals {
    fn add(&mut self, p: &Prediction) {
        self.bytes += p.bytes;
        match p.source {
            Source::Has => return,
            Source::Copy(_) => self.copies += 1,
            Source::Delta(_) => self.deltas += 1,
            Source::Pull => self.downloads += 1,
            Source::Whole => self.wholes += 1,
        }
        self.hosts += 1;
    }

    fn say(&self, failed: usize) -> String {
        let failed = match failed {
            0 => String::new(),
            n => format!("; {n} host(s) could not be taken (above)"),
        };
        format!(
            "dry run: {} host(s) would get the release ({} whole, {} by delta, {} by copy, {} by download); {} would leave this machine{failed}; nothing was changed",
            self.hosts,
            self.wholes,
            self.deltas,
            self.copies,
            self.downloads,
            indicatif::HumanBytes(self.bytes),
        )
    }
}
