//! Hosts and groups: ranges expanded, implicit hosts added, and every host's
//! settings merged in the documented order:
//!
//! built-in defaults < `[ssh]` < the host's groups (in the order of its own
//! `groups` list, then the other groups that list it, alphabetically; a later
//! group wins) < the host's own table. Group `vars` merge the same way.
//!
//! For SSH hosts with `ssh_config = true` (the default), ~/.ssh/config goes
//! between the built-in defaults and `[ssh]`: whatever deploy.toml sets wins,
//! ~/.ssh/config fills in the rest, and the defaults come last.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;

use super::ConfigError;
use super::doc::Doc;
use super::env::Env;
use super::file::{RawGroup, RawHost};
use super::layer::{SshLayer, SshSettings};
use super::model::{Host, HostKeyChecking, HostTransport, SshTarget};
use super::range;
use super::ssh_config::{self, HostEntry};
use super::ssh_keys::SshKey;
use super::values::{Name, TransportKind, check_name};

/// The `[hosts.*]` and `[groups.*]` of one file.
pub struct Inventory<'a> {
    pub doc: &'a Doc,
    /// How provenance names this inventory: "deploy.toml", "exec:./list-hosts".
    pub label: String,
    /// Absolute directory of `doc`: relative paths in it start here.
    pub base_dir: &'a Path,
    pub hosts: BTreeMap<Name, RawHost>,
    pub groups: BTreeMap<Name, RawGroup>,
}

pub struct Resolved {
    pub hosts: Vec<Host>,
    pub groups: BTreeMap<String, Vec<String>>,
    pub warnings: Vec<String>,
    /// What hoist skipped in ~/.ssh/config (for `hoist check -v`).
    pub ssh_config_notes: Vec<String>,
}

/// What every host of one inventory is resolved against.
struct HostContext<'a> {
    group_layers: &'a BTreeMap<&'a str, (SshLayer, &'a RawGroup)>,
    defaults: &'a SshSettings,
    base: (&'a SshLayer, &'a str),
    app_deploy_to: &'a str,
    env: &'a Env,
    ssh_config: &'a ssh_config::Lazy<'a>,
}

