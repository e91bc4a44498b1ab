//! The command line, parsed by clap into [`Cli`]. Nothing downstream reads
//! argv: `commands::execute` takes the parsed `Cli` and hands each command
//! what it needs.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "hoist",
    version,
    about = "Deploy a release to many hosts over SSH, in canary and batch waves, with health checks and automatic rollback.",
    after_help = "Examples:\n  hoist init                      write a commented deploy.toml to start from\n  hoist plan                      show hosts, waves and hooks without connecting\n  hoist deploy                    roll the artifact out (asks before promoting the canary)\n  hoist deploy --yes -l web       deploy to the `web` group without prompts\n  hoist status                    where every host is\n  hoist rollback                  every host back to the previous release\n\nExit codes: 0 done, 1 failed, 2 usage/config error, 3 preflight failed,\n4 locked by someone else, 5 failed and rolled back, 130 interrupted."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// The deploy file [default: deploy.toml]
    #[arg(
        short = 'c',
        long = "config",
        env = "HOIST_CONFIG",
        global = true,
        value_name = "PATH"
    )]
    pub config: Option<PathBuf>,
    /// The inventory file, if hosts live apart from the deploy file; `exec:CMD` runs CMD and reads JSON
    #[arg(short = 'i', long = "inventory", global = true, value_name = "PATH")]
    pub inventory: Option<String>,
    /// Hosts to act on: names, groups, globs, comma-separated; `!` excludes (e.g. 'web*,!web03')
    #[arg(short = 'l', long = "limit", global = true, value_name = "SELECTOR")]
    pub limit: Option<String>,
    /// NDJSON events on stdout (human text goes to stderr)
    #[arg(long, global = true)]
    pub json: bool,
    /// When to use colour (NO_COLOR is honoured by `auto`)
    #[arg(long, global = true, value_enum, default_value_t = ColorWhen::Auto, value_name = "WHEN")]
    pub color: ColorWhen,
    /// Only errors and the summary
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Plain lines with hook output and SSH details
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Never prompt: answer yes (promotes the canary)
    #[arg(short = 'y', long, global = true)]
    pub yes: bool,
    /// The environment: its [env.NAME] table is laid over the file
    #[arg(
        short = 'e',
        long = "env",
        env = "HOIST_ENV",
        global = true,
        value_name = "NAME"
    )]
    pub env: Option<String>,
    /// Where to write the full log of this run [default: .hoist/logs/<time>[-<env>]-<command>.log]
    #[arg(long, global = true, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
}

/// Where `deploy --until` stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Until {
    /// After the canary wave: the release waits for `hoist promote` or `hoist abort`
    Canary,
}

/// `--lock-wait DURATION`, for the commands that take the fleet lock.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct LockWait {
    /// Wait up to DURATION (e.g. 30s, 10m) for a held lock to be freed, instead of exiting 4
    #[arg(long = "lock-wait", value_name = "DURATION", value_parser = lock_wait)]
    pub lock_wait: Option<std::time::Duration>,
}

fn lock_wait(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("{e}; write it like 30s, 5m or 1h"))
}

/// `-m/--reason`, for the commands that change the fleet: recorded in every
/// journal line of the run and given to hooks as HOIST_REASON.
#[derive(Debug, Clone, Default, Args)]
pub struct Reason {
    /// Why this run: recorded in the journals, shown by status and releases
    #[arg(short = 'm', long = "reason", value_name = "TEXT")]
    pub reason: Option<String>,
}

/// `--override-freeze`, for the commands a `[policy] freeze` stops.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct OverrideFreeze {
    /// Go ahead inside a freeze window (needs --reason; both are recorded)
    #[arg(long = "override-freeze")]
    pub override_freeze: bool,
}

/// `--live COLOR`, for the commands that read which blue-green colour is live.
#[derive(Debug, Clone, Default, Args)]
pub struct LiveColor {
    /// Blue-green: the colour that is live now, when the hosts' journals disagree on it (they then stop the run)
    #[arg(long = "live", value_name = "COLOR")]
    pub live: Option<String>,
}

