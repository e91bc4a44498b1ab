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
            ..
        } => {
            if let Some(from) = from {
                from_env(config, from)?;
            }
            (
                reason.reason.clone(),
                freeze.override_freeze,
                true,
                config.policy.require_reason,
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
