//! Pointing `current` at a release: forward in a deploy, back in a rollback.
//! The switch and its journal line are one round trip; a switch in progress
//! is one remote command and is never cut. Every switch checks, in that same
//! command, that the lock is still this run's.

use super::deadman::Arming;
use super::fleet::Node;
use super::layout::{LOCK_LOST, LockState, unrecorded};
use super::{Context, Failed, Failure, at, health, hooks};
use crate::journal::{Entry, Kind};
use crate::release::ReleaseId;
use crate::report::{Level, Phase};
use crate::transport::Output;

/// Points `current` at `id`, recording the deploy (and what came before) in
/// the host's journal. `arming` starts the host's dead-man switch first, in
/// the same command: a host whose watchdog cannot start is not switched.
pub(crate) async fn switch_to(
    ctx: &Context,
    node: &Node,
    id: &ReleaseId,
    previous: Option<&ReleaseId>,
    artifact: (&str, &str),
    arming: Option<Arming>,
) -> Result<(), Failed> {
    let (version, content_sha) = artifact;
    let entry = Entry {
        release: Some(id.to_string()),
        previous: previous.map(|p| p.to_string()),
        version: Some(version.to_string()),
        sha256: Some(content_sha.to_string()),
        run: Some(ctx.run_id.clone()),
        ..Entry::new(Kind::Deploy, &ctx.by)
    };
    let switch = node.layout.switch(id, Some(&ctx.run_id), &entry.to_line());
    let Some(arming) = arming else {
        return run_switch(ctx, node, "switch", &switch)
            .await
            .map_err(at(Phase::Switch));
    };
    let script = format!(
        "( {arm} ) >/dev/null || {{ echo 'the dead-man switch could not be armed' >&2; exit {ARM_FAILED}; }}\n{switch}",
        arm = arming.script(),
    );
    let out = node.run(&script, None).await.map_err(at(Phase::Switch))?;
    if out.code == Some(ARM_FAILED) {
        return Err(Failure::Command {
            what: "arming the dead-man switch".to_string(),
            code: out.code,
            tail: super::tail_lines(&out.stderr, &out.stdout, 10),
        }
        .at(Phase::Switch));
    }
    arming.started(ctx, node);
    switched(ctx, node, "switch", out).map_err(at(Phase::Switch))
}

/// The exit code of a switch whose dead-man switch could not be armed
/// (nothing was switched).
const ARM_FAILED: u32 = 86;

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
    let held = Some(ctx.run_id.as_str());
    let Some(target) = target else {
        let script = node.layout.unswitch(held, &entry.to_line());
        run_switch(ctx, node, "removing current", &script)
            .await
            .map_err(at(Phase::Rollback))?;
        return Ok(());
    };
    let script = node.layout.switch(target, held, &entry.to_line());
    run_switch(ctx, node, "switching back", &script)
        .await
        .map_err(at(Phase::Rollback))?;
    let version = entry.version.clone().unwrap_or_default();
    let env = hooks::host_env(ctx, node, target, Some(from), &version);
    hooks::run_remote(
        ctx,
        node,
        Phase::AfterRollback,
        &node.host.role.hooks.after_rollback,
        &node.layout.release_path(target),
        &env,
    )
    .await
    .map_err(at(Phase::AfterRollback))?;
    if let Some(check) = &node.host.role.health {
        health::check(ctx, node, check, &env)
            .await
            .map_err(at(Phase::Health))?;
    }
    Ok(())
}

/// Runs a switch script (`what` names it in a failure). A lock that is no
/// longer this run's is [`Failure::LockLost`], noted for the run's end; a
/// journal line that could not be written after the switch is warned about
/// on the host and noted too (the switch stands).
async fn run_switch(ctx: &Context, node: &Node, what: &str, script: &str) -> Result<(), Failure> {
    let out = node.run(script, None).await?;
    switched(ctx, node, what, out)
}

/// What a switch script's `out` says: see [`run_switch`].
fn switched(ctx: &Context, node: &Node, what: &str, out: Output) -> Result<(), Failure> {
    if out.code == Some(LOCK_LOST) {
        let now = match LockState::told(&String::from_utf8_lossy(&out.stderr)) {
            Some(state @ LockState::File(_)) => format!("now held by {}", state.describe()),
            Some(state) => state.describe(),
            None => "no lock is left".to_string(),
        };
        ctx.notes.lock_lost(now.clone());
        return Err(Failure::LockLost(now));
    }
    if !out.success() {
        return Err(Failure::Command {
            what: what.to_string(),
            code: out.code,
            tail: super::tail_lines(&out.stderr, &out.stdout, 10),
        });
    }
    ctx.notes.switched();
    if let Some(why) = unrecorded(&out.stdout_str()) {
        ctx.notes.unrecorded(node.name());
        ctx.message(
            Level::Warn,
            Some(node.name()),
            format!("switched, but its journal line could not be written ({why}): this host's history is incomplete"),
        );
    }
    Ok(())
}
