//! `hooks.drain_local` / `hooks.undrain_local` / `hooks.drain_wait`: each
//! host leaves the load balancer before it is touched and comes back once
//! its health check passed, or once it is back on its previous release.
//! Off (nothing run, nothing waited) unless configured.

use super::{HostRun, Run};
use crate::engine::{Failure, balancer};
use crate::report::{HostResult, Level};

/// Takes host `i` out of the load balancer: `drain_local`, then
/// `drain_wait` (cut short by a halt). Marks it drained before running the
/// hooks, so a failing drain is undone like any other.
pub(super) async fn drain(run: &Run<'_>, i: usize, host: &mut HostRun) -> Result<(), Failure> {
    let ctx = run.ctx;
    if !balancer::drains(ctx) {
        return Ok(());
    }
    host.drained = true;
    let env = run.host_env(i, host.previous.as_ref());
    balancer::take_out(ctx, &env).await?;
    let wait = ctx.config.hooks.drain_wait;
    if !wait.is_zero() {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = run.halt.cancelled() => return Err(Failure::Halted),
        }
    }
    Ok(())
}

/// Puts host `i` back in the load balancer (`undrain_local`) if this run
/// drained it.
pub(super) async fn undrain(run: &Run<'_>, i: usize, host: &mut HostRun) -> Result<(), Failure> {
    if !host.drained {
        return Ok(());
    }
    let env = run.host_env(i, host.previous.as_ref());
    balancer::put_in(run.ctx, &env).await?;
    host.drained = false;
    Ok(())
}

/// Undrains host `i` where a failure already decides how it ended: a
/// failing undrain is said, and leaves it drained.
pub(super) async fn undrain_or_warn(run: &Run<'_>, i: usize, host: &mut HostRun) {
    if let Err(e) = undrain(run, i, host).await {
        let text = format!("{e}; the host stays out of the load balancer");
        run.ctx
            .message(Level::Warn, Some(run.nodes[i].name()), text);
    }
}

/// After a put back: each of `which` that this run drained and that is now
/// on its previous release again is undrained; one that could not go back
/// stays drained.
pub(super) async fn undrain_returned(run: &Run<'_>, hosts: &mut [HostRun], which: &[usize]) {
    for &i in which {
        if hosts[i].drained && hosts[i].outcome.result == HostResult::RolledBack {
            undrain_or_warn(run, i, &mut hosts[i]).await;
        }
    }
}
