//! The file as written: serde structs that accept exactly the documented
//! keys. Values check themselves (see `values`); `resolve` turns these into
//! the model.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::ssh_keys::ssh_keys;
use super::values::{
    AmountOrNone, Batch, Checking, Commands, Dur, Jump, LocalPaths, Name, NonZeroDur,
    OnFailureValue, PauseValue, Port, Positive, RemotePath, TransportKind, User, Vars,
};

/// Declares a struct holding `extra` fields and then every SSH key of the
/// table (`ssh_keys!`), so `[ssh]`, `[hosts.*]` and `[groups.*]` accept the
/// same SSH keys. (`deny_unknown_fields` does not work with `#[serde(flatten)]`.)
macro_rules! with_ssh_keys {
    (
        $(#[$attr:meta])*
        pub struct $name:ident { $($(#[$fattr:meta])* pub $field:ident : $ty:ty,)* }
        keys { $($key:ident: $raw:ty => $value:ty { $($column:tt)* })* }
    ) => {
        $(#[$attr])*
        pub struct $name {
            $($(#[$fattr])* pub $field: $ty,)*
            $(pub $key: Option<$raw>,)*
        }

        impl $name {
            /// The SSH keys this table sets.
            #[allow(dead_code)] // unused on RawSsh itself
            pub fn ssh(&self) -> RawSsh {
                RawSsh {
                    $($key: self.$key.clone(),)*
                }
            }
        }
    };
}

/// deploy.toml.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct DeployFile {
    /// A separate inventory file, relative to this file.
    pub inventory: Option<String>,
    pub app: RawApp,
    pub ssh: Option<RawSsh>,
    pub hosts: Option<BTreeMap<Name, RawHost>>,
    pub groups: Option<BTreeMap<Name, RawGroup>>,
    pub artifact: Option<RawArtifact>,
    pub hooks: Option<RawHooks>,
    pub health: Option<RawHealth>,
    pub strategy: Option<RawStrategy>,
}

/// A separate inventory file (`inventory = "hosts.toml"` or `-i`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct InventoryFile {
    pub ssh: Option<RawSsh>,
    pub hosts: Option<BTreeMap<Name, RawHost>>,
    pub groups: Option<BTreeMap<Name, RawGroup>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RawApp {
    pub name: Name,
    pub deploy_to: RemotePath,
    pub keep_releases: Option<Positive>,
}

ssh_keys!(with_ssh_keys! {
    #[derive(Debug, Clone, Default, Deserialize)]
    #[serde(deny_unknown_fields, expecting = "a table")]
    pub struct RawSsh {}
});

ssh_keys!(with_ssh_keys! {
    #[derive(Debug, Clone, Default, Deserialize)]
    #[serde(deny_unknown_fields, expecting = "a table")]
    pub struct RawHost {
        pub address: Option<String>,
        pub groups: Option<Vec<Name>>,
        pub host_key: Option<String>,
        pub deploy_to: Option<RemotePath>,
        pub vars: Option<Vars>,
        pub transport: Option<TransportKind>,
        pub root: Option<String>,
    }
});

ssh_keys!(with_ssh_keys! {
    #[derive(Debug, Clone, Default, Deserialize)]
    #[serde(deny_unknown_fields, expecting = "a table")]
    pub struct RawGroup {
        /// Host names or patterns such as `web[01:20].example.com`.
        pub hosts: Option<Vec<String>>,
        pub vars: Option<Vars>,
    }
});

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RawArtifact {
    pub path: String,
    pub version: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RawHooks {
    pub before_switch: Option<Commands>,
    pub after_switch: Option<Commands>,
    pub after_rollback: Option<Commands>,
    pub before_batch_local: Option<Commands>,
    pub after_batch_local: Option<Commands>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RawHealth {
    pub command: Option<String>,
    pub http: Option<String>,
    pub retries: Option<Positive>,
    pub interval: Option<Dur>,
    pub timeout: Option<NonZeroDur>,
    pub grace: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RawStrategy {
    pub canary: Option<AmountOrNone>,
    pub canary_pause: Option<PauseValue>,
    pub batch: Option<Batch>,
    pub batch_pause: Option<Dur>,
    pub parallel: Option<Positive>,
    pub max_failures: Option<AmountOrNone>,
    pub on_failure: Option<OnFailureValue>,
}