/// `hoist files ...`.
#[derive(Debug, Subcommand)]
pub enum FilesCommand {
    /// Write the [[files]] entries to every selected host's shared/ and run hooks.after_files, without a release
    #[command(
        after_help = "Under the lock, in the deploy's waves: each host's files are written atomically\n(with their modes), then hooks.after_files runs in <deploy_to>/current, then the\nhealth check. A failure follows the failure policy: with on_failure = \"rollback\"\nthe previous contents come back (and after_files runs again). No new release;\nthe journal records it, and `hoist status` shows when each host's files changed.\n\nExample:\n  hoist files push -l web      after rotating the database password"
    )]
    Push {
        #[command(flatten)]
        wait: LockWait,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorWhen {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented deploy.toml to start from (never overwrites)
    #[command(after_help = "Example:\n  hoist init && $EDITOR deploy.toml")]
    Init {
        /// Where to write it
        #[arg(default_value = "deploy.toml")]
        path: PathBuf,
    },
    /// Validate the file and check every selected host can take a deploy
    #[command(
        after_help = "Checks auth, host key, deploy_to writable, free space for the artifact, tools and lock.\nChanges nothing.\n\nExample:\n  hoist check -l web"
    )]
    Check,
    /// Show the resolved hosts, waves, hooks and health check, without connecting
    #[command(
        after_help = "Example:\n  hoist plan -l 'web*,!web03'\n  hoist plan --until canary --json"
    )]
    Plan {
        /// Plan `deploy --until canary`: the canary wave and its bake only
        #[arg(long, value_enum, value_name = "WAVE")]
        until: Option<Until>,
    },
    /// Roll the artifact out: preflight, lock, upload, waves, health, rollback on failure
    #[command(
        after_help = "Every host is checked before any is changed; the fleet is locked for the run.\nThe canary wave goes first; with canary_pause = \"manual\" hoist asks before\npromoting it (--yes promotes without asking; without a terminal it refuses).\n\nExamples:\n  hoist deploy\n  hoist deploy --yes --json > deploy.ndjson\n  hoist deploy --resume        carry an interrupted deploy on to the hosts it missed\n  hoist deploy -e production --from staging -m 'ticket 42'   the bytes staging runs"
    )]
    Deploy {
        /// Carry the last failed or interrupted deploy on, with the same release id
        #[arg(long)]
        resume: bool,
        /// Stop after this wave: `canary` deploys the canary (and bakes it), records that the
        /// release waits for `hoist promote` or `hoist abort`, frees the lock and exits 0
        #[arg(long, value_enum, value_name = "WAVE", conflicts_with = "resume")]
        until: Option<Until>,
        /// The release's version label, instead of artifact.version (e.g. a CI build number)
        #[arg(
            long = "version-label",
            env = "HOIST_VERSION_LABEL",
            value_name = "LABEL"
        )]
        version_label: Option<String>,
        /// Promote the exact bytes environment ENV runs: the release live on all of its
        /// hosts, not rolled back, live at least min_soak; the artifact must have its sha256
        #[arg(long, value_name = "ENV", conflicts_with = "resume")]
        from: Option<String>,
        /// Connect and say what the deploy would do on each host (how its release would reach
        /// it, the bytes, the files it changes, its rollback target, its lock), changing nothing
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        reason: Reason,
        #[command(flatten)]
        freeze: OverrideFreeze,
        #[command(flatten)]
        wait: LockWait,
        #[command(flatten)]
        live: LiveColor,
    },
    /// Switch every selected host back to the previous release of the fleet
    #[command(
        after_help = "How the target is chosen: each host's journal (<deploy_to>/.hoist/journal)\nrecords every switch. The target is the release the host was on before its\nlast deploy, skipping releases that were rolled back and releases no longer\non the host. Every selected host must agree on it; if they do not, nothing is\nswitched and each host's candidate is shown: pick one with --to.\nSwitching back needs no upload: the release is still on the host.\n\nA rolling fleet goes back in the deploy's waves (the canary's host first), with\nbefore_batch_local and after_batch_local around each wave and the health check\nbetween waves; a wave where a host cannot go back stops it. --all-at-once\nswitches every host together, without the batch hooks.\n\nExamples:\n  hoist rollback\n  hoist rollback --all-at-once\n  hoist rollback --to 20261122T030405Z-1a2b3c4d\n  hoist releases               list the ids you can go back to"
    )]
    Rollback {
        /// Go back to this release id instead (see `hoist releases`)
        #[arg(long, value_name = "ID")]
        to: Option<String>,
        /// Switch every host back at once, without the batch hooks (an emergency: the
        /// whole fleet restarts together)
        #[arg(long)]
        all_at_once: bool,
        #[command(flatten)]
        reason: Reason,
        #[command(flatten)]
        wait: LockWait,
        #[command(flatten)]
        live: LiveColor,
    },
    /// Carry the release waiting after `deploy --until canary` on to the rest of the fleet
    #[command(
        after_help = "The same release id goes to every other selected host, in the usual waves, with\nhooks, health and the failure policy; the canary keeps what it has (no upload).\nA failure rolls back every host the release reached, the canary too.\nRefuses (exit 2) when nothing is waiting or the artifact is not the one the\ncanary was made from.\n\nExample:\n  hoist promote --lock-wait 5m"
    )]
    Promote {
        #[command(flatten)]
        reason: Reason,
        #[command(flatten)]
        freeze: OverrideFreeze,
        #[command(flatten)]
        wait: LockWait,
    },
    /// Roll back the canary of the release waiting after `deploy --until canary`
    #[command(
        after_help = "The canary goes back to the release it had (after_rollback hooks, health); the\nrest of the fleet is not touched. Refuses (exit 2) when nothing is waiting.\n\nExample:\n  hoist abort"
    )]
    Abort {
        #[command(flatten)]
        reason: Reason,
        #[command(flatten)]
        wait: LockWait,
    },
    /// Per host: current release, version, when and by whom, lock, reachability
    #[command(
        after_help = "Hosts that differ from the rest are marked.\n\nExamples:\n  hoist status --json | jq -r 'select(.event==\"row\") | .release'\n  hoist status --last-failure   what [diagnose] found on the last host that failed"
    )]
    Status {
        /// Show the diagnostics of the last failed host, kept on the hosts
        #[arg(long)]
        last_failure: bool,
    },
    /// Print every resolved key of the file and where it came from
    #[command(
        after_help = "Each key with its value and its source: file:line in the base file or in the\nenvironment's [env.NAME] table, or `default`. Connects to nothing.\n\nExamples:\n  hoist config -e production\n  hoist config -e staging --json | jq -r 'select(.event==\"row\") | \"\\(.key) \\(.source)\"'"
    )]
    Config,
    /// The releases the fleet holds: id, version, how many hosts, current where
    #[command(after_help = "Example:\n  hoist releases")]
    Releases,
    /// Re-hash each host's current release against its manifest: files changed, added or removed by hand
    #[command(
        after_help = "Exit 0 when every release is as deployed, 1 when any host differs.\n\nExample:\n  hoist verify --json | jq -r 'select(.table==\"verify_files\") | \"\\(.host) \\(.change) \\(.path)\"'"
    )]
    Verify,
    /// Run a command on the selected hosts in parallel
    #[command(
        after_help = "Runs in <deploy_to>/current when it exists. Each line is printed as it comes, prefixed by its host; Ctrl-C ends the command on every host. Exit 0 when every host succeeded.\n\nExamples:\n  hoist exec -l web -- grep -c ERROR log/app.log\n  hoist exec -l web -- tail -F /var/log/shop/error.log | grep -i panic"
    )]
    Exec {
        /// Print each host's output whole, in inventory order, once all are done, instead of each line as it comes
        #[arg(long)]
        group_output: bool,
        /// Most hosts at once, 1 to 100000 [default: strategy.parallel]
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
        parallel: Option<u32>,
        /// The command (after --)
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// The [[files]] entries, outside a deploy: `hoist files push` (rotate a secret)
    #[command(subcommand)]
    Files(FilesCommand),
    /// Hold the fleet: no deploy or rollback until `hoist unlock`
    #[command(after_help = "Example:\n  hoist lock -m 'db migration in progress, ask alice'")]
    Lock {
        /// Why, shown to whoever runs into the lock
        #[arg(short, long, value_name = "MSG")]
        message: Option<String>,
    },
    /// Free the fleet: your own lock, or anyone's with --force
    #[command(
        after_help = "Example:\n  hoist unlock --force        recorded in each host's journal"
    )]
    Unlock {
        /// Free a lock held by someone else (recorded in the journal)
        #[arg(long)]
        force: bool,
    },
    /// Print shell completions
    #[command(after_help = "Example:\n  hoist completions bash > /etc/bash_completion.d/hoist")]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

impl Command {
    /// The command's name as the user typed it: in the summary, the
    /// `run_started` event and `HOIST_COMMAND`.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Init { .. } => "init",
            Command::Check => "check",
            Command::Plan { .. } => "plan",
            Command::Deploy { .. } => "deploy",
            Command::Rollback { .. } => "rollback",
            Command::Promote { .. } => "promote",
            Command::Abort { .. } => "abort",
            Command::Status { .. } => "status",
            Command::Config => "config",
            Command::Releases => "releases",
            Command::Verify => "verify",
            Command::Exec { .. } => "exec",
            Command::Files(FilesCommand::Push { .. }) => "files push",
            Command::Lock { .. } => "lock",
            Command::Unlock { .. } => "unlock",
            Command::Completions { .. } => "completions",
        }
    }
}
