//! What goes to a host for a new release ([`deliver`]): the sources
//! [`super::delivery`] chose, tried in order (a copy of a release it holds,
//! a delta against its current release, a download it makes itself, or the
//! whole artifact); and the release's manifest. The bytes on the wire are
//! `upload`'s.

use std::sync::Arc;

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

/// What a deploy would do to put the release on a host, found without
/// changing anything (`deploy --dry-run`): the source [`deliver`] would
/// use, the bytes it would send, and what the release changes against the
/// host's current one.
#[derive(Debug)]
pub(crate) struct Prediction {
    pub source: Source,
    pub bytes: u64,
    /// Against the current release's manifest; `None` when either side has
    /// none (a first deploy, a URL, a release from before manifests).
    pub diff: Option<crate::manifest::Diff>,
}

/// Predicts [`deliver`] on `node`: reads the manifests it would read and
/// cuts the delta it would send (kept in `delivery`, as a deploy would),
/// and writes nothing.
pub(crate) async fn predict(
    ctx: &Context,
    node: &Node,
    delivery: &Delivery<'_>,
    id: &ReleaseId,
) -> Result<Prediction, Failed> {
    let artifact = delivery.artifact;
    let whole = artifact.transfer_size + artifact.manifest_gz().map_or(0, |m| m.len() as u64);
    let manifest_of = |base: ReleaseId| async move {
        match &artifact.manifest {
            Some(new) => read_manifest(ctx, node, &base, new.read_limit()).await,
            None => Ok(None),
        }
    };
    let current = match node.probe.current.clone() {
        Some(current) => manifest_of(current).await?,
        None => None,
    };
    let diff = artifact
        .manifest
        .as_ref()
        .zip(current.as_ref())
        .map(|(new, old)| new.diff_from(old));
    let sources = sources(&node.probe, id, Offer::of(artifact));
    for source in sources {
        let bytes = match &source {
            Source::Has | Source::Pull => 0,
            Source::Whole => whole,
            Source::Copy(base) | Source::Delta(base) => {
                let old = match (node.probe.current.as_ref() == Some(base), &current) {
                    (true, Some(current)) => Some(current.clone()),
                    _ => manifest_of(base.clone()).await?,
                };
                let cut = match (old, &artifact.manifest) {
                    (Some(old), Some(new)) => {
                        let (source, shared) = (&artifact.source, &artifact.shared_paths);
                        let old = Arc::new(old);
                        delivery
                            .deltas
                            .get(source, shared, &artifact.ignore, new, old)
                            .await
                    }
                    _ => None,
                };
                match (cut, &source) {
                    (Some(delta), _) if (delta.bytes.len() as u64) < artifact.transfer_size => {
                        delta.bytes.len() as u64
                    }
                    // A copy with nothing to check it with is copied as it is.
                    (None, Source::Copy(_)) => artifact.manifest_gz().map_or(0, |m| m.len() as u64),
                    _ => continue,
                }
            }
        };
        return Ok(Prediction {
            source,
            bytes,
            diff,
        });
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
        return Err(Failure::Other(format!(
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

/// How making a release from one the host already holds went.
enum FromHeld {
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
async fn from_held(
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
    let Some(delta) = delivery
        .deltas
        .get(
            &artifact.source,
            &artifact.shared_paths,
            &artifact.ignore,
            new,
            old.clone(),
        )
        .await
    else {
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
            tail: super::tail_lines(&out.stderr, &[], 10),
        })),
    }
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
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
async fn record_manifest(ctx: &Context, node: &Node, artifact: &Artifact, id: &ReleaseId) -> u64 {
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
