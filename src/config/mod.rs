//! Reading deploy.toml: strict parsing (`file`, `values`), then resolution
//! into `model` (`resolve`, `inventory`, `layer`).

pub mod analysis;
mod doc;
mod env;
mod exec;
mod file;
mod inventory;
mod layer;
pub mod model;
mod overlay;
mod range;
mod resolve;
mod roles;
mod shared;
mod show;
mod ssh_config;
mod ssh_keys;
pub mod traffic;
mod values;

#[cfg(test)]
mod tests;

pub use model::*;
pub use overlay::unknown as unknown_env;
pub use resolve::check_version;
pub use shared::relative_path;
pub use show::{KeyRow, keys};
pub use ssh_keys::ssh_settings_rows;

use std::path::PathBuf;

/// Where the configuration comes from, as the command line and environment say.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// `-c/--config` or `HOIST_CONFIG`; default `deploy.toml`.
    pub config: Option<PathBuf>,
    /// `-i/--inventory`: a TOML file, or `exec:CMD` (JSON on its stdout).
    pub inventory: Option<String>,
    /// `-e/--env` or `HOIST_ENV`: the `[env.NAME]` laid over the file.
    pub env: Option<String>,
}

/// Bad input: exit 2, nothing touched.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The commented file `hoist init` writes.
pub const INIT_TEMPLATE: &str = include_str!("init.toml");

/// Reads, checks and resolves the configuration, including that the
/// artifact (when the file has one) exists. For commands that ship it.
pub fn load(source: &Source) -> Result<Config, ConfigError> {
    let config = load_without_artifact_check(source)?;
    check_artifact(&config)?;
    Ok(config)
}

/// Like `load`, but does not look for the artifact on disk: for commands
/// that never ship it (status, rollback, releases, lock, exec).
pub fn load_without_artifact_check(source: &Source) -> Result<Config, ConfigError> {
    resolve::load(source, &env::Env::from_process())
}

/// Checks that the artifact the file names exists (when it names one).
pub fn check_artifact(config: &Config) -> Result<(), ConfigError> {
    resolve::check_artifact(config)
}
