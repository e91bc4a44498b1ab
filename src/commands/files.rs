//! `hoist files push`: rotate what `[[files]]` holds (a secret, a config)
//! without a release. Reads the files (and their commands) before any host
//! is touched, reaches and locks the fleet, then the engine's `files::push`.

use crate::engine::fleet;
use crate::engine::{Context, Failure, files, lock, policy, preflight, shared, sudo};
use crate::exit::Exit;
use crate::report::{Event, Level, Phase};

pub(crate) async fn push(ctx: &Context) -> Exit {
    if ctx.config.app.files.is_empty() {
        ctx.message(
            Level::Error,
            None,
            format!("{} has no [[files]] to push", ctx.config.path.display()),
        );
        return ctx.finish(Exit::Usage, None, &[]);
    }
    if let Err(e) = shared::load(ctx) {
        ctx.message(Level::Error, None, e);
        return ctx.finish(Exit::Usage, None, &[]);
    }
    let since = std::time::Instant::now();
    let (mut nodes, unreached) = fleet::reach(ctx).await;
    lock::wait_free(ctx, &mut nodes, since).await;
    ctx.emit(Event::RunStarted {
        command: ctx.command.into(),
        app: ctx.config.app.name.clone(),
        release: None,
        version: None,
        hosts: ctx.hosts.iter().map(|h| h.name.clone()).collect(),
    });
    fleet::report_all(ctx, &unreached);
    let became = match sudo::preflight(ctx, &nodes).await {
        Ok(problems) => problems,
        Err(e) => {
            ctx.message(Level::Error, None, e);
            return fleet::stop_untouched(ctx, Exit::Usage, None, &nodes, unreached).await;
        }
    };
    let mut refused = Vec::new();
    let mut problems = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let own = became
            .iter()
            .filter(|(n, _)| *n == i)
            .map(|(_, p)| p.clone());
        for problem in preflight::problems(&node.probe, &node.layout.deploy_to, None)
            .into_iter()
            .chain(own)
        {
            if problem.is_warning() {
                ctx.message(Level::Warn, Some(node.name()), problem.to_string());
                continue;
            }
            let outcome = node.stopped(Failure::Preflight(problem.clone()).at(Phase::Preflight));
            ctx.report(&outcome);
            problems.push(problem);
            refused.push(outcome);
        }
    }
    // Every selected host takes the files: an unreachable one is not skipped.
    let unreachable = unreached
        .iter()
        .filter(|o| o.failure.as_ref().is_some_and(policy::is_unreachable))
        .count();
    let judged = policy::Unreached {
        unreachable,
        allowed: 0,
        other: unreached.len() - unreachable,
    };
    if let Some(exit) = policy::preflight_exit(judged, &problems) {
        let failed = unreached.into_iter().chain(refused).collect();
        return fleet::stop_untouched(ctx, exit, None, &nodes, failed).await;
    }
    if let Err(e) = lock::acquire_waiting(ctx, &mut nodes, None, Some(ctx.command), since).await {
        let (exit, held) = e.outcomes();
        fleet::report_all(ctx, &held);
        return fleet::stop_untouched(ctx, exit, None, &nodes, held).await;
    }
    let (exit, outcomes) = files::push(ctx, &nodes).await;
    lock::release(ctx, &nodes).await;
    fleet::close_all(&nodes).await;
    ctx.finish(exit, None, &outcomes)
}
