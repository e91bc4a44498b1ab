//! `--limit`: which hosts of the inventory a command works on.
//!
//! Comma-separated selectors, each a host name, a group name, or a glob
//! (`web*`, `db-?`) matched against both; `!sel` excludes. With only
//! exclusions, the rest of the inventory is selected. The result keeps
//! inventory order, without duplicates.

use std::collections::BTreeSet;

use globset::{Glob, GlobMatcher};

use crate::config::{Config, ConfigError, Host};

pub fn select(config: &Config, limit: Option<&str>) -> Result<Vec<Host>, ConfigError> {
    let Some(limit) = limit else {
        return Ok(config.hosts.clone());
    };
    let selectors: Vec<&str> = limit
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if selectors.is_empty() {
        return Err(ConfigError(
            "--limit is empty; give host names, groups or globs".into(),
        ));
    }

    let mut include: Option<BTreeSet<&str>> = None;
    let mut exclude: BTreeSet<&str> = BTreeSet::new();
    for selector in &selectors {
        let (negated, pattern) = match selector.strip_prefix('!') {
            Some(p) => (true, p.trim()),
            None => (false, *selector),
        };
        let matched = matching(config, pattern)?;
        // A typo in an exclusion would silently deploy to the host it meant
        // to spare, so an exclusion must match too.
        if matched.is_empty() {
            return Err(ConfigError(format!(
                "--limit: `{selector}` matches no host or group"
            )));
        }
        if negated {
            exclude.extend(matched);
        } else {
            include.get_or_insert_with(BTreeSet::new).extend(matched);
        }
    }

    let selected: Vec<Host> = config
        .hosts
        .iter()
        .filter(|h| include.as_ref().is_none_or(|i| i.contains(h.name.as_str())))
        .filter(|h| !exclude.contains(h.name.as_str()))
        .cloned()
        .collect();
    if selected.is_empty() {
        return Err(ConfigError(format!("--limit `{limit}` leaves no hosts")));
    }
    Ok(selected)
}

/// Names of the hosts one selector (without `!`) stands for.
fn matching<'c>(config: &'c Config, pattern: &str) -> Result<BTreeSet<&'c str>, ConfigError> {
    if pattern.is_empty() {
        return Err(ConfigError(
            "--limit: `!` needs a host, group or glob after it".into(),
        ));
    }
    let matcher = glob(pattern)?;
    let is = |name: &str| match &matcher {
        Some(m) => m.is_match(name),
        None => name == pattern,
    };
    let mut names: BTreeSet<&str> = config
        .hosts
        .iter()
        .map(|h| h.name.as_str())
        .filter(|n| is(n))
        .collect();
    for (group, members) in &config.groups {
        if is(group) {
            names.extend(members.iter().map(String::as_str));
        }
    }
    Ok(names)
}

/// `None` for a plain name. (No `{a,b}`: the comma already separates selectors.)
fn glob(pattern: &str) -> Result<Option<GlobMatcher>, ConfigError> {
    if !pattern.contains(['*', '?', '[']) {
        return Ok(None);
    }
    Glob::new(pattern)
        .map(|g| Some(g.compile_matcher()))
        .map_err(|e| ConfigError(format!("--limit: bad glob `{pattern}`: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{App, HostTransport, Strategy};
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::time::Duration;

    /// web1, web2, db-1, db-2, cache; groups web, db, all-db (db-1 only).
    fn fleet() -> Config {
        let host = |name: &str, groups: &[&str]| Host {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            deploy_to: "/srv/app".into(),
            vars: BTreeMap::new(),
            command_timeout: Duration::from_secs(60),
            transport: HostTransport::Local {
                root: PathBuf::from("/tmp"),
            },
            role: Default::default(),
        };
        let hosts = vec![
            host("web1", &["web"]),
            host("web2", &["web"]),
            host("db-1", &["db", "primary"]),
            host("db-2", &["db"]),
            host("cache", &[]),
        ];
        let mut groups = BTreeMap::new();
        groups.insert("web".into(), vec!["web1".into(), "web2".into()]);
        groups.insert("db".into(), vec!["db-1".into(), "db-2".into()]);
        groups.insert("primary".into(), vec!["db-1".into()]);
        Config {
            path: "deploy.toml".into(),
            base_dir: "/".into(),
            app: App {
                name: "app".into(),
                deploy_to: "/srv/app".into(),
                keep_releases: 5,
                ..Default::default()
            },
            hosts,
            groups,
            artifact: None,
            hooks: Default::default(),
            health: None,
            strategy: Strategy::default(),
            diagnose: Vec::new(),
            blue_green: None,
            env: None,
            envs: Vec::new(),
            min_soak: Default::default(),
            policy: Default::default(),
            group_throttles: Default::default(),
            group_strategies: Default::default(),
            analysis: Vec::new(),
            relay: None,
            traffic: None,
            warnings: Vec::new(),
            ssh_config_notes: Vec::new(),
            secrets: Vec::new(),
        }
    }

    fn picked(limit: Option<&str>) -> Vec<String> {
        select(&fleet(), limit)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|h| h.name)
            .collect()
    }

    fn refused(limit: &str) -> String {
        select(&fleet(), Some(limit)).unwrap_err().0
    }

    #[test]
    fn no_limit_is_every_host() {
        assert_eq!(picked(None), ["web1", "web2", "db-1", "db-2", "cache"]);
    }

    #[test]
    fn names_and_groups_keep_inventory_order_without_duplicates() {
        assert_eq!(picked(Some("cache,web1")), ["web1", "cache"]);
        assert_eq!(picked(Some("db")), ["db-1", "db-2"]);
        assert_eq!(picked(Some("web, web2, primary")), ["web1", "web2", "db-1"]);
    }

    #[test]
    fn globs_match_host_and_group_names() {
        assert_eq!(picked(Some("web*")), ["web1", "web2"]);
        assert_eq!(picked(Some("db-?")), ["db-1", "db-2"]);
        assert_eq!(picked(Some("prim*")), ["db-1"]);
    }

    #[test]
    fn exclusions_subtract() {
        assert_eq!(picked(Some("!db")), ["web1", "web2", "cache"]);
        assert_eq!(picked(Some("!db,!cache")), ["web1", "web2"]);
        assert_eq!(picked(Some("db,!primary")), ["db-2"]);
        // an exclusion wins wherever it stands
        assert_eq!(picked(Some("!web1,web*")), ["web2"]);
    }

    #[test]
    fn a_selector_that_matches_nothing_is_named() {
        let err = refused("web1,wbe2");
        assert!(err.contains("`wbe2` matches no host or group"), "{err}");
        let err = refused("nope*");
        assert!(err.contains("`nope*`"), "{err}");
    }

    #[test]
    fn an_exclusion_that_matches_nothing_is_refused() {
        let err = refused("!dbb");
        assert!(err.contains("`!dbb` matches no host"), "{err}");
    }

    #[test]
    fn an_empty_result_is_refused() {
        let err = refused("web,!web*");
        assert!(err.contains("leaves no hosts"), "{err}");
        let err = refused(" , ");
        assert!(err.contains("empty"), "{err}");
        let err = refused("!");
        assert!(err.contains("needs a host"), "{err}");
    }

    #[test]
    fn a_bad_glob_is_refused() {
        let err = refused("web[");
        assert!(err.contains("bad glob"), "{err}");
    }
}
