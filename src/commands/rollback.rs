//! `hoist rollback`: every selected host back to the release the fleet was on
//! before its last deploy (or `--to ID`). The target is read from the hosts'
//! journals, and must be the same everywhere before anything is switched.

use std::time::Instant;

use futures_util::future::join_all;

use crate::engine::fleet::{self, Node};
use crate::engine::policy::{self, Refusal};
use crate::engine::preflight::Problem;
use crate::engine::switch::switch_back;
use crate::engine::{Context, Failure, HostOutcome, lock, run_hooks, sudo};
use crate::exit::Exit;
use crate::release::ReleaseId;
use crate::report::{Event, Level, Phase};

/// What each host would roll back to, or why it cannot.
fn targets(nodes: &[Node], to: Option<&ReleaseId>) -> Vec<Result<ReleaseId, Refusal>> {
    nodes
        .iter()
        .map(|node| {
            policy::host_target(
                to,
                |r| node.probe.has_release(r),
                node.rollback_target(),
                node.probe.current.as_ref(),
            )
        })
        .collect()
}

pub(crate) async fn run(ctx: &Context, to: Option<&str>) -> Exit {
    let to = match to.map(|t| ReleaseId::parse(t).ok_or(t)) {
        Some(Err(bad)) => {
            ctx.message(
                Level::Error,
                None,
                format!("`{bad}` is not a release id (they look like 20261122T030405Z-1a2b3c4d; see `hoist releases`)"),
            );
            return ctx.finish("rollback", Exit::Usage, None, &[]);
        }
        Some(Ok(id)) => Some(id),
        None => None,
    };
    let (nodes, unreached) = fleet::reach(ctx).await;
    fleet::report_all(ctx, &unreached);
    // A held lock is answered first (exit 4): whatever the journals say
    // while someone else works on the fleet is not a safe target.
    let locks: Vec<(&Node, Problem)> = nodes
        .iter()
        .filter_map(|n| Some((n, Problem::Locked(n.probe.lock_state()?))))
        .collect();
    if !locks.is_empty() {
        let problems: Vec<Problem> = locks.iter().map(|(_, p)| p.clone()).collect();
        // max_unreachable is the deploy's: a rollback must reach every host.
        let every = policy::Unreached {
            other: unreached.len(),
            ..policy::Unreached::NONE
        };
        let exit = policy::preflight_exit(every, &problems).unwrap_or(Exit::Locked);
        let held: Vec<HostOutcome> = locks
            .into_iter()
            .map(|(n, p)| n.stopped(Failure::Preflight(p).at(Phase::Lock)))
            .collect();
        fleet::report_all(ctx, &held);
        let failed = unreached.into_iter().chain(held).collect();
        return fleet::stop_untouched(ctx, "rollback", exit, None, &nodes, failed).await;
    }
    let targets = targets(&nodes, to.as_ref());
    let currents: Vec<Option<ReleaseId>> = nodes.iter().map(|n| n.probe.current.clone()).collect();
    let agreed = policy::fleet_target(&targets, &currents, to.is_some());
    let target = match (&agreed, unreached.is_empty()) {
        (Ok(target), true) => target.clone(),
        _ => {
            let refused: Vec<HostOutcome> = agreed
                .err()
                .unwrap_or_default()
                .into_iter()
                .map(|(i, why)| nodes[i].stopped(Failure::Refused(why).at(Phase::Preflight)))
                .collect();
            fleet::report_all(ctx, &refused);
            let first = targets
                .iter()
                .find_map(|t| t.as_ref().ok().map(|t| t.to_string()));
            let failed = refused.into_iter().chain(unreached).collect();
            return fleet::stop_untouched(ctx, "rollback", Exit::Preflight, first, &nodes, failed)
                .await;
        }
    };
    let Some(target) = target else {
        return ctx.finish("rollback", Exit::Ok, None, &[]);
    };
    let version = nodes.iter().find_map(|n| n.journal.version_of(&target));
    ctx.emit(Event::RunStarted {
        command: "rollback".into(),
        app: ctx.config.app.name.clone(),
        release: Some(target.to_string()),
        version: version.clone(),
        hosts: nodes.iter().map(|n| n.name().to_string()).collect(),
    });
    let release = Some(target.to_string());
    let refused: Vec<HostOutcome> = match sudo::preflight(ctx, &nodes).await {
        Ok(problems) => problems
            .into_iter()
            .map(|(i, p)| nodes[i].stopped(Failure::Preflight(p).at(Phase::Preflight)))
            .collect(),
        Err(e) => {
            ctx.message(Level::Error, None, e);
            return fleet::stop_untouched(ctx, "rollback", Exit::Usage, release, &nodes, vec![])
                .await;
        }
    };
    if !refused.is_empty() {
        fleet::report_all(ctx, &refused);
        return fleet::stop_untouched(ctx, "rollback", Exit::Preflight, release, &nodes, refused)
            .await;
    }
    if let Err(e) =
        run_hooks::on_start(ctx, "rollback", release.as_deref(), version.as_deref()).await
    {
        ctx.message(Level::Error, None, format!("{e}; nothing was touched"));
        return fleet::stop_untouched(ctx, "rollback", Exit::Preflight, release, &nodes, vec![])
            .await;
    }
    if let Err(e) = lock::acquire(
        ctx,
        &nodes,
        None,
        Some(&format!("rolling back to {target}")),
    )
    .await
    {
        let (exit, held) = e.outcomes();
        fleet::report_all(ctx, &held);
        fleet::close_all(&nodes).await;
        return ctx.finish("rollback", exit, Some(target.to_string()), &[]);
    }
    let outcomes = join_all(nodes.iter().map(|node| {
        let target = &target;
        async move {
            let _permit = ctx.parallel.acquire().await.expect("semaphore open");
            let started = Instant::now();
            let result = match &node.probe.current {
                Some(current) if current == target => Ok(false),
                Some(current) => switch_back(ctx, node, Some(target), current)
                    .await
                    .map(|_| true),
                None => Err(Failure::Other("has no current release".into()).at(Phase::Rollback)),
            };
            let elapsed = started.elapsed();
            let outcome = match result {
                Ok(moved) => {
                    let o = HostOutcome::ok(node.name(), Some(target.to_string()), elapsed);
                    if moved {
                        o
                    } else {
                        o.with_note("already on the target")
                    }
                }
                Err(failed) => {
                    // Where a rollback fails, the failure's phase is the rollback.
                    HostOutcome::failed(
                        node.name(),
                        failed.failure.at(Phase::Rollback),
                        None,
                        elapsed,
                    )
                }
            };
            ctx.report(&outcome);
            outcome
        }
    }))
    .await;
    lock::release(ctx, &nodes).await;
    fleet::close_all(&nodes).await;
    let exit = if outcomes.iter().all(|o| o.failure.is_none()) {
        Exit::Ok
    } else {
        Exit::Failed
    };
    ctx.finish("rollback", exit, Some(target.to_string()), &outcomes)
}
