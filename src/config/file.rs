//! The file as written: serde structs that accept exactly the documented
//! keys. Values check themselves (see `values`); `resolve` turns these into
//! the model.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserializer, MapAccess, Visitor};

use super::ssh_keys::ssh_keys;
use super::values::{
    AmountOrNone, Batch, Checking, Commands, Dur, HostPatterns, Jump, KindValue, LocalPaths,
    MAX_PARALLEL, Name, NonZeroDur, OnFailureValue, PauseValue, Port, Positive, RemotePath,
    Retries, Strings, TransportKind, User, Vars, WaveByValue,
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

            /// Whether the table sets any SSH key.
            #[allow(dead_code)] // unused on RawSsh itself
            pub fn sets_ssh(&self) -> bool {
                false $(|| self.$key.is_some())*
            }
        }
    };
}

/// Makes `$ty` deserialize from a table only. serde's derive also reads an
/// array as the fields in order, so `[groups] web = ["a"]` would set the
/// first field, or fail with a message about it; this says what was meant.
macro_rules! table_only {
    ($ty:ty, $expecting:expr) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Table;
                impl<'de> Visitor<'de> for Table {
                    type Value = $ty;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<$ty, A::Error> {
                        // The derived impl (`remote = "Self"`), not this one.
                        <$ty>::deserialize(MapAccessDeserializer::new(map))
                    }
                }
                d.deserialize_any(Table)
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
    pub diagnose: Option<RawDiagnose>,
    pub blue_green: Option<RawBlueGreen>,
    /// `[[files]]`: files sent apart from the artifact.
    pub files: Option<Vec<RawFile>>,
    /// `[secrets]`: named values from local commands.
    pub secrets: Option<BTreeMap<String, RawSecret>>,
    /// Every command needs `-e/--env` (the `[env.*]` tables are removed
    /// before this is read).
    pub require_env: Option<bool>,
    /// How long the release `deploy --from` promotes must have been live.
    pub min_soak: Option<Dur>,
    pub policy: Option<RawPolicy>,
    /// `[[analysis]]`: gates the rollout's bakes sample.
    pub analysis: Option<Vec<RawGate>>,
    /// `[relay]`: hosts pass the release on to each other.
    pub relay: Option<RawRelay>,
    /// `[traffic]`: weights set in steps after the canary.
    pub traffic: Option<RawTraffic>,
}

/// `[relay]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table", remote = "Self")]
pub struct RawRelay {
    pub fanout: Positive<64>,
    pub authorized_keys: Option<String>,
}

/// `[traffic]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table", remote = "Self")]
pub struct RawTraffic {
    pub steps: Vec<i64>,
    pub set_local: Commands,
    pub step_bake: Option<Dur>,
}

/// One `[[analysis]]` gate.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table", remote = "Self")]
pub struct RawGate {
    pub name: Name,
    pub prometheus: Option<RawPrometheus>,
    pub command: Option<Vec<String>>,
    pub host_command: Option<Vec<String>>,
    pub interval: Option<NonZeroDur>,
    pub count: Option<Positive>,
    pub failure_limit: Option<u32>,
    pub consecutive_errors: Option<u32>,
    pub on_inconclusive: Option<String>,
    pub dry_run: Option<bool>,
}

