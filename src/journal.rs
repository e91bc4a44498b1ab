//! The per-host journal: one JSON line per deploy, rollback and lock event,
//! and what it tells about a host's history (the rollback target above all).

use serde::{Deserialize, Serialize};

use crate::release::ReleaseId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `current` now points at `release`; it was `previous`.
    Deploy,
    /// `current` went back to `release` from `previous`, which is now marked bad.
    Rollback,
    Lock,
    Unlock,
    ForceUnlock,
    /// Blue-green: traffic now goes to `color` (written on every host of both colours).
    Traffic,
    /// `deploy --until canary`: `release` is on the canary and waits for
    /// `hoist promote` or `hoist abort` (written on every selected host).
    AwaitPromotion,
    /// The waiting `release` was carried on to the rest of the fleet.
    Promoted,
    /// The waiting `release` was rolled back from the canary (or its promotion failed).
    Aborted,
    /// `before_switch_once` succeeded for `release` (on the host it ran on):
    /// a resumed deploy of that release does not run it again.
    OnceDone,
    /// `before_switch_once` failed for `release`: no host was switched to
    /// it, and it is never a rollback or resume target.
    OnceFailed,
    /// `hoist files push` wrote (or put back) the host's `[[files]]`;
    /// `message` says which.
    Files,
    /// The host's watchdog put `current` back to `release` from
    /// `previous` by itself (no heartbeat or confirmation from run `run`
    /// in time); `message` says why. Written by the host, not by hoist.
    SelfReverted,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub ts: String,
    pub event: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// user@machine that did it.
    pub by: String,
    /// The run that wrote it (the same on every host of one run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Blue-green: the colour traffic goes to (`traffic`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    /// `await_promotion`: the canary hosts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// The run's environment (`-e`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// The run's `-m/--reason`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The CI run that ran hoist (GitHub Actions: its page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_url: Option<String>,
    /// `deploy --from ENV`: the release of ENV whose bytes this run deploys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_from: Option<String>,
    /// `--override-freeze`: the freeze window this run went through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_freeze: Option<String>,
}

/// What every journal line of one run carries: set once the command line
/// and the file are read (and `promoted_from` once the source release is
/// known), before any line is written, so that no code path writing a
/// line can leave it out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stamp {
    pub env: Option<String>,
    pub reason: Option<String>,
    pub ci_url: Option<String>,
    pub promoted_from: Option<String>,
    pub override_freeze: Option<String>,
}

static STAMP: std::sync::Mutex<Stamp> = std::sync::Mutex::new(Stamp {
    env: None,
    reason: None,
    ci_url: None,
    promoted_from: None,
    override_freeze: None,
});

/// This run's stamp.
pub fn stamp() -> Stamp {
    STAMP.lock().map(|s| s.clone()).unwrap_or_default()
}

/// Changes this run's stamp.
pub fn set_stamp(change: impl FnOnce(&mut Stamp)) {
    if let Ok(mut s) = STAMP.lock() {
        change(&mut s);
    }
}

impl Stamp {
    /// Hook variables: `HOIST_ENV` and `HOIST_REASON`, when set.
    pub fn hook_env(&self) -> Vec<(String, String)> {
        [("HOIST_ENV", &self.env), ("HOIST_REASON", &self.reason)]
            .into_iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_string(), v.clone())))
            .collect()
    }
}

/// The page of the GitHub Actions run hoist runs in, from its standard
/// variables; `None` elsewhere.
pub fn ci_url(var: impl Fn(&str) -> Option<String>) -> Option<String> {
    if var("GITHUB_ACTIONS").as_deref() != Some("true") {
        return None;
    }
    let server = var("GITHUB_SERVER_URL")?;
    let repo = var("GITHUB_REPOSITORY")?;
    let run = var("GITHUB_RUN_ID")?;
    Some(format!(
        "{}/{repo}/actions/runs/{run}",
        server.trim_end_matches('/')
    ))
}

