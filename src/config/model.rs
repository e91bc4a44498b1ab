//! The resolved configuration: plain structs the engine works with.
//! Nothing here knows about TOML or clap; `config::load` builds these.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from (for messages).
    pub path: PathBuf,
    /// Directory relative paths in the file are resolved against.
    pub base_dir: PathBuf,
    pub app: App,
    /// Every host of the inventory, in a stable order (file order, then group order).
    pub hosts: Vec<Host>,
    /// Group name -> host names, ranges expanded.
    pub groups: BTreeMap<String, Vec<String>>,
    pub artifact: Option<ArtifactSpec>,
    pub hooks: Hooks,
    pub health: Option<Health>,
    pub strategy: Strategy,
    /// `[diagnose] commands`: run on a host that failed after its switch,
    /// before it is rolled back.
    pub diagnose: Vec<String>,
    /// `[blue_green]`, present exactly when `strategy.kind = "blue-green"`.
    pub blue_green: Option<BlueGreen>,
    /// `[secrets]`: named values from local commands, given to hooks.
    pub secrets: Vec<SecretSpec>,
    /// The environment (`-e`) laid over the base file, if any.
    pub env: Option<String>,
    /// Every environment the file defines (`[env.NAME]`), in its order.
    pub envs: Vec<String>,
    /// `min_soak`: how long a release must have been live on the environment
    /// `deploy --from` promotes from.
    pub min_soak: Duration,
    /// `[policy]`: freezes and reasons.
    pub policy: Policy,
    /// `[groups.<g>.hooks] throttle`: each group's own limits, by group.
    pub group_throttles: BTreeMap<String, Throttle>,
    /// `[groups.<g>.strategy]` of the groups in `strategy.order`.
    pub group_strategies: BTreeMap<String, GroupStrategy>,
    /// `[[analysis]]`: the gates sampled during the bakes.
    pub analysis: Vec<super::analysis::Gate>,
    /// `[relay]`: hosts pass the release on to each other; `None`: off.
    pub relay: Option<Relay>,
    /// `[traffic]`: weights set in steps after the canary.
    pub traffic: Option<super::traffic::Traffic>,
    /// Things the user should hear about on every run (e.g. host_key_checking = "off").
    pub warnings: Vec<String>,
    /// What hoist skipped in ~/.ssh/config (Match blocks), for `hoist check -v`.
    pub ssh_config_notes: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct App {
    pub name: String,
    pub deploy_to: String,
    pub keep_releases: usize,
    /// Paths inside each release that live in `<deploy_to>/shared/` instead,
    /// checked: relative, no `..`, none inside another.
    pub shared_dirs: Vec<String>,
    pub shared_files: Vec<String>,
    /// `ignore`: gitignore-style globs of paths the app writes into its
    /// release, checked (see `crate::ignore`).
    pub ignore: Vec<String>,
    /// `[[files]]`: sent apart from the artifact, before the switch.
    pub files: Vec<FileSpec>,
}

impl App {
    /// The shared dirs and files: links in every release, not the artifact's.
    pub fn shared_paths(&self) -> Vec<String> {
        self.shared_dirs
            .iter()
            .chain(&self.shared_files)
            .cloned()
            .collect()
    }
}

/// One `[[files]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// Where its content comes from; `{host}` and `{group}` not yet
    /// expanded (see [`FileSpec::source_for`]).
    pub from: FileFrom,
    /// Relative to deploy_to, always under `shared/`.
    pub dest: String,
    pub mode: u32,
    /// Its content never appears in output, logs or JSON.
    pub secret: bool,
    /// `{{ secrets.NAME }}` in the content is replaced by that named secret.
    pub template: bool,
}

/// Where a `[[files]]` entry's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileFrom {
    /// `src`: a file on this machine, relative to the config file's directory.
    Path(String),
    /// `command`: the standard output of a command run here, once per run.
    Command(Vec<String>),
    /// `content`: the text itself.
    Content(String),
}

impl FileSpec {
    /// `src` for one host: `{host}` is its name, `{group}` its first group.
    pub fn source_for(&self, host: &Host) -> Result<String, String> {
        match &self.from {
            FileFrom::Path(src) => expand(src, host),
            FileFrom::Command(_) | FileFrom::Content(_) => {
                Err(format!("{} is not read from a file", self.dest))
            }
        }
    }

    /// `command` for one host, `{host}` and `{group}` expanded in each word.
    pub fn command_for(&self, host: &Host) -> Option<Result<Vec<String>, String>> {
        match &self.from {
            FileFrom::Command(argv) => Some(argv.iter().map(|w| expand(w, host)).collect()),
            _ => None,
        }
    }

