//! A blue-green deploy that failed after its idle colour's rollout: the
//! traffic back to the colour that was live, the idle colour back to what
//! it had.

use super::{Colours, switch_traffic};
use crate::artifact::Artifact;
use crate::engine::fleet::Node;
use crate::engine::policy::BackFor;
use crate::engine::put_back::{self, Back};
use crate::engine::{Context, HostOutcome};
use crate::release::ReleaseId;
use crate::report::{HostResult, Level};

impl Colours<'_> {
    /// After a failed probe, traffic back to the colour that was live
    /// (`[traffic]`: `set_local` at 0% first, then `switch_local`);
    /// whether it went.
    pub(super) async fn traffic_back(&self, artifact: &Artifact) -> bool {
        let ctx = self.ctx;
        let Some(live) = self.live else {
            ctx.message(
                Level::Error,
                None,
                format!(
                    "no colour was live before, so traffic cannot go back; {} goes back to what it had",
                    self.idle
                ),
            );
            return false;
        };
        let weighed = match &ctx.config.traffic {
            None => true,
            Some(_) => {
                let zeroed = self.weigh(0, None, artifact).await;
                if let Err(e) = &zeroed {
                    ctx.message(
                        Level::Error,
                        None,
                        format!("could not set the traffic weight to 0: set_local {e}"),
                    );
                }
                zeroed.is_ok()
            }
        };
        // The live colour runs what it ran: the release traffic goes back to.
        let release = self.others.iter().find_map(|n| n.probe.current.clone());
        let why = "switching back after the failed probe";
        let back = switch_traffic(ctx, self.bg, live, Some(self.idle), release.as_ref(), why).await;
        if let Err(e) = &back {
            ctx.message(
                Level::Error,
                None,
                format!("could not switch traffic back to {live}: {e}; send it there by hand"),
            );
        }
        weighed && back.is_ok()
    }

    /// After an interrupt: the idle colour's hosts `which` go back (`why`);
    /// once they all did, deploying again is pointed to. Whether they did.
    pub(super) async fn back_after_interrupt(
        &self,
        outcomes: &mut [HostOutcome],
        which: &[usize],
        why: String,
    ) -> bool {
        let back = which.is_empty()
            || go_back(self.ctx, self.targets, outcomes, which, self.id, why).await;
        if back {
            self.ctx.message(
                Level::Info,
                None,
                format!(
                    "`hoist deploy` again deploys this artifact to {} anew",
                    self.idle
                ),
            );
        }
        back
    }
}

/// The hosts `which` of the idle colour go back to the release they had;
/// their outcomes say so. Returns whether all of them made it.
pub(super) async fn go_back(
    ctx: &Context,
    targets: &[Node],
    outcomes: &mut [HostOutcome],
    which: &[usize],
    id: &ReleaseId,
    reason: String,
) -> bool {
    let backs = which
        .iter()
        .map(|&i| {
            let node = &targets[i];
            let target = node.probe.current.clone();
            // The idle colour takes no requests (or no longer: weight 0).
            Back {
                in_pool: false,
                ..Back::taking(i, node, target, id.clone(), &mut outcomes[i])
            }
        })
        .collect();
    let ended = put_back::together(ctx, backs, BackFor::Undo, Some(reason)).await;
    let mut all_back = true;
    for (i, outcome) in ended {
        all_back &= outcome.result != HostResult::Failed;
        outcomes[i] = outcome;
    }
    all_back
}
