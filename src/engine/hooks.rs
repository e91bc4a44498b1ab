//! Hooks: remote ones run on each host in the release directory, local ones
//! once per wave on this machine. Their output is kept and reported.

use std::process::Stdio;

use super::fleet::Node;
use super::{Context, Failure, sudo, tail_lines};
use crate::release::ReleaseId;
use crate::report::{Event, OutputStream, Phase};

/// The variables every hook gets (SPEC "Hooks").
pub fn host_env(
    ctx: &Context,
    node: &Node,
    release: &ReleaseId,
    previous: Option<&ReleaseId>,
    version: &str,
) -> Vec<(String, String)> {
    let mut env = vec![
        ("HOIST_APP".to_string(), ctx.config.app.name.clone()),
        ("HOIST_RELEASE".to_string(), release.to_string()),
        (
            "HOIST_PREVIOUS_RELEASE".to_string(),
            previous.map(|p| p.to_string()).unwrap_or_default(),
        ),
        (
            "HOIST_RELEASE_PATH".to_string(),
            node.layout.release_path(release),
        ),
        ("HOIST_DEPLOY_TO".to_string(), node.layout.deploy_to.clone()),
        ("HOIST_HOST".to_string(), node.host.name.clone()),
        ("HOIST_VERSION".to_string(), version.to_string()),
    ];
    if let Some(color) = color_of(ctx, node.name()) {
        env.push(("HOIST_COLOR".to_string(), color));
    }
    for (name, value) in &node.host.vars {
        env.push((format!("HOIST_VAR_{}", name.to_uppercase()), value.clone()));
    }
    env.extend(crate::journal::stamp().hook_env());
    env
}

/// Blue-green: the colour `host` belongs to.
pub fn color_of(ctx: &Context, host: &str) -> Option<String> {
    let bg = ctx.config.blue_green.as_ref()?;
    bg.colors
        .iter()
        .find(|c| c.hosts.iter().any(|h| h == host))
        .map(|c| c.name.clone())
}

fn emit_output(ctx: &Context, host: &str, stdout: &[u8], stderr: &[u8], cut: u64) {
    if cut > 0 {
        ctx.emit(Event::HostOutput {
            host: host.to_string(),
            stream: OutputStream::Stderr,
            line: format!(
                "(hoist kept the last bytes of this output: {cut} bytes before them were dropped)"
            ),
        });
    }
    for (stream, bytes) in [
        (OutputStream::Stdout, stdout),
        (OutputStream::Stderr, stderr),
    ] {
        for line in String::from_utf8_lossy(bytes).lines() {
            ctx.emit(Event::HostOutput {
                host: host.to_string(),
                stream,
                line: line.to_string(),
            });
        }
    }
}

/// Runs `hooks` in order on the host, in `dir`; the first failure stops them.
pub async fn run_remote(
    ctx: &Context,
    node: &Node,
    phase: Phase,
    hooks: &[String],
    dir: &str,
    env: &[(String, String)],
) -> Result<(), Failure> {
    if hooks.is_empty() {
        return Ok(());
    }
    let _slots = ctx.throttle.enter(&node.host, phase).await;
    ctx.phase(node.name(), phase);
    for hook in hooks {
        let (script, stdin) = sudo::wrap_hook(ctx, node.layout.hook(dir, env, hook));
        let out = node.run(&script, stdin).await?;
        emit_output(ctx, node.name(), &out.stdout, &out.stderr, out.cut);
        if !out.success() {
            return Err(Failure::Command {
                what: format!("{phase} hook `{hook}`"),
                code: out.code,
                tail: tail_lines(&out.stderr, &out.stdout, 10),
            });
        }
    }
    Ok(())
}

/// Runs local hooks (before/after a wave) on this machine, in the config
/// file's directory, with `HOIST_BATCH_HOSTS` set. Each ends when its
/// command does, whatever it left running (see `layout::until_it_exits`).
pub async fn run_local(
    ctx: &Context,
    name: &str,
    hooks: &[String],
    env: &[(String, String)],
) -> Result<(), Failure> {
    for hook in hooks {
        let mut command = tokio::process::Command::new("sh");
        command
            .arg("-c")
            .arg(super::layout::until_it_exits(hook))
            .current_dir(&ctx.config.base_dir)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        crate::secret_env::scrub(command.as_std_mut());
        // HOIST_ENV and HOIST_REASON first: a hook's own variables win.
        let stamp = crate::journal::stamp().hook_env();
        for (k, v) in stamp.iter().chain(env).chain(&ctx.secrets.env()) {
            command.env(k, v);
        }
        let run = command.output();
        let timeout = ctx
            .hosts
            .first()
            .map(|h| h.command_timeout)
            .unwrap_or(std::time::Duration::from_secs(600));
        let out = match tokio::time::timeout(timeout, run).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => return Err(Failure::Other(format!("{name} hook `{hook}`: {e}"))),
            Err(_) => {
                return Err(Failure::Other(format!(
                    "{name} hook `{hook}` timed out after {}",
                    humantime::format_duration(timeout)
                )));
            }
        };
        emit_output(ctx, "local", &out.stdout, &out.stderr, 0);
        if !out.status.success() {
            return Err(Failure::Command {
                what: format!("{name} hook `{hook}`"),
                code: out.status.code().map(|c| c as u32),
                tail: tail_lines(&out.stderr, &out.stdout, 10),
            });
        }
    }
    Ok(())
}
