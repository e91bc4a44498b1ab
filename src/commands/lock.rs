//! `hoist lock`: hold the fleet by hand, so that no deploy or rollback starts.

use crate::engine::{Context, HostOutcome, fleet, lock};
use crate::exit::Exit;

pub(crate) async fn run(ctx: &Context, message: Option<&str>) -> Exit {
    let (nodes, unreached) = fleet::reach(ctx).await;
    fleet::report_all(ctx, &unreached);
    if !unreached.is_empty() {
        fleet::close_all(&nodes).await;
        return ctx.finish(Exit::Preflight, None, &[]);
    }
    let result = lock::acquire(ctx, &nodes, None, message).await;
    fleet::close_all(&nodes).await;
    match result {
        Ok(_) => {
            let hosts: Vec<HostOutcome> = nodes
                .iter()
                .map(|n| {
                    let current = n.probe.current.as_ref().map(|c| c.to_string());
                    HostOutcome::ok(n.name(), current, std::time::Duration::ZERO)
                })
                .collect();
            ctx.finish(Exit::Ok, None, &hosts)
        }
        Err(e) => {
            let (exit, held) = e.outcomes();
            fleet::report_all(ctx, &held);
            ctx.finish(exit, None, &[])
        }
    }
}
