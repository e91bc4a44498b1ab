//! `deploy -e production --from staging`: promote the exact bytes another
//! environment of the same file runs. Its hosts' journals must agree that
//! one release is live everywhere (on a blue-green fleet: on the live colour), was never rolled back, and has been live
//! at least `min_soak` (of the environment deployed into), and its health
//! check must pass there now; the artifact given must hash to that
//! release's sha256.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::artifact::Artifact;
use crate::config::{self, Source};
use futures_util::future::join_all;

use crate::engine::fleet::Node;
use crate::engine::{Context, blue_green, fleet, health, hooks, policy};
use crate::exit::Exit;
use crate::journal::Journal;
use crate::release::ReleaseId;
use crate::report::{Event, Level, Reporter};

/// The release an environment runs, as its journals tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Live {
    pub id: ReleaseId,
    pub sha256: String,
    /// When its last host switched to it.
    pub since: DateTime<Utc>,
}

/// Checks that `source`'s environment runs a release this deploy may
/// promote, and that `artifact` is its bytes; returns that release's id.
/// Refusals are said here; the caller ends the run with the exit.
pub(super) async fn check(
    ctx: &Context,
    source: &Source,
    artifact: &Artifact,
) -> Result<ReleaseId, Exit> {
    let from = source.env.clone().unwrap_or_default();
    let refuse = |text: String, exit: Exit| {
        ctx.message(Level::Error, None, text);
        Err(exit)
    };
    let loaded = config::load_without_artifact_check(source).and_then(|c| {
        let hosts = crate::select::select(&c, None)?;
        Ok((c, hosts))
    });
    let (config, hosts) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => return refuse(format!("--from {from}: {e}"), Exit::Usage),
    };
    ctx.message(
        Level::Info,
        None,
        format!(
            "reading the journals of {from} ({} host(s)) for the release to promote",
            hosts.len()
        ),
    );
    let other = sibling(ctx, config, hosts);
    let (nodes, unreached) = fleet::reach(&other).await;
    if !unreached.is_empty() {
        fleet::close_all(&nodes).await;
        let why: Vec<String> = unreached
            .iter()
            .map(|u| format!("{}: {}", u.host, u.error().unwrap_or_default()))
            .collect();
        return refuse(
            format!(
                "--from {from}: cannot read every host of {from}, so what it runs is unknown; nothing was touched ({})",
                why.join("; ")
            ),
            Exit::Preflight,
        );
    }
    let serving = match serving(&other, &nodes) {
        Ok(serving) => serving,
        Err(e) => {
            fleet::close_all(&nodes).await;
            return refuse(
                format!("--from {from}: {e}; nothing was touched"),
                Exit::Usage,
            );
        }
    };
    let hosts: Vec<(&str, Option<&ReleaseId>, &Journal)> = serving
        .iter()
        .map(|n| (n.name(), n.probe.current.as_ref(), &n.journal))
        .collect();
    let judged = promotable(&from, &hosts, ctx.config.min_soak, Utc::now());
    // Live is not enough: it must be healthy now, by its own check.
    let sick = match &judged {
        Ok(live) => unhealthy(&other, &serving, &live.id).await,
        Err(_) => Vec::new(),
    };
    fleet::close_all(&nodes).await;
    let live = match judged {
        Ok(live) => live,
        Err(e) => return refuse(format!("{e}; nothing was touched"), Exit::Usage),
    };
    if !sick.is_empty() {
        return refuse(
            format!(
                "{} is live on {from} but fails its health check there ({}); nothing was touched",
                live.id,
                sick.join("; ")
            ),
            Exit::Usage,
        );
    }
    if artifact.content_sha != live.sha256 {
        return refuse(
            format!(
                "the artifact is not the bytes {from} runs: it has sha256 {}, {} on {from} has sha256 {}; deploy the artifact {from} was deployed with; nothing was touched",
                artifact.content_sha, live.id, live.sha256
            ),
            Exit::Usage,
        );
    }
    ctx.message(
        Level::Info,
        None,
        format!(
            "promoting {} from {from}: live on its {} host(s) since {}, sha256 {}",
            live.id,
            serving.len(),
            live.since
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            live.sha256
        ),
    );
    Ok(live.id)
}

/// The hosts that serve the other environment's traffic: all of them, or
/// on a blue-green fleet those of the live colour (the idle one runs the
/// release before by design).
fn serving<'a>(ctx: &Context, nodes: &'a [Node]) -> Result<Vec<&'a Node>, String> {
    let Some(bg) = &ctx.config.blue_green else {
        return Ok(nodes.iter().collect());
    };
    let color = match policy::live_color(&blue_green::traffic_records(nodes)) {
        policy::Live::Agreed(color) => color,
        policy::Live::Unknown => bg
            .live
            .clone()
            .ok_or("no colour is live there yet: deploy it first")?,
        policy::Live::Disagree => {
            return Err(
                "its journals disagree on which colour is live (see `hoist status`)".into(),
            );
        }
    };
    let members = bg
        .colors
        .iter()
        .find(|c| c.name == color)
        .map(|c| c.hosts.clone())
        .unwrap_or_default();
    Ok(nodes
        .iter()
        .filter(|n| members.iter().any(|m| m == n.name()))
        .collect())
}

