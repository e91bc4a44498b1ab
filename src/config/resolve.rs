//! From the files as written to the `Config` the engine uses: defaults
//! filled in, the inventory found and merged, cross-key rules checked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::doc::Doc;
use super::env::Env;
use super::exec;
use super::file::{
    DeployFile, InventoryFile, RawArtifact, RawBlueGreen, RawGroup, RawHealth, RawHooks, RawPolicy,
    RawRelay, RawStrategy,
};
use super::inventory::Inventory;
use super::layer::SshLayer;
use super::model::{
    App, ArtifactSpec, BlueGreen, Color, Config, GroupStrategy, Health, HealthCheck, Hooks, Policy,
    Pull, RELAY_AUTHORIZED_KEYS, Relay, Strategy, StrategyKind, Throttle,
};
use super::roles::{self, Override, ZoneKeys};
use super::values::Name;
use super::{ConfigError, Source, overlay, shared};

const DEFAULT_CONFIG: &str = "deploy.toml";
const DEFAULT_KEEP_RELEASES: usize = 5;

pub fn load(source: &Source, env: &Env) -> Result<Config, ConfigError> {
    let path = source
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    let doc = Doc::read(&path, "configuration").map_err(|e| {
        if path.exists() {
            e
        } else {
            ConfigError(format!(
                "{e}\n  (`hoist init` writes a deploy.toml to start from; -c PATH picks another file)"
            ))
        }
    })?;
    let base_dir = directory_of(&path)?;
    let envs = doc.env_names();
    // Names go into journals, locks and log file names.
    for name in &envs {
        super::values::check_name(name).map_err(|e| doc.error(&["env", name], e))?;
    }
    if let Some(env) = &source.env
        && !envs.contains(env)
    {
        return Err(ConfigError(format!(
            "{}: -e/--env (or HOIST_ENV): {}",
            path.display(),
            overlay::unknown(env, &envs)
        )));
    }
    let doc = doc.with_env(source.env.as_deref());
    let mut file: DeployFile = doc.parse()?;
    // Every environment is read as strictly as the one chosen: a typo in
    // production's table must not wait for the day production is deployed.
    for other in envs.iter().filter(|e| Some(*e) != source.env.as_ref()) {
        doc.with_env(Some(other)).parse::<DeployFile>()?;
    }
    if file.require_env == Some(true) && source.env.is_none() {
        return Err(ConfigError(format!(
            "{}: require_env = true: name the environment with -e/--env NAME (or HOIST_ENV); the file defines: {}",
            path.display(),
            if envs.is_empty() {
                "none".to_string()
            } else {
                envs.join(", ")
            }
        )));
    }
    let policy = policy(file.policy.take(), &doc)?;
    let mut overrides = BTreeMap::new();
    take_overrides(&mut file.groups, &doc, &mut overrides)?;

    let (shared_dirs, shared_files) = shared::shared_paths(&file.app, &doc)?;
    let ignore = file.app.ignore.take().map(|s| s.0).unwrap_or_default();
    crate::ignore::Ignore::new(&ignore).map_err(|e| doc.error(&["app", "ignore"], e))?;
    let secrets = shared::secrets(file.secrets.take(), &doc)?;
    let app = App {
        ignore,
        shared_dirs,
        shared_files,
        files: shared::files(file.files.take(), &doc)?,
        name: file.app.name.0.clone(),
        deploy_to: file.app.deploy_to.0.clone(),
        keep_releases: file
            .app
            .keep_releases
            .map_or(DEFAULT_KEEP_RELEASES, |k| k.0),
    };

    shared::check_templates(&app.files, &secrets, &doc)?;

    let ssh_layer = |raw: &Option<super::file::RawSsh>, doc: &Doc, dir: &Path| match raw {
        Some(raw) => {
            SshLayer::from_raw(raw, dir, env).map_err(|(key, e)| doc.error(&["ssh", key], e))
        }
        None => Ok(SshLayer::default()),
    };

    let no_inventory = file.inventory.is_none()
        && source.inventory.is_none()
        && file.hosts.as_ref().is_none_or(|h| h.is_empty())
        && file.groups.as_ref().is_none_or(|g| g.is_empty());
    if no_inventory && source.env.is_none() && !envs.is_empty() {
        return Err(ConfigError(format!(
            "{}: the base file has no hosts, its environments do: pick one with -e/--env NAME (or HOIST_ENV): {}",
            path.display(),
            envs.join(", ")
        )));
    }
    let label = file_label(&path);
    let resolved = match inventory_source(source, &file, &path)? {
        None => {
            let base = ssh_layer(&file.ssh, &doc, &base_dir)?;
            Inventory {
                doc: &doc,
                label: label.clone(),
                base_dir: &base_dir,
                hosts: file.hosts.unwrap_or_default(),
                groups: file.groups.unwrap_or_default(),
            }
            .resolve((&base, &format!("{label} [ssh]")), &app.deploy_to, env)?
        }
        Some(inventory) => {
            let (inv_doc, inv_dir, inv_label) = match inventory {
                InventorySource::File(inv_path) => (
                    Doc::read(&inv_path, "inventory")?,
                    directory_of(&inv_path)?,
                    file_label(&inv_path),
                ),
                InventorySource::Exec { command, dir } => {
                    let dir = std::path::absolute(&dir)
                        .map_err(|e| ConfigError(format!("{}: {e}", dir.display())))?;
                    let label = format!("exec:{command}");
                    (exec::run(&command, &dir, &label)?, dir, label)
                }
            };
            let mut inv: InventoryFile = inv_doc.parse()?;
            // Overrides may stay in deploy.toml, the groups in the inventory.
            if let Some(groups) = &mut file.groups {
                groups.retain(|_, g| g.is_inventory());
            }
            take_overrides(&mut inv.groups, &inv_doc, &mut overrides)?;
            let both = |what: &str| {
                ConfigError(format!(
                    "{}: {what} is defined here and in the inventory {}; keep it in one file",
                    doc.path.display(),
                    inv_doc.path.display()
                ))
            };
            if file.hosts.as_ref().is_some_and(|h| !h.is_empty()) {
                return Err(both("[hosts]"));
            }
            if file.groups.as_ref().is_some_and(|g| !g.is_empty()) {
                return Err(both("[groups]"));
            }
            let (base, base_label) = match (&file.ssh, &inv.ssh) {
                (Some(_), Some(_)) => return Err(both("[ssh]")),
                (Some(_), None) => (ssh_layer(&file.ssh, &doc, &base_dir)?, &label),
                (None, _) => (ssh_layer(&inv.ssh, &inv_doc, &inv_dir)?, &inv_label),
            };
            Inventory {
                doc: &inv_doc,
                label: inv_label.clone(),
                base_dir: &inv_dir,
                hosts: inv.hosts.unwrap_or_default(),
                groups: inv.groups.unwrap_or_default(),
            }
            .resolve((&base, &format!("{base_label} [ssh]")), &app.deploy_to, env)?
        }
    };

    // Keys a blue-green deploy has no use for are refused, never ignored.
    let rolling_only: Vec<&str> = file
        .strategy
        .as_ref()
        .map(|s| {
            [
                ("canary", s.canary.is_some()),
                ("canary_pause", s.canary_pause.is_some()),
                ("max_failures", s.max_failures.is_some()),
                ("max_unreachable", s.max_unreachable.is_some()),
                ("wave_bake", s.wave_bake.is_some()),
            ]
            .into_iter()
            .filter_map(|(key, set)| set.then_some(key))
            .collect()
        })
        .unwrap_or_default();
    let (zone_keys, order) = match &mut file.strategy {
        Some(s) => (
            ZoneKeys {
                wave_by: s.wave_by.take(),
                zones: s.zones.take(),
                first_zone_bake: s.first_zone_bake.take(),
                zone_bake: s.zone_bake.take(),
                min_healthy_per_zone: s.min_healthy_per_zone.take(),
            },
            s.order.take(),
        ),
        None => (ZoneKeys::empty(), None),
    };
    let mut strategy = file.strategy.map(strategy).unwrap_or_default();
    if strategy.kind == StrategyKind::BlueGreen
        && let Some(first) = rolling_only.first()
    {
        return Err(doc.error(
            &["strategy", *first],
            format!(
                "{} {} not apply to kind = \"blue-green\": there is no canary and no question (the whole idle colour must pass its health check before it takes traffic), and no host of it may fail or be skipped; remove {}",
                rolling_only.join(", "),
                if rolling_only.len() == 1 { "does" } else { "do" },
                if rolling_only.len() == 1 { "it" } else { "them" }
            ),
        ));
    }
    let blue_green = blue_green(strategy.kind, file.blue_green, &resolved.groups, &doc)?;
    let mut resolved = resolved;
    let shaped = zone_keys.wave_by.is_some() || order.is_some();
    if strategy.kind == StrategyKind::BlueGreen && shaped {
        return Err(doc.error(
            &["strategy", if order.is_some() { "order" } else { "wave_by" }],
            "zones and ordered groups shape a rolling deploy; kind = \"blue-green\" deploys a whole colour at once",
        ));
    }
    strategy.zones = roles::zones(zone_keys, &mut resolved.hosts, &resolved.groups, &doc)?;
    strategy.order = roles::order(order, &resolved.hosts, &resolved.groups, &doc)?;
    let after_rollback_set = file
        .hooks
        .as_ref()
        .is_some_and(|h| h.after_rollback.is_some());
    let hooks = file
        .hooks
        .map(|h| hooks(h, &doc))
        .transpose()?
        .unwrap_or_default();
    let health = file.health.map(|h| health(h, &doc)).transpose()?;
    let diagnose = file
        .diagnose
        .and_then(|d| d.commands)
        .map(|c| c.0)
        .unwrap_or_default();
    let (group_throttles, group_strategies) =
        group_rules(&overrides, &resolved.groups, &strategy.order, &doc)?;
    let top = roles::Top {
        hooks: &hooks,
        health: health.as_ref(),
        diagnose: &diagnose,
        after_rollback_set,
    };
    for host in &mut resolved.hosts {
        let zone = host.role.zone.take();
        host.role = roles::role(host, &top, &overrides)
            .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        host.role.zone = zone;
    }
    let analysis = super::analysis::gates(file.analysis.take(), &doc)?;
    let traffic = super::traffic::traffic(file.traffic.take(), &strategy, &doc)?;
    // Traffic steps hold and sample too (blue-green: between the colours).
    if traffic.is_none()
        && let Some(unused) = super::analysis::unsampled(&analysis, &strategy)
    {
        if strategy.kind == StrategyKind::BlueGreen {
            return Err(doc.error(
                &["analysis"],
                "analysis gates in a blue-green deploy sample its traffic steps, and there are none: add [traffic] (steps and set_local) or remove [[analysis]]",
            ));
        }
        resolved.warnings.push(unused);
    }
    Ok(Config {
        analysis,
        traffic,
        group_throttles,
        group_strategies,
        blue_green,
        artifact: file
            .artifact
            .map(|a| artifact(a, &doc, &base_dir))
            .map(|a| {
                a.map(|mut a| {
                    a.shared = app.shared_paths();
                    a.ignore = app.ignore.clone();
                    a
                })
            })
            .transpose()?,
        hooks,
        health,
        strategy,
        diagnose,
        path,
        base_dir,
        app,
        env: source.env.clone(),
        envs,
        min_soak: file.min_soak.map_or(Duration::ZERO, |d| d.0),
        policy,
        relay: relay(file.relay.take(), &doc)?,
        hosts: resolved.hosts,
        groups: resolved.groups,
        secrets,
        warnings: resolved.warnings,
        ssh_config_notes: resolved.ssh_config_notes,
    })
}

