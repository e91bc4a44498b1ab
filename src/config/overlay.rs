//! `[env.NAME]` overlays, laid over the base file before it is read: tables
//! merge key by key, arrays and scalars replace, and `hosts` and `groups`
//! are replaced whole (an environment's inventory is its own, never the
//! base's plus some). The merge works on the file's parsed form, so every
//! value keeps the place it was written at: messages and `hoist config`
//! point into the overlay for what came from it.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

/// Keys of the base file only: an overlay cannot set them.
const BASE_ONLY: [&str; 2] = ["env", "require_env"];
/// Top-level tables an overlay replaces whole.
const REPLACED: [&str; 2] = ["hosts", "groups"];

/// The environments the file defines, in the file's order.
pub fn names(table: &DeTable<'_>) -> Vec<String> {
    match table.get("env").map(|v| v.get_ref()) {
        Some(DeValue::Table(envs)) => {
            let mut keys: Vec<(usize, String)> = envs
                .iter()
                .map(|(k, _)| (k.span().start, k.get_ref().to_string()))
                .collect();
            keys.sort();
            keys.into_iter().map(|(_, k)| k).collect()
        }
        _ => Vec::new(),
    }
}

/// Takes `[env]` out of `table` and lays `[env.NAME]` (when `env` names
/// one) over the rest. Returns the spans of everything the overlay set.
pub fn apply<'i>(table: &mut DeTable<'i>, env: Option<&str>) -> Result<Vec<Range<usize>>, String> {
    let known = names(table);
    let mut envs = match table.remove("env").map(Spanned::into_inner) {
        None => DeTable::new(),
        Some(DeValue::Table(t)) => t,
        Some(_) => {
            return Err(
                "`env`: expected tables of environments, e.g. [env.production]".to_string(),
            );
        }
    };
    let Some(name) = env else {
        return Ok(Vec::new());
    };
    let Some(overlay) = envs.remove(name) else {
        return Err(unknown(name, &known));
    };
    let DeValue::Table(overlay) = overlay.into_inner() else {
        return Err(format!(
            "`env.{name}`: expected a table, e.g. [env.{name}] with the keys that differ"
        ));
    };
    if let Some(key) = BASE_ONLY.iter().find(|k| overlay.contains_key(**k)) {
        return Err(format!(
            "`env.{name}.{key}`: {key} belongs to the base file, not to an environment"
        ));
    }
    let mut spans = Vec::new();
    merge(table, overlay, true, &mut spans);
    Ok(spans)
}

/// "no environment NAME in the file; its environments: a, b".
pub fn unknown(name: &str, known: &[String]) -> String {
    if known.is_empty() {
        format!("there is no environment {name:?}: the file defines no [env.NAME] table")
    } else {
        format!(
            "there is no environment {name:?}; the file defines: {}",
            known.join(", ")
        )
    }
}

fn merge<'i>(
    base: &mut DeTable<'i>,
    overlay: DeTable<'i>,
    top: bool,
    spans: &mut Vec<Range<usize>>,
) {
    for (key, value) in overlay {
        let whole = top && REPLACED.contains(&key.get_ref().as_ref());
        if !whole
            && let Some(existing) = base.get_mut(key.get_ref().as_ref())
            && let (DeValue::Table(under), DeValue::Table(_)) =
                (existing.get_mut(), value.get_ref())
        {
            let DeValue::Table(over) = value.into_inner() else {
                unreachable!("matched a table")
            };
            merge(under, over, false, spans);
            continue;
        }
        spans.push(key.span());
        mark(&value, spans);
        // Removed first: the key keeps the overlay's place, not the base's.
        base.remove(key.get_ref().as_ref());
        base.insert(key, value);
    }
}

/// Every span inside a value the overlay set.
fn mark(value: &Spanned<DeValue<'_>>, spans: &mut Vec<Range<usize>>) {
    spans.push(value.span());
    match value.get_ref() {
        DeValue::Table(t) => {
            for (k, v) in t.iter() {
                spans.push(k.span());
                mark(v, spans);
            }
        }
        DeValue::Array(a) => mark_array(a, spans),
        _ => {}
    }
}

