//! ~/.ssh/config, read with the `ssh2-config` crate: what it says about one
//! host, key by key, with the Host block each value came from.
//!
//! As in OpenSSH, the first value found wins (top to bottom, Include'd files
//! in place) and IdentityFile accumulates. hoist reads Host blocks only: a
//! `Match` block in ~/.ssh/config is skipped (`Match all` counts as `Host *`).

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ssh2_config::{Host, ParseRule, SshConfig};

use super::env::Env;
use super::layer::SshSettings;
use super::model::{HostKeyChecking, JumpHost};
use super::ssh_keys::ssh_keys;
use super::values::{Hop, parse_jump};

/// The parsed file.
pub struct SshConfigFile {
    config: SshConfig,
    /// How messages name it: `~/.ssh/config`.
    label: String,
    /// Things hoist skipped (Match blocks), for `hoist check -v`.
    pub notes: Vec<String>,
}

/// A value and the Host block it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Found<T> {
    pub value: T,
    pub from: String,
}

/// Declares `HostEntry`, a field per key of the table of SSH keys: `lookup`
/// fills those whose row names an option of the file.
macro_rules! host_entry {
    (keys { $($key:ident: $raw:ty => $value:ty { $($column:tt)* })* }) => {
        /// What the file says about one host; `None` where it says nothing.
        /// (`ProxyJump none` is a `jump` of an empty list.)
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct HostEntry {
            pub host_name: Option<Found<String>>,
            $(pub $key: Option<Found<$value>>,)*
        }

        impl HostEntry {
            /// These values over `settings` (which should hold only defaults yet).
            pub fn apply(&self, settings: &mut SshSettings) {
                $(if let Some(f) = &self.$key {
                    settings.$key = f.value.clone();
                    settings.sources.insert(stringify!($key), f.from.clone());
                })*
            }
        }
    };
}
ssh_keys!(host_entry! {});

