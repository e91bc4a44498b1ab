//! `hoist rollback`: every selected host back to the release the fleet was on
//! before its last deploy (or `--to ID`). The target is read from the hosts'
//! journals, and must be the same everywhere before anything is switched.

use std::time::Instant;

use crate::config::BlueGreen;
use crate::engine::fleet::{self, Node};
use crate::engine::layout::Mark;
use crate::engine::policy::{self, BackFor, Refusal};
use crate::engine::preflight::Problem;
use crate::engine::put_back::{self, Back, InWaves};
use crate::engine::strategy;
use crate::engine::{Context, Failure, HostOutcome, blue_green, lock, run_hooks, sudo};
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

pub(crate) async fn run(
    ctx: &Context,
    to: Option<&str>,
    all_at_once: bool,
    live: Option<&str>,
) -> Exit {
    let to = match to.map(|t| ReleaseId::parse(t).ok_or(t)) {
        Some(Err(bad)) => {
            ctx.message(
                Level::Error,
                None,
                format!("`{bad}` is not a release id (they look like 20261122T030405Z-1a2b3c4d; see `hoist releases`)"),
            );
            return ctx.finish(Exit::Usage, None, &[]);
        }
        Some(Ok(id)) => Some(id),
        None => None,
    };
    if let Some(bg) = &ctx.config.blue_green {
        let selected: Vec<&str> = ctx.hosts.iter().map(|h| h.name.as_str()).collect();
        if let Err(e) = policy::whole_colors(&selected, &bg.colors) {
            ctx.message(Level::Error, None, e);
            return ctx.finish(Exit::Usage, None, &[]);
        }
    } else if live.is_some() {
        ctx.message(Level::Error, None, super::LIVE_WITHOUT_BLUE_GREEN);
        return ctx.finish(Exit::Usage, None, &[]);
    }
    let since = Instant::now();
    let (mut nodes, unreached) = fleet::reach(ctx).await;
    fleet::report_all(ctx, &unreached);
    crate::engine::deadman::tell_found(ctx, &nodes);
    lock::wait_free(ctx, &mut nodes, since).await;
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
        return fleet::stop_untouched(ctx, exit, None, &nodes, failed).await;
    }
    if let Some(bg) = &ctx.config.blue_green {
        return traffic_back(ctx, bg, nodes, unreached, to.as_ref(), live, since).await;
    }
    // A canary waiting for promotion is undone by `abort`, which knows
    // which hosts it is; a plain rollback would find the fleet disagreeing.
    if to.is_none()
        && let Some(refusal) = super::deploy::waiting_refusal(&nodes)
    {
        ctx.message(
            Level::Error,
            None,
            format!("{refusal} (or `hoist rollback --to ID` picks a target by hand)"),
        );
        return fleet::stop_untouched(ctx, Exit::Usage, None, &nodes, unreached).await;
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
            return fleet::stop_untouched(ctx, Exit::Preflight, first, &nodes, failed).await;
        }
    };
    let Some(target) = target else {
        return ctx.finish(Exit::Ok, None, &[]);
    };
    let version = nodes.iter().find_map(|n| n.journal.version_of(&target));
    ctx.emit(Event::RunStarted {
        command: ctx.command.into(),
        app: ctx.config.app.name.clone(),
        release: Some(target.to_string()),
        version: version.clone(),
        hosts: nodes.iter().map(|n| n.name().to_string()).collect(),
    });
    let release = Some(target.to_string());
    if let Err(exit) = become_ready(ctx, &nodes, release.as_deref()).await {
        return exit;
    }
    if let Err(e) = run_hooks::on_start(ctx, release.as_deref(), version.as_deref()).await {
        ctx.message(Level::Error, None, format!("{e}; nothing was touched"));
        return fleet::stop_untouched(ctx, Exit::Preflight, release, &nodes, vec![]).await;
    }
    let message = format!("rolling back to {target}");
    let marks = match lock::acquire_waiting(ctx, &mut nodes, None, Some(&message), since).await {
        Ok(marks) => marks,
        Err(e) => {
            let (exit, held) = e.outcomes();
            fleet::report_all(ctx, &held);
            fleet::close_all(&nodes).await;
            return ctx.finish(exit, Some(target.to_string()), &[]);
        }
    };
    if let Err(exit) = still_the_target(ctx, &mut nodes, &marks, to.as_ref(), &target).await {
        return exit;
    }
    let (exit, outcomes) = back_in_waves(ctx, &nodes, &target, all_at_once).await;
    lock::release(ctx, &nodes).await;
    fleet::close_all(&nodes).await;
    ctx.finish(exit, Some(target.to_string()), &outcomes)
}

