//! What `[policy]` says before a command touches anything: freeze windows
//! (deploy and promote refuse inside one unless overridden with a reason),
//! `require_reason`, and the stamp every journal line of the run carries.
//! Rollback and abort are never frozen: they are how a bad release leaves.

use chrono::{DateTime, Utc};

use crate::cli::Command;
use crate::config::Config;
use crate::journal::Stamp;

/// The run's stamp, or why the command must not start (exit 2).
pub(super) fn check(
    command: &Command,
    config: &Config,
    now: DateTime<Utc>,
    ci_url: Option<String>,
) -> Result<Stamp, String> {
    let (reason, override_freeze, frozen, required) = match command {
        Command::Deploy {
            reason,
            freeze,
            from,
            dry_run,
            ..
        } => {
            if let Some(from) = from {
                from_env(config, from)?;
            }
            // A dry run writes nothing, so it needs no reason; a freeze
            // refuses it as it would the deploy.
            (
                reason.reason.clone(),
                freeze.override_freeze,
                true,
                config.policy.require_reason && !dry_run,
            )
        }
        Command::Promote { reason, freeze, .. } => {
            (reason.reason.clone(), freeze.override_freeze, true, false)
        }
        Command::Rollback { reason, .. } | Command::Abort { reason, .. } => {
            (reason.reason.clone(), false, false, false)
        }
        _ => (None, false, false, false),
    };
    if reason.as_deref().is_some_and(|r| r.trim().is_empty()) {
        return Err("-m/--reason is empty: say why this run is made".into());
    }
    if override_freeze && reason.is_none() {
        return Err(
            "--override-freeze needs -m/--reason TEXT: why this cannot wait (both are recorded in every journal line of the run)"
                .into(),
        );
    }
    if required && reason.is_none() {
        return Err(format!(
            "{}: policy.require_reason = true: say why with -m/--reason TEXT",
            config.path.display()
        ));
    }
    let mut overridden = None;
    if frozen && let Some(window) = config.policy.freeze.at(now) {
        if !override_freeze {
            return Err(format!(
                "{window} ({}); nothing was touched. To go ahead anyway: --override-freeze -m TEXT (both are recorded)",
                config.policy.freeze.timezone
            ));
        }
        overridden = Some(window.window);
    }
    Ok(Stamp {
        env: config.env.clone(),
        reason,
        ci_url,
        promoted_from: None,
        override_freeze: overridden,
    })
}

/// `deploy --from ENV` promotes from another environment of the same file
/// into the one `-e` names.
fn from_env(config: &Config, from: &str) -> Result<(), String> {
    let Some(env) = &config.env else {
        return Err(format!(
            "--from {from} needs -e/--env NAME: the environment the release is promoted into"
        ));
    };
    if env == from {
        return Err(format!(
            "--from {from}: that is the environment being deployed; name the one whose release goes on (e.g. -e production --from staging)"
        ));
    }
    if !config.envs.iter().any(|e| e == from) {
        return Err(format!(
            "--from: {}",
            crate::config::unknown_env(from, &config.envs)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Cli;

    const FILE: &str = r#"[app]
name = "shop"
deploy_to = "/srv/shop"
[hosts.a]
[policy]
freeze = ["Fri 16:00 - Mon 08:00"]
timezone = "Europe/Berlin"
require_reason = true
"#;

    fn config() -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deploy.toml");
        std::fs::write(&path, FILE).unwrap();
        let source = crate::config::Source {
            config: Some(path),
            ..Default::default()
        };
        let config = crate::config::load_without_artifact_check(&source).unwrap();
        (dir, config)
    }

    fn at(ts: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(ts)
            .unwrap()
            .with_timezone(&Utc)
    }

    /// The override a run records, or part of its refusal.
    type Want = Result<Option<&'static str>, &'static str>;

    /// (command line, now, what the gate says)
    #[test]
    fn what_the_policy_lets_through_and_what_it_records() {
        let (_dir, config) = config();
        let saturday = "2026-12-05T12:00:00Z";
        let wednesday = "2026-12-09T12:00:00Z";
        let table: &[(&str, &str, Want)] = &[
            ("deploy -m x", wednesday, Ok(None)),
            ("deploy", wednesday, Err("policy.require_reason = true")),
            ("deploy -m x", saturday, Err("deploys are frozen")),
            (
                "deploy -m x --override-freeze",
                saturday,
                Ok(Some("Fri 16:00 - Mon 08:00")),
            ),
            (
                "deploy --override-freeze",
                saturday,
                Err("needs -m/--reason"),
            ),
            (
                "promote",
                saturday,
                Err("holds until Mon 2026-12-07 08:00 CET"),
            ),
            ("promote", wednesday, Ok(None)),
            (
                "promote -m x --override-freeze",
                saturday,
                Ok(Some("Fri 16:00 - Mon 08:00")),
            ),
            ("rollback", saturday, Ok(None)),
            ("abort -m y", saturday, Ok(None)),
            ("status", saturday, Ok(None)),
            ("deploy -m ' '", wednesday, Err("-m/--reason is empty")),
            (
                "deploy -m x --from staging",
                wednesday,
                Err("needs -e/--env NAME"),
            ),
        ];
        for (line, now, want) in table {
            let words = shlex::split(&format!("hoist {line}")).unwrap();
            let cli = Cli::try_parse_from(words).unwrap();
            let got = check(&cli.command, &config, at(now), None);
            match (want, got) {
                (Ok(window), Ok(stamp)) => {
                    assert_eq!(stamp.override_freeze.as_deref(), *window, "{line}")
                }
                (Err(part), Err(e)) => assert!(e.contains(part), "{line}: {e}"),
                (want, got) => panic!("{line} at {now}: wanted {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn the_stamp_carries_the_reason_and_the_ci_run() {
        let (_dir, config) = config();
        let cli = Cli::try_parse_from(["hoist", "rollback", "-m", "checkout broke"]).unwrap();
        let ci = Some("https://github.com/acme/shop/actions/runs/7".to_string());
        let stamp = check(&cli.command, &config, Utc::now(), ci.clone()).unwrap();
        assert_eq!(stamp.reason.as_deref(), Some("checkout broke"));
        assert_eq!(stamp.ci_url, ci);
        assert_eq!(stamp.env, None);
    }
}
