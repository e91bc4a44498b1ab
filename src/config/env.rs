//! What this machine contributes to the configuration: the process
//! environment (HOME, the local user), local paths and user names.

use std::path::{Path, PathBuf};

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

pub fn check_user(user: &str) -> Result<(), String> {
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

/// The environment of the tests: user "me", HOME /home/me.
#[cfg(test)]
pub(super) fn me() -> Env {
    Env {
        home: Some("/home/me".into()),
        user: "me".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::me as env;
    use super::*;

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