    /// Where it comes from, for `plan`.
    pub fn origin(&self) -> String {
        match &self.from {
            FileFrom::Path(src) => src.clone(),
            FileFrom::Command(argv) => format!("command `{}`", argv.join(" ")),
            FileFrom::Content(_) => "inline content".into(),
        }
    }
}

/// `text` for one host: `{host}` is its name, `{group}` its first group.
fn expand(text: &str, host: &Host) -> Result<String, String> {
    let mut out = text.replace("{host}", &host.name);
    if out.contains("{group}") {
        let Some(group) = host.groups.first() else {
            return Err(format!(
                "{} is in no group, so {{group}} in {:?} has no value",
                host.name, text
            ));
        };
        out = out.replace("{group}", group);
    }
    Ok(out)
}

/// A named secret (`[secrets] NAME = { command = [...] }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSpec {
    pub name: String,
    /// The variable hooks get it in: `env`, or `HOIST_SECRET_<NAME>`.
    pub env: String,
    /// Run on this machine, once per run; its standard output is the value.
    pub command: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub groups: Vec<String>,
    /// Absolute path on the host (for local hosts: as seen under `root`).
    pub deploy_to: String,
    pub vars: BTreeMap<String, String>,
    pub command_timeout: Duration,
    pub transport: HostTransport,
    /// What this host runs, after its groups' overrides.
    pub role: Role,
}

/// A host's own hooks, health check and diagnose commands: the top-level
/// tables with its groups' `[groups.<g>.hooks|health|diagnose]` laid over
/// them key by key, and its zone.
#[derive(Debug, Clone, Default)]
pub struct Role {
    pub hooks: Hooks,
    pub health: Option<Health>,
    pub diagnose: Vec<String>,
    /// With `strategy.wave_by = "zone"`: the zone it is in.
    pub zone: Option<String>,
    /// Each key a group overrode for it, with the group: ("hooks.after_switch", "worker").
    pub overrides: Vec<(String, String)>,
}

// One per host, built once: the size of the SSH variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum HostTransport {
    Ssh(SshTarget),
    /// Same steps, no SSH: everything lives under `root` on this machine.
    Local {
        root: PathBuf,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// The host's name in the inventory (used in messages and for ~/.ssh/config lookups).
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    /// Tried after ssh-agent, in order. `~` already expanded.
    pub identity_files: Vec<PathBuf>,
    /// Only the identity files, never the agent (IdentitiesOnly).
    pub identities_only: bool,
    pub known_hosts: Vec<PathBuf>,
    pub host_key_checking: HostKeyChecking,
    /// `SHA256:...` fingerprint pin; beats known_hosts.
    pub host_key: Option<String>,
    pub connect_timeout: Duration,
    /// Reconnects after a refused, reset or timed-out connect, within `connect_timeout`.
    pub connect_retries: u32,
    pub keepalive: Duration,
    /// Bastions to go through, outermost first.
    pub jump: Vec<JumpHost>,
    /// Where each effective setting came from, by key (`hoist check -v`):
    /// e.g. ("user", "deploy.toml [ssh]"), ("address", "~/.ssh/config (Host web1)").
    pub sources: Vec<(String, String)>,
}

impl SshTarget {
    /// The bastions as hoist will reach them, `user@host:port` joined by
    /// commas; `None` for a host reached directly.
    pub fn route(&self) -> Option<String> {
        if self.jump.is_empty() {
            return None;
        }
        let hops: Vec<String> = self
            .jump
            .iter()
            .map(|j| {
                let user = j.user.as_deref().unwrap_or(&self.user);
                format!("{user}@{}:{}", j.address, j.port)
            })
            .collect();
        Some(hops.join(","))
    }

    /// Where the setting `key` came from ("default" when nothing set it).
    pub fn source_of(&self, key: &str) -> &str {
        self.sources
            .iter()
            .find(|(k, _)| k == key)
            .map_or("default", |(_, s)| s.as_str())
    }
}

/// A bastion. What is `None` here is taken from the target it leads to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JumpHost {
    pub user: Option<String>,
    pub address: String,
    pub port: u16,
    /// The bastion's own settings from ~/.ssh/config, where deploy.toml
    /// does not set them for the target.
    pub identity_files: Option<Vec<PathBuf>>,
    pub identities_only: Option<bool>,
    pub known_hosts: Option<Vec<PathBuf>>,
    pub host_key_checking: Option<HostKeyChecking>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyChecking {
    Strict,
    AcceptNew,
    Off,
}