impl SshConfigFile {
    /// `~/.ssh/config`; `None` when there is none (or no HOME).
    pub fn read(env: &Env) -> Result<Option<SshConfigFile>, String> {
        let Some(home) = &env.home else {
            return Ok(None);
        };
        let path = home.join(".ssh").join("config");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("~/.ssh/config: {e}")),
        };
        SshConfigFile::parse(&text, home, "~/.ssh/config").map(Some)
    }

    /// Parses `text` as the file `label`; Include and `~` resolve against `home`.
    pub fn parse(text: &str, home: &Path, label: &str) -> Result<SshConfigFile, String> {
        let (text, notes) = without_match_blocks(text, label);
        let config = SshConfig::default()
            .home_dir(home)
            .parse(
                &mut BufReader::new(text.as_bytes()),
                // OpenSSH keeps growing options: one hoist does not know
                // must not make the user's own ssh setup unusable here.
                ParseRule::ALLOW_UNKNOWN_FIELDS | ParseRule::ALLOW_UNSUPPORTED_FIELDS,
            )
            .map_err(|e| format!("{label}: {e}"))?;
        // Included files reach the crate without our rewrite; settings after
        // a Match there would land in the block before it.
        if config.get_hosts().iter().any(|h| {
            h.params
                .ignored_fields
                .keys()
                .any(|k| k.eq_ignore_ascii_case("match"))
        }) {
            return Err(format!(
                "{label}: a file it includes has a `Match` block, which hoist cannot read; move it to {label} itself (where hoist skips it) or set ssh_config = false in [ssh]"
            ));
        }
        Ok(SshConfigFile {
            config,
            label: label.to_string(),
            notes,
        })
    }

    /// What the file says about a host known by `names` (its inventory
    /// name, then its address): the first name's blocks come first.
    pub fn lookup(&self, names: &[&str], env: &Env) -> Result<HostEntry, String> {
        let mut blocks: Vec<&Host> = Vec::new();
        for name in names {
            for block in self.config.intersecting_hosts(name) {
                if !blocks.iter().any(|b| std::ptr::eq(*b, block)) {
                    blocks.push(block);
                }
            }
        }
        let from = |b: &Host| {
            let patterns: Vec<String> = b.pattern.iter().map(|c| c.to_string()).collect();
            format!("{} (Host {})", self.label, patterns.join(" "))
        };
        // The first block that sets a key gives its value.
        macro_rules! first {
            ($get:expr) => {
                blocks.iter().find_map(|b| {
                    #[allow(clippy::redundant_closure_call)]
                    ($get)(b).map(|value| Found {
                        value,
                        from: from(b),
                    })
                })
            };
        }
        let unsupported = |b: &Host, key: &str| -> Option<Vec<String>> {
            b.params.unsupported_fields.get(key).cloned()
        };
        let name = names.first().copied().unwrap_or_default();
        let fail = |key: &str, block: &str, e: String| format!("{block}: {key}: {e}");

        let host_name: Option<Found<String>> = first!(|b: &Host| b.params.host_name.clone());
        let host_name = host_name.map(|f| Found {
            value: f.value.replace("%h", name).replace("%%", "%"),
            from: f.from,
        });
        let resolved_name = host_name
            .as_ref()
            .map_or(name.to_string(), |f| f.value.clone());
        let tokens = Tokens {
            env,
            alias: name,
            host: &resolved_name,
        };

        let mut identity_files: Option<Found<Vec<PathBuf>>> = None;
        for b in &blocks {
            if let Some(files) = &b.params.identity_file {
                let expanded = files
                    .iter()
                    .map(|f| tokens.path(&f.to_string_lossy()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| fail("IdentityFile", &from(b), e))?;
                let found = identity_files.get_or_insert_with(|| Found {
                    value: Vec::new(),
                    from: from(b),
                });
                for f in expanded {
                    if !found.value.contains(&f) {
                        found.value.push(f);
                    }
                }
            }
        }

        let mut entry = HostEntry {
            user: first!(|b: &Host| b.params.user.clone()),
            port: first!(|b: &Host| b.params.port),
            connect_timeout: first!(|b: &Host| b.params.connect_timeout.filter(|d| !d.is_zero())),
            keepalive: first!(|b: &Host| b.params.server_alive_interval),
            host_name,
            identity_files,
            ..HostEntry::default()
        };
        if let Some(f) = first!(|b: &Host| unsupported(b, "identitiesonly")) {
            entry.identities_only = Some(Found {
                value: yes_no(&f.value).map_err(|e| fail("IdentitiesOnly", &f.from, e))?,
                from: f.from,
            });
        }
        if let Some(f) = first!(|b: &Host| unsupported(b, "stricthostkeychecking")) {
            entry.host_key_checking = Some(Found {
                value: checking(&f.value).map_err(|e| fail("StrictHostKeyChecking", &f.from, e))?,
                from: f.from,
            });
        }
        if let Some(f) = first!(|b: &Host| unsupported(b, "userknownhostsfile")) {
            let files = if f.value.len() == 1 && f.value[0].eq_ignore_ascii_case("none") {
                Vec::new()
            } else {
                f.value
                    .iter()
                    .map(|p| tokens.path(p))
                    .collect::<Result<_, _>>()
                    .map_err(|e| fail("UserKnownHostsFile", &f.from, e))?
            };
            entry.known_hosts = Some(Found {
                value: files,
                from: f.from,
            });
        }
        if let Some(f) = first!(|b: &Host| b.params.proxy_jump.clone()) {
            let text = f.value.join(",");
            let hops = if text.trim().eq_ignore_ascii_case("none") {
                Vec::new()
            } else {
                parse_jump(&text).map_err(|e| fail("ProxyJump", &f.from, e))?
            };
            entry.jump = Some(Found {
                value: hops,
                from: f.from,
            });
        }
        Ok(entry)
    }
}

