//! `hoist config`: every key of the resolved file, with its value and
//! where it came from (the base file's line, the environment's line, or
//! the built-in default).

use toml::de::{DeTable, DeValue};

use super::doc::{Doc, join_path};
use super::{ConfigError, Source};

/// One key as resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    /// Dotted, as in messages: `hosts.web1.address`, `files[0].src`.
    pub key: String,
    /// As written (TOML), on one line.
    pub value: String,
    /// `deploy.toml:12`, `deploy.toml:31 [env.production]`, or `default`.
    pub source: String,
}

/// Keys with a fixed built-in default, shown as `default` where the file
/// leaves them out. The table named first must be in the file for those
/// marked `true` (a `[health]` check has retries only when it exists).
const DEFAULTS: &[(&str, &str, bool)] = &[
    ("require_env", "false", false),
    ("min_soak", "\"0s\"", false),
    ("app.keep_releases", "5", false),
    ("app.shared_dirs", "[]", false),
    ("app.shared_files", "[]", false),
    ("app.ignore", "[]", false),
    ("ssh.port", "22", false),
    ("ssh.host_key_checking", "\"strict\"", false),
    ("ssh.connect_timeout", "\"10s\"", false),
    ("ssh.command_timeout", "\"10m\"", false),
    ("ssh.connect_retries", "2", false),
    ("ssh.keepalive", "\"15s\"", false),
    ("ssh.ssh_config", "true", false),
    ("artifact.delta", "true", true),
    ("artifact.allow_setuid", "false", true),
    ("health.retries", "10", true),
    ("health.interval", "\"2s\"", true),
    ("health.timeout", "\"5s\"", true),
    ("health.grace", "\"0s\"", true),
    ("strategy.kind", "\"rolling\"", false),
    ("strategy.canary", "1", false),
    ("strategy.canary_pause", "\"manual\"", false),
    ("strategy.batch", "\"25%\"", false),
    ("strategy.batch_pause", "\"0s\"", false),
    ("strategy.parallel", "50", false),
    ("strategy.max_failures", "0", false),
    ("strategy.on_failure", "\"rollback\"", false),
    ("strategy.max_unreachable", "0", false),
    ("strategy.wave_by", "\"host\"", false),
    ("strategy.wave_bake", "\"0s\"", false),
    ("strategy.deadman_timeout", "\"60s\"", false),
    ("policy.freeze", "[]", false),
    ("policy.timezone", "\"UTC\"", false),
    ("policy.require_reason", "false", false),
    ("relay.authorized_keys", "\"~/.ssh/authorized_keys\"", true),
];