impl Inventory<'_> {
    /// `base` is the `[ssh]` table and how provenance names it.
    pub fn resolve(
        &self,
        base: (&SshLayer, &str),
        app_deploy_to: &str,
        env: &Env,
    ) -> Result<Resolved, ConfigError> {
        let doc = self.doc;
        let explicit: BTreeMap<&str, &RawHost> =
            self.hosts.iter().map(|(k, v)| (k.0.as_str(), v)).collect();
        let group_tables: BTreeMap<&str, &RawGroup> =
            self.groups.iter().map(|(k, v)| (k.0.as_str(), v)).collect();

        // Every group name: tables, and names hosts list in `groups`.
        let mut group_names: BTreeSet<&str> = group_tables.keys().copied().collect();
        for host in explicit.values() {
            group_names.extend(host.groups.iter().flatten().map(|g| g.0.as_str()));
        }

        // Group members as listed, patterns expanded, in file order; the
        // inventory order is explicit hosts, then the groups' new names.
        let mut listed_in: HashMap<String, BTreeSet<&str>> = HashMap::new();
        let mut order: Vec<String> = in_file_order(doc.key_order(&["hosts"]), &explicit);
        let mut known: HashSet<String> = order.iter().cloned().collect();
        // Counted before expanding: a product of ranges can stand for more
        // names than memory holds.
        let mut expanded: u64 = 0;
        for group in in_file_order(doc.key_order(&["groups"]), &group_tables) {
            let (name, table) = group_tables
                .get_key_value(group.as_str())
                .expect("key from the table");
            for pattern in table.hosts.iter().flat_map(|h| &h.0) {
                let at = |msg: String| doc.error(&["groups", name, "hosts"], msg);
                let count = range::count(pattern).map_err(at)?;
                match count.and_then(|n| n.checked_add(expanded)) {
                    Some(total) if total <= range::MAX_NAMES => expanded = total,
                    total => {
                        let with_earlier = total.filter(|_| expanded > 0);
                        return Err(at(range::too_many(pattern, count, with_earlier)));
                    }
                }
                for host in range::expand(pattern).map_err(at)? {
                    check_name(&host).map_err(at)?;
                    if !explicit.contains_key(host.as_str()) && group_names.contains(host.as_str())
                    {
                        return Err(at(format!(
                            "`{host}` is a group; groups hold hosts only (give those hosts this group too)"
                        )));
                    }
                    listed_in.entry(host.clone()).or_default().insert(name);
                    if known.insert(host.clone()) {
                        order.push(host);
                    }
                }
            }
        }

        let mut group_layers: BTreeMap<&str, (SshLayer, &RawGroup)> = BTreeMap::new();
        for (name, table) in &group_tables {
            let layer = SshLayer::from_raw(&table.ssh(), self.base_dir, env)
                .map_err(|(key, e)| doc.error(&["groups", name, key], e))?;
            group_layers.insert(name, (layer, table));
        }
        let defaults = SshSettings::defaults(env);
        let ssh_config = ssh_config::Lazy::new(env);
        let ctx = HostContext {
            group_layers: &group_layers,
            defaults: &defaults,
            base,
            app_deploy_to,
            env,
            ssh_config: &ssh_config,
        };

        let mut hosts = Vec::new();
        for name in &order {
            let own = explicit.get(name.as_str()).copied();
            let mut groups: Vec<String> = Vec::new();
            for g in own.and_then(|h| h.groups.as_ref()).into_iter().flatten() {
                if !groups.contains(&g.0) {
                    groups.push(g.0.clone());
                }
            }
            for g in listed_in.get(name).into_iter().flatten() {
                if !groups.iter().any(|x| x == g) {
                    groups.push(g.to_string());
                }
            }
            hosts.push(self.host(name, own, groups, &ctx)?);
        }
        if hosts.is_empty() {
            return Err(ConfigError(format!(
                "{}: no hosts: add a [hosts.NAME] table or a [groups.NAME] with hosts = [...]",
                doc.path.display()
            )));
        }

        let mut all_groups: BTreeMap<String, Vec<String>> = group_names
            .iter()
            .map(|g| (g.to_string(), Vec::new()))
            .collect();
        for host in &hosts {
            for g in &host.groups {
                all_groups
                    .entry(g.clone())
                    .or_default()
                    .push(host.name.clone());
            }
        }

        let unchecked: Vec<&str> = hosts
            .iter()
            .filter(|h| matches!(&h.transport, HostTransport::Ssh(t) if t.host_key_checking == HostKeyChecking::Off))
            .map(|h| h.name.as_str())
            .collect();
        let mut warnings = Vec::new();
        if !unchecked.is_empty() {
            warnings.push(format!(
                "host_key_checking = \"off\" for {}: host keys are NOT verified, so anyone on the network path can pose as {}",
                name_list(&unchecked),
                if unchecked.len() == 1 { "this host" } else { "these hosts" }
            ));
        }
        Ok(Resolved {
            hosts,
            groups: all_groups,
            warnings,
            ssh_config_notes: ssh_config.notes(),
        })
    }

    fn host(
        &self,
        name: &str,
        own: Option<&RawHost>,
        groups: Vec<String>,
        ctx: &HostContext<'_>,
    ) -> Result<Host, ConfigError> {
        let doc = self.doc;
        let env = ctx.env;
        let at = |key: &str, msg: String| doc.error(&["hosts", name, key], msg);

        // deploy.toml's layers, weakest first.
        let mut layers: Vec<(&SshLayer, String)> = vec![(ctx.base.0, ctx.base.1.to_string())];
        let mut vars = BTreeMap::new();
        for g in &groups {
            if let Some((layer, table)) = ctx.group_layers.get(g.as_str()) {
                layers.push((layer, format!("{} [groups.{g}]", self.label)));
                vars.extend(table.vars.iter().flat_map(|v| v.0.clone()));
            }
        }
        let own_default = RawHost::default();
        let raw = own.unwrap_or(&own_default);
        let own_layer =
            SshLayer::from_raw(&raw.ssh(), self.base_dir, env).map_err(|(key, e)| at(key, e))?;
        layers.push((&own_layer, format!("{} [hosts.{name}]", self.label)));
        vars.extend(raw.vars.iter().flat_map(|v| v.0.clone()));

        let is_ssh = raw.transport.unwrap_or(TransportKind::Ssh) == TransportKind::Ssh;
        let use_ssh_config = is_ssh
            && layers
                .iter()
                .rev()
                .find_map(|(l, _)| l.ssh_config)
                .unwrap_or(true);
        let file = if use_ssh_config {
            ctx.ssh_config.get().map_err(ConfigError)?
        } else {
            None
        };
        let entry = match file {
            Some(file) => {
                let mut names = vec![name];
                if let Some(a) = raw.address.as_deref().filter(|a| *a != name) {
                    names.push(a);
                }
                file.lookup(&names, env)
                    .map_err(|e| ConfigError(format!("host `{name}`: {e}")))?
            }
            None => HostEntry::default(),
        };
        let mut settings = ctx.defaults.clone();
        entry.apply(&mut settings);
        for (layer, from) in &layers {
            settings = settings.with(layer, from);
        }
        let from_toml = |key: &str| layers.iter().any(|(l, _)| l.keys_set().contains(&key));
        check_vars_distinct(&vars).map_err(|e| at("vars", e))?;

        let deploy_to = raw
            .deploy_to
            .as_ref()
            .map_or(ctx.app_deploy_to.to_string(), |p| p.0.clone());

        let transport = match raw.transport.unwrap_or(TransportKind::Ssh) {
            TransportKind::Local => {
                let mut ssh_only: Vec<&str> = own_layer.keys_set();
                ssh_only.retain(|k| SshKey::named(k).is_some_and(|k| !k.local));
                if raw.address.is_some() {
                    ssh_only.insert(0, "address");
                }
                if raw.host_key.is_some() {
                    ssh_only.insert(0, "host_key");
                }
                if let Some(key) = ssh_only.first() {
                    return Err(at(
                        key,
                        "only SSH hosts take this key; this host has transport = \"local\"".into(),
                    ));
                }
                let root = raw.root.as_deref().ok_or_else(|| {
                    at(
                        "transport",
                        "a local host needs `root`, the directory its files live under".into(),
                    )
                })?;
                if root.is_empty() {
                    return Err(at("root", "root cannot be empty".into()));
                }
                HostTransport::Local {
                    root: self.base_dir.join(root),
                }
            }
            TransportKind::Ssh => {
                if raw.root.is_some() {
                    return Err(at(
                        "root",
                        "only local hosts take `root`; add transport = \"local\"".into(),
                    ));
                }
                let host_file = format!("{} [hosts.{name}]", self.label);
                let (address, address_from) = match (&raw.address, &entry.host_name) {
                    (Some(a), _) => (a.clone(), host_file.clone()),
                    (None, Some(f)) => (f.value.clone(), f.from.clone()),
                    (None, None) => (name.to_string(), "default (the host's name)".into()),
                };
                check_address(&address).map_err(|e| match &raw.address {
                    Some(_) => at("address", e),
                    None => ConfigError(format!("host `{name}`: {address_from}: HostName: {e}")),
                })?;
                if let Some(key) = &raw.host_key {
                    check_host_key(key).map_err(|e| at("host_key", e))?;
                }
                let jump = ssh_config::bastions(&settings.jump, file, &from_toml, env)
                    .map_err(|e| ConfigError(format!("host `{name}`: {e}")))?;
                let mut sources: Vec<(String, String)> = settings
                    .sources
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect();
                sources.push(("address".into(), address_from));
                if raw.host_key.is_some() {
                    sources.push(("host_key".into(), host_file));
                }
                HostTransport::Ssh(SshTarget {
                    name: name.to_string(),
                    address,
                    port: settings.port,
                    user: settings.user.clone(),
                    identity_files: settings.identity_files.clone(),
                    identities_only: settings.identities_only,
                    known_hosts: settings.known_hosts.clone(),
                    host_key_checking: settings.host_key_checking,
                    host_key: raw.host_key.clone(),
                    connect_timeout: settings.connect_timeout,
                    connect_retries: settings.connect_retries,
                    keepalive: settings.keepalive,
                    jump,
                    sources,
                })
            }
        };
        Ok(Host {
            name: name.to_string(),
            groups,
            deploy_to,
            vars,
            command_timeout: settings.command_timeout,
            transport,
            role: Default::default(),
        })
    }
}