/// `prometheus = { url, query, pass }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table", remote = "Self")]
pub struct RawPrometheus {
    pub url: String,
    pub query: String,
    pub pass: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table", remote = "Self")]
pub struct RawPolicy {
    pub freeze: Option<Strings>,
    pub timezone: Option<String>,
    pub require_reason: Option<bool>,
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
#[serde(deny_unknown_fields, expecting = "a table", remote = "Self")]
pub struct RawApp {
    pub name: Name,
    pub deploy_to: RemotePath,
    pub keep_releases: Option<Positive>,
    pub shared_dirs: Option<Strings>,
    pub shared_files: Option<Strings>,
    pub ignore: Option<Strings>,
}

/// One `[[files]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table", remote = "Self")]
pub struct RawFile {
    pub src: Option<String>,
    pub command: Option<Vec<String>>,
    pub content: Option<String>,
    pub dest: String,
    pub mode: Option<String>,
    pub secret: Option<bool>,
    pub template: Option<bool>,
}

/// A secret from a local command: `{ command = ["sops", "-d", ...] }`,
/// with `env` the variable hooks get it in.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table", remote = "Self")]
pub struct RawSecret {
    pub command: Vec<String>,
    pub env: Option<String>,
}

/// `become_password = { command = [...] }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table", remote = "Self")]
pub struct RawSecretCommand {
    pub command: Vec<String>,
}

ssh_keys!(with_ssh_keys! {
    #[derive(Debug, Clone, Default, Deserialize)]
    #[serde(deny_unknown_fields, expecting = "a table", remote = "Self")]
    pub struct RawSsh {}
});

ssh_keys!(with_ssh_keys! {
    #[derive(Debug, Clone, Default, Deserialize)]
    #[serde(deny_unknown_fields, expecting = "a table", remote = "Self")]
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
    #[serde(deny_unknown_fields, expecting = "a table", remote = "Self")]
    pub struct RawGroup {
        /// Host names or patterns such as `web[01:20].example.com`.
        pub hosts: Option<HostPatterns>,
        pub vars: Option<Vars>,
        /// Overrides of the top-level tables for this group's hosts.
        pub hooks: Option<RawGroupHooks>,
        pub health: Option<RawGroupHealth>,
        pub diagnose: Option<RawDiagnose>,
        pub strategy: Option<RawGroupStrategy>,
    }
});

impl RawGroup {
    /// Takes the override tables out, leaving the inventory part.
    pub fn take_overrides(&mut self) -> RawOverrides {
        RawOverrides {
            hooks: self.hooks.take(),
            health: self.health.take(),
            diagnose: self.diagnose.take(),
            strategy: self.strategy.take(),
        }
    }

