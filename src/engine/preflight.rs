//! Can a reached host take this run? One judgement, used by `check` and by
//! `deploy`, so the two can never disagree. Reads only the probe.

use super::fleet::Node;
use super::lock::LockInfo;
use super::upload::already_held;
use crate::artifact::Artifact;

/// Why a reachable host cannot take a deploy. Typed: the exit code depends
/// on which (a lock alone is exit 4, anything else exit 3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Problem {
    #[error("{deploy_to} cannot be created: {path} is not writable")]
    NotWritable { deploy_to: String, path: String },
    #[error("missing tools: {}", .0.join(", "))]
    MissingTools(Vec<String>),
    #[error("not enough free space: {free_kb} KiB free, {needed_kb} KiB needed")]
    NoSpace { free_kb: u64, needed_kb: u64 },
    /// Someone holds the fleet lock; the lock file's first line.
    #[error("locked by {} ({})", LockInfo::describe(.0), LockInfo::how_to_free(.0))]
    Locked(String),
}

impl Problem {
    pub(crate) fn is_lock(&self) -> bool {
        matches!(self, Problem::Locked(_))
    }
}

/// Everything that stops `node` from taking `artifact` (or any deploy, when
/// the artifact is unknown: then free space is not judged). A host that
/// already holds the same content needs no space for an upload.
pub(crate) fn problems(node: &Node, artifact: Option<&Artifact>) -> Vec<Problem> {
    let probe = &node.probe;
    let mut found = Vec::new();
    if let Some(path) = &probe.not_writable {
        found.push(Problem::NotWritable {
            deploy_to: node.layout.deploy_to.clone(),
            path: path.clone(),
        });
    }
    if !probe.missing_tools.is_empty() {
        found.push(Problem::MissingTools(probe.missing_tools.clone()));
    }
    if let (Some(free_kb), Some(artifact)) = (probe.free_kb, artifact) {
        let needed_kb = artifact.needed_kb();
        if free_kb < needed_kb && already_held(node, artifact).is_none() {
            found.push(Problem::NoSpace { free_kb, needed_kb });
        }
    }
    if let Some(line) = &probe.lock {
        found.push(Problem::Locked(line.clone()));
    }
    found
}