/// Takes the override tables out of `groups` (read in `doc`) into `into`.
fn take_overrides(
    groups: &mut Option<BTreeMap<Name, RawGroup>>,
    doc: &Doc,
    into: &mut BTreeMap<String, Override>,
) -> Result<(), ConfigError> {
    for (name, group) in groups.iter_mut().flatten() {
        let raw = group.take_overrides();
        if raw.is_empty() {
            continue;
        }
        if into.contains_key(&name.0) {
            return Err(doc.error(
                &["groups", &name.0],
                "this group's hooks, health, diagnose or strategy are set in the other file too; keep them in one",
            ));
        }
        into.insert(name.0.clone(), Override::read(&name.0, raw, doc)?);
    }
    Ok(())
}

type GroupRules = (BTreeMap<String, Throttle>, BTreeMap<String, GroupStrategy>);

/// Each group's throttle, and the strategy of the ordered groups: a
/// group's own waves exist only when it deploys on its own.
fn group_rules(
    overrides: &BTreeMap<String, Override>,
    groups: &BTreeMap<String, Vec<String>>,
    order: &[String],
    doc: &Doc,
) -> Result<GroupRules, ConfigError> {
    let (mut throttles, mut strategies) = (BTreeMap::new(), BTreeMap::new());
    for (group, own) in overrides {
        if !groups.contains_key(group) {
            return Err(doc.error(
                &["groups", group],
                format!(
                    "{group:?} is not a group of the inventory (groups: {})",
                    groups.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        if !own.throttle.is_empty() {
            throttles.insert(group.clone(), own.throttle);
        }
        if own.strategy != GroupStrategy::default() {
            if !order.contains(group) {
                return Err(doc.error(
                    &["groups", group, "strategy"],
                    format!(
                        "a group's canary, batch and parallel shape its own waves, which it has only when it deploys on its own: add {group:?} to strategy.order"
                    ),
                ));
            }
            strategies.insert(group.clone(), own.strategy.clone());
        }
    }
    Ok((throttles, strategies))
}

enum InventorySource {
    File(PathBuf),
    /// Run `command` in `dir`; its JSON output is the inventory.
    Exec {
        command: String,
        dir: PathBuf,
    },
}

/// `-i PATH` (as given, from the working directory) beats the file's
/// `inventory` key (relative to the file). `exec:CMD` runs CMD in that
/// same directory.
fn inventory_source(
    source: &Source,
    file: &DeployFile,
    config_path: &Path,
) -> Result<Option<InventorySource>, ConfigError> {
    let (given, from) = match (&source.inventory, &file.inventory) {
        (Some(i), _) => (i.as_str(), "-i/--inventory"),
        (None, Some(i)) => (i.as_str(), "`inventory`"),
        (None, None) => return Ok(None),
    };
    let dir = match source.inventory {
        Some(_) => PathBuf::from("."),
        None => match config_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        },
    };
    if let Some(command) = given.strip_prefix("exec:") {
        if command.trim().is_empty() {
            return Err(ConfigError(format!(
                "{from} {given:?}: give a command after exec:, e.g. \"exec:./list-hosts\""
            )));
        }
        return Ok(Some(InventorySource::Exec {
            command: command.to_string(),
            dir,
        }));
    }
    if given.is_empty() {
        return Err(ConfigError(format!("{from}: the inventory path is empty")));
    }
    Ok(Some(InventorySource::File(match source.inventory {
        Some(_) => PathBuf::from(given),
        None => config_path.parent().unwrap_or(Path::new("")).join(given),
    })))
}

/// How provenance names a file: its name ("deploy.toml").
fn file_label(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The absolute directory a file lives in.
fn directory_of(path: &Path) -> Result<PathBuf, ConfigError> {
    let absolute =
        std::path::absolute(path).map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
    Ok(absolute
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf))
}

/// A version label goes into journals, hook variables and file names: it
/// may hold only safe characters.
pub fn check_version(version: &str) -> Result<(), String> {
    let safe = !version.is_empty()
        && !version.starts_with(['-', '.'])
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '+' | '-'));
    if safe {
        Ok(())
    } else {
        Err(format!(
            "{version:?}: a version may hold only letters, digits, '_', '.', '+' and '-', and not start with '-' or '.'"
        ))
    }
}

fn artifact(raw: RawArtifact, doc: &Doc, base_dir: &Path) -> Result<ArtifactSpec, ConfigError> {
    let pull = match (&raw.path, raw.url, raw.sha256) {
        (Some(_), Some(_), _) => {
            return Err(doc.error(
                &["artifact"],
                "set one of `path` (sent from here) or `url` (each host downloads it), not both",
            ));
        }
        (None, None, _) => {
            return Err(doc.error(
                &["artifact"],
                "set `path` (a file, directory or archive here) or `url` with `sha256`",
            ));
        }
        (Some(_), None, Some(_)) => {
            return Err(doc.error(
                &["artifact", "sha256"],
                "`sha256` goes with `url`; a `path` is hashed here",
            ));
        }
        (Some(_), None, None) if raw.max_size.is_some() => {
            return Err(doc.error(
                &["artifact", "max_size"],
                "`max_size` bounds what each host downloads from `url`; a `path` is sent from here",
            ));
        }
        (Some(path), None, None) => {
            if path.is_empty() {
                return Err(doc.error(&["artifact", "path"], "the artifact path is empty"));
            }
            None
        }
        (None, Some(url), sha256) => Some(Pull {
            max_size: raw.max_size.map(|s| s.0),
            ..pull(url, sha256, doc)?
        }),
    };
    if let Some(version) = &raw.version {
        check_version(version).map_err(|e| doc.error(&["artifact", "version"], e))?;
    }
    Ok(ArtifactSpec {
        path: raw.path.map(|p| base_dir.join(p)).unwrap_or_default(),
        pull,
        version: raw.version,
        delta: raw.delta.unwrap_or(true),
        shared: Vec::new(),
        allow_setuid: raw.allow_setuid.unwrap_or(false),
        ignore: Vec::new(),
    })
}

fn pull(url: String, sha256: Option<String>, doc: &Doc) -> Result<Pull, ConfigError> {
    let path = url.split(['?', '#']).next().unwrap_or("");
    let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
    let host_ok = path
        .split_once("://")
        .is_some_and(|(_, rest)| !rest.is_empty() && !rest.starts_with('/'));
    if !scheme_ok || !host_ok || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(doc.error(
            &["artifact", "url"],
            format!("{url:?} is not an http:// or https:// URL"),
        ));
    }
    if ![".tar.gz", ".tgz", ".tar"]
        .iter()
        .any(|s| path.ends_with(s))
    {
        return Err(doc.error(
            &["artifact", "url"],
            format!("{url:?}: the URL must name a .tar.gz, .tgz or .tar archive"),
        ));
    }
    let Some(sha256) = sha256 else {
        return Err(doc.error(
            &["artifact", "sha256"],
            "`url` needs `sha256`: the 64 hex digits of the archive's sha256, which every host checks",
        ));
    };
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(doc.error(
            &["artifact", "sha256"],
            format!("{sha256:?}: expected 64 hex digits"),
        ));
    }
    Ok(Pull {
        url,
        sha256: sha256.to_ascii_lowercase(),
        max_size: None,
    })
}

