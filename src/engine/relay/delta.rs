//! Deltas down a relay tree: the hosts of a wave that would each get the
//! same delta from here (their bases hold the same content, so the same
//! manifest, so the same delta is cut) form a group, and each group of
//! two or more is relayed one delta, which every host checks against its
//! sha256 and applies to its own base, checked against the artifact's
//! manifest, exactly as a delta from hoist ([`Layout::receive_delta`]).
//!
//! [`Layout::receive_delta`]: crate::engine::layout::Layout::receive_delta

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::hop::DeltaCargo;
use crate::engine::Context;
use crate::engine::delivery::{Delivery, Offer, Source, sources};
use crate::engine::fleet::Node;
use crate::engine::layout::Probe;
use crate::engine::payload::read_manifest;
use crate::release::ReleaseId;

/// The hosts of `hosts` (index and probe) whose first source is a delta,
/// grouped by the content of its base (hoist would send each host of a
/// group the same bytes): the groups of two or more, in the order of
/// their first host. A base without a recorded sum groups with none.
pub(super) fn groups(hosts: &[(usize, &Probe)], id: &ReleaseId, offer: Offer) -> Vec<Vec<usize>> {
    let mut by: Vec<(&str, Vec<usize>)> = Vec::new();
    for &(i, probe) in hosts {
        let Some(Source::Delta(base)) = sources(probe, id, offer).into_iter().next() else {
            continue;
        };
        let Some(sum) = probe.sum_of(&base) else {
            continue;
        };
        match by.iter_mut().find(|(s, _)| *s == sum) {
            Some((_, group)) => group.push(i),
            None => by.push((sum, vec![i])),
        }
    }
    by.into_iter()
        .map(|(_, group)| group)
        .filter(|group| group.len() >= 2)
        .collect()
}

/// The delta for `group` (see [`groups`]), cut from the manifest of its
/// first host's base (read once for the run, as without the relay); `None`
/// when no delta is to be sent (no manifest, the manifest cannot be read,
/// or the delta would not be smaller than the artifact): its hosts get the
/// release as without the relay.
pub(super) async fn cut(
    ctx: &Context,
    nodes: &[Node],
    delivery: &Delivery<'_>,
    group: &[usize],
) -> Option<DeltaCargo> {
    let artifact = delivery.artifact;
    let new = artifact.manifest.as_ref()?;
    let bases: HashMap<usize, ReleaseId> = group
        .iter()
        .filter_map(|&i| Some((i, nodes[i].probe.current.clone()?)))
        .collect();
    let first = &nodes[*group.first()?];
    let base = bases.get(group.first()?)?;
    let sum = first.probe.sum_of(base);
    let read = || read_manifest(ctx, first, base, new.read_limit());
    let held = delivery.held.get(sum, read).await.ok()??;
    let delta = delivery.delta_from(held.manifest).await?;
    if delta.bytes.len() as u64 >= artifact.transfer_size {
        return None;
    }
    Some(DeltaCargo {
        sha: hex::encode(Sha256::digest(&delta.bytes[..])),
        bytes: delta.bytes.clone(),
        manifest_sha: new.sha256(),
        bases,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::delivery::tests_support::{NEW, id, probe};

    #[test]
    fn hosts_whose_bases_hold_the_same_content_share_a_delta() {
        let hosts = [
            probe(Some(1), &[(1, Some("a"))]),
            // Another id, the same content: the same delta.
            probe(Some(2), &[(2, Some("a"))]),
            probe(Some(3), &[(3, Some("b"))]),
            // Fresh: the whole artifact, no delta.
            probe(None, &[]),
            probe(Some(1), &[(1, Some("a"))]),
            probe(Some(3), &[(3, Some("b"))]),
            // Holds the new content: a copy first, never relayed a delta.
            probe(Some(1), &[(1, Some("a")), (4, Some("new"))]),
            // No recorded sum: its delta is its own.
            probe(Some(1), &[(1, None)]),
            // Alone on its content.
            probe(Some(5), &[(5, Some("c"))]),
            // Already holds the release.
            probe(Some(1), &[(1, Some("a")), (7, Some("new"))]),
        ];
        let with: Vec<(usize, &Probe)> = hosts.iter().enumerate().collect();
        assert_eq!(groups(&with, &id(7), NEW), vec![vec![0, 1, 4], vec![2, 5]]);
        let off = Offer {
            delta: false,
            ..NEW
        };
        assert_eq!(groups(&with, &id(7), off), Vec::<Vec<usize>>::new());
        let pull = Offer { pull: true, ..NEW };
        assert_eq!(groups(&with, &id(7), pull), Vec::<Vec<usize>>::new());
    }
}
