//! One module per subcommand, calling the engine. `execute` resolves what
//! a command needs (log file, renderer, config, environment and policy,
//! hosts, secrets, whether a person can be asked), then dispatches; `plan`,
//! `init`, `config` and `completions` run before any runtime is started.

mod check;
mod completions;
mod config_keys;
mod deploy;
mod deploy_from;
mod dry_run;
mod exec;
mod files;
mod gate;
mod init;
mod lock;
mod plan;
mod promote;
mod releases;
mod rollback;
mod status;
mod unlock;
mod verify;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, ColorWhen, Command};
use crate::config::{self, Config, Host, Source};
use crate::engine::{self, Context};
use crate::exit::Exit;
use crate::interrupt::{self, Tracker};
use crate::report::{self, ColorChoice, Event, Level, Mask, Masked, ReportOptions, Reporter};
use crate::transport::ssh::SshContext;

/// `--live` outside blue-green: there is no colour to name.
const LIVE_WITHOUT_BLUE_GREEN: &str =
    "--live names the live blue-green colour, and this file has no [blue_green]";

/// Runs one command line to its exit.
pub(crate) fn execute(cli: Cli) -> Exit {
    match &cli.command {
        Command::Completions { shell } => return completions::run(*shell),
        Command::Init { path } => return init::run(path),
        _ => {}
    }
    let run = Invocation::of(&cli);
    let name = run.name;
    let mask = Mask::from_env();
    let masked = Masked::new(report::reporter(&run.report), mask.clone());
    let tracker = Tracker::new(Arc::new(masked));
    if let Command::Config = &cli.command {
        return config_keys::run(&run.source(&cli), &*tracker);
    }
    let gated = run.load(&cli).and_then(|(config, hosts)| {
        let ci = crate::journal::ci_url(|k| std::env::var(k).ok());
        let stamp = gate::check(&cli.command, &config, chrono::Utc::now(), ci)?;
        crate::journal::set_stamp(|s| *s = stamp);
        Ok((config, hosts))
    });
    let (config, hosts) = match gated {
        Ok(resolved) => resolved,
        Err(message) => {
            tracker.event(&Event::Message {
                level: Level::Error,
                host: None,
                text: message,
            });
            tracker.event(&Event::Summary(report::Summary::without_hosts(
                name,
                Exit::Usage.code(),
            )));
            tracker.finish();
            return Exit::Usage;
        }
    };
    for secret in engine::shared::secret_contents(&config, &hosts) {
        mask.add(&String::from_utf8_lossy(&secret));
    }
    // Read before anything is touched: a failing command stops the run here.
    let secrets = match run.uses_secrets {
        true => crate::secrets::check_env(&config)
            .and_then(|()| crate::secrets::Secrets::resolve(&config, &hosts)),
        false => crate::secrets::check_env(&config).map(|()| Default::default()),
    };
    let secrets = match secrets {
        Ok(secrets) => Arc::new(secrets),
        Err(message) => {
            tracker.event(&Event::Message {
                level: Level::Error,
                host: None,
                text: message,
            });
            tracker.event(&Event::Summary(report::Summary::without_hosts(
                name,
                Exit::Usage.code(),
            )));
            tracker.finish();
            return Exit::Usage;
        }
    };
    for value in secrets.values() {
        mask.add(&value);
    }
    for warning in &config.warnings {
        tracker.event(&Event::Message {
            level: Level::Warn,
            host: None,
            text: warning.clone(),
        });
    }
    if let Command::Plan { until } = &cli.command {
        return plan::run(&config, &hosts, until.is_some(), &*tracker);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracker.event(&Event::Message {
                level: Level::Error,
                host: None,
                text: format!("cannot start the async runtime: {e}"),
            });
            return Exit::Failed;
        }
    };
    let exit = runtime.block_on(async {
        let ctx = run.context(&cli, config, hosts, tracker.clone(), mask, secrets);
        let abandon = interrupt::Run {
            command: name,
            started: ctx.started,
            log_file: ctx.log_file.as_ref().map(|p| p.display().to_string()),
            deadman: Some(ctx.config.strategy.deadman_timeout)
                .filter(|t| !t.is_zero() && matches!(name, "deploy" | "promote")),
        };
        interrupt::watch(abandon, ctx.cancel.clone(), tracker.clone());
        dispatch(&cli, &ctx).await
    });
    // Nothing may wait after the summary: a name lookup that never answers
    // (getaddrinfo cannot be cancelled) is left to end with the process.
    runtime.shutdown_background();
    exit
}

