//! Getting a release onto a host: a local copy when the host already holds
//! the same content, else the artifact streamed, verified and unpacked.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::fleet::Node;
use super::layout::{ReceiveStage, ReceiveStep};
use super::payload;
use super::{Context, Failed, Failure};
use crate::artifact::Artifact;
use crate::release::ReleaseId;
use crate::report::{Event, Level, Phase, Reporter};
use crate::transport::Input;

/// A release on this host made from the same content, if any.
pub(crate) fn already_held(node: &Node, artifact: &Artifact) -> Option<ReleaseId> {
    node.probe
        .releases
        .iter()
        .rev()
        .find(|(_, sum)| sum.as_deref() == Some(artifact.content_sha.as_str()))
        .map(|(id, _)| id.clone())
}

/// Puts the release on the host: copied from a release it already holds
/// with the same content, else downloaded by the host (`artifact.url`),
/// made from its current release and a delta, or uploaded whole, verified
/// and unpacked. Returns the bytes sent to the host.
pub(crate) async fn deliver(
    ctx: &Context,
    node: &Node,
    artifact: &Artifact,
    id: &ReleaseId,
    halt: &CancellationToken,
) -> Result<u64, Failed> {
    if node.probe.has_release(id) {
        return Ok(0);
    }
    let mut edited = None;
    if let Some(from) = already_held(node, artifact) {
        ctx.phase(node.name(), Phase::Unpack);
        ctx.message(
            Level::Info,
            Some(node.name()),
            format!("already holds this artifact as {from}; copying it, no upload"),
        );
        // Checked against the artifact's manifest, so that a hand edit of
        // `from` is not copied along.
        match payload::from_held(ctx, node, artifact, id, &from, halt).await? {
            payload::FromHeld::Made(sent) => return Ok(sent),
            payload::FromHeld::Edited => edited = Some(from),
            // Nothing to check it with (an `artifact.url`, a release from
            // before manifests): copied as it is.
            payload::FromHeld::Skipped => {
                return copy_unchecked(ctx, node, artifact, id, &from).await;
            }
        }
    }
    if artifact.pull.is_some() {
        return payload::pull(ctx, node, artifact, id, halt).await;
    }
    // A delta from the release just found edited would be refused too.
    let current_edited = edited.is_some() && edited == node.probe.current;
    if !current_edited && let Some(sent) = payload::by_delta(ctx, node, artifact, id, halt).await? {
        return Ok(sent);
    }
    ctx.phase(node.name(), Phase::Upload);
    let payload = whole_artifact(node, artifact, id, &ctx.run_id)
        .map_err(|e| Failure::Other(format!("cannot read the artifact: {e}")).at(Phase::Upload))?;
    send(ctx, node, payload, halt).await?;
    Ok(artifact.transfer_size + payload::record_manifest(ctx, node, artifact, id).await)
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
    Ok(payload::record_manifest(ctx, node, artifact, id).await)
}

/// What travels to a host for one release: a byte source, its size, and
/// the host script that receives it (reading exactly that many bytes on
/// its stdin, and exiting with a [`ReceiveStep`] code when a step fails).
/// How the bytes travel is [`send`]'s business; what they are is the
/// payload's: the whole artifact here, other sources (a delta, a pull
/// from a URL) plug in the same way.
pub(crate) struct Payload {
    pub input: Input,
    pub receive: String,
}

/// The whole artifact, verified and unpacked on the host as it streams in.
pub(crate) fn whole_artifact(
    node: &Node,
    artifact: &Artifact,
    id: &ReleaseId,
    run_id: &str,
) -> std::io::Result<Payload> {
    Ok(Payload {
        input: artifact.input()?,
        receive: node.layout.receive(
            id,
            run_id,
            artifact.packing,
            &artifact.transfer_sha,
            &artifact.content_sha,
        ),
    })
}

/// Sends `payload` to the host through its one session, with progress
/// events, until the host's script ends (or the run halts).
pub(crate) async fn send(
    ctx: &Context,
    node: &Node,
    payload: Payload,
    halt: &CancellationToken,
) -> Result<(), Failed> {
    let input = progress(ctx, node.name(), payload.input);
    let upload = node.must("receiving the upload", &payload.receive, Some(input));
    let result = unless_halted(ctx, halt, upload).await;
    // An upload cut off (a halt, Ctrl-C, a lost link) cleans up after
    // itself on the host (its script's trap); whatever a cut left behind is
    // cleared when the next run takes the lock. Nothing more is sent to a
    // host whose connection may be dead.
    result.map(|_| ()).map_err(in_its_step)
}

/// `work`, or its end as a failure as soon as the run halts (Ctrl-C, or a
/// halt of the rollout); dropping `work` then stops it.
pub(crate) async fn unless_halted<T>(
    ctx: &Context,
    halt: &CancellationToken,
    work: impl std::future::Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    tokio::select! {
        r = work => r,
        _ = halt.cancelled() => Err(if ctx.cancel.is_cancelled() { Failure::Interrupted } else { Failure::Halted }),
    }
}

/// A failed receive, named after the step of the host's script that failed
/// (its exit code says which) and reported in that step's phase.
pub(crate) fn in_its_step(failure: Failure) -> Failed {
    let step = match &failure {
        Failure::Command { code: Some(c), .. } => ReceiveStep::from_exit(*c as i32),
        _ => None,
    };
    match (step, failure) {
        (Some(step), Failure::Command { code, tail, .. }) => {
            let phase = match step.stage() {
                ReceiveStage::Upload | ReceiveStage::Verify => Phase::Upload,
                ReceiveStage::Unpack => Phase::Unpack,
            };
            Failure::Command {
                what: step.what().to_string(),
                code,
                tail,
            }
            .at(phase)
        }
        (_, failure) => failure.at(Phase::Upload),
    }
}

/// Counts bytes as they are sent and reports them, a few times a second;
/// once all are sent, the host is unpacking.
pub(crate) fn progress(ctx: &Context, host: &str, input: Input) -> Input {
    let reporter: Arc<dyn Reporter> = ctx.reporter.clone();
    let host = host.to_string();
    let total = input.len;
    let mut sent = 0u64;
    let mut last = Instant::now();
    input.inspect(move |chunk| {
        sent += chunk.len() as u64;
        if sent >= total {
            reporter.event(&Event::UploadProgress {
                host: host.clone(),
                bytes: sent,
                total: Some(total),
            });
            reporter.event(&Event::HostPhase {
                host: host.clone(),
                phase: Phase::Unpack,
            });
        } else if last.elapsed() >= Duration::from_millis(100) {
            last = Instant::now();
            reporter.event(&Event::UploadProgress {
                host: host.clone(),
                bytes: sent,
                total: Some(total),
            });
        }
    })
}