impl Entry {
    pub fn new(event: Kind, by: &str) -> Entry {
        let stamp = stamp();
        Entry {
            env: stamp.env,
            reason: stamp.reason,
            ci_url: stamp.ci_url,
            promoted_from: stamp.promoted_from,
            override_freeze: stamp.override_freeze,
            ts: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            event,
            release: None,
            previous: None,
            version: None,
            sha256: None,
            by: by.to_string(),
            run: None,
            message: None,
            color: None,
            hosts: Vec::new(),
        }
    }

    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("journal entries serialize")
    }
}

/// A host's journal, parsed. Lines that do not parse are skipped: a journal
/// is history, and one bad line must not hide the rest.
#[derive(Debug, Clone, Default)]
pub struct Journal {
    pub entries: Vec<Entry>,
}

impl Journal {
    pub fn parse<S: AsRef<str>>(lines: &[S]) -> Journal {
        Journal {
            entries: lines
                .iter()
                .filter_map(|l| serde_json::from_str(l.as_ref()).ok())
                .collect(),
        }
    }

    fn switches(&self) -> impl DoubleEndedIterator<Item = &Entry> {
        self.entries
            .iter()
            .filter(|e| matches!(e.event, Kind::Deploy | Kind::Rollback | Kind::SelfReverted))
    }

    /// Releases that were rolled back from, or whose once hook failed:
    /// never an automatic target again.
    /// When `hoist files push` last changed the host's files (wrote or put back).
    pub fn files_changed(&self) -> Option<&Entry> {
        self.entries.iter().rev().find(|e| e.event == Kind::Files)
    }

    pub fn bad_releases(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter_map(|e| match e.event {
                Kind::Rollback | Kind::SelfReverted => e.previous.clone(),
                Kind::OnceFailed => e.release.clone(),
                _ => None,
            })
            .collect()
    }

    /// Whether `before_switch_once` succeeded for `release` on this host.
    pub fn once_done(&self, release: &ReleaseId) -> bool {
        self.entries
            .iter()
            .any(|e| e.event == Kind::OnceDone && e.release.as_deref() == Some(release.as_str()))
    }

