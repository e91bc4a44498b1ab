//! Can a reached host take this run? One judgement, used by `check` and by
//! `deploy`, so the two can never disagree. Reads only the probe.

use super::app_layout::SharedProblem;
use super::delivery::held;
use super::layout::{LockInfo, LockState, Probe};
use crate::artifact::Artifact;

/// Why a reachable host cannot take a deploy. Typed: the exit code depends
/// on which (a lock alone is exit 4, anything else exit 3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Problem {
    #[error("{deploy_to} cannot be created: {path} is not writable")]
    NotWritable { deploy_to: String, path: String },
    #[error("missing tools: {}", .0.join(", "))]
    MissingTools(Vec<String>),
    /// `artifact.url` needs curl or wget on the host.
    #[error("neither curl nor wget is installed: the host cannot download artifact.url")]
    NoDownloader,
    #[error("not enough free space: {free_kb} KiB free, {needed_kb} KiB needed")]
    NoSpace { free_kb: u64, needed_kb: u64 },
    /// Someone holds the fleet lock, or something is in its place.
    #[error("{}", locked(.0))]
    Locked(LockState),
    /// `current` points at a release that is gone: the host counts as
    /// having no current release (a warning, not a refusal).
    #[error(
        "current points at {0}, which is missing; the host is treated as having no current release"
    )]
    CurrentMissing(String),
    /// A shared path that cannot be linked (a shared file not on the host).
    #[error("{0}")]
    Shared(SharedProblem),
    /// sudo will not run commands as the `become` user.
    #[error("become {user}: {reason}")]
    Become { user: String, reason: String },
}

impl Problem {
    pub(crate) fn is_lock(&self) -> bool {
        matches!(self, Problem::Locked(_))
    }

    /// Only worth saying: it stops nothing.
    pub(crate) fn is_warning(&self) -> bool {
        matches!(self, Problem::CurrentMissing(_))
    }
}

/// Who holds the lock and how to free it; or what is at the lock path.
pub(crate) fn locked(state: &LockState) -> String {
    if let LockState::File(line) = state
        && let Some(l) = own_dead_run(line)
    {
        return format!(
            "locked: your own lock from run {} at {}, which is no longer running; `hoist unlock` frees it",
            l.pid, l.since
        );
    }
    match state {
        LockState::File(line) => format!(
            "locked by {} ({})",
            LockInfo::describe(line),
            LockInfo::how_to_free(line)
        ),
        LockState::Other(_) => format!(
            "locked: {}; `hoist unlock --force` removes it",
            state.describe()
        ),
    }
}

