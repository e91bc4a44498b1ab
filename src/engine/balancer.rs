//! The load balancer's per-host hooks: `drain_local` takes a host out of
//! the pool before it is touched, `undrain_local` puts it back; one host
//! at a time fleet-wide (see [`Throttles::load_balancer`]). Run around a
//! rollout's switch (`rollout::drain`) and around a switch back
//! ([`super::put_back`]), so that neither restarts a host that takes
//! requests.
//!
//! [`Throttles::load_balancer`]: super::throttle::Throttles::load_balancer

use super::{Context, Failure, hooks};
use crate::report::Level;

/// Whether hosts are drained around their switch (`drain_local` is set).
pub(crate) fn drains(ctx: &Context) -> bool {
    !ctx.config.hooks.drain_local.is_empty()
}

/// Runs `drain_local` for the host `env` describes (`HOIST_HOST`), in its
/// turn; `drain_wait` is the caller's.
pub(crate) async fn take_out(ctx: &Context, env: &[(String, String)]) -> Result<(), Failure> {
    let _one = ctx.throttle.load_balancer().await;
    hooks::run_local(ctx, "drain_local", &ctx.config.hooks.drain_local, env).await
}

/// Runs `undrain_local` for the host `env` describes, in its turn.
pub(crate) async fn put_in(ctx: &Context, env: &[(String, String)]) -> Result<(), Failure> {
    let _one = ctx.throttle.load_balancer().await;
    hooks::run_local(ctx, "undrain_local", &ctx.config.hooks.undrain_local, env).await
}

/// Before a host that takes requests goes back: `drain_local`, then
/// `drain_wait`. A failing drain is said, and the host goes back all the
/// same: a release being undone is not kept because the load balancer's
/// script failed.
pub(crate) async fn out_before_going_back(ctx: &Context, host: &str, env: &[(String, String)]) {
    if let Err(e) = take_out(ctx, env).await {
        let text = format!("{e}; it goes back all the same, while it may take requests");
        ctx.message(Level::Warn, Some(host), text);
    }
    tokio::time::sleep(ctx.config.hooks.drain_wait).await;
}

/// After it went back: `undrain_local` when it is `back` on its previous
/// release; one that is not stays drained, and that is said.
pub(crate) async fn in_once_back(ctx: &Context, host: &str, env: &[(String, String)], back: bool) {
    let said = match back {
        true => put_in(ctx, env)
            .await
            .err()
            .map(|e| format!("{e}; the host stays out of the load balancer")),
        false => {
            Some("not back on its previous release: it stays out of the load balancer".to_string())
        }
    };
    if let Some(text) = said {
        ctx.message(Level::Warn, Some(host), text);
    }
}
