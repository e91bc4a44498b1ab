//! One TOML file as read from disk: its text, its parsed table (with spans),
//! and the messages that point into it.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::ConfigError;

pub struct Doc {
    /// As the user named it, for messages.
    pub path: PathBuf,
    text: String,
    /// Made by hoist (from an `exec:` inventory's JSON): its lines and
    /// columns mean nothing to the user, so messages leave them out.
    generated: bool,
}

impl Doc {
    pub fn read(path: &Path, what: &str) -> Result<Doc, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: cannot read the {what}: {e}", path.display())))?;
        Ok(Doc {
            path: path.to_path_buf(),
            text,
            generated: false,
        })
    }

    /// TOML text hoist made itself, named `label` in messages.
    pub fn generated(label: &str, text: String) -> Doc {
        Doc {
            path: PathBuf::from(label),
            text,
            generated: true,
        }
    }

    #[cfg(test)]
    pub fn from_text(path: &str, text: &str) -> Doc {
        Doc {
            path: PathBuf::from(path),
            text: text.to_string(),
            generated: false,
        }
    }

    fn table(&self) -> Result<Spanned<DeTable<'_>>, ConfigError> {
        DeTable::parse(&self.text).map_err(|mut e| {
            // With the input set, the toml crate's message carries the line,
            // the column and a snippet.
            e.set_input(Some(&self.text));
            ConfigError(format!(
                "{}: {}",
                self.path.display(),
                e.to_string().trim_end()
            ))
        })
    }

    /// Parses and deserializes the whole file into `T`, strictly.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let table = self.table()?;
        let de = toml::Deserializer::from(table);
        serde_path_to_error::deserialize(de).map_err(|e| self.serde_error(e))
    }

    fn serde_error(&self, e: serde_path_to_error::Error<toml::de::Error>) -> ConfigError {
        let segments: Vec<String> = e
            .path()
            .iter()
            .filter_map(|s| match s {
                Segment::Map { key } => Some(key.clone()),
                Segment::Seq { index } => Some(format!("[{index}]")),
                _ => None,
            })
            .collect();
        let inner = e.into_inner();
        let at = inner.span().and_then(|s| self.position(s.start));
        let message = inner.message();
        let file = self.path.display();

        if let Some(rest) = message.strip_prefix("unknown field `") {
            let key = join_path(&segments);
            let section = match segments.split_last() {
                Some((_, [])) | None => "accepted top-level keys".to_string(),
                Some((_, parent)) => format!("accepted keys in [{}]", join_path(parent)),
            };
            let accepted = backticked(rest.split_once("expected").map_or("", |(_, e)| e));
            let typed = segments.last().map_or("", |s| s.as_str());
            let hint = closest(typed, &accepted)
                .map(|c| format!(" (did you mean `{c}`?)"))
                .unwrap_or_default();
            return ConfigError(format!(
                "{file}: unknown key `{key}`{}; {section}: {}{hint}",
                at.map(|p| format!(" ({p})")).unwrap_or_default(),
                if accepted.is_empty() {
                    "none".to_string()
                } else {
                    accepted.join(", ")
                }
            ));
        }
        if let Some(rest) = message.strip_prefix("missing field `") {
            let field = rest.split('`').next().unwrap_or(rest);
            if segments.is_empty() {
                return ConfigError(format!("{file}: missing table [{field}]"));
            }
            let mut full = segments.clone();
            full.push(field.to_string());
            return ConfigError(format!(
                "{file}: missing key `{}` in [{}]{}",
                join_path(&full),
                join_path(&segments),
                at.map(|p| format!(" ({p})")).unwrap_or_default()
            ));
        }
        let key = join_path(&segments);
        ConfigError(format!(
            "{file}: bad value for `{key}`{}: {}",
            at.map(|p| format!(" ({p})")).unwrap_or_default(),
            plain_serde_message(message)
        ))
    }

    /// "line L, column C" for a byte offset.
    fn position(&self, offset: usize) -> Option<String> {
        if self.generated {
            return None;
        }
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Some(format!("line {line}, column {column}"))
    }

    /// Where the value at `path` sits, for messages about things found after
    /// parsing. Falls back to the nearest enclosing table that exists.
    fn locate(&self, path: &[&str]) -> Option<String> {
        let table = DeTable::parse(&self.text).ok()?;
        let mut span: Option<Range<usize>> = None;
        let mut current: &DeTable<'_> = table.get_ref();
        for key in path {
            let Some(value) = current.get(*key) else {
                break;
            };
            span = Some(value.span());
            match value.get_ref() {
                DeValue::Table(t) => current = t,
                _ => break,
            }
        }
        span.and_then(|s| self.position(s.start))
    }

    /// A message about the key at `path` (e.g. `["hosts", "web1", "root"]`).
    pub fn error(&self, path: &[&str], message: impl std::fmt::Display) -> ConfigError {
        let owned: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        ConfigError(format!(
            "{}: `{}`{}: {message}",
            self.path.display(),
            join_path(&owned),
            self.locate(path)
                .map(|p| format!(" ({p})"))
                .unwrap_or_default()
        ))
    }

    /// The keys of the table at `path`, in the order they appear in the file.
    pub fn key_order(&self, path: &[&str]) -> Vec<String> {
        let Ok(table) = DeTable::parse(&self.text) else {
            return Vec::new();
        };
        let mut current: &DeTable<'_> = table.get_ref();
        for key in path {
            match current.get(*key).map(|v| v.get_ref()) {
                Some(DeValue::Table(t)) => current = t,
                _ => return Vec::new(),
            }
        }
        let mut keys: Vec<(usize, String)> = current
            .iter()
            .map(|(k, _)| (k.span().start, k.get_ref().to_string()))
            .collect();
        keys.sort();
        keys.into_iter().map(|(_, k)| k).collect()
    }
}

