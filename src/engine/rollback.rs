//! `hoist rollback`: every selected host back to the release the fleet was on
//! before its last deploy (or `--to ID`). The target is read from the hosts'
//! journals, and must be the same everywhere before anything is switched.

use futures_util::future::join_all;
use std::time::Instant;

use super::fleet::{self, Node};
use super::{Context, Failure, health, hooks, lock, ms};
use crate::exit::Exit;
use crate::journal::{Entry, Kind};
use crate::release::ReleaseId;
use crate::report::{Event, HostResult, HostSummary, Level, Phase};

/// Switches one host back to `target` (or to no release at all, after a
/// first deploy), marks `from` as rolled back, then runs after_rollback and
/// the health check. Switch and journal line are one round trip.
pub async fn switch_back(
    ctx: &Context,
    node: &Node,
    target: Option<&ReleaseId>,
    from: &ReleaseId,
) -> Result<(), Failure> {
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
        .await?;
        return Ok(());
    };
    node.must(
        "switching back",
        &node.layout.switch(target, &entry.to_line()),
        None,
    )
    .await?;
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
    .await?;
    if let Some(check) = &ctx.config.health {
        health::check(ctx, node, check, &env).await?;
    }
    Ok(())
}

/// What each host would roll back to, or why it cannot.
pub fn targets(nodes: &[Node], to: Option<&ReleaseId>) -> Vec<Result<ReleaseId, String>> {
    nodes
        .iter()
        .map(|node| match to {
            Some(id) if node.probe.has_release(id) => Ok(id.clone()),
            Some(id) => Err(format!("does not hold release {id}")),
            None => node
                .rollback_target()
                .ok_or_else(|| match &node.probe.current {
                    Some(c) => format!("has no earlier release to go back to from {c}"),
                    None => "has no release deployed".to_string(),
                }),
        })
        .collect()
}

pub async fn run(ctx: &Context, to: Option<&str>) -> i32 {
    let to = match to.map(|t| ReleaseId::parse(t).ok_or(t)) {
        Some(Err(bad)) => {
            ctx.message(
                Level::Error,
                None,
                format!("`{bad}` is not a release id (they look like 20261122T030405Z-1a2b3c4d; see `hoist releases`)"),
            );
            return ctx.finish("rollback", Exit::Usage, None, Vec::new());
        }
        Some(Ok(id)) => Some(id),
        None => None,
    };
    let (nodes, unreached) = fleet::reach(ctx).await;
    fleet::report_unreached(ctx, &unreached);
    let targets = targets(&nodes, to.as_ref());
    let mut refusals: Vec<(String, String)> = nodes
        .iter()
        .zip(&targets)
        .filter_map(|(n, t)| t.as_ref().err().map(|e| (n.name().to_string(), e.clone())))
        .collect();
    let chosen: Vec<&ReleaseId> = targets.iter().filter_map(|t| t.as_ref().ok()).collect();
    let target = chosen.first().map(|t| (*t).clone());
    if to.is_none() && chosen.iter().any(|t| Some(*t) != target.as_ref()) {
        for (node, t) in nodes.iter().zip(&targets) {
            if let Ok(t) = t {
                refusals.push((
                    node.name().to_string(),
                    format!(
                        "would go back to {t} (now on {}); the hosts disagree, so no target is safe: pick one with --to ID",
                        node.probe.current.as_ref().map(|c| c.to_string()).unwrap_or("nothing".into())
                    ),
                ));
            }
        }
    }
    if !unreached.is_empty() || !refusals.is_empty() {
        for (host, why) in &refusals {
            ctx.emit(Event::HostFailed {
                host: host.clone(),
                phase: Phase::Preflight,
                error: why.clone(),
                tail: Vec::new(),
                elapsed_ms: 0,
            });
        }
        fleet::close_all(&nodes).await;
        let hosts = ctx
            .hosts
            .iter()
            .map(|h| {
                let why = refusals
                    .iter()
                    .find(|(n, _)| *n == h.name)
                    .map(|(_, w)| w.clone())
                    .or_else(|| {
                        unreached
                            .iter()
                            .find(|u| u.host == h.name)
                            .map(|u| u.failure.to_string())
                    });
                HostSummary {
                    host: h.name.clone(),
                    result: if why.is_some() {
                        HostResult::Failed
                    } else {
                        HostResult::Skipped
                    },
                    release: nodes
                        .iter()
                        .find(|n| n.name() == h.name)
                        .and_then(|n| n.probe.current.as_ref().map(|c| c.to_string())),
                    error: why,
                    elapsed_ms: 0,
                }
            })
            .collect();
        return ctx.finish(
            "rollback",
            Exit::Preflight,
            target.map(|t| t.to_string()),
            hosts,
        );
    }
    let Some(target) = target else {
        return ctx.finish("rollback", Exit::Ok, None, Vec::new());
    };
    ctx.emit(Event::RunStarted {
        command: "rollback".into(),
        app: ctx.config.app.name.clone(),
        release: Some(target.to_string()),
        version: nodes.iter().find_map(|n| n.journal.version_of(&target)),
        hosts: nodes.iter().map(|n| n.name().to_string()).collect(),
    });
    if let Err(e) = lock::acquire(
        ctx,
        &nodes,
        None,
        Some(&format!("rolling back to {target}")),
    )
    .await
    {
        let exit = lock::report_error(ctx, e);
        fleet::close_all(&nodes).await;
        return ctx.finish("rollback", exit, Some(target.to_string()), Vec::new());
    }
    let results = join_all(nodes.iter().map(|node| {
        let target = &target;
        async move {
            let _permit = ctx.parallel.acquire().await.expect("semaphore open");
            let started = Instant::now();
            let result = match &node.probe.current {
                Some(current) if current == target => Ok(false),
                Some(current) => switch_back(ctx, node, Some(target), current)
                    .await
                    .map(|_| true),
                None => Err(Failure::Other("has no current release".into())),
            };
            (result, started.elapsed())
        }
    }))
    .await;
    lock::release(ctx, &nodes).await;
    fleet::close_all(&nodes).await;
    let mut exit = Exit::Ok;
    let mut hosts = Vec::new();
    for (node, (result, elapsed)) in nodes.iter().zip(results) {
        let (result, release, error) = match result {
            Ok(moved) => {
                ctx.emit(Event::HostDone {
                    host: node.name().to_string(),
                    release: Some(target.to_string()),
                    message: (!moved).then(|| "already on the target".to_string()),
                    elapsed_ms: ms(elapsed),
                });
                (HostResult::Ok, Some(target.to_string()), None)
            }
            Err(e) => {
                exit = Exit::Failed;
                ctx.emit(Event::HostFailed {
                    host: node.name().to_string(),
                    phase: Phase::Rollback,
                    error: e.to_string(),
                    tail: e.tail(),
                    elapsed_ms: ms(elapsed),
                });
                (HostResult::Failed, None, Some(e.to_string()))
            }
        };
        hosts.push(HostSummary {
            host: node.name().to_string(),
            result,
            release,
            error,
            elapsed_ms: ms(elapsed),
        });
    }
    ctx.finish("rollback", exit, Some(target.to_string()), hosts)
}
