//! What [`deliver`](super::deliver) would do on a host, predicted for
//! `deploy --dry-run`: reads what it would read, writes nothing.

use std::sync::Arc;

use super::read_manifest;
use crate::engine::delivery::{Delivery, Offer, Source, sources};
use crate::engine::fleet::Node;
use crate::engine::{Context, Failed};
use crate::release::ReleaseId;

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
