//! Making a release from one the host already holds: a copy checked
//! against the artifact's manifest, or a delta applied to it.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::read_manifest;
use crate::engine::delivery::Delivery;
use crate::engine::fleet::Node;
use crate::engine::layout_release::ReleaseStep;
use crate::engine::upload::{self, in_its_step, unless_halted};
use crate::engine::{Context, Failed, Failure};
use crate::manifest::Manifest;
use crate::release::ReleaseId;
use crate::report::{Level, Phase};
use crate::transport::Input;

/// How making a release from one the host already holds went.
pub(super) enum FromHeld {
    /// Made and verified; the bytes sent.
    Made(u64),
    /// Not tried: no manifest to compare with (the artifact's or the
    /// host's), or a delta would not be smaller than the artifact. Why
    /// was said when it is worth saying.
    Skipped,
    /// The held release no longer holds what its own manifest lists
    /// (changed by hand or by the app since its switch): what it would
    /// have made was not kept. Why, for the caller to say once.
    Changed(String),
}

/// Makes release `id` from `base`, a release on the host, and the delta
/// between them (empty when `base` holds the same content: a copy), then
/// has the host check the result against the artifact's manifest before
/// it takes the release's name. So a release edited by hand is never
/// carried into a new one, whether it is the base of a delta or a copy.
/// `base`'s manifest is read from the host unless one was already read
/// for the same content ([`crate::delta::HeldManifests`]); when a delta
/// from such a borrowed manifest fails, the borrowed one is dropped and
/// the host's own decides: only a failure with its own blames the host.
pub(super) async fn from_held(
    ctx: &Context,
    node: &Node,
    delivery: &Delivery<'_>,
    id: &ReleaseId,
    base: &ReleaseId,
    halt: &CancellationToken,
) -> Result<FromHeld, Failed> {
    let Some(new) = &delivery.artifact.manifest else {
        return Ok(FromHeld::Skipped);
    };
    let sum = node.probe.sum_of(base);
    let read = || read_manifest(ctx, node, base, new.read_limit());
    let Some(held) = delivery.held.get(sum, read).await? else {
        return Ok(FromHeld::Skipped);
    };
    let mut listed = match apply(ctx, node, delivery, id, base, &held.manifest, halt).await? {
        Applied::Made(sent) => return Ok(FromHeld::Made(sent)),
        Applied::Skipped => return Ok(FromHeld::Skipped),
        Applied::Mismatch(listed) => listed,
    };
    // What did not fit this host is lent to no other.
    if let Some(sum) = sum {
        delivery.held.forget(sum, &held.manifest);
    }
    if held.borrowed {
        ctx.message(
            Level::Info,
            Some(node.name()),
            format!("the manifest of {base} taken from another host with the same content does not fit this host's; reading its own"),
        );
        let Some(own) = read_manifest(ctx, node, base, new.read_limit())
            .await?
            .map(Arc::new)
        else {
            return Ok(FromHeld::Skipped);
        };
        if own != held.manifest {
            match apply(ctx, node, delivery, id, base, &own, halt).await? {
                Applied::Made(sent) => {
                    if let Some(sum) = sum {
                        delivery.held.offer(sum, own);
                    }
                    return Ok(FromHeld::Made(sent));
                }
                Applied::Skipped => return Ok(FromHeld::Skipped),
                Applied::Mismatch(again) => listed = again,
            }
        }
    }
    let old = node.layout.release_path(base);
    Ok(FromHeld::Changed(match Manifest::parse(&listed) {
        Ok(listed) => format!(
            "{old} has changed since its switch (by hand or by the app): {}",
            listed.diff_from(new).describe(3)
        ),
        Err(_) => format!("{old} has changed since its switch (by hand or by the app)"),
    }))
}

/// How one try at making a release from a held one and a delta went.
enum Applied {
    Made(u64),
    /// Not tried (see [`FromHeld::Skipped`]).
    Skipped,
    /// The result is not what the artifact's manifest says: the host's
    /// listing of it.
    Mismatch(Vec<u8>),
}

/// Makes release `id` from `base`, whose manifest is taken to be `old`,
/// and the delta from `old` to the artifact: see [`from_held`].
async fn apply(
    ctx: &Context,
    node: &Node,
    delivery: &Delivery<'_>,
    id: &ReleaseId,
    base: &ReleaseId,
    old: &Arc<Manifest>,
    halt: &CancellationToken,
) -> Result<Applied, Failed> {
    let artifact = delivery.artifact;
    let Some(new) = &artifact.manifest else {
        return Ok(Applied::Skipped);
    };
    let Some(delta) = delivery.delta_from(old.clone()).await else {
        return Ok(Applied::Skipped);
    };
    let size = delta.bytes.len() as u64;
    if size >= artifact.transfer_size {
        return Ok(Applied::Skipped);
    }
    let copy = delta.sent == 0 && delta.gone == 0;
    if !copy {
        ctx.phase(node.name(), Phase::Upload);
        ctx.message(
            Level::Info,
            Some(node.name()),
            format!(
                "delta from {base}: {} new or changed, {} gone",
                count(delta.sent, "entry", "entries"),
                delta.gone
            ),
        );
    }
    let script =
        node.layout
            .receive_delta(base, id, &ctx.run_id, &new.sha256(), &artifact.content_sha);
    // A copy's few bytes (an empty delta) are no upload to show.
    let input = Input::bytes(delta.bytes.clone());
    let input = if copy {
        input
    } else {
        upload::progress(ctx, node.name(), input)
    };
    let out = unless_halted(ctx, halt, node.run(&script, Some(input)))
        .await
        .map_err(|f| f.at(Phase::Upload))?;
    match out.code {
        Some(0) => Ok(Applied::Made(size)),
        Some(c) if c as i32 == ReleaseStep::Mismatch.code() => Ok(Applied::Mismatch(out.stdout)),
        code => Err(in_its_step(Failure::Command {
            what: if copy {
                "copying the release"
            } else {
                "applying the delta"
            }
            .into(),
            code,
            tail: crate::engine::tail_lines(&out.stderr, &[], 10),
        })),
    }
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
