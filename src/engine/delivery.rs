//! How a release reaches a host, as a choice: from what the host holds
//! (its probe) and what the artifact allows, [`sources`] lists what to try,
//! best first; `payload` tries them in that order. What the run learns on
//! the way (deltas cut, manifests read from hosts) is kept in [`Delivery`],
//! which lives as long as the run.

use std::sync::Arc;

use super::layout::Probe;
use crate::artifact::Artifact;
use crate::delta::{Delta, Deltas, HeldManifests};
use crate::manifest::Manifest;
use crate::release::ReleaseId;

/// Where a host's new release comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// The host holds the release already (a resumed deploy).
    Has,
    /// A copy of a release it holds with the same content.
    Copy(ReleaseId),
    /// Made from a release it holds and a delta against it.
    Delta(ReleaseId),
    /// The host downloads the artifact itself (`artifact.url`).
    Pull,
    /// The whole artifact, sent from here.
    Whole,
}

/// What the artifact allows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Offer<'a> {
    /// The sha256 of the release's content.
    pub content_sha: &'a str,
    /// Hosts download it (`artifact.url`): nothing is cut from it here.
    pub pull: bool,
    /// `artifact.delta`.
    pub delta: bool,
}

impl<'a> Offer<'a> {
    pub(crate) fn of(artifact: &'a Artifact) -> Self {
        Offer {
            content_sha: &artifact.content_sha,
            pull: artifact.pull.is_some(),
            delta: artifact.delta,
        }
    }
}

/// What to try, in order, to put release `id` on a host whose probe is
/// `probe`: the release itself, a copy of one with the same content, a
/// delta from its current release (never from the release just copied:
/// what made the copy fail makes the delta fail too), then the download
/// or the whole artifact, which always ends the list.
pub(crate) fn sources(probe: &Probe, id: &ReleaseId, offer: Offer) -> Vec<Source> {
    if probe.has_release(id) {
        return vec![Source::Has];
    }
    let mut list = Vec::new();
    let copy = held(probe, offer.content_sha);
    if let Some(from) = &copy {
        list.push(Source::Copy(from.clone()));
    }
    if let Some(current) = &probe.current
        && offer.delta
        && !offer.pull
        && copy.as_ref() != Some(current)
    {
        list.push(Source::Delta(current.clone()));
    }
    list.push(if offer.pull {
        Source::Pull
    } else {
        Source::Whole
    });
    list
}

/// The newest release on the host made from content `sha`, if any.
pub(crate) fn held(probe: &Probe, sha: &str) -> Option<ReleaseId> {
    probe
        .releases
        .iter()
        .rev()
        .find(|(_, sum)| sum.as_deref() == Some(sha))
        .map(|(id, _)| id.clone())
}

/// The artifact of one run, and what the run learned delivering it.
pub(crate) struct Delivery<'a> {
    pub artifact: &'a Artifact,
    /// Deltas cut so far, shared by the hosts on the same release.
    pub deltas: Deltas,
    /// The manifests of the hosts' releases read so far, by content.
    pub held: HeldManifests,
}

impl<'a> Delivery<'a> {
    pub(crate) fn new(artifact: &'a Artifact) -> Self {
        Delivery {
            artifact,
            deltas: Deltas::default(),
            held: HeldManifests::default(),
        }
    }

    /// The delta from a release listed by `old` to the artifact, cut once
    /// per `old` for every host that asks; `None` when the artifact has no
    /// manifest or no delta could be cut.
    pub(crate) async fn delta_from(&self, old: Arc<Manifest>) -> Option<Arc<Delta>> {
        let artifact = self.artifact;
        let new = artifact.manifest.as_ref()?;
        self.deltas
            .get(
                &artifact.source,
                &artifact.shared_paths,
                &artifact.ignore,
                new,
                old,
            )
            .await
    }
}

/// Probes and offers for the tests of the choice of source (here and in
/// the relay's grouping).
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    pub(crate) fn id(n: u32) -> ReleaseId {
        ReleaseId::parse(&format!("2026010{n}T000000Z-0000000{n}")).unwrap()
    }

    /// A probe: `current`, and releases with their content sums.
    pub(crate) fn probe(current: Option<u32>, releases: &[(u32, Option<&str>)]) -> Probe {
        Probe {
            current: current.map(id),
            releases: releases
                .iter()
                .map(|(n, sum)| (id(*n), sum.map(str::to_string)))
                .collect(),
            ..Probe::default()
        }
    }

    pub(crate) const NEW: Offer = Offer {
        content_sha: "new",
        pull: false,
        delta: true,
    };
}

#[cfg(test)]
mod tests {
    use super::tests_support::*;
    use super::*;

    #[test]
    fn the_choice_from_what_the_host_holds() {
        use Source::{Copy, Delta, Has, Pull, Whole};
        let pull = Offer { pull: true, ..NEW };
        let whole_only = Offer {
            delta: false,
            ..NEW
        };
        let cases: &[(&str, Probe, Offer, Vec<Source>)] = &[
            ("a fresh host", probe(None, &[]), NEW, vec![Whole]),
            ("a fresh host, by URL", probe(None, &[]), pull, vec![Pull]),
            (
                "on an older release",
                probe(Some(1), &[(1, Some("old"))]),
                NEW,
                vec![Delta(id(1)), Whole],
            ),
            (
                "delta off",
                probe(Some(1), &[(1, Some("old"))]),
                whole_only,
                vec![Whole],
            ),
            (
                "a URL is never cut into deltas",
                probe(Some(1), &[(1, Some("old"))]),
                pull,
                vec![Pull],
            ),
            (
                "holds the same content under another id",
                probe(Some(2), &[(1, Some("new")), (2, Some("old"))]),
                NEW,
                vec![Copy(id(1)), Delta(id(2)), Whole],
            ),
            (
                "its current release is the same content: no delta from it",
                probe(Some(1), &[(1, Some("new"))]),
                NEW,
                vec![Copy(id(1)), Whole],
            ),
            (
                "the newest copy of the content",
                probe(None, &[(1, Some("new")), (3, Some("new"))]),
                pull,
                vec![Copy(id(3)), Pull],
            ),
            (
                "a release without a recorded sum is no copy",
                probe(Some(1), &[(1, None)]),
                NEW,
                vec![Delta(id(1)), Whole],
            ),
            (
                "already there",
                probe(Some(1), &[(1, Some("old")), (7, Some("new"))]),
                NEW,
                vec![Has],
            ),
        ];
        for (what, probe, offer, want) in cases {
            assert_eq!(&sources(probe, &id(7), *offer), want, "{what}");
        }
    }
}