/// The short dispatch: each command's own module does the work.
async fn dispatch(cli: &Cli, ctx: &Context) -> Exit {
    match &cli.command {
        Command::Check => check::run(ctx).await,
        Command::Deploy {
            resume,
            until,
            live,
            from,
            dry_run,
            ..
        } => {
            let opts = deploy::DeployOptions {
                dry_run: *dry_run,
                resume: *resume,
                until_canary: until.is_some(),
                live: live.live.clone(),
                from: from.as_ref().map(|env| Source {
                    env: Some(env.clone()),
                    ..source(&cli.global)
                }),
            };
            deploy::run(ctx, opts).await
        }
        Command::Rollback {
            to,
            all_at_once,
            live,
            ..
        } => rollback::run(ctx, to.as_deref(), *all_at_once, live.live.as_deref()).await,
        Command::Promote { .. } => promote::promote(ctx).await,
        Command::Abort { .. } => promote::abort(ctx).await,
        Command::Status { last_failure } => status::run(ctx, *last_failure).await,
        Command::Releases => releases::run(ctx).await,
        Command::Verify => verify::run(ctx).await,
        Command::Exec {
            group_output,
            command,
            ..
        } => exec::run(ctx, &shell_words(command), *group_output).await,
        Command::Files(crate::cli::FilesCommand::Push { .. }) => files::push(ctx).await,
        Command::Lock { message } => lock::run(ctx, message.as_deref()).await,
        Command::Unlock { force } => unlock::run(ctx, *force).await,
        Command::Plan { .. }
        | Command::Config
        | Command::Init { .. }
        | Command::Completions { .. } => {
            unreachable!("handled before the runtime starts")
        }
    }
}

/// What a command line asks for, resolved once before anything runs.
struct Invocation {
    name: &'static str,
    log_file: Option<PathBuf>,
    report: ReportOptions,
    /// A person is at a terminal and may be asked.
    interactive: bool,
    /// Runs hooks or writes files (or checks that it could: `check` also
    /// tries `become_password`): reads the secrets' commands first.
    uses_secrets: bool,
    /// Only what uploads needs the artifact: a rollback at 3 am must not
    /// fail because the build is not on this laptop.
    needs_artifact: bool,
}

impl Invocation {
    fn of(cli: &Cli) -> Invocation {
        let global = &cli.global;
        let log_file = log_file(cli);
        Invocation {
            name: cli.command.name(),
            report: ReportOptions {
                json: global.json,
                color: match global.color {
                    ColorWhen::Auto => ColorChoice::Auto,
                    ColorWhen::Always => ColorChoice::Always,
                    ColorWhen::Never => ColorChoice::Never,
                },
                quiet: global.quiet,
                verbose: global.verbose,
                log_file: log_file.clone(),
                starts_a_run: matches!(
                    cli.command,
                    Command::Deploy { .. }
                        | Command::Rollback { .. }
                        | Command::Promote { .. }
                        | Command::Abort { .. }
                        | Command::Files(_)
                ),
            },
            log_file,
            interactive: !global.json
                && std::io::stdin().is_terminal()
                && std::io::stderr().is_terminal(),
            uses_secrets: matches!(
                cli.command,
                Command::Check
                    | Command::Deploy { .. }
                    | Command::Rollback { .. }
                    | Command::Promote { .. }
                    | Command::Abort { .. }
                    | Command::Files(_)
            ),
            needs_artifact: matches!(
                cli.command,
                Command::Deploy { .. }
                    | Command::Check
                    | Command::Plan { .. }
                    | Command::Promote { .. }
            ),
        }
    }

    fn source(&self, cli: &Cli) -> Source {
        source(&cli.global)
    }

    /// The config (strictly loaded, with what flags override) and the selected hosts.
    fn load(&self, cli: &Cli) -> Result<(Config, Vec<Host>), String> {
        let global = &cli.global;
        let source = self.source(cli);
        let config = if self.needs_artifact {
            config::load(&source)
        } else {
            config::load_without_artifact_check(&source)
        }
        .map_err(|e| e.to_string())?;
        let mut config = config;
        if let Command::Deploy {
            version_label: Some(label),
            ..
        } = &cli.command
            && let Some(artifact) = &mut config.artifact
        {
            config::check_version(label)
                .map_err(|e| format!("--version-label (or HOIST_VERSION_LABEL): {e}"))?;
            artifact.version = Some(label.clone());
        }
        let hosts =
            crate::select::select(&config, global.limit.as_deref()).map_err(|e| e.to_string())?;
        Ok((config, hosts))
    }

