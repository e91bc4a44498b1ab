//! What the rollout does between two waves, as the plan says: nothing, a
//! wait, the canary's bake, or the question to promote it.

use super::{HostRun, Run};
use crate::engine::HostOutcome;
use crate::engine::bake::{Spoiled, bake};
use crate::engine::rollout_plan::{PlannedWave, Step};
use crate::report::{Level, Phase};

/// `step`, after the wave `done`, before the waves `next`. `Err` is the
/// reason the rollout stops; a canary host that turned unhealthy during
/// its bake is marked failed in `hosts`.
pub(super) async fn between(
    run: &Run<'_>,
    hosts: &mut [HostRun],
    done: &PlannedWave,
    step: Step,
    next: &[PlannedWave],
) -> Result<(), String> {
    let ctx = run.ctx;
    match step {
        Step::Nothing => Ok(()),
        Step::Wait(d) => {
            ctx.message(
                Level::Info,
                None,
                format!(
                    "pausing {} before the next wave",
                    humantime::format_duration(d)
                ),
            );
            tokio::select! {
                _ = tokio::time::sleep(d) => Ok(()),
                _ = ctx.cancel.cancelled() => Err("interrupted during the pause".into()),
            }
        }
        Step::Bake(d) => {
            let check = ctx
                .config
                .health
                .as_ref()
                .expect("a bake has a health check");
            let canary: Vec<_> = done
                .hosts
                .iter()
                .map(|&i| (&run.nodes[i], run.host_env(i, hosts[i].previous.as_ref())))
                .collect();
            match bake(ctx, &canary, d, check).await {
                Ok(()) => Ok(()),
                Err(Spoiled::Interrupted) => Err("interrupted during the bake".into()),
                Err(Spoiled::Unhealthy(k, failure)) => {
                    let i = done.hosts[k];
                    let name = run.nodes[i].name();
                    let host = &mut hosts[i];
                    host.outcome = HostOutcome::failed(
                        name,
                        failure.at(Phase::Health),
                        Some(run.id.to_string()),
                        host.outcome.elapsed,
                    );
                    ctx.report(&host.outcome);
                    Err(format!(
                        "the canary {name} turned unhealthy during the bake"
                    ))
                }
            }
        }
        Step::Ask => {
            if ctx.yes {
                return Ok(());
            }
            let remaining: usize = next.iter().map(|w| w.hosts.len()).sum();
            let question = format!(
                "The canary is healthy. Promote to the remaining {remaining} host(s) in {} wave(s)?",
                next.len()
            );
            // The question blocks this thread while a person reads it.
            match tokio::task::block_in_place(|| ctx.reporter.confirm(&question)) {
                Some(true) => Ok(()),
                Some(false) => Err("the canary was not promoted".into()),
                None => {
                    Err("cannot ask to promote the canary without a terminal; pass --yes".into())
                }
            }
        }
    }
}