fn hooks(raw: RawHooks, doc: &Doc) -> Result<Hooks, ConfigError> {
    let list = |c: Option<super::values::Commands>| c.map(|c| c.0).unwrap_or_default();
    let after_switch = list(raw.after_switch);
    Ok(Hooks {
        become_user: raw
            .become_user
            .map(|u| shared::become_user(&u.0, doc))
            .transpose()?,
        before_switch_once: list(raw.before_switch_once),
        on_start_local: list(raw.on_start_local),
        on_success_local: list(raw.on_success_local),
        on_failure_local: list(raw.on_failure_local),
        after_files: list(raw.after_files),
        become_password: raw
            .become_password
            .map(|p| shared::command(&p.command))
            .transpose()
            .map_err(|e| doc.error(&["hooks", "become_password", "command"], e))?,
        before_switch: list(raw.before_switch),
        // Absent means "the same as after_switch"; an explicit [] means none.
        after_rollback: raw
            .after_rollback
            .map_or_else(|| after_switch.clone(), |c| c.0),
        after_switch,
        before_batch_local: list(raw.before_batch_local),
        after_batch_local: list(raw.after_batch_local),
        throttle: roles::throttle(raw.throttle),
        drain_local: list(raw.drain_local),
        undrain_local: list(raw.undrain_local),
        drain_wait: raw.drain_wait.map(|d| d.0).unwrap_or_default(),
    })
}