    fn context(
        &self,
        cli: &Cli,
        config: Config,
        hosts: Vec<Host>,
        tracker: Arc<Tracker>,
        mask: Arc<Mask>,
        secrets: Arc<crate::secrets::Secrets>,
    ) -> Context {
        let parallel = match &cli.command {
            Command::Exec {
                parallel: Some(n), ..
            } => *n as usize,
            _ => config.strategy.parallel.max(1),
        };
        Context {
            throttle: Arc::new(engine::throttle::Throttles::new(&config)),
            command: cli.command.name(),
            config: Arc::new(config),
            hosts,
            reporter: tracker,
            ssh: SshContext::new(self.interactive, mask.clone()),
            cancel: CancellationToken::new(),
            parallel: Arc::new(Semaphore::new(parallel)),
            yes: cli.global.yes,
            lock_wait: lock_wait(&cli.command),
            verbose: cli.global.verbose,
            interactive: self.interactive,
            by: engine::whoami(),
            run_id: engine::new_run_id(),
            log_file: self.log_file.clone(),
            started: Instant::now(),
            become_password: Default::default(),
            files: Default::default(),
            notes: Default::default(),
            deadman: Default::default(),
            mask,
            secrets,
        }
    }
}

/// Where the file comes from: `-c`, `-i`, `-e`.
fn source(global: &crate::cli::Global) -> Source {
    Source {
        config: global.config.clone(),
        inventory: global.inventory.clone(),
        env: global.env.clone(),
    }
}

/// Where the full log goes: `--log-file`, else a new file under
/// `.hoist/logs/` in the config file's directory (like every relative
/// path of the file) for the commands that change hosts.
fn log_file(cli: &Cli) -> Option<PathBuf> {
    let changes_hosts = matches!(
        cli.command,
        Command::Deploy { .. }
            | Command::Rollback { .. }
            | Command::Promote { .. }
            | Command::Abort { .. }
            | Command::Files(_)
            | Command::Lock { .. }
            | Command::Unlock { .. }
    );
    if let Some(path) = &cli.global.log_file {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = private_dir(dir);
        }
        return Some(path.clone());
    }
    if !changes_hosts {
        return None;
    }
    let base = cli
        .global
        .config
        .as_deref()
        .and_then(std::path::Path::parent)
        .unwrap_or(std::path::Path::new(""));
    let dir = base.join(".hoist/logs");
    if private_dir(&dir).is_ok() {
        // Made by an older hoist with the umask's mode: it is hoist's own.
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    }
    // The environment in the name: two environments' runs never look alike.
    let env = cli
        .global
        .env
        .as_deref()
        .filter(|e| is_file_name_safe(e))
        .map(|e| format!("-{e}"))
        .unwrap_or_default();
    let stem = format!(
        "{}{env}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        cli.command.name().replace(' ', "-")
    );
    Some(new_log(&dir, &stem))
}

/// An environment name fit for a file name (the file checks it is a key,
/// but a log is named before the file is read).
fn is_file_name_safe(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Makes `dir` and its missing parents readable by this user only (a run's
/// log holds every hook line and diagnose output); one that exists is left
/// as it is.
fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// A log file of its own for this run, created here (mode 0600): `<stem>.log`, or
/// `<stem>.2.log` and on when another run of the same second has it (a
/// second run would otherwise append to the first one's log).
fn new_log(dir: &std::path::Path, stem: &str) -> PathBuf {
    let mut path = dir.join(format!("{stem}.log"));
    for n in 2..1000 {
        match std::os::unix::fs::OpenOptionsExt::mode(
            std::fs::OpenOptions::new().write(true).create_new(true),
            0o600,
        )
        .open(&path)
        {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                path = dir.join(format!("{stem}.{n}.log"));
            }
            // Made, or not writable at all: the reporter says so when it opens it.
            _ => break,
        }
    }
    path
}

/// How long a command waits for a held lock (`--lock-wait`; zero: not at all).
fn lock_wait(command: &Command) -> std::time::Duration {
    match command {
        Command::Deploy { wait, .. }
        | Command::Rollback { wait, .. }
        | Command::Promote { wait, .. }
        | Command::Abort { wait, .. }
        | Command::Files(crate::cli::FilesCommand::Push { wait }) => {
            wait.lock_wait.unwrap_or_default()
        }
        _ => std::time::Duration::ZERO,
    }
}

/// `hoist exec -- grep -c 'a b' log` keeps each word whole on the host.
fn shell_words(words: &[String]) -> String {
    if words.len() == 1 {
        return words[0].clone();
    }
    words
        .iter()
        .map(|w| engine::layout::q(w))
        .collect::<Vec<_>>()
        .join(" ")
}
