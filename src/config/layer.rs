//! SSH settings as layers: built-in defaults, then `[ssh]`, then groups,
//! then the host's own table; each layer sets only the keys it names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::env::Env;
use super::file::RawSsh;
use super::model::HostKeyChecking;
use super::ssh_keys::{Resolve, in_ssh_dir, ssh_keys};
use super::values::Hop;

/// Declares `SshLayer` and `SshSettings` from the table of SSH keys.
macro_rules! layers {
    (keys { $($key:ident: $raw:ty => $value:ty {
        default: $default:expr,
        $($rest:tt)*
    })* }) => {
        /// The SSH keys one table sets; `None` where it says nothing.
        #[derive(Debug, Clone, Default)]
        pub struct SshLayer {
            $(pub $key: Option<$value>,)*
        }

        /// Every key set: what a host gets when nothing overrides it.
        #[derive(Debug, Clone)]
        pub struct SshSettings {
            $(pub $key: $value,)*
            /// Key -> where its value came from; a key not here is a built-in default.
            pub sources: BTreeMap<&'static str, String>,
        }

        impl SshSettings {
            pub fn defaults(env: &Env) -> SshSettings {
                $(let $key: fn(&Env) -> $value = $default;)*
                SshSettings {
                    $($key: $key(env),)*
                    sources: BTreeMap::new(),
                }
            }

            /// These settings with `layer`'s keys on top; `from` names the layer
            /// (e.g. "deploy.toml [ssh]").
            pub fn with(mut self, layer: &SshLayer, from: &str) -> SshSettings {
                $(if let Some(v) = &layer.$key {
                    self.$key = v.clone();
                    self.sources.insert(stringify!($key), from.to_string());
                })*
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
                Ok(SshLayer {
                    $($key: raw
                        .$key
                        .as_ref()
                        .map(|v| v.resolve(base, env))
                        .transpose()
                        .map_err(|e| (stringify!($key), e))?,)*
                })
            }

            /// The keys a table sets, by name, in the table's order.
            pub fn keys_set(&self) -> Vec<&'static str> {
                let mut keys = Vec::new();
                $(if self.$key.is_some() {
                    keys.push(stringify!($key));
                })*
                keys
            }
        }
    };
}
ssh_keys!(layers! {});

#[cfg(test)]
mod tests {
    use super::super::env::me as env;
    use super::*;

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
}
