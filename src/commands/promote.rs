//! `hoist promote` and `hoist abort`: the end of a `deploy --until canary`,
//! from any machine with the file. The journals say which release waits and
//! which hosts are its canary.

use std::time::Instant;

use super::deploy::{preflight, prepare_artifact};
use crate::artifact::Artifact;
use crate::config::Amount;
use crate::engine::fleet::{self, Node};
use crate::engine::layout::Mark;
use crate::engine::policy::BackFor;
use crate::engine::policy::{self, Waiting};
use crate::engine::preflight::Problem;
use crate::engine::put_back::{self, Back};
use crate::engine::record::record_all;
use crate::engine::{Context, Failure, HostOutcome, lock, rollout, run_hooks, shared, sudo};
use crate::exit::Exit;
use crate::journal::{Entry, Journal, Kind};
use crate::release::ReleaseId;
use crate::report::{Event, Level, Phase};

/// Reaches the fleet, waits for a held lock if told to, and reads the
/// release waiting for this command (promote or abort); on a refusal the run is finished.
async fn waiting_release(
    ctx: &Context,
    artifact: Option<&Artifact>,
    since: Instant,
) -> Result<(Vec<Node>, Vec<HostOutcome>, Waiting), Exit> {
    let (mut nodes, unreached) = fleet::reach(ctx).await;
    if !lock::wait_free(ctx, &mut nodes, since).await {
        // A held lock answers first: journals read while someone else
        // works on the fleet tell nothing for sure.
        let held: Vec<HostOutcome> = nodes
            .iter()
            .filter_map(|n| {
                let state = n.probe.lock_state()?;
                Some(n.stopped(Failure::Preflight(Problem::Locked(state)).at(Phase::Lock)))
            })
            .collect();
        fleet::report_all(ctx, &unreached);
        fleet::report_all(ctx, &held);
        let failed = unreached.into_iter().chain(held).collect();
        return Err(fleet::stop_untouched(ctx, Exit::Locked, None, &nodes, failed).await);
    }
    let journals: Vec<&Journal> = nodes.iter().map(|n| &n.journal).collect();
    let found = policy::waiting(&journals).and_then(|w| {
        policy::promotable(
            w.as_ref(),
            artifact.map(|a| a.content_sha.as_str()),
            ctx.command,
        )
    });
    match found {
        Ok(w) => Ok((nodes, unreached, w)),
        Err(e) => {
            fleet::report_all(ctx, &unreached);
            ctx.message(Level::Error, None, e);
            Err(fleet::stop_untouched(ctx, Exit::Usage, None, &nodes, unreached).await)
        }
    }
}

/// Reads the fleet again under the lock: the release waiting must still be
/// `id`. Another run may have promoted or aborted it since the first
/// reading (while this one waited for the lock, or just before it took
/// it). Only the hosts whose `marks` (from taking the lock) show a change
/// are read again. On a refusal the lock is freed and the run finished.
async fn still_waiting(
    ctx: &Context,
    nodes: &mut [Node],
    marks: &[Mark],
    artifact: Option<&Artifact>,
    id: &ReleaseId,
) -> Result<(), Exit> {
    let (exit, why) = match fleet::read_changed(nodes, marks).await {
        Err(e) => (
            Exit::Preflight,
            format!("could not read the fleet again under the lock: {e}; nothing was touched"),
        ),
        Ok(()) => {
            let journals: Vec<&Journal> = nodes.iter().map(|n| &n.journal).collect();
            let found = policy::waiting(&journals).and_then(|w| {
                policy::promotable(
                    w.as_ref(),
                    artifact.map(|a| a.content_sha.as_str()),
                    ctx.command,
                )
            });
            match found {
                Ok(w) if w.release == *id => return Ok(()),
                Ok(w) => (
                    Exit::Usage,
                    format!(
                        "{id} no longer waits for promotion ({} does now, read again under the lock): another run changed the fleet meanwhile; nothing was touched",
                        w.release
                    ),
                ),
                Err(e) => (
                    Exit::Usage,
                    format!(
                        "{id} no longer waits for promotion (another run ended it meanwhile, read again under the lock): {e}"
                    ),
                ),
            }
        }
    };
    ctx.message(Level::Error, None, why);
    lock::release(ctx, nodes).await;
    Err(fleet::stop_untouched(ctx, exit, Some(id.to_string()), nodes, vec![]).await)
}

