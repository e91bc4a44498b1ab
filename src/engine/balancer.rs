//! The load balancer's per-host hooks: `drain_local` takes a host out of
//! the pool before it is touched, `undrain_local` puts it back; one host
//! at a time fleet-wide (see [`Throttles::load_balancer`]). Run around a
//! rollout's switch (`rollout::drain`) and around a switch back
//! ([`super::put_back`]), so that neither restarts a host that takes
//! requests.
//!
//! [`Throttles::load_balancer`]: super::throttle::Throttles::load_balancer

use super::{Context, Failure, hooks};

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
