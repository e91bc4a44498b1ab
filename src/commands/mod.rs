//! One module per subcommand; each is short and calls the engine.

mod completions;
mod init;
mod locks;
mod plan;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, ColorWhen, Command};
use crate::config::{self, Source};
use crate::engine::{self, Context};
use crate::exit::Exit;
use crate::interrupt::{self, Tracker};
use crate::report::{self, ColorChoice, Event, Level, ReportOptions, Reporter};
use crate::transport::ssh::SshContext;

pub fn execute(cli: Cli) -> i32 {
    let global = &cli.global;
    match &cli.command {
        Command::Completions { shell } => return completions::run(*shell),
        Command::Init { path } => return init::run(path),
        _ => {}
    }
    let changes_hosts = matches!(
        cli.command,
        Command::Deploy { .. }
            | Command::Rollback { .. }
            | Command::Lock { .. }
            | Command::Unlock { .. }
    );
    let log_file = global.log_file.clone().or_else(|| {
        changes_hosts.then(|| {
            PathBuf::from(".hoist/logs").join(format!(
                "{}-{}.log",
                chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
                command_name(&cli.command)
            ))
        })
    });
    if let Some(dir) = log_file.as_ref().and_then(|p| p.parent())
        && !dir.as_os_str().is_empty()
    {
        let _ = std::fs::create_dir_all(dir);
    }
    let reporter = report::reporter(&ReportOptions {
        json: global.json,
        color: match global.color {
            ColorWhen::Auto => ColorChoice::Auto,
            ColorWhen::Always => ColorChoice::Always,
            ColorWhen::Never => ColorChoice::Never,
        },
        quiet: global.quiet,
        verbose: global.verbose,
        log_file: log_file.clone(),
    });
    let tracker = Tracker::new(reporter);
    let fail = |message: String| {
        tracker.event(&Event::Message {
            level: Level::Error,
            host: None,
            text: message,
        });
        usage_summary(&*tracker, command_name(&cli.command))
    };

    let source = Source {
        config: global.config.clone(),
        inventory: global.inventory.clone(),
    };
    // Only what uploads needs the artifact: a rollback at 3 am must not
    // fail because the build is not on this laptop.
    let needs_artifact = matches!(
        cli.command,
        Command::Deploy { .. } | Command::Check | Command::Plan
    );
    let loaded = if needs_artifact {
        config::load(&source)
    } else {
        config::load_without_artifact_check(&source)
    };
    let config = match loaded {
        Ok(c) => c,
        Err(e) => return fail(e.to_string()),
    };
    let hosts = match crate::select::select(&config, global.limit.as_deref()) {
        Ok(h) => h,
        Err(e) => return fail(e.to_string()),
    };
    for warning in &config.warnings {
        tracker.event(&Event::Message {
            level: Level::Warn,
            host: None,
            text: warning.clone(),
        });
    }
    if let Command::Plan = cli.command {
        return plan::run(&config, &hosts, &*tracker);
    }

    let interactive =
        !global.json && std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let parallel = match &cli.command {
        Command::Exec {
            parallel: Some(n), ..
        } => (*n).max(1),
        _ => config.strategy.parallel.max(1),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    runtime.block_on(async {
        let ctx = Context {
            config: Arc::new(config),
            hosts,
            reporter: tracker.clone(),
            ssh: SshContext::new(interactive),
            cancel: CancellationToken::new(),
            parallel: Arc::new(Semaphore::new(parallel)),
            yes: global.yes,
            verbose: global.verbose,
            interactive,
            by: engine::whoami(),
            run_id: engine::new_run_id(),
            log_file,
            started: Instant::now(),
        };
        interrupt::watch(
            command_name(&cli.command),
            ctx.cancel.clone(),
            tracker.clone(),
        );
        match &cli.command {
            Command::Check => engine::check::run(&ctx).await,
            Command::Deploy { resume } => {
                engine::deploy::run(&ctx, engine::deploy::DeployOptions { resume: *resume }).await
            }
            Command::Rollback { to } => engine::rollback::run(&ctx, to.as_deref()).await,
            Command::Status => engine::status::status(&ctx).await,
            Command::Releases => engine::status::releases(&ctx).await,
            Command::Exec {
                group_output,
                command,
                ..
            } => engine::exec::run(&ctx, &shell_words(command), *group_output).await,
            Command::Lock { message } => locks::lock(&ctx, message.as_deref()).await,
            Command::Unlock { force } => locks::unlock(&ctx, *force).await,
            Command::Plan | Command::Init { .. } | Command::Completions { .. } => unreachable!(),
        }
    })
}

/// `hoist exec -- grep -c 'a b' log` keeps each word whole on the host.
fn shell_words(words: &[String]) -> String {
    if words.len() == 1 {
        return words[0].clone();
    }
    words
        .iter()
        .map(|w| crate::remote::q(w))
        .collect::<Vec<_>>()
        .join(" ")
}

fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Init { .. } => "init",
        Command::Check => "check",
        Command::Plan => "plan",
        Command::Deploy { .. } => "deploy",
        Command::Rollback { .. } => "rollback",
        Command::Status => "status",
        Command::Releases => "releases",
        Command::Exec { .. } => "exec",
        Command::Lock { .. } => "lock",
        Command::Unlock { .. } => "unlock",
        Command::Completions { .. } => "completions",
    }
}

/// The summary of a run that stopped at a usage or configuration error.
fn usage_summary(reporter: &dyn Reporter, command: &str) -> i32 {
    reporter.event(&Event::Summary(report::Summary::without_hosts(
        command,
        Exit::Usage.code(),
    )));
    reporter.finish();
    Exit::Usage.code()
}