/// The release a canary host was on before it took `id`, from its journal.
fn before(node: &Node, id: &ReleaseId) -> Option<ReleaseId> {
    node.journal
        .last_switch_to(id)
        .and_then(|e| e.previous.as_deref())
        .and_then(ReleaseId::parse)
}

/// What every command that changes hosts does before touching one:
/// `become` preflight (problems by node index) and `on_start_local`. On a
/// refusal the run is finished and its exit returned.
async fn before_touching(
    ctx: &Context,
    nodes: &[Node],
    release: Option<&str>,
    version: Option<&str>,
) -> Result<Vec<(usize, Problem)>, Exit> {
    let became = match sudo::preflight(ctx, nodes).await {
        Ok(problems) => problems,
        Err(e) => {
            ctx.message(Level::Error, None, e);
            let release = release.map(str::to_string);
            return Err(fleet::stop_untouched(ctx, Exit::Usage, release, nodes, vec![]).await);
        }
    };
    if let Err(e) = run_hooks::on_start(ctx, release, version).await {
        ctx.message(Level::Error, None, format!("{e}; nothing was touched"));
        let release = release.map(str::to_string);
        return Err(fleet::stop_untouched(ctx, Exit::Preflight, release, nodes, vec![]).await);
    }
    Ok(became)
}

fn marker(ctx: &Context, kind: Kind, id: &ReleaseId) -> Entry {
    Entry {
        release: Some(id.to_string()),
        run: Some(ctx.run_id.clone()),
        ..Entry::new(kind, &ctx.by)
    }
}

pub(crate) async fn promote(ctx: &Context) -> Exit {
    let artifact = match prepare_artifact(ctx).await {
        Ok(a) => a,
        Err(exit) => return exit,
    };
    if let Err(e) = shared::load(ctx) {
        ctx.message(Level::Error, None, e);
        return ctx.finish(Exit::Usage, None, &[]);
    }
    let since = Instant::now();
    let (mut nodes, unreached, waiting) = match waiting_release(ctx, Some(&artifact), since).await {
        Ok(found) => found,
        Err(exit) => return exit,
    };
    let id = waiting.release.clone();
    let release = Some(id.to_string());
    // The rest of the fleet gets the label the canary was deployed with
    // (`deploy --version-label` included), not the file's.
    let mut artifact = artifact;
    if let Some(label) = nodes.iter().find_map(|n| n.journal.version_of(&id)) {
        artifact.version = label;
    }
    ctx.emit(Event::RunStarted {
        command: ctx.command.into(),
        app: ctx.config.app.name.clone(),
        release: release.clone(),
        version: Some(artifact.version.clone()),
        hosts: ctx.hosts.iter().map(|h| h.name.clone()).collect(),
    });
    fleet::report_all(ctx, &unreached);
    let version = Some(artifact.version.as_str());
    let mut app_problems = match before_touching(ctx, &nodes, release.as_deref(), version).await {
        Ok(problems) => problems,
        Err(exit) => return exit,
    };
    app_problems.extend(shared::problems(ctx, &nodes).await);
    let (problems, refused) = preflight(ctx, &nodes, &artifact, &app_problems);
    // max_unreachable is the deploy's: a promotion reaches every host.
    let every = policy::Unreached {
        other: unreached.len(),
        ..policy::Unreached::NONE
    };
    if let Some(exit) = policy::preflight_exit(every, &problems) {
        let failed = unreached.into_iter().chain(refused).collect();
        return fleet::stop_untouched(ctx, exit, release, &nodes, failed).await;
    }
    let marks = match lock::acquire_waiting(ctx, &mut nodes, Some(id.as_str()), None, since).await {
        Ok(marks) => marks,
        Err(e) => {
            let (exit, held) = e.outcomes();
            fleet::report_all(ctx, &held);
            return fleet::stop_untouched(ctx, exit, release, &nodes, held).await;
        }
    };
    if let Err(exit) = still_waiting(ctx, &mut nodes, &marks, Some(&artifact), &id).await {
        return exit;
    }
    // The canary keeps what it has: it counts as switched by this run, so
    // a failure further on takes it back with the rest.
    let carried: Vec<(usize, Option<ReleaseId>)> = nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.probe.current.as_ref() == Some(&id))
        .map(|(i, n)| (i, before(n, &id)))
        .collect();
    ctx.message(
        Level::Info,
        None,
        format!(
            "promoting {id} from its canary ({}) to {} more host(s)",
            waiting.canary.join(", "),
            nodes.len() - carried.len()
        ),
    );
    let plan = rollout::Setup {
        canary: Amount::Hosts(0),
        carried,
        ..rollout::Setup::of(&ctx.config.strategy)
    };
    let (exit, outcomes) = rollout::rollout(ctx, &nodes, &artifact, &id, &plan).await;
    match exit {
        Exit::Ok => record_all(ctx, &nodes, &marker(ctx, Kind::Promoted, &id)).await,
        // Every host it reached, the canary too, went back: nothing waits any more.
        Exit::RolledBack => record_all(ctx, &nodes, &marker(ctx, Kind::Aborted, &id)).await,
        // Hosts stay where they are; `promote` may carry it on again.
        _ => {}
    }
    lock::release(ctx, &nodes).await;
    fleet::close_all(&nodes).await;
    ctx.finish(exit, release, &outcomes)
}