fn health(raw: RawHealth, doc: &Doc) -> Result<Health, ConfigError> {
    let check = match (raw.command, raw.http) {
        (Some(_), Some(_)) => {
            return Err(doc.error(&["health"], "set one of `command` or `http`, not both"));
        }
        (None, None) => {
            return Err(doc.error(
                &["health"],
                "set `command` (run on the host, exit 0 = healthy) or `http` (a URL, 2xx = healthy)",
            ));
        }
        (Some(command), None) => {
            if command.trim().is_empty() {
                return Err(doc.error(&["health", "command"], "the command is empty"));
            }
            HealthCheck::Command(command)
        }
        (None, Some(url)) => {
            check_http_url(&url).map_err(|e| doc.error(&["health", "http"], e))?;
            HealthCheck::Http(url)
        }
    };
    let d = Health::new(check);
    Ok(Health {
        retries: raw
            .retries
            .map_or(d.retries, |r| r.0.min(u32::MAX as usize) as u32),
        interval: raw.interval.map_or(d.interval, |d| d.0),
        timeout: raw.timeout.map_or(d.timeout, |d| d.0),
        grace: raw.grace.map_or(d.grace, |d| d.0),
        ..d
    })
}

/// The probe travels through the SSH connection to a port on the host, so
/// it speaks plain http.
pub(super) fn check_http_url(url: &str) -> Result<(), String> {
    if url.starts_with("https://") {
        return Err(format!(
            "{url:?}: https is not supported; the probe already travels inside SSH, so use http:// (or a `command` with curl)"
        ));
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(format!("expected an http:// URL, found {url:?}"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() || url.contains(char::is_whitespace) {
        return Err(format!(
            "{url:?} is not a usable URL; e.g. \"http://127.0.0.1:8080/health\""
        ));
    }
    Ok(())
}

fn strategy(raw: RawStrategy) -> Strategy {
    let d = Strategy::default();
    Strategy {
        kind: raw.kind.map_or(d.kind, |k| k.0),
        canary: raw.canary.map_or(d.canary, |a| a.0),
        canary_pause: raw.canary_pause.map_or(d.canary_pause, |p| p.0),
        batch: raw.batch.map_or(d.batch, |b| b.0),
        batch_pause: raw.batch_pause.map_or(d.batch_pause, |p| p.0),
        parallel: raw.parallel.map_or(d.parallel, |p| p.0),
        max_failures: raw.max_failures.map_or(d.max_failures, |a| a.0),
        on_failure: raw.on_failure.map_or(d.on_failure, |o| o.0),
        max_unreachable: raw.max_unreachable.map_or(d.max_unreachable, |a| a.0),
        zones: None,
        order: Vec::new(),
        wave_bake: raw.wave_bake.map_or(d.wave_bake, |w| w.0),
        deadman_timeout: raw.deadman_timeout.map_or(d.deadman_timeout, |t| t.0),
    }
}

/// `[blue_green]` with `strategy.kind = "blue-green"`: two distinct,
/// non-empty groups of the inventory that share no host.
fn blue_green(
    kind: StrategyKind,
    raw: Option<RawBlueGreen>,
    groups: &std::collections::BTreeMap<String, Vec<String>>,
    doc: &Doc,
) -> Result<Option<BlueGreen>, ConfigError> {
    let raw = match (kind, raw) {
        (StrategyKind::Rolling, None) => return Ok(None),
        (StrategyKind::Rolling, Some(_)) => {
            return Err(doc.error(
                &["blue_green"],
                "[blue_green] is used only with strategy.kind = \"blue-green\"; set it, or remove the table",
            ));
        }
        (StrategyKind::BlueGreen, None) => {
            return Err(doc.error(
                &["strategy", "kind"],
                "\"blue-green\" needs a [blue_green] table with colors = [\"blue\", \"green\"] (two groups of the inventory)",
            ));
        }
        (StrategyKind::BlueGreen, Some(raw)) => raw,
    };
    let names: Vec<String> = raw.colors.iter().map(|n| n.0.clone()).collect();
    let at = |e: String| doc.error(&["blue_green", "colors"], e);
    if names.len() != 2 || names[0] == names[1] {
        return Err(at(format!(
            "expected two different groups, e.g. [\"blue\", \"green\"], found {names:?}"
        )));
    }
    let mut colors = Vec::new();
    for name in &names {
        let hosts = groups.get(name).ok_or_else(|| {
            at(format!(
                "{name:?} is not a group of the inventory (groups: {})",
                groups.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        if hosts.is_empty() {
            return Err(at(format!("the group {name:?} has no hosts")));
        }
        colors.push(Color {
            name: name.clone(),
            hosts: hosts.clone(),
        });
    }
    let shared: Vec<&String> = colors[0]
        .hosts
        .iter()
        .filter(|h| colors[1].hosts.contains(h))
        .collect();
    if !shared.is_empty() {
        return Err(at(format!(
            "a host may be in one colour only; in both {:?} and {:?}: {}",
            names[0],
            names[1],
            shared
                .iter()
                .map(|h| h.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let live = raw.live.map(|n| n.0);
    if let Some(live) = &live
        && !names.contains(live)
    {
        return Err(doc.error(
            &["blue_green", "live"],
            format!(
                "{live:?} is not one of colors ({:?} or {:?})",
                names[0], names[1]
            ),
        ));
    }
    let [first, second]: [Color; 2] = colors.try_into().expect("two colours");
    Ok(Some(BlueGreen {
        colors: [first, second],
        switch_local: raw.switch_local.map(|c| c.0).unwrap_or_default(),
        live,
    }))
}

/// `[policy]`: the freeze windows read in their time zone.
fn policy(raw: Option<RawPolicy>, doc: &Doc) -> Result<Policy, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Policy::default());
    };
    let timezone = match raw.timezone {
        None => chrono_tz::Tz::UTC,
        Some(tz) => tz.parse().map_err(|_| {
            doc.error(
                &["policy", "timezone"],
                format!(
                    "{tz:?} is not a time zone of the tz database; e.g. \"Europe/Berlin\", \"America/New_York\" or \"UTC\""
                ),
            )
        })?,
    };
    let windows = raw
        .freeze
        .map(|f| f.0)
        .unwrap_or_default()
        .iter()
        .map(|w| crate::freeze::parse_window(w).map_err(|e| doc.error(&["policy", "freeze"], e)))
        .collect::<Result<_, _>>()?;
    Ok(Policy {
        freeze: crate::freeze::Freeze { windows, timezone },
        require_reason: raw.require_reason.unwrap_or(false),
    })
}

/// `[relay]`: `authorized_keys` is a path on the hosts, one line.
fn relay(raw: Option<RawRelay>, doc: &Doc) -> Result<Option<Relay>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let authorized_keys = raw
        .authorized_keys
        .unwrap_or_else(|| RELAY_AUTHORIZED_KEYS.to_string());
    if authorized_keys.is_empty() || authorized_keys.contains(['\n', '\0']) {
        return Err(doc.error(
            &["relay", "authorized_keys"],
            "must be a path on the hosts, e.g. \"~/.ssh/authorized_keys\"",
        ));
    }
    Ok(Some(Relay {
        fanout: raw.fanout.0,
        authorized_keys,
    }))
}

/// Run by commands that ship the artifact; `status` or `rollback` must work
/// without a build on this machine.
pub fn check_artifact(config: &Config) -> Result<(), ConfigError> {
    let Some(artifact) = config.artifact.as_ref().filter(|a| a.pull.is_none()) else {
        return Ok(());
    };
    match std::fs::metadata(&artifact.path) {
        Ok(_) => Ok(()),
        Err(e) => Err(ConfigError(format!(
            "{}: `artifact.path`: cannot use {}: {e}",
            config.path.display(),
            artifact.path.display()
        ))),
    }
}