/// Reads the fleet again under the lock: the rollback's target must still
/// be `target`. Another run may have deployed or rolled back between the
/// first reading and the lock (while this one ran `on_start_local`, or
/// waited for the lock): going on with what was read before would undo
/// that run's release, or go back one release too far. Only the hosts
/// whose `marks` (from taking the lock) show a change are read again. On
/// a refusal the lock is freed and the run finished (exit 2).
async fn still_the_target(
    ctx: &Context,
    nodes: &mut [Node],
    marks: &[Mark],
    to: Option<&ReleaseId>,
    target: &ReleaseId,
) -> Result<(), Exit> {
    let why = match fleet::read_changed(nodes, marks).await {
        Err(e) => {
            format!("could not read the fleet again under the lock: {e}; nothing was touched")
        }
        Ok(()) => {
            let currents: Vec<Option<ReleaseId>> =
                nodes.iter().map(|n| n.probe.current.clone()).collect();
            // Every host on it already (another rollback to it won the
            // lock): nothing left to do, and nothing to refuse.
            if currents.iter().all(|c| c.as_ref() == Some(target)) {
                return Ok(());
            }
            let targets = targets(nodes, to);
            match policy::fleet_target(&targets, &currents, to.is_some()) {
                Ok(Some(now)) if now == *target => return Ok(()),
                Ok(now) => format!(
                    "the fleet changed before this rollback took the lock (another run deployed or rolled back meanwhile): read again under the lock, its target is {} now, not {target}; nothing was touched: look at `hoist status` and run the rollback again if it is still wanted",
                    now.map_or("nothing".to_string(), |t| t.to_string())
                ),
                Err(_) => format!(
                    "the fleet changed before this rollback took the lock (another run deployed or rolled back meanwhile): read again under the lock, its hosts no longer agree on {target}; nothing was touched: look at `hoist status`"
                ),
            }
        }
    };
    ctx.message(Level::Error, None, why);
    lock::release(ctx, nodes).await;
    Err(fleet::stop_untouched(ctx, Exit::Usage, Some(target.to_string()), nodes, vec![]).await)
}

/// Every host not on `target` goes back: in the deploy's waves (the
/// canary's host first), each between `before_batch_local` and
/// `after_batch_local`, the health check of one wave passed before the
/// next starts; or all together without the batch hooks (`all_at_once`).
/// A wave where a host could not go back, a failing batch hook or an
/// interrupt stops it: later waves stay where they are. Returns the exit
/// and each node's outcome.
async fn back_in_waves(
    ctx: &Context,
    nodes: &[Node],
    target: &ReleaseId,
    all_at_once: bool,
) -> (Exit, Vec<HostOutcome>) {
    let mut outcomes: Vec<HostOutcome> = nodes
        .iter()
        .map(|n| HostOutcome::skipped(n.name(), n.current()))
        .collect();
    let (moving, ended) = put_back::moving(ctx, nodes, 0..nodes.len(), target);
    for (i, outcome) in ended {
        outcomes[i] = outcome;
    }
    let strategy = &ctx.config.strategy;
    let sizes: Vec<usize> = if all_at_once {
        vec![moving.len()]
    } else {
        strategy::waves(moving.len(), strategy.canary, &strategy.batch)
            .iter()
            .map(|w| w.hosts.len())
            .collect()
    };
    let canary = !all_at_once && strategy::hosts_of(strategy.canary, moving.len()) > 0;
    let mut moving = moving.into_iter();
    let waves: Vec<Vec<Back>> = sizes
        .into_iter()
        .filter(|&n| n > 0)
        .map(|n| moving.by_ref().take(n).collect())
        .collect();
    let how = InWaves {
        why: BackFor::Rollback,
        canary,
        batch_hooks: !all_at_once,
    };
    let went = put_back::in_waves(ctx, waves, how, "").await;
    let all_ok = went.all_back() && outcomes.iter().all(|o| o.failure.is_none());
    let left = !went.unmoved.is_empty();
    let stopped = went.stopped.is_some();
    for (i, outcome) in went.moved.into_iter().chain(went.unmoved) {
        outcomes[i] = outcome;
    }
    let exit = policy::rollback_exit(ctx.cancel.is_cancelled(), left, stopped, all_ok);
    (exit, outcomes)
}

