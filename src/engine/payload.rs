//! What goes to a host for a new release ([`deliver`]): the sources
//! [`super::delivery`] chose, tried in order (a copy of a release it holds,
//! a delta against its current release, a download it makes itself, or the
//! whole artifact); and the release's manifest. The bytes on the wire are
//! `upload`'s.

mod held;
mod predict;

use tokio_util::sync::CancellationToken;

use super::delivery::{Delivery, Offer, Source, sources};
use super::fleet::Node;
use super::layout::ReceiveStep;
use super::layout_release::{ReleaseStep, UrlPacking};
use super::upload::{self, in_its_step, unless_halted};
use super::{Context, Failed, Failure};
use crate::artifact::Artifact;
use crate::manifest::Manifest;
use crate::release::ReleaseId;
use crate::report::{Level, Phase};
use crate::transport::Input;
use held::{FromHeld, from_held};
pub(crate) use predict::{Prediction, predict};

/// Puts the release on the host from the first source that works of those
/// [`sources`] lists: a copy of a release it holds with the same content, a
/// delta from its current release, a download by the host
/// (`artifact.url`), or the whole artifact, verified and unpacked. Returns
/// the bytes sent to the host.
pub(crate) async fn deliver(
    ctx: &Context,
    node: &Node,
    delivery: &Delivery<'_>,
    id: &ReleaseId,
    halt: &CancellationToken,
) -> Result<u64, Failed> {
    let artifact = delivery.artifact;
    // Why a release on the host could not be used, said once below.
    let mut changed = None;
    for source in sources(&node.probe, id, Offer::of(artifact)) {
        match source {
            Source::Has => return Ok(0),
            Source::Copy(from) => {
                ctx.phase(node.name(), Phase::Unpack);
                ctx.message(
                    Level::Info,
                    Some(node.name()),
                    format!("already holds this artifact as {from}; copying it, no upload"),
                );
                // Checked against the artifact's manifest, so that a hand
                // edit of `from` is not copied along.
                match from_held(ctx, node, delivery, id, &from, halt).await? {
                    FromHeld::Made(sent) => return Ok(sent),
                    FromHeld::Changed(why) => changed = Some(why),
                    // Nothing to check it with (an `artifact.url`, a release
                    // from before manifests): copied as it is.
                    FromHeld::Skipped => {
                        return copy_unchecked(ctx, node, artifact, id, &from).await;
                    }
                }
            }
            Source::Delta(base) => match from_held(ctx, node, delivery, id, &base, halt).await? {
                FromHeld::Made(sent) => return Ok(sent),
                FromHeld::Changed(why) => {
                    changed.get_or_insert(why);
                }
                FromHeld::Skipped => {}
            },
            Source::Pull | Source::Whole => {
                if let Some(why) = changed.take() {
                    let instead = match source {
                        Source::Pull => "the host downloads the artifact instead",
                        _ => "sending the whole artifact instead",
                    };
                    ctx.message(
                        Level::Warn,
                        Some(node.name()),
                        format!("{why}; {instead} (paths the app writes into its release can be left out with `ignore` in [app])"),
                    );
                }
                return match source {
                    Source::Pull => pull(ctx, node, artifact, id, halt).await,
                    _ => whole(ctx, node, artifact, id, halt).await,
                };
            }
        }
    }
    unreachable!("sources ends with the download or the whole artifact")
}

/// Sends the whole artifact, verified and unpacked on the host.
async fn whole(
    ctx: &Context,
    node: &Node,
    artifact: &Artifact,
    id: &ReleaseId,
    halt: &CancellationToken,
) -> Result<u64, Failed> {
    ctx.phase(node.name(), Phase::Upload);
    let payload = upload::whole_artifact(node, artifact, id, &ctx.run_id)
        .map_err(|e| Failure::Other(format!("cannot read the artifact: {e}")).at(Phase::Upload))?;
    upload::send(ctx, node, payload, halt).await?;
    Ok(artifact.transfer_size + record_manifest(ctx, node, artifact, id).await)
}

/// Copies `from`, which holds the same content, as release `id`, with no
/// check of what is in it.
async fn copy_unchecked(
    ctx: &Context,
    node: &Node,
    artifact: &Artifact,
    id: &ReleaseId,
    from: &ReleaseId,
) -> Result<u64, Failed> {
    node.must(
        "copying the release",
        &node
            .layout
            .copy_release(from, id, &ctx.run_id, &artifact.content_sha),
        None,
    )
    .await
    .map_err(in_its_step)?;
    Ok(record_manifest(ctx, node, artifact, id).await)
}

