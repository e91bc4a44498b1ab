//! The SSH keys, declared once. `[ssh]`, `[hosts.*]` and `[groups.*]`
//! (`file`), the layers that merge them (`layer`), what ~/.ssh/config says
//! (`ssh_config`), the keys local hosts refuse and `hoist check -v` are all
//! derived from the table in `ssh_keys!`, as ripgrep derives its help, man
//! page and completions from one table of flags.
//!
//! Adding a key: a row here, its `Resolve` impl when the type is new, and
//! then only the code that uses the value (the model, and `ssh_config`'s
//! lookup when an option of ~/.ssh/config supplies it).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::env::{Env, check_user, local_path};
use super::model::{Host, HostKeyChecking, HostTransport, SshTarget};
use super::values::{Checking, Hop, Jump, LocalPaths, NonZeroDur, Port, Retries, User};

/// The table. Hands every row to `$then!`, after `$then`'s own input:
/// `$then! { <input> keys { <rows> } }`. A row reads
///
/// ```text
/// key: TypeAsWritten => ResolvedType {
///     default: |env: &Env| value when nothing sets the key,
///     ssh_config: the ~/.ssh/config option that may supply it,
///     local: whether transport = "local" hosts take it,
///     show: how `check -v` shows the host's value (None: not shown),
/// }
/// ```
///
/// Rows are in the order messages list accepted keys and `check -v` shows
/// settings. `default` is evaluated in `layer`; `show` here.
macro_rules! ssh_keys {
    ($then:ident! { $($input:tt)* }) => {
        $then! { $($input)* keys {
            user: User => String {
                default: |env: &Env| env.user.clone(),
                ssh_config: Some("User"),
                local: false,
                show: Some(|_, t| t.user.clone()),
            }
            port: Port => u16 {
                default: |_: &Env| 22,
                ssh_config: Some("Port"),
                local: false,
                show: Some(|_, t| t.port.to_string()),
            }
            identity_files: LocalPaths => Vec<PathBuf> {
                default: |env: &Env| in_ssh_dir(env, &["id_ed25519", "id_ecdsa", "id_rsa"]),
                ssh_config: Some("IdentityFile"),
                local: false,
                show: Some(|_, t| paths(&t.identity_files)),
            }
            identities_only: bool => bool {
                default: |_: &Env| false,
                ssh_config: Some("IdentitiesOnly"),
                local: false,
                show: Some(|_, t| t.identities_only.to_string()),
            }
            known_hosts: LocalPaths => Vec<PathBuf> {
                default: |env: &Env| in_ssh_dir(env, &["known_hosts"]),
                ssh_config: Some("UserKnownHostsFile"),
                local: false,
                show: Some(|_, t| paths(&t.known_hosts)),
            }
            host_key_checking: Checking => HostKeyChecking {
                default: |_: &Env| HostKeyChecking::Strict,
                ssh_config: Some("StrictHostKeyChecking"),
                local: false,
                show: Some(|_, t| checking(t.host_key_checking).to_string()),
            }
            connect_timeout: NonZeroDur => Duration {
                default: |_: &Env| Duration::from_secs(10),
                ssh_config: Some("ConnectTimeout"),
                local: false,
                show: Some(|_, t| time(t.connect_timeout)),
            }
            // Any one remote command; local hosts run commands too.
            command_timeout: NonZeroDur => Duration {
                default: |_: &Env| Duration::from_secs(10 * 60),
                ssh_config: None,
                local: true,
                show: Some(|h, _| time(h.command_timeout)),
            }
            // Reconnects after a refused, reset or timed-out connect.
            connect_retries: Retries => u32 {
                default: |_: &Env| 2,
                ssh_config: None,
                local: false,
                show: Some(|_, t| t.connect_retries.to_string()),
            }
            keepalive: NonZeroDur => Duration {
                default: |_: &Env| Duration::from_secs(15),
                ssh_config: Some("ServerAliveInterval"),
                local: false,
                show: Some(|_, t| time(t.keepalive)),
            }
            jump: Jump => Vec<Hop> {
                default: |_: &Env| Vec::new(),
                ssh_config: Some("ProxyJump"),
                local: false,
                show: Some(|_, t| jump(t)),
            }
            // Decides where the others come from, which their sources say;
            // the target does not keep it.
            ssh_config: bool => bool {
                default: |_: &Env| true,
                ssh_config: None,
                local: false,
                show: None,
            }
        } }
    };
}
pub(super) use ssh_keys;