pub(crate) async fn abort(ctx: &Context) -> Exit {
    // Rolling back needs no build; when the build is here, it must be the
    // one the canary was made from.
    let artifact = match &ctx.config.artifact {
        Some(spec) if spec.path.exists() => match prepare_artifact(ctx).await {
            Ok(a) => Some(a),
            Err(exit) => return exit,
        },
        _ => None,
    };
    let since = Instant::now();
    let (mut nodes, unreached, waiting) = match waiting_release(ctx, artifact.as_ref(), since).await
    {
        Ok(found) => found,
        Err(exit) => return exit,
    };
    let id = waiting.release.clone();
    let version = nodes.iter().find_map(|n| n.journal.version_of(&id));
    ctx.emit(Event::RunStarted {
        command: ctx.command.into(),
        app: ctx.config.app.name.clone(),
        release: Some(id.to_string()),
        version: version.clone(),
        hosts: ctx.hosts.iter().map(|h| h.name.clone()).collect(),
    });
    fleet::report_all(ctx, &unreached);
    let release = Some(id.to_string());
    let refused: Vec<HostOutcome> =
        match before_touching(ctx, &nodes, release.as_deref(), version.as_deref()).await {
            Ok(problems) => problems
                .into_iter()
                .map(|(i, p)| nodes[i].stopped(Failure::Preflight(p).at(Phase::Preflight)))
                .collect(),
            Err(exit) => return exit,
        };
    if !refused.is_empty() || !unreached.is_empty() {
        fleet::report_all(ctx, &refused);
        let failed = unreached.into_iter().chain(refused).collect();
        return fleet::stop_untouched(ctx, Exit::Preflight, release, &nodes, failed).await;
    }
    let message = format!("aborting {id}");
    let marks = match lock::acquire_waiting(ctx, &mut nodes, None, Some(&message), since).await {
        Ok(marks) => marks,
        Err(e) => {
            let (exit, held) = e.outcomes();
            fleet::report_all(ctx, &held);
            let failed = unreached.into_iter().chain(held).collect();
            return fleet::stop_untouched(ctx, exit, None, &nodes, failed).await;
        }
    };
    if let Err(exit) = still_waiting(ctx, &mut nodes, &marks, artifact.as_ref(), &id).await {
        return exit;
    }
    let canary: Vec<usize> = (0..nodes.len())
        .filter(|&i| nodes[i].probe.current.as_ref() == Some(&id))
        .collect();
    let mut outcomes: Vec<HostOutcome> = nodes
        .iter()
        .map(|n| HostOutcome::skipped(n.name(), n.current()))
        .chain(unreached)
        .collect();
    let backs = canary
        .iter()
        .map(|&i| Back::new(i, &nodes[i], before(&nodes[i], &id), id.clone()))
        .collect();
    let reason = format!("aborting {id}, which waited for promotion");
    for (i, outcome) in put_back::together(ctx, backs, BackFor::Undo, Some(reason)).await {
        outcomes[i] = outcome;
    }
    let all_back = outcomes.iter().all(|o| o.failure.is_none());
    if all_back {
        record_all(ctx, &nodes, &marker(ctx, Kind::Aborted, &id)).await;
    }
    lock::release(ctx, &nodes).await;
    fleet::close_all(&nodes).await;
    let exit = policy::done_or_failed(all_back);
    ctx.finish(exit, Some(id.to_string()), &outcomes)
}