/// The chain to a host, each bastion reached as `ssh -J` would: its name
/// looked up in the file (HostName, User, Port, keys), and the first one's
/// own ProxyJump before it. `from_toml(key)` says deploy.toml sets `key` for
/// the target: the bastions then keep the target's value.
pub fn bastions(
    hops: &[Hop],
    file: Option<&SshConfigFile>,
    from_toml: &dyn Fn(&str) -> bool,
    env: &Env,
) -> Result<Vec<JumpHost>, String> {
    let mut out = Vec::new();
    expand(hops, file, from_toml, env, &mut Vec::new(), &mut out)?;
    Ok(out)
}

fn expand(
    hops: &[Hop],
    file: Option<&SshConfigFile>,
    from_toml: &dyn Fn(&str) -> bool,
    env: &Env,
    expanding: &mut Vec<String>,
    out: &mut Vec<JumpHost>,
) -> Result<(), String> {
    for (i, hop) in hops.iter().enumerate() {
        let entry = match file {
            Some(f) => f.lookup(&[&hop.address], env)?,
            None => HostEntry::default(),
        };
        if i == 0
            && let Some(before) = entry.jump.as_ref().filter(|j| !j.value.is_empty())
        {
            if expanding.contains(&hop.address) {
                return Err(format!(
                    "{}: ProxyJump loops back to `{}` (exclude the bastion, e.g. `Host * !{}`)",
                    before.from, hop.address, hop.address
                ));
            }
            expanding.push(hop.address.clone());
            expand(&before.value, file, from_toml, env, expanding, out)?;
            expanding.pop();
        }
        let own = |key: &str| !from_toml(key);
        out.push(JumpHost {
            user: hop
                .user
                .clone()
                .or_else(|| entry.user.clone().filter(|_| own("user")).map(|f| f.value)),
            address: entry
                .host_name
                .clone()
                .map_or_else(|| hop.address.clone(), |f| f.value),
            port: hop
                .port
                .or(entry.port.as_ref().map(|f| f.value))
                .unwrap_or(22),
            identity_files: entry
                .identity_files
                .filter(|_| own("identity_files"))
                .map(|f| f.value),
            identities_only: entry
                .identities_only
                .filter(|_| own("identities_only"))
                .map(|f| f.value),
            known_hosts: entry
                .known_hosts
                .filter(|_| own("known_hosts"))
                .map(|f| f.value),
            host_key_checking: entry
                .host_key_checking
                .filter(|_| own("host_key_checking"))
                .map(|f| f.value),
        });
    }
    Ok(())
}

/// OpenSSH's `%` tokens in paths, those hoist can know before connecting.
struct Tokens<'a> {
    env: &'a Env,
    /// The name hoist looked up (%n).
    alias: &'a str,
    /// HostName, or the alias (%h).
    host: &'a str,
}

impl Tokens<'_> {
    fn path(&self, p: &str) -> Result<PathBuf, String> {
        let home = self.env.home.as_ref().map(|h| h.display().to_string());
        let mut out = String::new();
        let mut chars = p.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('%') => out.push('%'),
                Some('d') => out.push_str(home.as_deref().ok_or("%d needs HOME")?),
                Some('u') => out.push_str(&self.env.user),
                Some('n') => out.push_str(self.alias),
                Some('h') => out.push_str(self.host),
                Some(t) => {
                    return Err(format!(
                        "{p:?}: hoist does not expand %{t} (it knows %d, %u, %h, %n and %%)"
                    ));
                }
                None => return Err(format!("{p:?} ends with a lone %")),
            }
        }
        if out == "~" || out.starts_with("~/") {
            let home = self.env.home.as_ref().ok_or("~ needs HOME")?;
            return Ok(match out.strip_prefix("~/") {
                Some(rest) => home.join(rest),
                None => home.clone(),
            });
        }
        Ok(PathBuf::from(out))
    }
}

