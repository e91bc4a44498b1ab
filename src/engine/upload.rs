//! Bytes on the wire to a host: the whole artifact streamed, verified and
//! unpacked as it arrives, with progress, stopped when the run halts.
//! What the bytes are (which payload a host gets) is `payload`'s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::fleet::Node;
use super::layout::{ReceiveStage, ReceiveStep};
use super::{Context, Failed, Failure};
use crate::artifact::Artifact;
use crate::release::ReleaseId;
use crate::report::{Event, Phase, Reporter};
use crate::transport::Input;

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