/// The manifest recorded on the host for `base`, fitted to this run's
/// shared paths; `None`, said, when it has none or it cannot be read.
/// One over `most` bytes fails the host, unread.
pub(crate) async fn read_manifest(
    ctx: &Context,
    node: &Node,
    base: &ReleaseId,
    most: u64,
) -> Result<Option<Manifest>, Failed> {
    let out = node
        .must_keeping(
            "reading the manifest of the release it holds",
            &node.layout.read_manifest(base, most),
            most as usize + 1,
        )
        .await
        .map_err(|f| f.at(Phase::Upload))?;
    if out.stdout.len() as u64 > most || out.cut > 0 {
        return Err(Failure::Answer(format!(
            "the manifest of {base} on this host (.hoist/manifests/{base} under deploy_to) is over {} bytes, four times what this artifact's would take: not read; remove it and deploy again (the whole artifact is sent then)",
            most
        ))
        .at(Phase::Upload));
    }
    if out.stdout.is_empty() {
        ctx.message(
            Level::Info,
            Some(node.name()),
            format!(
                "{base} has no manifest (deployed before hoist kept them): it cannot be checked"
            ),
        );
        return Ok(None);
    }
    match Manifest::parse(&out.stdout) {
        Ok(m) => Ok(Some(m.for_release(&ctx.config.app.shared_paths()))),
        Err(e) => {
            ctx.message(
                Level::Warn,
                Some(node.name()),
                format!("the manifest of {base} is unreadable ({e})"),
            );
            Ok(None)
        }
    }
}

/// Has the host download the artifact from `artifact.url`, check its
/// sha256 and unpack it. Bytes sent from here: none but the script.
async fn pull(
    ctx: &Context,
    node: &Node,
    artifact: &Artifact,
    id: &ReleaseId,
    halt: &CancellationToken,
) -> Result<u64, Failed> {
    let Some(pull) = &artifact.pull else {
        return Ok(0);
    };
    ctx.phase(node.name(), Phase::Upload);
    let packing = if pull.gzipped() {
        UrlPacking::TarGz
    } else {
        UrlPacking::Tar
    };
    // The download and what it unpacks to must both fit: half the free
    // space preflight found is the most it may take.
    let spare = node.probe.free_kb.map(|kb| kb.saturating_mul(1024) / 2);
    let limit = [pull.max_size, spare].into_iter().flatten().min();
    let script = node
        .layout
        .pull(id, &ctx.run_id, &pull.url, &pull.sha256, packing, limit);
    let out = unless_halted(ctx, halt, node.run(&script, None))
        .await
        .map_err(|f| f.at(Phase::Upload))?;
    let tail = super::tail_lines(&out.stderr, &out.stdout, 10);
    match out.code {
        Some(0) => Ok(0),
        Some(c) if c as i32 == ReleaseStep::Download.code() => Err(Failure::Command {
            what: format!("downloading {}", pull.url),
            code: out.code,
            tail,
        }
        .at(Phase::Upload)),
        Some(c) if c as i32 == ReceiveStep::Checksum.code() => Err(Failure::Command {
            what: "verifying the download's sha256 (nothing was unpacked)".into(),
            code: out.code,
            tail,
        }
        .at(Phase::Upload)),
        code => Err(in_its_step(Failure::Command {
            what: "receiving the download".into(),
            code,
            tail,
        })),
    }
}

/// Stores the artifact's manifest as release `id`'s, when there is one.
/// Returns the bytes sent. A failure is only a warning: the release is
/// whole, the next deploy to this host just sends the whole artifact.
pub(crate) async fn record_manifest(
    ctx: &Context,
    node: &Node,
    artifact: &Artifact,
    id: &ReleaseId,
) -> u64 {
    let Some(gz) = artifact.manifest_gz() else {
        return 0;
    };
    let size = gz.len() as u64;
    let script = node.layout.record_manifest(id, &ctx.run_id);
    match node
        .must("recording the manifest", &script, Some(Input::bytes(gz)))
        .await
    {
        Ok(_) => size,
        Err(e) => {
            ctx.message(
                Level::Warn,
                Some(node.name()),
                format!("could not record the release's manifest: {e}"),
            );
            0
        }
    }
}