    /// Whether the table holds anything beyond overrides.
    pub fn is_inventory(&self) -> bool {
        self.hosts.is_some() || self.vars.is_some() || self.sets_ssh()
    }
}

/// A group's `hooks`, `health`, `diagnose` and `strategy` tables.
#[derive(Debug, Clone, Default)]
pub struct RawOverrides {
    pub hooks: Option<RawGroupHooks>,
    pub health: Option<RawGroupHealth>,
    pub diagnose: Option<RawDiagnose>,
    pub strategy: Option<RawGroupStrategy>,
}

impl RawOverrides {
    pub fn is_empty(&self) -> bool {
        self.hooks.is_none()
            && self.health.is_none()
            && self.diagnose.is_none()
            && self.strategy.is_none()
    }
}

/// `[groups.<g>.hooks]`: the per-host hooks, and the group's throttle.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table", remote = "Self")]
pub struct RawGroupHooks {
    pub before_switch: Option<Commands>,
    pub after_switch: Option<Commands>,
    pub after_rollback: Option<Commands>,
    pub after_files: Option<Commands>,
    pub throttle: Option<RawThrottle>,
}

/// `[groups.<g>.health]`: key by key over `[health]`; `enabled = false`
/// leaves the group's hosts without a check.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table", remote = "Self")]
pub struct RawGroupHealth {
    pub enabled: Option<bool>,
    pub command: Option<String>,
    pub http: Option<String>,
    pub retries: Option<Positive>,
    pub interval: Option<Dur>,
    pub timeout: Option<NonZeroDur>,
    pub grace: Option<Dur>,
}

/// `[groups.<g>.strategy]`: how an ordered group's own waves go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table", remote = "Self")]
pub struct RawGroupStrategy {
    pub canary: Option<AmountOrNone>,
    pub batch: Option<Batch>,
    pub parallel: Option<Positive<MAX_PARALLEL>>,
}

/// `throttle = { after_switch = 2 }`: most hosts running that hook at once.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table", remote = "Self")]
pub struct RawThrottle {
    pub before_switch: Option<Positive<MAX_PARALLEL>>,
    pub after_switch: Option<Positive<MAX_PARALLEL>>,
    pub after_rollback: Option<Positive<MAX_PARALLEL>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table", remote = "Self")]
pub struct RawArtifact {
    pub path: Option<String>,
    pub url: Option<String>,
    pub sha256: Option<String>,
    pub version: Option<String>,
    pub delta: Option<bool>,
    pub allow_setuid: Option<bool>,
    pub max_size: Option<super::values::Size>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table", remote = "Self")]
pub struct RawHooks {
    pub before_switch: Option<Commands>,
    pub after_switch: Option<Commands>,
    pub after_rollback: Option<Commands>,
    pub before_batch_local: Option<Commands>,
    pub after_batch_local: Option<Commands>,
    #[serde(rename = "become")]
    pub become_user: Option<User>,
    pub before_switch_once: Option<Commands>,
    pub on_start_local: Option<Commands>,
    pub on_success_local: Option<Commands>,
    pub on_failure_local: Option<Commands>,
    pub after_files: Option<Commands>,
    pub become_password: Option<RawSecretCommand>,
    pub throttle: Option<RawThrottle>,
    pub drain_local: Option<Commands>,
    pub undrain_local: Option<Commands>,
    pub drain_wait: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table", remote = "Self")]
pub struct RawHealth {
    pub command: Option<String>,
    pub http: Option<String>,
    pub retries: Option<Positive>,
    pub interval: Option<Dur>,
    pub timeout: Option<NonZeroDur>,
    pub grace: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table", remote = "Self")]
pub struct RawStrategy {
    pub kind: Option<KindValue>,
    pub canary: Option<AmountOrNone>,
    pub canary_pause: Option<PauseValue>,
    pub batch: Option<Batch>,
    pub batch_pause: Option<Dur>,
    pub parallel: Option<Positive<MAX_PARALLEL>>,
    pub max_failures: Option<AmountOrNone>,
    pub on_failure: Option<OnFailureValue>,
    pub max_unreachable: Option<AmountOrNone>,
    pub wave_by: Option<WaveByValue>,
    pub zones: Option<Vec<Name>>,
    pub first_zone_bake: Option<Dur>,
    pub zone_bake: Option<Dur>,
    pub min_healthy_per_zone: Option<AmountOrNone>,
    pub order: Option<Vec<Name>>,
    pub wave_bake: Option<Dur>,
    pub deadman_timeout: Option<Dur>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table", remote = "Self")]
pub struct RawDiagnose {
    pub commands: Option<Commands>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table", remote = "Self")]
pub struct RawBlueGreen {
    pub colors: Vec<Name>,
    pub switch_local: Option<Commands>,
    /// The colour taken as live while no journal records a switch.
    pub live: Option<Name>,
}

table_only!(RawBlueGreen, "a table");
table_only!(RawApp, "a table");
table_only!(RawSsh, "a table");
table_only!(
    RawHost,
    "a table for the host, e.g. [hosts.web1] with address = \"10.0.0.11\""
);
table_only!(
    RawGroup,
    "a table for the group, e.g. [groups.web] with hosts = [\"web1\", \"web[01:20].example.com\"]"
);
table_only!(RawArtifact, "a table");
table_only!(
    RawFile,
    "a table, e.g. [[files]] with src = \"secrets/{host}.env\" (or command = [...], or content = \"...\") and dest = \"shared/.env\""
);
table_only!(RawHooks, "a table");
table_only!(
    RawSecret,
    "a table, e.g. db_password = { command = [\"sops\", \"-d\", \"--extract\", \"[\\\"db\\\"]\", \"secrets.enc.yaml\"] }"
);
table_only!(
    RawSecretCommand,
    "a table, e.g. become_password = { command = [\"op\", \"read\", \"op://ops/sudo/password\"] }"
);
table_only!(RawHealth, "a table");
table_only!(RawStrategy, "a table");
table_only!(RawDiagnose, "a table");
table_only!(RawGroupHooks, "a table");
table_only!(RawGroupHealth, "a table");
table_only!(RawGroupStrategy, "a table");
table_only!(RawThrottle, "a table, e.g. throttle = { after_switch = 2 }");
table_only!(RawPolicy, "a table");
table_only!(RawRelay, "a table, e.g. [relay] with fanout = 4");
table_only!(
    RawGate,
    "a table, e.g. [[analysis]] with name = \"errors\" and command = [\"./check-errors\"]"
);
table_only!(
    RawPrometheus,
    "a table, e.g. prometheus = { url = \"http://127.0.0.1:9090\", query = \"...\", pass = \"< 0.01\" }"
);
table_only!(
    RawTraffic,
    "a table, e.g. [traffic] with steps = [1, 10, 50, 100] and set_local = [\"./lb weight $HOIST_WEIGHT\"]"
);