/// The lock in `line`, when it is the user's own (same user@machine) and
/// the run that took it is gone (its pid is not alive here): left by a run
/// that was killed, or whose unlock failed. A lock taken by hand
/// (`hoist lock`) outlives its process on purpose and is never one.
fn own_dead_run(line: &str) -> Option<LockInfo> {
    let info = LockInfo::parse(line)?;
    let alive = |pid: u32| {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // Signal 0 asks only whether the process exists; EPERM means it does.
        // SAFETY: kill(2) with signal 0 sends nothing.
        let r = unsafe { libc::kill(pid, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    };
    (!info.hand && info.by == super::whoami() && info.pid != 0 && !alive(info.pid)).then_some(info)
}

/// What a deploy asks of a host, from its artifact.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wants<'a> {
    /// Space one more release takes, unpacked.
    pub needed_kb: u64,
    pub content_sha: &'a str,
    /// The host downloads it (`artifact.url`).
    pub pull: bool,
}

impl<'a> Wants<'a> {
    pub(crate) fn of(artifact: &'a Artifact) -> Self {
        Wants {
            needed_kb: artifact.needed_kb(),
            content_sha: &artifact.content_sha,
            pull: artifact.pull.is_some(),
        }
    }
}

/// Everything in a host's `probe` that stops it (its `deploy_to`) from
/// taking a deploy that `wants` this (or any deploy, when that is unknown:
/// then free space is not judged). A host that already holds the same
/// content needs no space for an upload.
pub(crate) fn problems(probe: &Probe, deploy_to: &str, wants: Option<Wants>) -> Vec<Problem> {
    let mut found = Vec::new();
    if let Some(path) = &probe.not_writable {
        found.push(Problem::NotWritable {
            deploy_to: deploy_to.to_string(),
            path: path.clone(),
        });
    }
    if !probe.missing_tools.is_empty() {
        found.push(Problem::MissingTools(probe.missing_tools.clone()));
    }
    if wants.is_some_and(|w| w.pull) && probe.fetch.is_none() {
        found.push(Problem::NoDownloader);
    }
    if let (Some(free_kb), Some(wants)) = (probe.free_kb, wants) {
        let needed_kb = wants.needed_kb;
        if free_kb < needed_kb && held(probe, wants.content_sha).is_none() {
            found.push(Problem::NoSpace { free_kb, needed_kb });
        }
    }
    if let Some(state) = probe.lock_state() {
        found.push(Problem::Locked(state));
    }
    if let Some(target) = &probe.current_dangling {
        found.push(Problem::CurrentMissing(target.clone()));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::ReleaseId;

    const WANTS: Wants = Wants {
        needed_kb: 1000,
        content_sha: "new",
        pull: false,
    };

    #[test]
    fn a_hand_lock_is_never_a_dead_runs_lock() {
        // pid 2^31-2 is never a live process here.
        let line = |hand: bool| {
            serde_json::to_string(&LockInfo {
                by: crate::engine::whoami(),
                pid: 2_147_483_646,
                since: "2026-01-01T00:00:00Z".into(),
                token: "t".into(),
                release: None,
                message: Some("db migration, ask alice".into()),
                env: None,
                hand,
            })
            .unwrap()
        };
        let run = locked(&LockState::File(line(false)));
        assert!(run.contains("no longer running"), "{run}");
        let hand = locked(&LockState::File(line(true)));
        assert!(!hand.contains("no longer running"), "{hand}");
        assert!(
            hand.contains("(by hand): db migration, ask alice"),
            "{hand}"
        );
    }

    #[test]
    fn what_a_probe_says_stops_a_deploy() {
        let held = ReleaseId::parse("20260101T000000Z-00000001").unwrap();
        let room = |free: u64| Probe {
            free_kb: Some(free),
            ..Probe::default()
        };
        let cases: Vec<(&str, Probe, Option<Wants>, Vec<Problem>)> = vec![
            ("a healthy host", room(5000), Some(WANTS), vec![]),
            (
                "not writable",
                Probe {
                    not_writable: Some("/srv".into()),
                    ..room(5000)
                },
                Some(WANTS),
                vec![Problem::NotWritable {
                    deploy_to: "/srv/app".into(),
                    path: "/srv".into(),
                }],
            ),
            (
                "missing tools",
                Probe {
                    missing_tools: vec!["tar".into()],
                    ..room(5000)
                },
                None,
                vec![Problem::MissingTools(vec!["tar".into()])],
            ),
            (
                "no room",
                room(10),
                Some(WANTS),
                vec![Problem::NoSpace {
                    free_kb: 10,
                    needed_kb: 1000,
                }],
            ),
            ("no room, but no artifact to judge", room(10), None, vec![]),
            (
                "no room, but the content is there already",
                Probe {
                    releases: vec![(held.clone(), Some("new".into()))],
                    ..room(10)
                },
                Some(WANTS),
                vec![],
            ),
            (
                "a URL and nothing to download it with",
                room(5000),
                Some(Wants {
                    pull: true,
                    ..WANTS
                }),
                vec![Problem::NoDownloader],
            ),
            (
                "a URL and curl",
                Probe {
                    fetch: Some("curl".into()),
                    ..room(5000)
                },
                Some(Wants {
                    pull: true,
                    ..WANTS
                }),
                vec![],
            ),
            (
                "locked",
                Probe {
                    lock: Some("{}".into()),
                    ..room(5000)
                },
                Some(WANTS),
                vec![Problem::Locked(LockState::File("{}".into()))],
            ),
            (
                "current points at nothing",
                Probe {
                    current_dangling: Some("releases/gone".into()),
                    ..room(5000)
                },
                Some(WANTS),
                vec![Problem::CurrentMissing("releases/gone".into())],
            ),
        ];
        for (what, probe, wants, want) in cases {
            assert_eq!(problems(&probe, "/srv/app", wants), want, "{what}");
        }
    }
}
