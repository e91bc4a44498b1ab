//! The end of a rollout for the dead-man switch: every host it switched
//! that stays switched is confirmed over a fresh connection (see
//! [`deadman::confirm_all`]); a host that fails that fails the rollout.

use super::{HostRun, Run};
use crate::engine::deadman;
use crate::engine::policy::{self, HostState};

/// Confirms the hosts `staying` (switched by this run, and not going
/// back). A host whose watchdog went back already ends rolled back (with
/// why); one that cannot be reached ends failed on the new release as far
/// as is known. Either counts as a failure of the rollout: how many.
async fn confirm(run: &Run<'_>, hosts: &mut [HostRun], staying: &[usize]) -> usize {
    let ctx = run.ctx;
    let ended = deadman::confirm_all(ctx, staying.iter().map(|&i| (i, &run.nodes[i]))).await;
    let mut failures = 0;
    for (i, result) in ended {
        let Err(failed) = result else { continue };
        let host = &mut hosts[i];
        let back_on = host.previous.as_ref().map(|p| p.to_string());
        let on = Some(run.id.to_string());
        let outcome = deadman::unconfirmed(run.nodes[i].name(), failed, back_on, on, &host.outcome);
        ctx.report(&outcome);
        host.outcome = outcome;
        // Not for this run to put back: it is back, or cannot be reached.
        host.back = true;
        failures += 1;
    }
    failures
}

/// Before the end of a rollout is decided: the hosts whose watchdog went
/// back by itself while the run went on (their heartbeat found it) end
/// rolled back, and, with `confirm`, every host that stays switched is
/// confirmed. A host either way stops the rollout (but for an interrupt,
/// which has stopped it already): the failure policy decides the rest.
pub(super) async fn at_the_end(run: &Run<'_>, hosts: &mut [HostRun], confirm_them: bool) -> usize {
    let ctx = run.ctx;
    let reverted: Vec<usize> = (0..hosts.len())
        .filter(|&i| {
            hosts[i].switched && !hosts[i].back && ctx.deadman.reverted(run.nodes[i].name())
        })
        .collect();
    let mut failures = confirm(run, hosts, &reverted).await;
    if confirm_them {
        // Hosts the policy puts back are disarmed as they go; the others
        // stay, and are confirmed.
        let states: Vec<HostState> = hosts.iter().map(HostRun::state).collect();
        let verdict = policy::verdict(
            &states,
            run.halted().is_some(),
            ctx.cancel.is_cancelled(),
            ctx.config.strategy.on_failure,
        );
        let staying: Vec<usize> = (0..hosts.len())
            .filter(|&i| hosts[i].switched && !hosts[i].back && !verdict.roll_back.contains(&i))
            .collect();
        failures += confirm(run, hosts, &staying).await;
    }
    if failures > 0 {
        run.stop(format!(
            "{failures} host(s) failed their confirmation after the switch (the dead-man switch)"
        ));
    }
    failures
}