    /// The last deploy of `release` (its env, reason, sums).
    pub fn deploy_of(&self, release: &ReleaseId) -> Option<&Entry> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.event == Kind::Deploy && e.release.as_deref() == Some(release.as_str()))
    }

    /// The last switch to `release`: when, by whom, and its version.
    pub fn last_switch_to(&self, release: &ReleaseId) -> Option<&Entry> {
        self.switches()
            .rev()
            .find(|e| e.release.as_deref() == Some(release.as_str()))
    }

    /// The version a release was deployed with, if the journal knows it.
    pub fn version_of(&self, release: &ReleaseId) -> Option<String> {
        self.entries
            .iter()
            .rev()
            .filter(|e| e.event == Kind::Deploy && e.release.as_deref() == Some(release.as_str()))
            .find_map(|e| e.version.clone())
    }

    /// The last time the host went back by itself, unless a deploy came
    /// since: what `status` shows and `deploy` and `rollback` warn of.
    pub fn self_reverted(&self) -> Option<&Entry> {
        self.entries
            .iter()
            .rev()
            .find(|e| matches!(e.event, Kind::SelfReverted | Kind::Deploy))
            .filter(|e| e.event == Kind::SelfReverted)
    }

    /// Blue-green: the last `traffic` line, naming the colour that is live.
    pub fn traffic(&self) -> Option<&Entry> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.event == Kind::Traffic && e.color.is_some())
    }

    /// The `await_promotion` line of a release still waiting for `promote`
    /// or `abort`: nothing promoted or aborted it since.
    pub fn waiting(&self) -> Option<&Entry> {
        self.entries
            .iter()
            .rev()
            .find(|e| {
                matches!(
                    e.event,
                    Kind::AwaitPromotion | Kind::Promoted | Kind::Aborted
                )
            })
            .filter(|e| e.event == Kind::AwaitPromotion && e.release.is_some())
    }

    /// The release this host should go back to: the one most recently current
    /// before `current`, never a release that was rolled back from, and only
    /// one still on the host (`present`).
    pub fn rollback_target(
        &self,
        current: Option<&ReleaseId>,
        present: &dyn Fn(&ReleaseId) -> bool,
    ) -> Option<ReleaseId> {
        let bad = self.bad_releases();
        let usable = |r: &ReleaseId| {
            Some(r) != current && !bad.iter().any(|b| b == r.as_str()) && present(r)
        };
        for entry in self.switches().rev() {
            let candidates = [entry.release.as_deref(), entry.previous.as_deref()];
            for id in candidates
                .into_iter()
                .flatten()
                .filter_map(ReleaseId::parse)
            {
                if usable(&id) {
                    return Some(id);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "20260101T000000Z-aaaaaaaa";
    const B: &str = "20260102T000000Z-bbbbbbbb";
    const C: &str = "20260103T000000Z-cccccccc";

    fn id(s: &str) -> ReleaseId {
        ReleaseId::parse(s).unwrap()
    }

    fn deploy(release: &str, previous: Option<&str>) -> Entry {
        Entry {
            release: Some(release.into()),
            previous: previous.map(Into::into),
            version: Some(format!("v-{}", &release[17..])),
            ..Entry::new(Kind::Deploy, "me@here")
        }
    }

    fn rollback(release: &str, from: &str) -> Entry {
        Entry {
            release: Some(release.into()),
            previous: Some(from.into()),
            ..Entry::new(Kind::Rollback, "me@here")
        }
    }

    fn journal(entries: Vec<Entry>) -> Journal {
        let lines: Vec<String> = entries.iter().map(Entry::to_line).collect();
        Journal::parse(&lines)
    }

    fn all(_: &ReleaseId) -> bool {
        true
    }

    #[test]
    fn target_is_the_release_before_the_last_deploy() {
        let j = journal(vec![deploy(A, None), deploy(B, Some(A))]);
        assert_eq!(j.rollback_target(Some(&id(B)), &all), Some(id(A)));
    }

    #[test]
    fn rolled_back_release_is_never_a_target_again() {
        let j = journal(vec![deploy(A, None), deploy(B, Some(A)), rollback(A, B)]);
        assert_eq!(j.rollback_target(Some(&id(A)), &all), None);
        let j = journal(vec![
            deploy(A, None),
            deploy(B, Some(A)),
            rollback(A, B),
            deploy(C, Some(A)),
        ]);
        assert_eq!(j.rollback_target(Some(&id(C)), &all), Some(id(A)));
    }

    #[test]
    fn pruned_release_is_skipped() {
        let j = journal(vec![
            deploy(A, None),
            deploy(B, Some(A)),
            deploy(C, Some(B)),
        ]);
        let present = |r: &ReleaseId| r.as_str() != B;
        assert_eq!(j.rollback_target(Some(&id(C)), &present), Some(id(A)));
    }

    #[test]
    fn lock_lines_and_garbage_do_not_confuse_history() {
        let mut lines: Vec<String> = vec![deploy(A, None).to_line()];
        lines.push("not json".into());
        lines.push(Entry::new(Kind::Lock, "x@y").to_line());
        lines.push(deploy(B, Some(A)).to_line());
        let j = Journal::parse(&lines);
        assert_eq!(j.entries.len(), 3);
        assert_eq!(j.rollback_target(Some(&id(B)), &all), Some(id(A)));
        assert_eq!(j.version_of(&id(A)).as_deref(), Some("v-aaaaaaaa"));
        assert_eq!(j.last_switch_to(&id(B)).unwrap().by, "me@here");
    }

    fn marker(kind: Kind, release: &str) -> Entry {
        Entry {
            release: Some(release.into()),
            ..Entry::new(kind, "me@here")
        }
    }

    #[test]
    fn a_release_waits_until_promoted_or_aborted() {
        let j = journal(vec![deploy(A, None), marker(Kind::AwaitPromotion, B)]);
        assert_eq!(j.waiting().unwrap().release.as_deref(), Some(B));
        let j = journal(vec![
            marker(Kind::AwaitPromotion, B),
            deploy(B, Some(A)),
            marker(Kind::Promoted, B),
        ]);
        assert!(j.waiting().is_none());
        let j = journal(vec![
            marker(Kind::AwaitPromotion, B),
            marker(Kind::Aborted, B),
        ]);
        assert!(j.waiting().is_none());
        assert!(journal(vec![deploy(A, None)]).waiting().is_none());
    }

    #[test]
    fn the_last_traffic_line_names_the_live_colour() {
        let traffic = |c: &str| Entry {
            color: Some(c.into()),
            ..Entry::new(Kind::Traffic, "me@here")
        };
        let j = journal(vec![traffic("blue"), deploy(A, None), traffic("green")]);
        assert_eq!(j.traffic().unwrap().color.as_deref(), Some("green"));
        assert!(journal(vec![deploy(A, None)]).traffic().is_none());
    }

    #[test]
    fn a_release_whose_once_hook_failed_is_bad_and_one_that_passed_is_done() {
        let failed = Entry {
            release: Some(B.into()),
            ..Entry::new(Kind::OnceFailed, "me@here")
        };
        let j = journal(vec![deploy(A, None), failed]);
        assert_eq!(j.bad_releases(), [B]);
        assert!(!j.once_done(&id(B)));
        let done = Entry {
            release: Some(C.into()),
            ..Entry::new(Kind::OnceDone, "me@here")
        };
        let j = journal(vec![deploy(A, None), done]);
        assert!(j.bad_releases().is_empty());
        assert!(j.once_done(&id(C)) && !j.once_done(&id(A)));
    }

    #[test]
    fn the_ci_url_is_the_github_actions_run_page() {
        fn vars<'a>(set: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
            move |k| {
                set.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        }
        let gha = [
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_SERVER_URL", "https://github.com"),
            ("GITHUB_REPOSITORY", "acme/shop"),
            ("GITHUB_RUN_ID", "42"),
        ];
        assert_eq!(
            ci_url(vars(&gha)).as_deref(),
            Some("https://github.com/acme/shop/actions/runs/42")
        );
        assert_eq!(ci_url(vars(&gha[1..])), None);
        assert_eq!(ci_url(vars(&gha[..3])), None);
    }

    #[test]
    fn a_self_reverted_release_is_bad_and_is_told_until_the_next_deploy() {
        let reverted = Entry {
            release: Some(A.into()),
            previous: Some(B.into()),
            message: Some("no heartbeat".into()),
            ..Entry::new(Kind::SelfReverted, "me@here")
        };
        let j = journal(vec![deploy(A, None), deploy(B, Some(A)), reverted.clone()]);
        assert_eq!(j.bad_releases(), [B]);
        assert_eq!(j.rollback_target(Some(&id(A)), &all), None);
        assert_eq!(j.self_reverted(), Some(&reverted));
        let unlock = Entry::new(Kind::Unlock, "me@here");
        let j = journal(vec![deploy(B, Some(A)), reverted.clone(), unlock]);
        assert_eq!(j.self_reverted(), Some(&reverted));
        let j = journal(vec![deploy(B, Some(A)), reverted, deploy(C, Some(A))]);
        assert!(j.self_reverted().is_none());
        assert!(journal(vec![deploy(A, None)]).self_reverted().is_none());
    }

    #[test]
    fn first_deploy_has_no_target() {
        let j = journal(vec![deploy(A, None)]);
        assert_eq!(j.rollback_target(Some(&id(A)), &all), None);
    }
}