#[derive(Debug, Clone)]
pub struct ArtifactSpec {
    /// Resolved against the config file's directory; empty with `pull`.
    pub path: PathBuf,
    /// `artifact.url` and `artifact.sha256`: each host downloads it.
    pub pull: Option<Pull>,
    pub version: Option<String>,
    /// `artifact.delta` (default true): send only what the host's current
    /// release lacks.
    pub delta: bool,
    /// `app.shared_dirs` and `app.shared_files`: paths of every release
    /// that are links into `shared/`, not the artifact's.
    pub shared: Vec<String>,
    /// `artifact.allow_setuid` (default false): keep the setuid and setgid
    /// bits of the artifact's files; else the hosts drop them.
    pub allow_setuid: bool,
    /// `app.ignore`: what a delta never trusts an old release for.
    pub ignore: Vec<String>,
}

/// An artifact each host downloads itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pull {
    /// http:// or https://, naming a .tar.gz, .tgz or .tar.
    pub url: String,
    /// Lowercase hex.
    pub sha256: String,
    /// `artifact.max_size`: the most a host downloads (it is also bounded
    /// by half the free space the host's preflight found).
    pub max_size: Option<u64>,
}

impl Pull {
    /// Whether the download is gzipped, from the name in the URL's path.
    pub fn gzipped(&self) -> bool {
        let path = self.url.split(['?', '#']).next().unwrap_or("");
        path.ends_with(".tar.gz") || path.ends_with(".tgz")
    }
}

#[derive(Debug, Clone, Default)]
pub struct Hooks {
    pub before_switch: Vec<String>,
    pub after_switch: Vec<String>,
    /// Already defaulted to `after_switch` when the file leaves it out.
    pub after_rollback: Vec<String>,
    pub before_batch_local: Vec<String>,
    pub after_batch_local: Vec<String>,
    /// Remote hooks, the once hook and the health command run as this user
    /// through sudo.
    pub become_user: Option<String>,
    /// Once per deploy, on the first host of the first wave, before any switch.
    pub before_switch_once: Vec<String>,
    /// Once per run, on this machine: before any host is touched, and at the end.
    pub on_start_local: Vec<String>,
    pub on_success_local: Vec<String>,
    pub on_failure_local: Vec<String>,
    /// After `hoist files push` wrote a host's files (e.g. reload the service).
    pub after_files: Vec<String>,
    /// `become_password = { command = [...] }`: the sudo password, from a
    /// local command instead of `HOIST_BECOME_PASSWORD` or a prompt.
    pub become_password: Option<Vec<String>>,
    /// `throttle`: the most hosts, fleet-wide, that run a hook at once.
    pub throttle: Throttle,
    /// On this machine, per host, before it is touched: takes it out of the
    /// load balancer (`HOIST_HOST` and the usual variables).
    pub drain_local: Vec<String>,
    /// On this machine, per host, once it passed its health check (or is
    /// back on its previous release): puts it back in the load balancer.
    pub undrain_local: Vec<String>,
    /// Waited after `drain_local`, before the host is touched.
    pub drain_wait: std::time::Duration,
}

/// The most hosts that run each remote hook at once (`None`: no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Throttle {
    pub before_switch: Option<usize>,
    pub after_switch: Option<usize>,
    pub after_rollback: Option<usize>,
}

impl Throttle {
    /// The hooks throttled, with their limits.
    pub fn limits(&self) -> Vec<(&'static str, usize)> {
        [
            ("before_switch", self.before_switch),
            ("after_switch", self.after_switch),
            ("after_rollback", self.after_rollback),
        ]
        .into_iter()
        .filter_map(|(hook, n)| n.map(|n| (hook, n)))
        .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.limits().is_empty()
    }
}

/// `[groups.<g>.strategy]`: an ordered group's own wave sizes and parallelism.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupStrategy {
    pub canary: Option<Amount>,
    pub batch: Option<Vec<Amount>>,
    pub parallel: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub check: HealthCheck,
    pub retries: u32,
    pub interval: Duration,
    pub timeout: Duration,
    pub grace: Duration,
}

