//! SSH settings as layers: built-in defaults, then `[ssh]`, then groups,
//! then the host's own table; each layer sets only the keys it names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::file::RawSsh;
use super::model::HostKeyChecking;
use super::values::Hop;

/// What the process environment contributes to defaults.
#[derive(Debug, Clone)]
pub struct Env {
    pub home: Option<PathBuf>,
    /// The local user: `USER`, then `LOGNAME`, then "root".
    pub user: String,
}

impl Env {
    pub fn from_process() -> Env {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Env {
            home: var("HOME").map(PathBuf::from),
            user: var("USER")
                .or_else(|| var("LOGNAME"))
                .unwrap_or_else(|| "root".into()),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct SshLayer {
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_files: Option<Vec<PathBuf>>,
    pub identities_only: Option<bool>,
    pub known_hosts: Option<Vec<PathBuf>>,
    pub host_key_checking: Option<HostKeyChecking>,
    pub connect_timeout: Option<Duration>,
    pub command_timeout: Option<Duration>,
    pub keepalive: Option<Duration>,
    pub jump: Option<Vec<Hop>>,
    pub ssh_config: Option<bool>,
}

/// Every key set: what a host gets when nothing overrides it.
#[derive(Debug, Clone)]
pub struct SshSettings {
    pub user: String,
    pub port: u16,
    pub identity_files: Vec<PathBuf>,
    pub identities_only: bool,
    pub known_hosts: Vec<PathBuf>,
    pub host_key_checking: HostKeyChecking,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub keepalive: Duration,
    pub jump: Vec<Hop>,
    pub ssh_config: bool,
    /// Key -> where its value came from; a key not here is a built-in default.
    pub sources: BTreeMap<&'static str, String>,
}

impl SshSettings {
    pub fn defaults(env: &Env) -> SshSettings {
        let in_ssh_dir = |f: &str| env.home.as_ref().map(|h| h.join(".ssh").join(f));
        SshSettings {
            user: env.user.clone(),
            port: 22,
            identity_files: ["id_ed25519", "id_ecdsa", "id_rsa"]
                .iter()
                .filter_map(|f| in_ssh_dir(f))
                .collect(),
            identities_only: false,
            known_hosts: in_ssh_dir("known_hosts").into_iter().collect(),
            host_key_checking: HostKeyChecking::Strict,
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(10 * 60),
            keepalive: Duration::from_secs(15),
            jump: Vec::new(),
            ssh_config: true,
            sources: BTreeMap::new(),
        }
    }

    /// These settings with `layer`'s keys on top; `from` names the layer
    /// (e.g. "deploy.toml [ssh]").
    pub fn with(mut self, layer: &SshLayer, from: &str) -> SshSettings {
        macro_rules! take {
            ($($k:ident),*) => { $(if let Some(v) = &layer.$k {
                self.$k = v.clone();
                self.sources.insert(stringify!($k), from.to_string());
            })* };
        }
        take!(
            user,
            port,
            identity_files,
            identities_only,
            known_hosts,
            host_key_checking,
            connect_timeout,
            command_timeout,
            keepalive,
            jump,
            ssh_config
        );
        self
    }
}

impl SshLayer {
    /// Resolves a table's SSH keys: paths against `base` (the directory of
    /// the file that names them) and `~` against HOME. Errors name the key.
    pub fn from_raw(
        raw: &RawSsh,
        base: &Path,
        env: &Env,
    ) -> Result<SshLayer, (&'static str, String)> {
        if let Some(user) = &raw.user {
            check_user(user).map_err(|e| ("user", e))?;
        }
        let paths = |key: &'static str, list: &Option<super::values::Strings>| {
            list.as_ref()
                .map(|l| {
                    l.0.iter()
                        .map(|p| local_path(p, base, env))
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()
                .map_err(|e| (key, e))
        };
        Ok(SshLayer {
            user: raw.user.clone(),
            port: raw.port.map(|p| p.0),
            identity_files: paths("identity_files", &raw.identity_files)?,
            identities_only: raw.identities_only,
            known_hosts: paths("known_hosts", &raw.known_hosts)?,
            host_key_checking: raw.host_key_checking.map(|c| c.0),
            connect_timeout: raw.connect_timeout.map(|d| d.0),
            command_timeout: raw.command_timeout.map(|d| d.0),
            keepalive: raw.keepalive.map(|d| d.0),
            jump: raw.jump.as_ref().map(|j| j.0.clone()),
            ssh_config: raw.ssh_config,
        })
    }

    /// The keys a table sets, by name (to refuse them where they mean nothing).
    pub fn keys_set(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        macro_rules! check {
            ($($k:ident),*) => { $(if self.$k.is_some() { keys.push(stringify!($k)); })* };
        }
        check!(
            user,
            port,
            identity_files,
            identities_only,
            known_hosts,
            host_key_checking,
            connect_timeout,
            keepalive,
            jump,
            ssh_config
        );
        keys
    }
}

fn check_user(user: &str) -> Result<(), String> {
    if user.is_empty()
        || user.starts_with('-')
        || user.contains(|c: char| c.is_whitespace() || c.is_control() || c == '@' || c == ':')
    {
        return Err(format!("{user:?} is not a usable user name"));
    }
    Ok(())
}

/// A path on this machine: `~/x` under HOME, relative ones under `base`.
pub fn local_path(p: &str, base: &Path, env: &Env) -> Result<PathBuf, String> {
    if p.is_empty() {
        return Err("a path cannot be empty".into());
    }
    if p == "~" || p.starts_with("~/") {
        let home = env
            .home
            .as_ref()
            .ok_or_else(|| format!("{p:?} starts with ~ but HOME is not set"))?;
        return Ok(match p.strip_prefix("~/") {
            Some(rest) => home.join(rest),
            None => home.clone(),
        });
    }
    if p.starts_with('~') {
        return Err(format!(
            "{p:?}: ~user paths are not supported; write the full path"
        ));
    }
    Ok(base.join(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env {
            home: Some("/home/me".into()),
            user: "me".into(),
        }
    }

    #[test]
    fn defaults_come_from_the_environment() {
        let d = SshSettings::defaults(&env());
        assert_eq!(d.user, "me");
        assert_eq!(d.port, 22);
        assert_eq!(
            d.identity_files,
            [
                PathBuf::from("/home/me/.ssh/id_ed25519"),
                PathBuf::from("/home/me/.ssh/id_ecdsa"),
                PathBuf::from("/home/me/.ssh/id_rsa")
            ]
        );
        assert_eq!(d.known_hosts, [PathBuf::from("/home/me/.ssh/known_hosts")]);
        assert_eq!(d.host_key_checking, HostKeyChecking::Strict);
        assert_eq!(d.connect_timeout, Duration::from_secs(10));
        assert_eq!(d.command_timeout, Duration::from_secs(600));
        assert_eq!(d.keepalive, Duration::from_secs(15));
        assert!(d.ssh_config);
    }

    #[test]
    fn without_home_there_are_no_default_key_files() {
        let d = SshSettings::defaults(&Env {
            home: None,
            user: "root".into(),
        });
        assert!(d.identity_files.is_empty());
        assert!(d.known_hosts.is_empty());
    }

    #[test]
    fn paths_expand_tilde_and_resolve_relative_ones() {
        let base = Path::new("/work/project");
        assert_eq!(
            local_path("~/.ssh/k", base, &env()).unwrap(),
            PathBuf::from("/home/me/.ssh/k")
        );
        assert_eq!(
            local_path("keys/k", base, &env()).unwrap(),
            PathBuf::from("/work/project/keys/k")
        );
        assert_eq!(local_path("/k", base, &env()).unwrap(), PathBuf::from("/k"));
        assert!(local_path("~bob/k", base, &env()).is_err());
        let no_home = Env {
            home: None,
            user: "x".into(),
        };
        assert!(local_path("~/k", base, &no_home).is_err());
    }

    #[test]
    fn users_are_checked() {
        assert!(check_user("deploy").is_ok());
        for bad in ["", "-oFoo", "a b", "a@b"] {
            assert!(check_user(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
