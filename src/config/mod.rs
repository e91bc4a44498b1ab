//! Reading deploy.toml: strict parsing (`file`), then resolution into `model`.

pub mod model;

pub use model::*;

use std::path::PathBuf;

/// Where the configuration comes from, as the command line and environment say.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// `-c/--config` or `HOIST_CONFIG`; default `deploy.toml`.
    pub config: Option<PathBuf>,
    /// `-i/--inventory`: a TOML file (or, later, `exec:CMD`).
    pub inventory: Option<String>,
}

/// Bad input: exit 2, nothing touched.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

pub fn load(_source: &Source) -> Result<Config, ConfigError> {
    Err(ConfigError("config loading is being written".into()))
}