/// `become` checked on every host before anything is touched: `Err` is
/// the exit of a rollback it stops (exit 2 without a password, 3 when a
/// host's sudo refuses).
async fn become_ready(ctx: &Context, nodes: &[Node], release: Option<&str>) -> Result<(), Exit> {
    let (exit, refused) = match sudo::preflight(ctx, nodes).await {
        Ok(problems) if problems.is_empty() => return Ok(()),
        Ok(problems) => {
            let refused: Vec<HostOutcome> = problems
                .into_iter()
                .map(|(i, p)| nodes[i].stopped(Failure::Preflight(p).at(Phase::Preflight)))
                .collect();
            fleet::report_all(ctx, &refused);
            (Exit::Preflight, refused)
        }
        Err(e) => {
            ctx.message(Level::Error, None, e);
            (Exit::Usage, vec![])
        }
    };
    let release = release.map(str::to_string);
    Err(fleet::stop_untouched(ctx, exit, release, nodes, refused).await)
}

/// Blue-green: traffic back to the colour that is not live, which still
/// runs the release it ran. No host is changed: one local command and a
/// journal line on each host. With `--to ID`, that colour is first switched
/// to ID (which it must hold), then takes the traffic.
async fn traffic_back(
    ctx: &Context,
    bg: &BlueGreen,
    mut nodes: Vec<Node>,
    unreached: Vec<HostOutcome>,
    to: Option<&ReleaseId>,
    said_live: Option<&str>,
    since: Instant,
) -> Exit {
    let refuse = |e: String| {
        ctx.message(Level::Error, None, e);
    };
    if !unreached.is_empty() {
        refuse("every host of both colours must be reachable to move traffic: their journals record which colour is live".into());
        return fleet::stop_untouched(ctx, Exit::Preflight, None, &nodes, unreached).await;
    }
    let sides = match blue_green::Sides::read(ctx, bg, &nodes, said_live) {
        Ok(sides) => sides,
        Err(e) => {
            refuse(e);
            return fleet::stop_untouched(ctx, Exit::Usage, None, &nodes, Vec::new()).await;
        }
    };
    let other = match colour_to_take(bg, &nodes, &sides, to) {
        Ok(other) => other,
        Err(e) => {
            refuse(e);
            return fleet::stop_untouched(ctx, Exit::Preflight, None, &nodes, Vec::new()).await;
        }
    };
    let colour_of = |i: usize| &bg.colors[i];
    let target = colour_of(other);
    let live = sides.live.map(|i| colour_of(i).name.as_str());
    let release = to.cloned().or_else(|| {
        nodes
            .iter()
            .find(|n| target.hosts.iter().any(|h| h == n.name()))
            .and_then(|n| n.probe.current.clone())
    });
    ctx.emit(Event::RunStarted {
        command: ctx.command.into(),
        app: ctx.config.app.name.clone(),
        release: release.as_ref().map(|r| r.to_string()),
        version: release
            .as_ref()
            .and_then(|r| nodes.iter().find_map(|n| n.journal.version_of(r))),
        hosts: nodes.iter().map(|n| n.name().to_string()).collect(),
    });
    let version = release
        .as_ref()
        .and_then(|r| nodes.iter().find_map(|n| n.journal.version_of(r)));
    let id = release.as_ref().map(|r| r.to_string());
    // Moving the idle colour to ID runs after_rollback and the health
    // check on it, as `become` says; moving traffic alone runs nothing there.
    if to.is_some()
        && let Err(exit) = become_ready(ctx, &nodes, id.as_deref()).await
    {
        return exit;
    }
    if let Err(e) = run_hooks::on_start(ctx, id.as_deref(), version.as_deref()).await {
        ctx.message(Level::Error, None, format!("{e}; nothing was touched"));
        return fleet::stop_untouched(ctx, Exit::Preflight, id, &nodes, vec![]).await;
    }
    let message = format!("traffic back to {}", target.name);
    if let Err(e) = lock::acquire_waiting(ctx, &mut nodes, None, Some(&message), since).await {
        let (exit, held) = e.outcomes();
        fleet::report_all(ctx, &held);
        return fleet::stop_untouched(ctx, exit, None, &nodes, held).await;
    }
    let (ok, outcomes) = switch_back(ctx, bg, &nodes, target, live, release.as_ref(), to).await;
    lock::release(ctx, &nodes).await;
    fleet::close_all(&nodes).await;
    let exit = policy::done_or_failed(ok);
    ctx.finish(exit, release.map(|r| r.to_string()), &outcomes)
}

