//! Which release a rollback, a resume or a promotion goes to, judged from
//! the hosts' journals: the fleet must agree, or nothing moves.

use crate::engine::strategy::{Wave, WaveKind};
use crate::journal::{Journal, Kind};
use crate::release::ReleaseId;

/// Why a host cannot be rolled back to a common target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("does not hold release {0}")]
    Lacks(ReleaseId),
    #[error("has no earlier release to go back to from {0}")]
    NothingEarlier(ReleaseId),
    #[error("has no release deployed")]
    NoRelease,
    #[error(
        "would go back to {would} (now on {}); the hosts disagree, so no target is safe: pick one with --to ID",
        .current.as_ref().map(|c| c.to_string()).unwrap_or("nothing".into())
    )]
    Disagree {
        would: ReleaseId,
        current: Option<ReleaseId>,
    },
}

/// One host's rollback target: `--to ID` if it holds it, else what its
/// journal says came before `current`.
pub(crate) fn host_target(
    to: Option<&ReleaseId>,
    holds: impl Fn(&ReleaseId) -> bool,
    earlier: Option<ReleaseId>,
    current: Option<&ReleaseId>,
) -> Result<ReleaseId, Refusal> {
    match to {
        Some(id) if holds(id) => Ok(id.clone()),
        Some(id) => Err(Refusal::Lacks(id.clone())),
        None => earlier.ok_or_else(|| match current {
            Some(c) => Refusal::NothingEarlier(c.clone()),
            None => Refusal::NoRelease,
        }),
    }
}

/// Whether the fleet agrees on one rollback target. `targets[i]` is host i's
/// own target, `currents[i]` its current release. Without `--to` every host
/// must name the same target, or none is safe and each says why. Returns the
/// target (`None` for an empty fleet), or every refusal by host index.
pub(crate) fn fleet_target(
    targets: &[Result<ReleaseId, Refusal>],
    currents: &[Option<ReleaseId>],
    chosen_by_user: bool,
) -> Result<Option<ReleaseId>, Vec<(usize, Refusal)>> {
    let mut refusals: Vec<(usize, Refusal)> = targets
        .iter()
        .enumerate()
        .filter_map(|(i, t)| t.as_ref().err().map(|r| (i, r.clone())))
        .collect();
    let first = targets.iter().find_map(|t| t.as_ref().ok());
    let disagree = !chosen_by_user
        && targets
            .iter()
            .filter_map(|t| t.as_ref().ok())
            .any(|t| Some(t) != first);
    if disagree {
        for (i, t) in targets.iter().enumerate() {
            if let Ok(t) = t {
                refusals.push((
                    i,
                    Refusal::Disagree {
                        would: t.clone(),
                        current: currents.get(i).cloned().flatten(),
                    },
                ));
            }
        }
    }
    if refusals.is_empty() {
        Ok(first.cloned())
    } else {
        Err(refusals)
    }
}

/// `--resume`: the release of the last deploy (only a deploy's lock names a
/// release; rollbacks and hand locks do not), if it did not reach every
/// host, was never rolled back, and was made from this artifact.
pub(crate) fn resume_target(
    hosts: &[(Option<&ReleaseId>, &Journal)],
    artifact_sha: &str,
) -> Result<ReleaseId, String> {
    let last = hosts
        .iter()
        .flat_map(|(_, j)| j.entries.iter())
        .filter(|e| e.event == Kind::Lock && e.release.is_some())
        .max_by(|a, b| a.ts.cmp(&b.ts))
        .and_then(|e| e.release.as_deref().and_then(ReleaseId::parse))
        .ok_or("nothing to resume: no earlier deploy is recorded on these hosts")?;
    if hosts.iter().all(|(current, _)| *current == Some(&last)) {
        return Err(format!(
            "nothing to resume: every selected host is already on {last}"
        ));
    }
    if hosts
        .iter()
        .any(|(_, j)| j.bad_releases().iter().any(|b| b == last.as_str()))
    {
        return Err(format!(
            "{last} was rolled back, or its before_switch_once failed; it cannot be resumed. Deploy anew."
        ));
    }
    let prefix = &artifact_sha[..8.min(artifact_sha.len())];
    if last.hash_prefix() != prefix {
        return Err(format!(
            "the artifact changed since {last} was deployed (its hash starts {}, the artifact's {prefix}); deploy anew instead of resuming",
            last.hash_prefix(),
        ));
    }
    Ok(last)
}

// --- the canary's bake ------------------------------------------------------

/// `deploy --until canary` needs a canary wave with hosts after it, and a
/// rolling fleet.
pub(crate) fn until_canary(waves: &[Wave], blue_green: bool) -> Result<(), String> {
    if blue_green {
        return Err("--until canary: a blue-green fleet has no canary wave (the idle colour takes no traffic until the switch)".into());
    }
    match waves.first() {
        Some(w) if w.kind == WaveKind::Canary && waves.len() > 1 => Ok(()),
        Some(w) if w.kind == WaveKind::Canary => Err(
            "--until canary: the canary is the whole selection, so nothing would be left to promote".into(),
        ),
        _ => Err("--until canary: strategy.canary is 0, so there is no canary wave; set canary = 1 (or a percentage)".into()),
    }
}

/// A release waiting for promotion, as the journals record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Waiting {
    pub release: ReleaseId,
    /// The artifact's content sha256 it was made from.
    pub sha256: Option<String>,
    /// The canary hosts.
    pub canary: Vec<String>,
    pub by: String,
    pub since: String,
}

/// The release waiting for `promote` or `abort`: every host whose journal
/// names one must name the same. `None` when nothing waits.
pub(crate) fn waiting(journals: &[&Journal]) -> Result<Option<Waiting>, String> {
    let mut found: Option<Waiting> = None;
    for entry in journals.iter().filter_map(|j| j.waiting()) {
        let Some(release) = entry.release.as_deref().and_then(ReleaseId::parse) else {
            continue;
        };
        match &found {
            Some(w) if w.release != release => {
                return Err(format!(
                    "the hosts' journals disagree on the release waiting for promotion ({} and {release}); `hoist abort` rolls the canary back",
                    w.release
                ));
            }
            Some(_) => {}
            None => {
                found = Some(Waiting {
                    release,
                    sha256: entry.sha256.clone(),
                    canary: entry.hosts.clone(),
                    by: entry.by.clone(),
                    since: entry.ts.clone(),
                })
            }
        }
    }
    Ok(found)
}

/// Whether `promote` may carry `waiting` on with this artifact. A refusal
/// is exit 2: nothing is touched.
pub(crate) fn promotable(
    waiting: Option<&Waiting>,
    artifact_sha: Option<&str>,
    command: &str,
) -> Result<Waiting, String> {
    let Some(w) = waiting else {
        return Err(format!(
            "nothing is waiting for promotion, so there is nothing to {command}: `hoist deploy --until canary` deploys a canary that waits"
        ));
    };
    if let (Some(recorded), Some(artifact)) = (w.sha256.as_deref(), artifact_sha)
        && recorded != artifact
    {
        return Err(format!(
            "the artifact differs from the one {} was made from (sha256 {}…, the artifact's {}…): {command} works on the same build; rebuild it, or `hoist abort` and deploy anew",
            w.release,
            &recorded[..12.min(recorded.len())],
            &artifact[..12.min(artifact.len())],
        ));
    }
    Ok(w.clone())
}

// --- blue-green ----------------------------------------------------------------
