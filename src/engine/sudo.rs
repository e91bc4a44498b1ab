//! `become`: remote hooks, the once hook and the health command run as
//! another user through sudo.
//!
//! A password, when sudo wants one, is asked once per run on a terminal or
//! read from `HOIST_BECOME_PASSWORD`, checked in preflight on every host
//! that wants it, and then reaches sudo only on the standard input of the
//! remote command (`sudo -S`), inside the SSH channel: never a command line
//! (`ps`), never the environment of a remote process, never a file on the
//! host. An askpass helper would need the password in a file on the host
//! and `SUDO_ASKPASS` in the hook's environment; `-S` needs neither.

use std::fmt;

use futures_util::future::join_all;

use super::Context;
use super::app_layout::{self, BecomeAnswer};
use super::fleet::Node;
use super::preflight::Problem;
use crate::transport::Input;

/// Where a password may come from when there is no terminal.
pub(crate) const PASSWORD_VAR: &str = crate::secret_env::BECOME_PASSWORD;

/// The become password of this run, once known.
pub(crate) struct Password(String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(hidden)")
    }
}

impl Password {
    fn stdin(&self) -> Input {
        Input::bytes(format!("{}\n", self.0).into_bytes())
    }
}

/// `script` as the `become` user when the file sets one, with the stdin
/// that carries the password (when this run has one).
pub(crate) fn wrap(ctx: &Context, script: String) -> (String, Option<Input>) {
    let Some(user) = &ctx.config.hooks.become_user else {
        return (script, None);
    };
    match ctx.become_password.get().and_then(Option::as_ref) {
        Some(password) => (
            app_layout::as_user(user, true, &script),
            Some(password.stdin()),
        ),
        None => (app_layout::as_user(user, false, &script), None),
    }
}

/// A hook's script with the named secrets read from its stdin first (see
/// [`crate::secrets::Secrets::remote`]), as the `become` user when the file
/// sets one: the stdin carries the password, when there is one, then the
/// secrets. Never a command line, never a file on the host.
pub(crate) fn wrap_hook(ctx: &Context, script: String) -> (String, Option<Input>) {
    let Some((reading, secrets)) = ctx.secrets.remote() else {
        return wrap(ctx, script);
    };
    let Some(user) = &ctx.config.hooks.become_user else {
        let script = format!("{reading}exec </dev/null\n{script}");
        return (script, Some(Input::bytes(secrets)));
    };
    match ctx.become_password.get().and_then(Option::as_ref) {
        Some(password) => {
            let mut bytes = format!("{}\n", password.0).into_bytes();
            bytes.extend(secrets);
            (
                app_layout::as_user_reading(user, true, &reading, &script),
                Some(Input::bytes(bytes)),
            )
        }
        None => (
            app_layout::as_user_reading(user, false, &reading, &script),
            Some(Input::bytes(secrets)),
        ),
    }
}

/// How `become` stands on each node: `Ok(())` when sudo runs commands as
/// the user, else why not. `missing_password` when sudo wants a password
/// and this run has none.
struct Assessment {
    hosts: Vec<Result<(), String>>,
    missing_password: bool,
}

async fn assess(ctx: &Context, nodes: &[Node], user: &str) -> Assessment {
    let probes = nodes.iter().map(|node| async move {
        match node.run(&app_layout::become_probe(user), None).await {
            Ok(out) => BecomeAnswer::parse(&out.stdout_str()),
            Err(e) => BecomeAnswer::Refused(e.to_string()),
        }
    });
    let answers = join_all(probes).await;
    let wants: Vec<usize> = (0..nodes.len())
        .filter(|&i| matches!(answers[i], BecomeAnswer::Refused(_)))
        .collect();
    let mut hosts: Vec<Result<(), String>> = answers
        .iter()
        .map(|a| match a {
            BecomeAnswer::Ok | BecomeAnswer::Refused(_) => Ok(()),
            BecomeAnswer::NoSudo => Err("sudo is not installed".to_string()),
        })
        .collect();
    if wants.is_empty() {
        let _ = ctx.become_password.set(None);
        return Assessment {
            hosts,
            missing_password: false,
        };
    }
    let Some(password) = password(ctx, user) else {
        for &i in &wants {
            hosts[i] = Err(format!(
                "sudo wants a password; set {PASSWORD_VAR} or run hoist on a terminal"
            ));
        }
        return Assessment {
            hosts,
            missing_password: true,
        };
    };
    let verify = wants.iter().map(|&i| {
        let node = &nodes[i];
        let stdin = password.stdin();
        async move {
            let answer = match node
                .run(&app_layout::become_verify(user), Some(stdin))
                .await
            {
                Ok(out) => BecomeAnswer::parse(&out.stdout_str()),
                Err(e) => BecomeAnswer::Refused(e.to_string()),
            };
            (i, answer)
        }
    });
    for (i, answer) in join_all(verify).await {
        if let BecomeAnswer::Refused(said) = answer {
            hosts[i] = Err(format!("sudo refused the password ({said})"));
        }
    }
    let _ = ctx.become_password.set(Some(password));
    Assessment {
        hosts,
        missing_password: false,
    }
}

/// The password: from `become_password`'s command, else
/// `HOIST_BECOME_PASSWORD`, else asked on a terminal (never with `--yes`).
fn password(ctx: &Context, user: &str) -> Option<Password> {
    if let Some(p) = ctx.secrets.become_password() {
        return Some(Password(p.to_string()));
    }
    if let Ok(p) = std::env::var(PASSWORD_VAR)
        && !p.is_empty()
    {
        return Some(Password(p));
    }
    if ctx.yes || !ctx.interactive {
        return None;
    }
    let prompt = format!("[sudo] password to become {user} on the hosts: ");
    tokio::task::block_in_place(|| ctx.reporter.ask_secret(&prompt)).map(Password)
}

/// Preflight of `become` for a command that changes hosts: what stops each
/// node, by index; `Err` (a usage error, exit 2) when sudo wants a password
/// and there is no way to get one. Writes nothing.
pub(crate) async fn preflight(
    ctx: &Context,
    nodes: &[Node],
) -> Result<Vec<(usize, Problem)>, String> {
    let Some(user) = &ctx.config.hooks.become_user else {
        return Ok(Vec::new());
    };
    let found = assess(ctx, nodes, user).await;
    if found.missing_password {
        let names: Vec<&str> = nodes
            .iter()
            .zip(&found.hosts)
            .filter(|(_, r)| r.is_err())
            .map(|(n, _)| n.name())
            .collect();
        return Err(format!(
            "become = {user:?}: sudo on {} wants a password; set {PASSWORD_VAR}, or run hoist on a terminal to be asked",
            names.join(", ")
        ));
    }
    Ok(found
        .hosts
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| {
            r.err().map(|reason| {
                (
                    i,
                    Problem::Become {
                        user: user.clone(),
                        reason,
                    },
                )
            })
        })
        .collect())
}

/// `check`: whether `become` works on each node (`None` without `become`).
pub(crate) async fn check(ctx: &Context, nodes: &[Node]) -> Vec<Option<Result<(), String>>> {
    let Some(user) = &ctx.config.hooks.become_user else {
        return nodes.iter().map(|_| None).collect();
    };
    assess(ctx, nodes, user)
        .await
        .hosts
        .into_iter()
        .map(Some)
        .collect()
}