/// The hosts of `ctx` (the other environment) whose health check fails
/// now, one probe each, with why; none without a `[health]` check.
async fn unhealthy(ctx: &Context, nodes: &[&Node], id: &ReleaseId) -> Vec<String> {
    let probes = nodes.iter().map(|node| async move {
        let health = node.host.role.health.as_ref()?;
        let version = node.journal.version_of(id).unwrap_or_default();
        let env = hooks::host_env(ctx, node, id, None, &version);
        let probe = health::probe_once(ctx, node, health, &env).await;
        probe
            .err()
            .map(|(why, _)| format!("{}: {why}", node.name()))
    });
    join_all(probes).await.into_iter().flatten().collect()
}

/// What `env`'s hosts (name, current release, journal) run, if it may be
/// promoted at `now`: one release on every host, never rolled back on any,
/// live at least `min_soak`.
pub(super) fn promotable(
    env: &str,
    hosts: &[(&str, Option<&ReleaseId>, &Journal)],
    min_soak: std::time::Duration,
    now: DateTime<Utc>,
) -> Result<Live, String> {
    let Some((first, _, _)) = hosts.first() else {
        return Err(format!("{env} has no hosts to promote from"));
    };
    let mut id: Option<&ReleaseId> = None;
    for (host, current, _) in hosts {
        let Some(current) = current else {
            return Err(format!("{host} of {env} runs no release"));
        };
        match id {
            None => id = Some(current),
            Some(seen) if seen != *current => {
                let each: Vec<String> = hosts
                    .iter()
                    .map(|(h, c, _)| format!("{h}: {}", c.map_or("none", |c| c.as_str())))
                    .collect();
                return Err(format!(
                    "{env} does not run one release on every host ({}); promote once it does",
                    each.join(", ")
                ));
            }
            Some(_) => {}
        }
    }
    let id = id.expect("a host").clone();
    let mut sha256: Option<String> = None;
    let mut since: Option<DateTime<Utc>> = None;
    for (host, _, journal) in hosts {
        if journal.bad_releases().iter().any(|b| b == id.as_str()) {
            return Err(format!(
                "{id} was rolled back on {env} ({host}): a release that failed there is not promoted"
            ));
        }
        let deployed = journal.deploy_of(&id).and_then(|e| e.sha256.clone());
        let Some(sum) = deployed else {
            return Err(format!(
                "{host}'s journal does not record the sha256 {id} was deployed with, so its bytes are unknown"
            ));
        };
        if sha256.as_ref().is_some_and(|s| *s != sum) {
            return Err(format!(
                "the hosts of {env} record different sha256s for {id} ({first}: {}, {host}: {sum})",
                sha256.unwrap_or_default()
            ));
        }
        sha256 = Some(sum);
        let switched = journal
            .last_switch_to(&id)
            .and_then(|e| DateTime::parse_from_rfc3339(&e.ts).ok())
            .map(|t| t.with_timezone(&Utc));
        let Some(switched) = switched else {
            return Err(format!(
                "{host}'s journal does not record when it switched to {id}"
            ));
        };
        since = since.max(Some(switched));
    }
    let since = since.expect("a host");
    let live_for = (now - since).to_std().unwrap_or_default();
    if live_for < min_soak {
        let ready = since + chrono::Duration::from_std(min_soak).unwrap_or_default();
        return Err(format!(
            "{id} has been live on {env} for {} (since {}); min_soak is {}: it may be promoted from {}",
            humantime::format_duration(std::time::Duration::from_secs(live_for.as_secs())),
            since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            humantime::format_duration(min_soak),
            ready.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
    }
    Ok(Live {
        id,
        sha256: sha256.expect("a host"),
        since,
    })
}

/// A context for the other environment's hosts: the same run (its
/// cancellation, connection limit and SSH settings), its own file and
/// hosts, and a reporter that keeps its hosts out of this run's view.
fn sibling(ctx: &Context, config: config::Config, hosts: Vec<config::Host>) -> Context {
    Context {
        throttle: Arc::new(crate::engine::throttle::Throttles::new(&config)),
        command: ctx.command,
        config: Arc::new(config),
        hosts,
        reporter: Arc::new(MessagesOnly(ctx.reporter.clone())),
        ssh: ctx.ssh.clone(),
        cancel: ctx.cancel.clone(),
        parallel: ctx.parallel.clone(),
        yes: ctx.yes,
        lock_wait: ctx.lock_wait,
        verbose: ctx.verbose,
        interactive: ctx.interactive,
        by: ctx.by.clone(),
        run_id: ctx.run_id.clone(),
        log_file: ctx.log_file.clone(),
        started: ctx.started,
        become_password: Default::default(),
        files: Default::default(),
        notes: Default::default(),
        deadman: Default::default(),
        mask: ctx.mask.clone(),
        secrets: ctx.secrets.clone(),
    }
}

/// Passes on what is said (warnings, e.g. about a host key), not the
/// other environment's host phases.
struct MessagesOnly(Arc<dyn Reporter>);

impl Reporter for MessagesOnly {
    fn event(&self, event: &Event) {
        if let Event::Message { .. } = event {
            self.0.event(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Entry, Kind};

    const A: &str = "20261201T100000Z-aaaaaaaa";
    const B: &str = "20261202T100000Z-bbbbbbbb";

    fn id(s: &str) -> ReleaseId {
        ReleaseId::parse(s).unwrap()
    }

    fn at(ts: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(ts)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn line(kind: Kind, ts: &str, release: &str, previous: Option<&str>) -> Entry {
        Entry {
            ts: ts.into(),
            release: Some(release.into()),
            previous: previous.map(Into::into),
            sha256: (kind == Kind::Deploy).then(|| format!("{}{}", &release[17..], "0".repeat(56))),
            ..Entry::new(kind, "ci@runner")
        }
    }

    fn journal(entries: Vec<Entry>) -> Journal {
        let lines: Vec<String> = entries.iter().map(Entry::to_line).collect();
        Journal::parse(&lines)
    }

    const HOUR: std::time::Duration = std::time::Duration::from_secs(3600);

    #[test]
    fn a_release_live_everywhere_long_enough_is_promotable() {
        let j1 = journal(vec![line(Kind::Deploy, "2026-12-02T10:00:00Z", B, None)]);
        let j2 = journal(vec![line(Kind::Deploy, "2026-12-02T10:05:00Z", B, None)]);
        let (b, now) = (id(B), at("2026-12-02T11:05:00Z"));
        let hosts = [("s1", Some(&b), &j1), ("s2", Some(&b), &j2)];
        let live = promotable("staging", &hosts, HOUR, now).unwrap();
        assert_eq!(live.id, b);
        assert_eq!(live.since, at("2026-12-02T10:05:00Z"));
        assert!(live.sha256.starts_with("bbbbbbbb"));
        // One second younger: the last host switched at 10:05.
        let e = promotable("staging", &hosts, HOUR, at("2026-12-02T11:04:59Z")).unwrap_err();
        assert!(
            e.contains("has been live on staging for 59m 59s (since 2026-12-02T10:05:00Z); min_soak is 1h: it may be promoted from 2026-12-02T11:05:00Z"),
            "{e}"
        );
    }

    #[test]
    fn hosts_on_different_releases_are_refused() {
        let j = journal(vec![line(Kind::Deploy, "2026-12-01T10:00:00Z", A, None)]);
        let (a, b) = (id(A), id(B));
        let hosts = [("s1", Some(&a), &j), ("s2", Some(&b), &j)];
        let e = promotable("staging", &hosts, HOUR, at("2026-12-09T00:00:00Z")).unwrap_err();
        assert!(e.contains("does not run one release on every host"), "{e}");
        let hosts = [("s1", Some(&a), &j), ("s2", None, &j)];
        let e = promotable("staging", &hosts, HOUR, at("2026-12-09T00:00:00Z")).unwrap_err();
        assert_eq!(e, "s2 of staging runs no release");
    }

    #[test]
    fn a_release_rolled_back_anywhere_is_refused() {
        // B failed on s2 and went back to A; then B was deployed again.
        let j1 = journal(vec![line(Kind::Deploy, "2026-12-02T10:00:00Z", B, Some(A))]);
        let j2 = journal(vec![
            line(Kind::Deploy, "2026-12-01T10:00:00Z", A, None),
            line(Kind::Deploy, "2026-12-02T10:00:00Z", B, Some(A)),
            line(Kind::Rollback, "2026-12-02T10:01:00Z", A, Some(B)),
            line(Kind::Deploy, "2026-12-02T10:02:00Z", B, Some(A)),
        ]);
        let b = id(B);
        let hosts = [("s1", Some(&b), &j1), ("s2", Some(&b), &j2)];
        let e = promotable("staging", &hosts, HOUR, at("2026-12-09T00:00:00Z")).unwrap_err();
        assert!(e.contains("was rolled back on staging (s2)"), "{e}");
    }
}