/// One row of the table, for code that works key by key.
pub struct SshKey {
    pub name: &'static str,
    /// The ~/.ssh/config option that may supply the key. `ssh_config::lookup`
    /// reads each option its own way; a test holds the two in step.
    #[cfg_attr(not(test), allow(dead_code))]
    pub ssh_config: Option<&'static str>,
    /// Whether a `transport = "local"` host takes the key.
    pub local: bool,
    /// The host's value as `check -v` shows it.
    pub show: Option<fn(&Host, &SshTarget) -> String>,
}

macro_rules! descriptors {
    (keys { $($key:ident: $raw:ty => $value:ty {
        default: $default:expr,
        ssh_config: $option:expr,
        local: $local:expr,
        show: $show:expr,
    })* }) => {
        /// Every SSH key, in the table's order.
        pub const SSH_KEYS: &[SshKey] = &[$(SshKey {
            name: stringify!($key),
            ssh_config: $option,
            local: $local,
            show: $show,
        },)*];
    };
}
ssh_keys!(descriptors! {});

impl SshKey {
    pub fn named(name: &str) -> Option<&'static SshKey> {
        SSH_KEYS.iter().find(|k| k.name == name)
    }
}

/// How a key's value as written becomes the value hosts use: paths against
/// the directory of the file that names them, `~` against HOME.
pub trait Resolve {
    type Value;
    fn resolve(&self, base: &Path, env: &Env) -> Result<Self::Value, String>;
}

impl Resolve for User {
    type Value = String;
    fn resolve(&self, _: &Path, _: &Env) -> Result<String, String> {
        check_user(&self.0)?;
        Ok(self.0.clone())
    }
}

impl Resolve for Port {
    type Value = u16;
    fn resolve(&self, _: &Path, _: &Env) -> Result<u16, String> {
        Ok(self.0)
    }
}

impl Resolve for LocalPaths {
    type Value = Vec<PathBuf>;
    fn resolve(&self, base: &Path, env: &Env) -> Result<Vec<PathBuf>, String> {
        self.0.0.iter().map(|p| local_path(p, base, env)).collect()
    }
}

impl Resolve for Retries {
    type Value = u32;
    fn resolve(&self, _: &Path, _: &Env) -> Result<u32, String> {
        Ok(self.0)
    }
}

impl Resolve for bool {
    type Value = bool;
    fn resolve(&self, _: &Path, _: &Env) -> Result<bool, String> {
        Ok(*self)
    }
}

impl Resolve for Checking {
    type Value = HostKeyChecking;
    fn resolve(&self, _: &Path, _: &Env) -> Result<HostKeyChecking, String> {
        Ok(self.0)
    }
}

impl Resolve for NonZeroDur {
    type Value = Duration;
    fn resolve(&self, _: &Path, _: &Env) -> Result<Duration, String> {
        Ok(self.0)
    }
}

impl Resolve for Jump {
    type Value = Vec<Hop>;
    fn resolve(&self, _: &Path, _: &Env) -> Result<Vec<Hop>, String> {
        Ok(self.0.clone())
    }
}

/// A host's effective SSH settings as `(key, value, where it came from)`:
/// `address`, the table's keys in its order, then `host_key` (the two keys
/// only a host's own table sets). Empty for a local host. For `check -v`.
pub fn ssh_settings_rows(host: &Host) -> Vec<(&'static str, String, String)> {
    let HostTransport::Ssh(t) = &host.transport else {
        return Vec::new();
    };
    let row = |key: &'static str, value: String| (key, value, t.source_of(key).to_string());
    let mut rows = vec![row("address", t.address.clone())];
    for key in SSH_KEYS {
        if let Some(show) = key.show {
            rows.push(row(key.name, show(host, t)));
        }
    }
    rows.push(row(
        "host_key",
        t.host_key.clone().unwrap_or_else(|| "(none)".into()),
    ));
    rows
}

fn paths(list: &[PathBuf]) -> String {
    if list.is_empty() {
        return "(none)".to_string();
    }
    let shown: Vec<String> = list.iter().map(|p| p.display().to_string()).collect();
    shown.join(", ")
}

fn time(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn checking(c: HostKeyChecking) -> &'static str {
    match c {
        HostKeyChecking::Strict => "strict",
        HostKeyChecking::AcceptNew => "accept-new",
        HostKeyChecking::Off => "off",
    }
}

/// The bastions as hoist will reach them (~/.ssh/config applied).
fn jump(t: &SshTarget) -> String {
    t.route().unwrap_or_else(|| "(none)".to_string())
}

/// `~/.ssh/<file>` for each file; none without HOME.
pub fn in_ssh_dir(env: &Env, files: &[&str]) -> Vec<PathBuf> {
    let Some(home) = &env.home else {
        return Vec::new();
    };
    files.iter().map(|f| home.join(".ssh").join(f)).collect()
}