/// The colour `hoist rollback` gives the traffic to: with `--to ID`, the
/// idle colour, which must hold ID; else the colour the live one took over
/// from, as the policy reads it from the hosts' releases.
fn colour_to_take(
    bg: &BlueGreen,
    nodes: &[Node],
    sides: &blue_green::Sides,
    to: Option<&ReleaseId>,
) -> Result<usize, String> {
    let colour_of = |i: usize| &bg.colors[i];
    let Some(id) = to else {
        let currents: Vec<(&str, Option<&ReleaseId>)> = nodes
            .iter()
            .filter(|n| {
                sides
                    .live
                    .is_some_and(|live| !colour_of(live).hosts.iter().any(|h| h == n.name()))
            })
            .map(|n| (n.name(), n.probe.current.as_ref()))
            .collect();
        return policy::traffic_back(sides.live, &bg.colors, &currents);
    };
    // --to: the idle colour is switched to ID first; it must hold it.
    let other = sides.idle;
    let lacking: Vec<&str> = nodes
        .iter()
        .filter(|n| colour_of(other).hosts.iter().any(|h| h == n.name()))
        .filter(|n| !n.probe.has_release(id))
        .map(|n| n.name())
        .collect();
    if sides.live.is_none() || !lacking.is_empty() {
        return Err(format!(
            "{} cannot take {id}: {}; `hoist deploy` puts a new build on the idle colour",
            colour_of(other).name,
            if lacking.is_empty() {
                "no colour is live yet".to_string()
            } else {
                format!("it is not on {}", lacking.join(", "))
            }
        ));
    }
    Ok(other)
}

/// Under the lock: with `--to ID`, the `target` colour's hosts to ID
/// first (switch, after_rollback, health), then `switch_local` gives it the
/// traffic and every journal records it. Whether all of it went well, and
/// each host's outcome.
async fn switch_back(
    ctx: &Context,
    bg: &BlueGreen,
    nodes: &[Node],
    target: &crate::config::Color,
    live: Option<&str>,
    release: Option<&ReleaseId>,
    to: Option<&ReleaseId>,
) -> (bool, Vec<HostOutcome>) {
    let started = Instant::now();
    let mut outcomes: Vec<HostOutcome> = nodes
        .iter()
        .map(|n| HostOutcome::skipped(n.name(), n.current()))
        .collect();
    let mut ok = true;
    if let Some(id) = to {
        // The idle colour to ID first: switch, after_rollback, health.
        let idle = (0..nodes.len()).filter(|&i| target.hosts.iter().any(|h| h == nodes[i].name()));
        let (mut moving, ended) = put_back::moving(ctx, nodes, idle, id);
        // The idle colour takes no requests.
        moving.iter_mut().for_each(|b| b.in_pool = false);
        let moved = put_back::together(ctx, moving, BackFor::Rollback, None).await;
        for (i, outcome) in ended.into_iter().chain(moved) {
            ok &= outcome.failure.is_none();
            outcomes[i] = outcome;
        }
    }
    // `[traffic]`: all of the weight to the colour going live first.
    if ok && let Err(e) = blue_green::all_to(ctx, bg, nodes, &target.name, release).await {
        ok = false;
        ctx.message(
            Level::Error,
            None,
            format!(
                "set_local at 100% to {} did not pass: {e}; traffic may still go to {}",
                target.name,
                live.unwrap_or("the old colour")
            ),
        );
    }
    if ok {
        let reason = "rollback";
        match blue_green::switch_traffic(ctx, bg, &target.name, live, release, reason).await {
            Ok(()) => {
                let all: Vec<&Node> = nodes.iter().collect();
                ok = blue_green::record_traffic(ctx, &all, &target.name, live, release).await;
                for (i, node) in nodes.iter().enumerate() {
                    if target.hosts.iter().any(|h| h == node.name()) && to.is_none() {
                        outcomes[i] =
                            HostOutcome::ok(node.name(), node.current(), started.elapsed())
                                .with_note("live again");
                    }
                }
            }
            Err(e) => {
                ok = false;
                ctx.message(
                    Level::Error,
                    None,
                    format!(
                        "switch_local failed: {e}; traffic may still go to {}",
                        live.unwrap_or("the old colour")
                    ),
                );
            }
        }
    }
    (ok, outcomes)
}