fn mark_array(array: &DeArray<'_>, spans: &mut Vec<Range<usize>>) {
    for v in array.iter() {
        mark(v, spans);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file with `env` laid over it, as `key = value` lines of the
    /// leaves, each marked `*` when the overlay set it.
    fn resolved(text: &str, env: Option<&str>) -> Result<Vec<String>, String> {
        let mut table = DeTable::parse(text).unwrap().into_inner();
        let spans = apply(&mut table, env)?;
        let mut out = Vec::new();
        leaves(&table, "", text, &spans, &mut out);
        Ok(out)
    }

    fn leaves(
        t: &DeTable<'_>,
        at: &str,
        text: &str,
        spans: &[Range<usize>],
        out: &mut Vec<String>,
    ) {
        for (k, v) in t.iter() {
            let path = format!("{at}{}", k.get_ref());
            match v.get_ref() {
                DeValue::Table(inner) => leaves(inner, &format!("{path}."), text, spans, out),
                _ => {
                    let from = spans.iter().any(|s| s.contains(&k.span().start));
                    let star = if from { " *" } else { "" };
                    out.push(format!("{path} = {}{star}", &text[v.span()]));
                }
            }
        }
    }

    const FILE: &str = r#"
[app]
name = "shop"
keep_releases = 5
shared_dirs = ["log", "tmp"]

[strategy]
canary = 1
batch = "25%"

[hosts.web1]
address = "10.0.0.1"
[hosts.web2]
address = "10.0.0.2"

[groups.web]
hosts = ["web1", "web2"]

[env.staging]
[env.staging.hosts.stage1]
address = "10.1.0.1"
[env.staging.groups.web]
hosts = ["stage1"]

[env.production]
min_soak = "1h"
[env.production.app]
keep_releases = 10
shared_dirs = ["log"]
[env.production.strategy]
batch = [1, "50%"]
"#;

    #[test]
    fn tables_merge_key_by_key_and_arrays_and_scalars_replace() {
        let got = resolved(FILE, Some("production")).unwrap();
        for line in [
            "app.name = \"shop\"",
            "app.keep_releases = 10 *",
            "app.shared_dirs = [\"log\"] *",
            "strategy.canary = 1",
            "strategy.batch = [1, \"50%\"] *",
            "hosts.web1.address = \"10.0.0.1\"",
            "min_soak = \"1h\" *",
        ] {
            assert!(got.contains(&line.to_string()), "{line} not in {got:#?}");
        }
        assert!(!got.iter().any(|l| l.starts_with("env")), "{got:#?}");
    }

    #[test]
    fn an_environment_replaces_hosts_and_groups_whole() {
        let got = resolved(FILE, Some("staging")).unwrap();
        assert!(got.contains(&"hosts.stage1.address = \"10.1.0.1\" *".to_string()));
        assert!(got.contains(&"groups.web.hosts = [\"stage1\"] *".to_string()));
        assert!(!got.iter().any(|l| l.contains("web1.address")), "{got:#?}");
        assert!(got.contains(&"app.keep_releases = 5".to_string()));
    }

    #[test]
    fn without_an_environment_the_base_is_read_alone() {
        let got = resolved(FILE, None).unwrap();
        assert!(got.contains(&"app.keep_releases = 5".to_string()));
        assert!(!got.iter().any(|l| l.contains('*') || l.starts_with("env")));
    }

    #[test]
    fn an_unknown_environment_names_the_known_ones() {
        let e = resolved(FILE, Some("prod")).unwrap_err();
        assert_eq!(
            e,
            "there is no environment \"prod\"; the file defines: staging, production"
        );
        let e = resolved("[app]\nname = \"x\"\n", Some("prod")).unwrap_err();
        assert!(e.contains("defines no [env.NAME]"), "{e}");
    }

    #[test]
    fn an_environment_cannot_set_what_belongs_to_the_base() {
        let e = resolved("[env.a]\nrequire_env = false\n", Some("a")).unwrap_err();
        assert!(e.starts_with("`env.a.require_env`"), "{e}");
        let e = resolved("[env]\na = 1\n", Some("a")).unwrap_err();
        assert!(e.contains("`env.a`: expected a table"), "{e}");
    }
}