/// `hosts."web1.example.com".port`: dotted, quoting keys that are not bare.
pub fn join_path(segments: &[String]) -> String {
    let mut out = String::new();
    for s in segments {
        if s.starts_with('[') {
            out.push_str(s);
            continue;
        }
        if !out.is_empty() {
            out.push('.');
        }
        let bare = !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if bare {
            out.push_str(s);
        } else {
            out.push_str(&format!("{s:?}"));
        }
    }
    out
}

/// The words between backticks in serde's "expected one of `a`, `b`".
fn backticked(s: &str) -> Vec<String> {
    s.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, w)| w.to_string())
        .collect()
}

/// serde says "invalid type: integer `3`, expected a string"; users read
/// "expected a string, found integer 3" better, in TOML's words.
fn plain_serde_message(message: &str) -> String {
    let message = message
        .replace("a map", "a table")
        .replace("a sequence", "an array")
        .replace('`', "");
    for prefix in ["invalid type: ", "invalid value: ", "invalid length "] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some((found, expected)) = rest.split_once(", expected ")
        {
            return format!("expected {expected}, found {found}");
        }
    }
    message
}

/// The accepted key a typo most likely meant.
fn closest(typed: &str, accepted: &[String]) -> Option<String> {
    let limit = (typed.len() / 3).max(1);
    accepted
        .iter()
        .map(|a| (edit_distance(typed, a), a))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a.clone())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Small {
        app: SmallApp,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct SmallApp {
        name: String,
        port: Option<u16>,
    }

    #[test]
    fn syntax_error_names_file_line_and_column() {
        let doc = Doc::from_text("deploy.toml", "[app]\nname = 'x\n");
        let err = doc.parse::<Small>().unwrap_err().0;
        assert!(err.starts_with("deploy.toml: "), "{err}");
        assert!(err.contains("line 2, column"), "{err}");
    }

    #[test]
    fn wrong_type_says_what_was_expected_and_where() {
        let doc = Doc::from_text("d.toml", "[app]\nname = 'x'\nport = 'ssh'\n");
        let err = doc.parse::<Small>().unwrap_err().0;
        assert!(err.contains("`app.port` (line 3, column 8)"), "{err}");
        assert!(err.contains("found string \"ssh\""), "{err}");
    }

    #[test]
    fn missing_key_is_named_with_its_path() {
        let doc = Doc::from_text("d.toml", "[app]\n");
        let err = doc.parse::<Small>().unwrap_err().0;
        assert!(err.contains("missing key `app.name`"), "{err}");
    }

    #[test]
    fn paths_quote_keys_that_are_not_bare() {
        let p = join_path(&["hosts".into(), "web1.example.com".into(), "port".into()]);
        assert_eq!(p, "hosts.\"web1.example.com\".port");
        let p = join_path(&["groups".into(), "web".into(), "hosts".into(), "[2]".into()]);
        assert_eq!(p, "groups.web.hosts[2]");
    }

    #[test]
    fn key_order_follows_the_file() {
        let doc = Doc::from_text("d.toml", "[hosts.b]\n[hosts.a]\n[hosts.c]\n");
        assert_eq!(doc.key_order(&["hosts"]), ["b", "a", "c"]);
    }

    #[test]
    fn typos_get_a_suggestion() {
        let accepted = vec!["name".to_string(), "keep_releases".to_string()];
        assert_eq!(
            closest("keep_release", &accepted).as_deref(),
            Some("keep_releases")
        );
        assert_eq!(closest("zzz", &accepted), None);
    }
}