fn one_arg(args: &[String]) -> Result<&str, String> {
    match args {
        [one] => Ok(one.as_str()),
        _ => Err(format!("expected one value, found {:?}", args.join(" "))),
    }
}

fn yes_no(args: &[String]) -> Result<bool, String> {
    match one_arg(args)?.to_ascii_lowercase().as_str() {
        "yes" | "true" => Ok(true),
        "no" | "false" => Ok(false),
        other => Err(format!("expected yes or no, found {other:?}")),
    }
}

/// yes / ask -> strict (hoist never asks about a host key), accept-new,
/// no / off -> off.
fn checking(args: &[String]) -> Result<HostKeyChecking, String> {
    match one_arg(args)?.to_ascii_lowercase().as_str() {
        "yes" | "true" | "ask" => Ok(HostKeyChecking::Strict),
        "accept-new" => Ok(HostKeyChecking::AcceptNew),
        "no" | "off" | "false" => Ok(HostKeyChecking::Off),
        other => Err(format!(
            "expected yes, accept-new, no or ask, found {other:?}"
        )),
    }
}

/// Turns each `Match` line into a block that matches nothing (`Match all`
/// into `Host *`), so its settings stay out of the Host block above it.
fn without_match_blocks(text: &str, label: &str) -> (String, Vec<String>) {
    let mut notes = Vec::new();
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let keyword: String = trimmed
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect();
        if keyword.eq_ignore_ascii_case("match") {
            let criteria = trimmed[keyword.len()..]
                .trim_start_matches([' ', '\t', '='])
                .trim();
            if criteria.eq_ignore_ascii_case("all") {
                out.push_str("Host *\n");
            } else {
                notes.push(format!(
                    "{label}:{}: skipped `{}`: hoist reads Host blocks only",
                    i + 1,
                    trimmed.trim_end()
                ));
                out.push_str("Host !*\n");
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    (out, notes)
}

/// The file, read on first use, and only if some host uses it.
pub struct Lazy<'a> {
    env: &'a Env,
    cell: std::cell::OnceCell<Result<Option<SshConfigFile>, String>>,
}

impl<'a> Lazy<'a> {
    pub fn new(env: &'a Env) -> Lazy<'a> {
        Lazy {
            env,
            cell: std::cell::OnceCell::new(),
        }
    }

    pub fn get(&self) -> Result<Option<&SshConfigFile>, String> {
        match self.cell.get_or_init(|| SshConfigFile::read(self.env)) {
            Ok(file) => Ok(file.as_ref()),
            Err(e) => Err(format!(
                "{e} (fix it, or set ssh_config = false in [ssh] to leave it out)"
            )),
        }
    }

    /// What was skipped in the file, if it was read.
    pub fn notes(&self) -> Vec<String> {
        match self.cell.get() {
            Some(Ok(Some(file))) => file.notes.clone(),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(home: &Path) -> Env {
        Env {
            home: Some(home.to_path_buf()),
            user: "me".into(),
        }
    }

    fn parse(home: &Path, text: &str) -> SshConfigFile {
        SshConfigFile::parse(text, home, "~/.ssh/config").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn host_aliases_give_hostname_user_port_and_keys() {
        let home = tempfile::tempdir().unwrap();
        let file = parse(
            home.path(),
            "Host web1\n  HostName 10.0.0.11\n  User deploy\n  Port 2222\n  IdentityFile ~/.ssh/web\n  IdentitiesOnly yes\n  ConnectTimeout 7\n  ServerAliveInterval 30\n",
        );
        let e = file.lookup(&["web1"], &env(home.path())).unwrap();
        assert_eq!(e.host_name.as_ref().unwrap().value, "10.0.0.11");
        assert_eq!(e.host_name.unwrap().from, "~/.ssh/config (Host web1)");
        assert_eq!(e.user.unwrap().value, "deploy");
        assert_eq!(e.port.unwrap().value, 2222);
        assert_eq!(
            e.identity_files.unwrap().value,
            [home.path().join(".ssh/web")]
        );
        assert!(e.identities_only.unwrap().value);
        assert_eq!(e.connect_timeout.unwrap().value, Duration::from_secs(7));
        assert_eq!(e.keepalive.unwrap().value, Duration::from_secs(30));
        assert_eq!(
            file.lookup(&["web2"], &env(home.path())).unwrap(),
            HostEntry::default()
        );
    }

    #[test]
    fn first_value_wins_wildcards_and_negation_apply() {
        let home = tempfile::tempdir().unwrap();
        let file = parse(
            home.path(),
            "Host bastion\n  HostName 192.0.2.1\n  User ops\nHost web* !web9\n  ProxyJump bastion\n  User deploy\nHost *\n  User nobody\n  IdentityFile ~/.ssh/a\n",
        );
        let e = file.lookup(&["web1"], &env(home.path())).unwrap();
        assert_eq!(e.user.as_ref().unwrap().value, "deploy");
        assert_eq!(e.user.unwrap().from, "~/.ssh/config (Host web* !web9)");
        let jump = e.jump.unwrap().value;
        assert_eq!(jump[0].address, "bastion");
        let e9 = file.lookup(&["web9"], &env(home.path())).unwrap();
        assert!(e9.jump.is_none(), "negated");
        assert_eq!(e9.user.unwrap().value, "nobody");
        assert_eq!(e9.identity_files.unwrap().from, "~/.ssh/config (Host *)");
    }

    #[test]
    fn include_is_read_relative_to_the_ssh_directory() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join(".ssh/config.d");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("fleet"), "Host db1\n  HostName 10.1.0.5\n").unwrap();
        let file = parse(home.path(), "Include config.d/*\nHost *\n  User x\n");
        let e = file.lookup(&["db1"], &env(home.path())).unwrap();
        assert_eq!(e.host_name.unwrap().value, "10.1.0.5");
        assert_eq!(e.user.unwrap().value, "x");
    }

    #[test]
    fn host_key_settings_map_onto_hoists() {
        let home = tempfile::tempdir().unwrap();
        let file = parse(
            home.path(),
            "Host a\n  StrictHostKeyChecking accept-new\n  UserKnownHostsFile ~/.ssh/kh_%n /etc/kh\nHost b\n  StrictHostKeyChecking no\n  UserKnownHostsFile none\nHost c\n  StrictHostKeyChecking yes\nHost d\n  StrictHostKeyChecking maybe\n",
        );
        let env = env(home.path());
        let a = file.lookup(&["a"], &env).unwrap();
        assert_eq!(
            a.host_key_checking.unwrap().value,
            HostKeyChecking::AcceptNew
        );
        assert_eq!(
            a.known_hosts.unwrap().value,
            [home.path().join(".ssh/kh_a"), PathBuf::from("/etc/kh")]
        );
        let b = file.lookup(&["b"], &env).unwrap();
        assert_eq!(b.host_key_checking.unwrap().value, HostKeyChecking::Off);
        assert!(b.known_hosts.unwrap().value.is_empty());
        let c = file.lookup(&["c"], &env).unwrap();
        assert_eq!(c.host_key_checking.unwrap().value, HostKeyChecking::Strict);
        let err = file.lookup(&["d"], &env).unwrap_err();
        assert!(
            err.contains("StrictHostKeyChecking") && err.contains("maybe"),
            "{err}"
        );
    }

    #[test]
    fn proxy_jump_chains_and_none() {
        let home = tempfile::tempdir().unwrap();
        let file = parse(
            home.path(),
            "Host inner\n  ProxyJump none\nHost *\n  ProxyJump ops@gw:2200,ssh://b2\n",
        );
        let env = env(home.path());
        let jump = file.lookup(&["x"], &env).unwrap().jump.unwrap().value;
        assert_eq!(jump.len(), 2);
        assert_eq!(jump[0].user.as_deref(), Some("ops"));
        assert_eq!(jump[0].port, Some(2200));
        assert_eq!(jump[1].address, "b2");
        let none = file.lookup(&["inner"], &env).unwrap().jump.unwrap();
        assert!(none.value.is_empty());
    }

    #[test]
    fn match_blocks_are_skipped_and_noted() {
        let home = tempfile::tempdir().unwrap();
        let file = parse(
            home.path(),
            "Host web1\n  User a\nMatch host web1 exec \"true\"\n  User b\n  Port 1\nMatch all\n  Port 2\n",
        );
        let e = file.lookup(&["web1"], &env(home.path())).unwrap();
        assert_eq!(e.user.unwrap().value, "a");
        assert_eq!(e.port.unwrap().value, 2);
        assert_eq!(file.notes.len(), 1);
        assert!(file.notes[0].starts_with("~/.ssh/config:3: skipped `Match host web1"));
    }

    #[test]
    fn unknown_options_are_tolerated_but_bad_values_are_not() {
        let home = tempfile::tempdir().unwrap();
        parse(
            home.path(),
            "Host *\n  SomeFutureOption yes\n  ControlMaster auto\n",
        );
        let err = SshConfigFile::parse("Host *\n  Port many\n", home.path(), "~/.ssh/config")
            .err()
            .unwrap();
        assert!(err.starts_with("~/.ssh/config: "), "{err}");
    }

    #[test]
    fn hostname_and_paths_expand_tokens() {
        let home = tempfile::tempdir().unwrap();
        let file = parse(
            home.path(),
            "Host *.lan\n  HostName %h.example.com\n  IdentityFile %d/keys/%u-%n\n",
        );
        let e = file.lookup(&["a.lan"], &env(home.path())).unwrap();
        assert_eq!(e.host_name.unwrap().value, "a.lan.example.com");
        assert_eq!(
            e.identity_files.unwrap().value,
            [home.path().join("keys/me-a.lan")]
        );
    }

    #[test]
    fn bastions_are_looked_up_too_and_chains_follow_proxyjump() {
        let home = tempfile::tempdir().unwrap();
        let file = parse(
            home.path(),
            "Host outer\n  HostName 192.0.2.1\n  User ops\n  Port 2200\n  IdentityFile ~/.ssh/ops\nHost inner\n  HostName 10.0.0.1\n  ProxyJump outer\n",
        );
        let env = env(home.path());
        let hops = parse_jump("inner").unwrap();
        let chain = bastions(&hops, Some(&file), &|_| false, &env).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[0].address, "192.0.2.1");
        assert_eq!(chain[0].port, 2200);
        assert_eq!(chain[0].user.as_deref(), Some("ops"));
        assert_eq!(
            chain[0].identity_files.as_deref(),
            Some(&[home.path().join(".ssh/ops")][..])
        );
        assert_eq!(chain[1].address, "10.0.0.1");
        assert_eq!(chain[1].port, 22);
        // what the jump text or deploy.toml says wins
        let hops = parse_jump("me@outer:22").unwrap();
        let chain = bastions(&hops, Some(&file), &|k| k == "identity_files", &env).unwrap();
        assert_eq!(chain[0].user.as_deref(), Some("me"));
        assert_eq!(chain[0].port, 22);
        assert_eq!(chain[0].identity_files, None);
    }

    #[test]
    fn a_proxyjump_loop_is_refused() {
        let home = tempfile::tempdir().unwrap();
        let file = parse(home.path(), "Host *\n  ProxyJump gw\n");
        let hops = parse_jump("gw").unwrap();
        let err = bastions(&hops, Some(&file), &|_| false, &env(home.path())).unwrap_err();
        assert!(
            err.contains("loops back to `gw`") && err.contains("!gw"),
            "{err}"
        );
    }
}