/// The table's keys in file order (keys the scan could not place go last).
fn in_file_order<V>(mut order: Vec<String>, table: &BTreeMap<&str, V>) -> Vec<String> {
    order.retain(|k| table.contains_key(k.as_str()));
    for k in table.keys() {
        if !order.iter().any(|o| o == k) {
            order.push(k.to_string());
        }
    }
    order
}

/// `region` and `REGION` would both be HOIST_VAR_REGION.
fn check_vars_distinct(vars: &BTreeMap<String, String>) -> Result<(), String> {
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for name in vars.keys() {
        if let Some(other) = seen.insert(name.to_uppercase(), name) {
            return Err(format!(
                "vars `{other}` and `{name}` would both be HOIST_VAR_{}",
                name.to_uppercase()
            ));
        }
    }
    Ok(())
}

fn check_address(address: &str) -> Result<(), String> {
    if address.is_empty()
        || address.starts_with('-')
        || address.contains(|c: char| c.is_whitespace() || c.is_control() || c == '@' || c == '/')
    {
        return Err(format!(
            "{address:?} is not a usable address (a host name or IP; the user goes in `user`)"
        ));
    }
    Ok(())
}

fn check_host_key(key: &str) -> Result<(), String> {
    let ok = key.strip_prefix("SHA256:").is_some_and(|b64| {
        !b64.is_empty()
            && b64
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected a fingerprint such as \"SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU\" (ssh-keygen -lf), found {key:?}"
        ))
    }
}

fn name_list(names: &[&str]) -> String {
    const SHOWN: usize = 10;
    let mut out = names
        .iter()
        .take(SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        out.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    out
}
