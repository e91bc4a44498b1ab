//! `hoist unlock`: free a lock held by hand (your own), or anyone's with `--force`.

use std::time::Duration;

use futures_util::future::join_all;

use crate::engine::layout::UnlockAnswer;
use crate::engine::lock;
use crate::engine::preflight::Problem;
use crate::engine::{Context, Failure, HostOutcome, fleet};
use crate::exit::Exit;
use crate::report::Phase;

pub(crate) async fn run(ctx: &Context, force: bool) -> Exit {
    let (nodes, unreached) = fleet::reach(ctx).await;
    fleet::report_all(ctx, &unreached);
    let results = join_all(nodes.iter().map(|n| lock::unlock_by_hand(ctx, n, force))).await;
    fleet::close_all(&nodes).await;
    let mut exit = if unreached.is_empty() {
        Exit::Ok
    } else {
        Exit::Preflight
    };
    let mut hosts = Vec::new();
    for (node, result) in nodes.iter().zip(results) {
        let failed = |failure: Failure| {
            HostOutcome::failed(node.name(), failure.at(Phase::Unlock), None, Duration::ZERO)
        };
        let outcome = match result {
            Ok(UnlockAnswer::Freed) => {
                HostOutcome::ok(node.name(), None, Duration::ZERO).with_note("unlocked")
            }
            Ok(UnlockAnswer::Absent) => {
                HostOutcome::ok(node.name(), None, Duration::ZERO).with_note("was not locked")
            }
            // Someone else's lock, or no lock file at all: the message says
            // who may free it, and that --force may.
            Ok(UnlockAnswer::Other(state)) => {
                exit = Exit::Locked;
                failed(Failure::Preflight(Problem::Locked(state)))
            }
            Err(e) => {
                exit = Exit::Failed;
                failed(e)
            }
        };
        ctx.report(&outcome);
        hosts.push(outcome);
    }
    ctx.finish(exit, None, &hosts)
}
