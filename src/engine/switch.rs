//! Pointing `current` at a release: forward in a deploy, back in a rollback.
//! The switch and its journal line are one round trip; a switch in progress
//! is one remote command and is never cut.

use super::fleet::Node;
use super::{Context, Failed, at, health, hooks};
use crate::journal::{Entry, Kind};
use crate::release::ReleaseId;
use crate::report::Phase;

/// Points `current` at `id`, recording the deploy (and what came before) in
/// the host's journal.
pub(crate) async fn switch_to(
    ctx: &Context,
    node: &Node,
    id: &ReleaseId,
    previous: Option<&ReleaseId>,
    version: &str,
    content_sha: &str,
) -> Result<(), Failed> {
    ctx.phase(node.name(), Phase::Switch);
    let entry = Entry {
        release: Some(id.to_string()),
        previous: previous.map(|p| p.to_string()),
        version: Some(version.to_string()),
        sha256: Some(content_sha.to_string()),
        run: Some(ctx.run_id.clone()),
        ..Entry::new(Kind::Deploy, &ctx.by)
    };
    node.must("switch", &node.layout.switch(id, &entry.to_line()), None)
        .await
        .map_err(at(Phase::Switch))?;
    Ok(())
}

/// Switches one host back to `target` (or to no release at all, after a
/// first deploy), marks `from` as rolled back, then runs after_rollback and
/// the health check.
pub(crate) async fn switch_back(
    ctx: &Context,
    node: &Node,
    target: Option<&ReleaseId>,
    from: &ReleaseId,
) -> Result<(), Failed> {
    ctx.phase(node.name(), Phase::Rollback);
    let entry = Entry {
        release: target.map(|t| t.to_string()),
        previous: Some(from.to_string()),
        version: target.and_then(|t| node.journal.version_of(t)),
        run: Some(ctx.run_id.clone()),
        ..Entry::new(Kind::Rollback, &ctx.by)
    };
    let Some(target) = target else {
        node.must(
            "removing current",
            &node.layout.unswitch(&entry.to_line()),
            None,
        )
        .await
        .map_err(at(Phase::Rollback))?;
        return Ok(());
    };
    node.must(
        "switching back",
        &node.layout.switch(target, &entry.to_line()),
        None,
    )
    .await
    .map_err(at(Phase::Rollback))?;
    let version = entry.version.clone().unwrap_or_default();
    let env = hooks::host_env(ctx, node, target, Some(from), &version);
    hooks::run_remote(
        ctx,
        node,
        Phase::AfterRollback,
        &ctx.config.hooks.after_rollback,
        &node.layout.release_path(target),
        &env,
    )
    .await
    .map_err(at(Phase::AfterRollback))?;
    if let Some(check) = &ctx.config.health {
        health::check(ctx, node, check, &env)
            .await
            .map_err(at(Phase::Health))?;
    }
    Ok(())
}
