//! One host's part of a rollout: its upload (unless made ahead), shared
//! paths and files, its drain (when configured), the once hook,
//! before_switch, switch, after_switch, health and its undrain, each
//! failure tagged with the phase it happened in.

use std::time::Instant;

use super::{HostRun, Run, drain};
use crate::engine::ahead::Passed;
use crate::engine::payload::deliver;
use crate::engine::switch::switch_to;
use crate::engine::{
    Failed, Failure, HostOutcome, at, deadman, diagnose, health, hooks, policy, shared,
};
use crate::report::Phase;

/// Host `i`'s part of the rollout, ended: `delivered` is the result of its
/// upload made ahead of its wave (or by the relay), if one was; `spent`
/// the bytes already sent to it for the release that did not make it (a
/// relay's seed whose own receive failed), counted in what it is sent.
pub(super) async fn host_rollout(
    run: &Run<'_>,
    i: usize,
    delivered: Option<Result<u64, Failed>>,
    spent: u64,
    passed: &mut Passed<'_>,
) -> HostRun {
    let ctx = run.ctx;
    let node = &run.nodes[i];
    let _permit = run.slots(i).acquire().await.expect("semaphore open");
    let started = Instant::now();
    let mut host = HostRun::untouched(node);
    if run.halt.is_cancelled() {
        return host;
    }
    let result = steps(run, i, (delivered, spent), passed, &mut host).await;
    if result.is_err() && !host.switched {
        // Never switched: still on its previous release, it goes back in.
        drain::undrain_or_warn(run, i, &mut host).await;
    }
    if let Err(failed) = &result
        && policy::diagnoses(host.switched, &failed.failure, ctx.cancel.is_cancelled())
    {
        let env = run.host_env(i, host.previous.as_ref());
        diagnose::collect(ctx, node, run.id, failed, &env).await;
    }
    let elapsed = started.elapsed();
    let now = if host.switched {
        Some(run.id.to_string())
    } else {
        host.outcome.release.clone()
    };
    let sent = host.sent;
    host.outcome = match result {
        Ok(()) => HostOutcome::ok(node.name(), Some(run.id.to_string()), elapsed),
        Err(Failed {
            failure: Failure::Halted | Failure::Interrupted,
            ..
        }) if !host.switched => return host,
        Err(failed) => HostOutcome::failed(node.name(), failed, now, elapsed),
    };
    host.outcome.sent = sent;
    ctx.report(&host.outcome);
    host
}

async fn steps(
    run: &Run<'_>,
    i: usize,
    (delivered, spent): (Option<Result<u64, Failed>>, u64),
    passed: &mut Passed<'_>,
    host: &mut HostRun,
) -> Result<(), Failed> {
    let (ctx, node, id, artifact) = (run.ctx, &run.nodes[i], run.id, run.artifact);
    let sent = match delivered {
        Some(delivered) => delivered,
        None => deliver(ctx, node, &run.delivery, id, &run.halt).await,
    };
    passed.now();
    host.sent = Some(sent? + spent);
    shared::prepare(ctx, node, id).await?;
    let env = run.host_env(i, host.previous.as_ref());
    let release_dir = node.layout.release_path(id);
    drain::drain(run, i, host)
        .await
        .map_err(at(Phase::BeforeSwitch))?;
    let once = run.once.as_ref();
    if let Some(once) = once {
        once.run_on(ctx, node, id, &release_dir, &env).await?;
    }
    let hooks = &node.host.role.hooks;
    hooks::run_remote(
        ctx,
        node,
        Phase::BeforeSwitch,
        &hooks.before_switch,
        &release_dir,
        &env,
    )
    .await
    .map_err(at(Phase::BeforeSwitch))?;
    if run.halt.is_cancelled() {
        return Err(Failure::Halted.at(Phase::BeforeSwitch));
    }
    if let Some(once) = once {
        once.wait(&run.halt)
            .await
            .map_err(at(Phase::BeforeSwitch))?;
    }
    let previous = host.previous.as_ref();
    ctx.phase(node.name(), Phase::Switch);
    let arming = deadman::arming(ctx, node, id, previous);
    let artifact = (artifact.version.as_str(), artifact.content_sha.as_str());
    let switched = switch_to(ctx, node, id, previous, artifact, arming).await;
    if switched.is_err() {
        deadman::disarm(ctx, node).await;
    }
    switched?;
    host.switched = true;
    hooks::run_remote(
        ctx,
        node,
        Phase::AfterSwitch,
        &hooks.after_switch,
        &release_dir,
        &env,
    )
    .await
    .map_err(at(Phase::AfterSwitch))?;
    if let Some(check) = &node.host.role.health {
        health::check(ctx, node, check, &env)
            .await
            .map_err(at(Phase::Health))?;
    }
    drain::undrain(run, i, host)
        .await
        .map_err(at(Phase::Health))?;
    Ok(())
}
