//! `hoist lock` and `hoist unlock`: hold or free the fleet by hand.

use futures_util::future::join_all;

use crate::engine::lock::{self, LockInfo};
use crate::engine::{Context, fleet};
use crate::exit::Exit;
use crate::report::{Event, HostResult, HostSummary, Phase};

pub async fn lock(ctx: &Context, message: Option<&str>) -> i32 {
    let (nodes, unreached) = fleet::reach(ctx).await;
    fleet::report_unreached(ctx, &unreached);
    if !unreached.is_empty() {
        fleet::close_all(&nodes).await;
        return ctx.finish("lock", Exit::Preflight, None, Vec::new());
    }
    let result = lock::acquire(ctx, &nodes, None, message).await;
    fleet::close_all(&nodes).await;
    match result {
        Ok(()) => {
            let hosts = nodes
                .iter()
                .map(|n| HostSummary {
                    host: n.name().to_string(),
                    result: HostResult::Ok,
                    release: n.probe.current.as_ref().map(|c| c.to_string()),
                    error: None,
                    elapsed_ms: 0,
                })
                .collect();
            ctx.finish("lock", Exit::Ok, None, hosts)
        }
        Err(e) => {
            let exit = lock::report_error(ctx, e);
            ctx.finish("lock", exit, None, Vec::new())
        }
    }
}

pub async fn unlock(ctx: &Context, force: bool) -> i32 {
    let (nodes, unreached) = fleet::reach(ctx).await;
    fleet::report_unreached(ctx, &unreached);
    let results = join_all(nodes.iter().map(|n| lock::unlock_by_hand(ctx, n, force))).await;
    fleet::close_all(&nodes).await;
    let mut exit = if unreached.is_empty() {
        Exit::Ok
    } else {
        Exit::Preflight
    };
    let mut hosts = Vec::new();
    for (node, result) in nodes.iter().zip(results) {
        let (result, error) = match result {
            Ok(Ok(freed)) => {
                ctx.emit(Event::HostDone {
                    host: node.name().to_string(),
                    release: None,
                    message: Some(if freed { "unlocked" } else { "was not locked" }.into()),
                    elapsed_ms: 0,
                });
                (HostResult::Ok, None)
            }
            Ok(Err(line)) => {
                exit = Exit::Locked;
                let error = format!(
                    "locked by {}; not yours to free (use --force)",
                    LockInfo::describe(&line)
                );
                ctx.emit(Event::HostFailed {
                    host: node.name().to_string(),
                    phase: Phase::Unlock,
                    error: error.clone(),
                    tail: Vec::new(),
                    elapsed_ms: 0,
                });
                (HostResult::Failed, Some(error))
            }
            Err(e) => {
                exit = Exit::Failed;
                ctx.emit(Event::HostFailed {
                    host: node.name().to_string(),
                    phase: Phase::Unlock,
                    error: e.to_string(),
                    tail: e.tail(),
                    elapsed_ms: 0,
                });
                (HostResult::Failed, Some(e.to_string()))
            }
        };
        hosts.push(HostSummary {
            host: node.name().to_string(),
            result,
            release: None,
            error,
            elapsed_ms: 0,
        });
    }
    ctx.finish("unlock", exit, None, hosts)
}
