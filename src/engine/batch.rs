//! A wave's local hooks (`before_batch_local`, `after_batch_local`) and
//! their environment, for a deploy's waves and a rollback's alike.

use super::fleet::Node;
use super::{Context, hooks};
use crate::config::HostTransport;
use crate::release::ReleaseId;
use crate::report::Level;

/// How a wave ended, as `after_batch_local` hears it in `HOIST_RESULT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaveResult {
    /// Every host of the wave is on the release and healthy.
    Ok,
    /// A host failed (`HOIST_FAILED_HOSTS` names it) and stays as it is.
    Failed,
    /// The wave's hosts went back to the release they had (a rollback's
    /// wave, or a deploy's wave undone before this hook ran).
    RolledBack,
    /// Ctrl-C or SIGTERM came before every host of the wave was done.
    Interrupted,
}

impl WaveResult {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            WaveResult::Ok => "ok",
            WaveResult::Failed => "failed",
            WaveResult::RolledBack => "rolled_back",
            WaveResult::Interrupted => "interrupted",
        }
    }
}

/// The address a load balancer knows a host by: its SSH address (after
/// ~/.ssh/config), without user or port; `localhost` for a local host.
pub(crate) fn address(node: &Node) -> String {
    match &node.host.transport {
        HostTransport::Ssh(t) => t.address.clone(),
        HostTransport::Local { .. } => "localhost".into(),
    }
}

/// The environment of a wave's local hooks: `release` is the one its
/// hosts go to (in a rollback, the one they go back to).
pub(crate) fn env(
    ctx: &Context,
    release: Option<&ReleaseId>,
    version: &str,
    hosts: &[&Node],
) -> Vec<(String, String)> {
    let names: Vec<&str> = hosts.iter().map(|n| n.name()).collect();
    let addresses: Vec<String> = hosts.iter().map(|n| address(n)).collect();
    vec![
        ("HOIST_APP".into(), ctx.config.app.name.clone()),
        (
            "HOIST_RELEASE".into(),
            release.map(|r| r.to_string()).unwrap_or_default(),
        ),
        ("HOIST_VERSION".into(), version.to_string()),
        ("HOIST_DEPLOY_TO".into(), ctx.config.app.deploy_to.clone()),
        ("HOIST_BATCH_HOSTS".into(), names.join(" ")),
        ("HOIST_BATCH_ADDRESSES".into(), addresses.join(" ")),
    ]
    .into_iter()
    .chain(
        names
            .first()
            .and_then(|h| hooks::color_of(ctx, h))
            .map(|c| ("HOIST_COLOR".to_string(), c)),
    )
    .collect()
}

/// Runs `before_batch_local`; a failure is said, and returned as the
/// reason the run stops. The wave has no result yet: `HOIST_RESULT` and
/// `HOIST_FAILED_HOSTS` are empty.
pub(crate) async fn before(ctx: &Context, env: &[(String, String)]) -> Result<(), String> {
    let mut env = env.to_vec();
    env.push(("HOIST_RESULT".into(), String::new()));
    env.push(("HOIST_FAILED_HOSTS".into(), String::new()));
    run(
        ctx,
        "before_batch_local",
        &ctx.config.hooks.before_batch_local,
        &env,
    )
    .await
}

/// Runs `after_batch_local` with the wave's result and the hosts of the
/// wave that are not healthy on a release (`failed`).
pub(crate) async fn after(
    ctx: &Context,
    env: &[(String, String)],
    result: WaveResult,
    failed: &[&str],
) -> Result<(), String> {
    let mut env = env.to_vec();
    env.push(("HOIST_RESULT".into(), result.as_str().into()));
    env.push(("HOIST_FAILED_HOSTS".into(), failed.join(" ")));
    run(
        ctx,
        "after_batch_local",
        &ctx.config.hooks.after_batch_local,
        &env,
    )
    .await
}

async fn run(
    ctx: &Context,
    name: &str,
    commands: &[String],
    env: &[(String, String)],
) -> Result<(), String> {
    hooks::run_local(ctx, name, commands, env)
        .await
        .map_err(|e| {
            ctx.message(Level::Error, None, e.to_string());
            format!("{name} failed: {e}")
        })
}
