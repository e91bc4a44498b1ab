//! Getting a release onto a host: a local copy when the host already holds
//! the same content, else the artifact streamed, verified and unpacked.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::sync::CancellationToken;

use super::fleet::Node;
use super::layout::{ReceiveStage, ReceiveStep};
use super::payload;
use super::{Context, Failed, Failure};
use crate::artifact::Artifact;
use crate::release::ReleaseId;
use crate::report::{Event, Level, Phase, Reporter};

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
    if let Some(from) = already_held(node, artifact) {
        ctx.phase(node.name(), Phase::Unpack);
        ctx.message(
            Level::Info,
            Some(node.name()),
            format!("already holds this artifact as {from}; copying it, no upload"),
        );
        node.must(
            "copying the release",
            &node
                .layout
                .copy_release(&from, id, &ctx.run_id, &artifact.content_sha),
            None,
        )
        .await
        .map_err(in_its_step)?;
        return Ok(payload::record_manifest(ctx, node, artifact, id).await);
    }
    if artifact.pull.is_some() {
        return payload::pull(ctx, node, artifact, id, halt).await;
    }
    if let Some(sent) = payload::by_delta(ctx, node, artifact, id, halt).await? {
        return Ok(sent);
    }
    ctx.phase(node.name(), Phase::Upload);
    let file = tokio::fs::File::open(artifact.upload_path())
        .await
        .map_err(|e| Failure::Other(format!("cannot read the artifact: {e}")).at(Phase::Upload))?;
    let reader = Progress::new(ctx, node.name(), artifact.transfer_size, file);
    let receive = node.layout.receive(
        id,
        &ctx.run_id,
        artifact.packing,
        &artifact.transfer_sha,
        &artifact.content_sha,
    );
    let upload = node.must("receiving the upload", &receive, Some(Box::new(reader)));
    let result = tokio::select! {
        r = upload => r,
        _ = halt.cancelled() => Err(if ctx.cancel.is_cancelled() { Failure::Interrupted } else { Failure::Halted }),
    };
    // An upload cut off (a halt, Ctrl-C, a lost link) cleans up after
    // itself on the host (its script's trap); whatever a cut left behind is
    // cleared when the next run takes the lock. Nothing more is sent to a
    // host whose connection may be dead.
    result.map_err(in_its_step)?;
    Ok(artifact.transfer_size + payload::record_manifest(ctx, node, artifact, id).await)
}

/// `inner`, reporting its bytes as they are read (upload progress).
pub(crate) fn progress<R: AsyncRead + Send + Unpin>(
    ctx: &Context,
    host: &str,
    total: u64,
    inner: R,
) -> impl AsyncRead + Send + Unpin + use<R> {
    Progress::new(ctx, host, total, inner)
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

/// Counts bytes as they are read and reports them, a few times a second.
struct Progress<R> {
    reporter: Arc<dyn Reporter>,
    host: String,
    total: u64,
    sent: u64,
    last: Instant,
    done: bool,
    inner: R,
}

impl<R> Progress<R> {
    fn new(ctx: &Context, host: &str, total: u64, inner: R) -> Self {
        Progress {
            reporter: ctx.reporter.clone(),
            host: host.to_string(),
            total,
            sent: 0,
            last: Instant::now(),
            done: false,
            inner,
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Progress<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            let read = buf.filled().len() - before;
            this.sent += read as u64;
            if read == 0 && buf.remaining() > 0 && !this.done {
                // End of the artifact: the host now verifies and unpacks it.
                this.done = true;
                this.reporter.event(&Event::UploadProgress {
                    host: this.host.clone(),
                    bytes: this.sent,
                    total: Some(this.total),
                });
                this.reporter.event(&Event::HostPhase {
                    host: this.host.clone(),
                    phase: Phase::Unpack,
                });
            } else if read > 0 && this.last.elapsed() >= Duration::from_millis(100) {
                this.last = Instant::now();
                this.reporter.event(&Event::UploadProgress {
                    host: this.host.clone(),
                    bytes: this.sent,
                    total: Some(this.total),
                });
            }
        }
        poll
    }
}