impl Health {
    /// A check with the default retries, interval, timeout and grace.
    pub fn new(check: HealthCheck) -> Health {
        Health {
            check,
            retries: 10,
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
            grace: Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheck {
    /// Run on the host; exit 0 = healthy.
    Command(String),
    /// Probed from hoist through the host's connection; 2xx = healthy.
    Http(String),
}

/// A number of hosts, absolute or relative to the rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    Hosts(usize),
    /// 1..=100
    Percent(u8),
}

impl Amount {
    /// This many hosts out of `total`: percentages round up, so "10%" of
    /// 3 hosts is 1 host, never 0.
    pub fn of(self, total: usize) -> usize {
        match self {
            Amount::Hosts(n) => n,
            Amount::Percent(p) => (total * p as usize).div_ceil(100),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pause {
    Manual,
    For(Duration),
}

impl Pause {
    /// A wait of some length (not a question, not "0s"): the time the next
    /// wave's hosts get their upload.
    pub fn is_timed(&self) -> bool {
        matches!(self, Pause::For(d) if !d.is_zero())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    Rollback,
    Stop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StrategyKind {
    /// Canary and batch waves over the selected hosts.
    #[default]
    Rolling,
    /// Two colours: deploy to the idle one, then switch traffic to it.
    BlueGreen,
}

/// The two colours of a blue-green fleet.
#[derive(Debug, Clone)]
pub struct BlueGreen {
    /// The two inventory groups, first colour first; each with its hosts.
    pub colors: [Color; 2],
    /// Run on this machine with `HOIST_COLOR` set: sends traffic there.
    pub switch_local: Vec<String>,
    /// `live`: the colour that takes traffic before hoist ever switched it
    /// (the journals, once they record a switch, win).
    pub live: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Color {
    pub name: String,
    pub hosts: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Strategy {
    pub kind: StrategyKind,
    pub canary: Amount,
    pub canary_pause: Pause,
    /// One entry for a fixed size; several for a ramp (the last repeats).
    pub batch: Vec<Amount>,
    pub batch_pause: Duration,
    pub parallel: usize,
    pub max_failures: Amount,
    pub on_failure: OnFailure,
    /// Hosts that may be unreachable at preflight and are skipped.
    pub max_unreachable: Amount,
    /// `wave_by = "zone"`: waves never mix zones, zones go in order.
    pub zones: Option<Zones>,
    /// `order`: groups deployed one after another, each in its own waves.
    pub order: Vec<String>,
    /// `wave_bake`: how long every wave must stay healthy (by health check
    /// and gates) before the next starts.
    pub wave_bake: Duration,
    /// How long a switched host waits for a heartbeat or its confirmation
    /// before it goes back by itself; zero: no watchdog (issue 25).
    pub deadman_timeout: Duration,
}

impl Strategy {
    /// The strategy of an ordered group: this one with its overrides.
    pub fn for_group(&self, own: Option<&GroupStrategy>) -> Strategy {
        let Some(own) = own else {
            return self.clone();
        };
        Strategy {
            canary: own.canary.unwrap_or(self.canary),
            batch: own.batch.clone().unwrap_or_else(|| self.batch.clone()),
            parallel: own.parallel.unwrap_or(self.parallel),
            ..self.clone()
        }
    }
}

/// `strategy.wave_by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WaveBy {
    /// Waves over the hosts in inventory order.
    #[default]
    Host,
    /// Waves inside one zone at a time.
    Zone,
}

/// How a zone-by-zone rollout goes (`wave_by = "zone"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zones {
    /// The zones in the order they deploy (`zones`, or sorted names).
    pub order: Vec<String>,
    /// `zones = [groups]`: the zones are these groups (else `vars.zone`).
    pub from_groups: bool,
    /// Held after the first zone, probing its hosts.
    pub first_zone_bake: Duration,
    /// Held after every other zone.
    pub zone_bake: Duration,
    /// Hosts, or percent of a zone, that must stay healthy in it.
    pub min_healthy: Amount,
}

impl Default for Strategy {
    fn default() -> Self {
        Strategy {
            kind: StrategyKind::Rolling,
            canary: Amount::Hosts(1),
            canary_pause: Pause::Manual,
            batch: vec![Amount::Percent(25)],
            batch_pause: Duration::ZERO,
            parallel: 50,
            max_failures: Amount::Hosts(0),
            on_failure: OnFailure::Rollback,
            max_unreachable: Amount::Hosts(0),
            zones: None,
            order: Vec::new(),
            wave_bake: Duration::ZERO,
            deadman_timeout: Duration::from_secs(60),
        }
    }
}

/// `[policy]`: when deploys may happen, and what they must say.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// `freeze` and `timezone`.
    pub freeze: crate::freeze::Freeze,
    /// `require_reason`: `deploy` needs `-m/--reason`.
    pub require_reason: bool,
}

/// `[relay]`: hosts that receive a whole upload, or the same delta, pass
/// it on to up to `fanout` others while they receive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    pub fanout: usize,
    /// Where a host's sshd reads its authorized keys: `~/` is the login
    /// user's home, a relative path is under the host's `deploy_to`.
    pub authorized_keys: String,
}

/// `relay.authorized_keys` when the file leaves it out.
pub const RELAY_AUTHORIZED_KEYS: &str = "~/.ssh/authorized_keys";