/// Every key of the file as `source` reads it (after checking it loads),
/// in the file's order, then the defaults of the keys it leaves out.
pub fn keys(source: &Source) -> Result<Vec<KeyRow>, ConfigError> {
    let config = super::load_without_artifact_check(source)?;
    let doc = Doc::read(&config.path, "configuration")?.with_env(source.env.as_deref());
    let (table, spans) = doc.merged()?;
    let label = config.path.file_name().map_or_else(
        || config.path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut rows = Vec::new();
    let place = |offset: usize| {
        let mut at = format!("{label}:{}", doc.line_of(offset));
        if let Some(env) = doc
            .env()
            .filter(|_| spans.iter().any(|s| s.contains(&offset)))
        {
            at.push_str(&format!(" [env.{env}]"));
        }
        at
    };
    walk(table.get_ref(), &[], &doc, &place, &mut rows);
    for (key, value, needs_table) in DEFAULTS {
        let table_name = key.split('.').next().unwrap_or_default();
        if *needs_table && !table.get_ref().contains_key(table_name) {
            continue;
        }
        if !rows.iter().any(|r| r.key == *key) {
            rows.push(KeyRow {
                key: key.to_string(),
                value: value.to_string(),
                source: "default".into(),
            });
        }
    }
    if let Some(row) = step_bake_default(&config, &rows) {
        rows.push(row);
    }
    // Each default beside its table's other keys: top-level keys first,
    // then the tables in the order the file has them.
    let section = |key: &str| key.split_once('.').map_or("", |(t, _)| t).to_string();
    let mut order: Vec<String> = vec![String::new()];
    for row in &rows {
        let s = section(&row.key);
        if !order.contains(&s) {
            order.push(s);
        }
    }
    rows.sort_by_key(|r| order.iter().position(|s| *s == section(&r.key)));
    Ok(rows)
}

/// `traffic.step_bake` when `[traffic]` leaves it out: its default follows
/// the strategy (a timed `canary_pause`, else `wave_bake`, else 30 s), so
/// the row shows the value it resolved to and, in its source, which key
/// gave it.
fn step_bake_default(config: &super::Config, rows: &[KeyRow]) -> Option<KeyRow> {
    let traffic = config.traffic.as_ref()?;
    if rows.iter().any(|r| r.key == "traffic.step_bake") {
        return None;
    }
    let from = match config.strategy.canary_pause {
        super::Pause::For(d) if d == traffic.step_bake => " (strategy.canary_pause)",
        _ if config.strategy.wave_bake == traffic.step_bake => " (strategy.wave_bake)",
        _ => "",
    };
    Some(KeyRow {
        key: "traffic.step_bake".into(),
        value: format!("\"{}\"", humantime::format_duration(traffic.step_bake)),
        source: format!("default{from}"),
    })
}

/// The leaves under `table`, in the file's order: tables (and arrays of
/// tables, `[[files]]`) are walked into, anything else is one row.
fn walk(
    table: &DeTable<'_>,
    at: &[String],
    doc: &Doc,
    place: &dyn Fn(usize) -> String,
    rows: &mut Vec<KeyRow>,
) {
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    for (key, value) in entries {
        let mut path = at.to_vec();
        path.push(key.get_ref().to_string());
        match value.get_ref() {
            DeValue::Table(inner) => walk(inner, &path, doc, place, rows),
            DeValue::Array(items)
                if !items.is_empty()
                    && items
                        .iter()
                        .all(|i| matches!(i.get_ref(), DeValue::Table(_))) =>
            {
                for (n, item) in items.iter().enumerate() {
                    if let DeValue::Table(inner) = item.get_ref() {
                        let mut p = path.clone();
                        p.push(format!("[{n}]"));
                        walk(inner, &p, doc, place, rows);
                    }
                }
            }
            _ => rows.push(KeyRow {
                key: join_path(&path),
                value: one_line(doc.slice(value.span())),
                source: place(key.span().start),
            }),
        }
    }
}

/// A value as written, its lines and comments folded into one line.
fn one_line(text: &str) -> String {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = strip_comment(line).trim();
        if !line.is_empty() {
            out.push(line);
        }
    }
    out.join(" ")
        .replace("[ ", "[")
        .replace(", ]", "]")
        .replace(",]", "]")
}

/// A line without its `# comment` (a `#` inside a string stays).
fn strip_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match quote {
            Some('"') if escaped => escaped = false,
            Some('"') if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' => return &line[..i],
            None => {}
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_folded_onto_one_line_without_comments() {
        assert_eq!(one_line("[\n  1,   # first\n  \"50%\",\n]"), "[1, \"50%\"]");
        assert_eq!(one_line("\"a # b\""), "\"a # b\"");
    }

    /// `traffic.step_bake`'s row in a file with `[traffic]` and `strategy`.
    fn step_bake_row(strategy: &str, traffic: &str) -> Option<(String, String)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deploy.toml");
        let text = format!(
            "[app]\nname = \"shop\"\ndeploy_to = \"/srv/shop\"\n\n[artifact]\npath = \"build\"\n\n[hosts.web1]\ntransport = \"local\"\nroot = \"r\"\n\n[strategy]\ncanary = 1\n{strategy}\n{traffic}"
        );
        std::fs::write(&path, text).unwrap();
        let source = Source {
            config: Some(path),
            inventory: None,
            env: None,
        };
        let rows = keys(&source).unwrap_or_else(|e| panic!("{e}"));
        rows.into_iter()
            .find(|r| r.key == "traffic.step_bake")
            .map(|r| (r.value, r.source))
    }

    #[test]
    fn the_step_bake_default_follows_the_strategy_and_says_which_key_gave_it() {
        let traffic = "[traffic]\nsteps = [10, 100]\nset_local = [\"./lb\"]\n";
        let row = |strategy: &str| step_bake_row(strategy, traffic).unwrap();
        assert_eq!(
            row("canary_pause = \"5m\"\nwave_bake = \"1m\""),
            ("\"5m\"".into(), "default (strategy.canary_pause)".into())
        );
        assert_eq!(
            row("wave_bake = \"1m\""),
            ("\"1m\"".into(), "default (strategy.wave_bake)".into())
        );
        assert_eq!(row(""), ("\"30s\"".into(), "default".into()));
        // Set in the file: its line, as any key.
        let set = step_bake_row("", &format!("{traffic}step_bake = \"8s\"\n")).unwrap();
        assert_eq!(set, ("\"8s\"".into(), "deploy.toml:18".into()));
        // No traffic steps, no row.
        assert_eq!(step_bake_row("", ""), None);
    }
}
