//! One TOML file as read from disk: its text, its parsed table (with spans),
//! and the messages that point into it.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::ConfigError;
use super::overlay;

pub struct Doc {
    /// As the user named it, for messages.
    pub path: PathBuf,
    text: String,
    /// Made by hoist (from an `exec:` inventory's JSON): its lines and
    /// columns mean nothing to the user, so messages leave them out.
    generated: bool,
    /// deploy.toml's `[env.*]` overlays; `None` for a file that has none.
    overlays: Option<Overlays>,
}

/// Which `[env.NAME]` is laid over deploy.toml (see `overlay`).
#[derive(Debug, Clone)]
enum Overlays {
    Base,
    Env(String),
}

impl Doc {
    pub fn read(path: &Path, what: &str) -> Result<Doc, ConfigError> {
        let bytes = std::fs::read(path)
            .map_err(|e| ConfigError(format!("{}: cannot read the {what}: {e}", path.display())))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            ConfigError(format!(
                "{}: the {what} is not valid UTF-8: {}",
                path.display(),
                invalid_utf8(e.as_bytes(), e.utf8_error())
            ))
        })?;
        Ok(Doc {
            path: path.to_path_buf(),
            text,
            generated: false,
            overlays: None,
        })
    }

    /// This file as deploy.toml: `[env]` is its environments, and `env`
    /// (when given) the one laid over the base.
    pub fn with_env(&self, env: Option<&str>) -> Doc {
        Doc {
            path: self.path.clone(),
            text: self.text.clone(),
            generated: self.generated,
            overlays: Some(env.map_or(Overlays::Base, |e| Overlays::Env(e.to_string()))),
        }
    }

    /// The environments the file defines, in its order.
    pub fn env_names(&self) -> Vec<String> {
        DeTable::parse(&self.text)
            .map(|t| overlay::names(t.get_ref()))
            .unwrap_or_default()
    }

    /// The environment laid over the base, if any.
    pub fn env(&self) -> Option<&str> {
        match &self.overlays {
            Some(Overlays::Env(e)) => Some(e),
            _ => None,
        }
    }

    /// TOML text hoist made itself, named `label` in messages.
    pub fn generated(label: &str, text: String) -> Doc {
        Doc {
            path: PathBuf::from(label),
            text,
            generated: true,
            overlays: None,
        }
    }

    #[cfg(test)]
    pub fn from_text(path: &str, text: &str) -> Doc {
        Doc {
            path: PathBuf::from(path),
            text: text.to_string(),
            generated: false,
            overlays: None,
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

    /// The file as read: the base with its environment laid over it, and
    /// the spans of what the environment set.
    pub(super) fn merged(&self) -> Result<(Spanned<DeTable<'_>>, Vec<Range<usize>>), ConfigError> {
        let mut table = self.table()?;
        let spans = match &self.overlays {
            None => Vec::new(),
            Some(o) => {
                let env = match o {
                    Overlays::Base => None,
                    Overlays::Env(e) => Some(e.as_str()),
                };
                overlay::apply(table.get_mut(), env)
                    .map_err(|e| ConfigError(format!("{}: {e}", self.path.display())))?
            }
        };
        Ok((table, spans))
    }

    /// `env.NAME.` before a path to what the environment set.
    fn prefix(&self, spans: &[Range<usize>], offset: usize) -> Vec<String> {
        match self.env() {
            Some(env) if spans.iter().any(|s| s.contains(&offset)) => {
                vec!["env".to_string(), env.to_string()]
            }
            _ => Vec::new(),
        }
    }

    /// Parses and deserializes the whole file into `T`, strictly.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let (table, spans) = self.merged()?;
        let de = toml::Deserializer::from(table);
        serde_path_to_error::deserialize(de).map_err(|e| self.serde_error(e, &spans))
    }

    fn serde_error(
        &self,
        e: serde_path_to_error::Error<toml::de::Error>,
        spans: &[Range<usize>],
    ) -> ConfigError {
        let inner_span = e.inner().span();
        let mut segments = inner_span
            .map(|s| self.prefix(spans, s.start))
            .unwrap_or_default();
        segments.extend(e.path().iter().filter_map(|s| match s {
            Segment::Map { key } => Some(key.clone()),
            Segment::Seq { index } => Some(format!("[{index}]")),
            _ => None,
        }));
        let inner = e.into_inner();
        let at = inner.span().and_then(|s| self.position(s.start));
        let message = inner.message();
        let file = self.path.display();

        if let Some(rest) = message.strip_prefix("unknown field `") {
            // The toml crate hands a date-time to a table as this one key.
            if let Some((last, parent)) = segments.split_last()
                && last == "$__toml_private_datetime"
            {
                return ConfigError(format!(
                    "{file}: bad value for `{}`{}: expected a table, found a date-time",
                    join_path(parent),
                    at.map(|p| format!(" ({p})")).unwrap_or_default()
                ));
            }
            let key = join_path(&segments);
            let section = match segments.split_last() {
                Some((_, [])) | None => "accepted top-level keys".to_string(),
                Some((_, parent)) => format!("accepted keys in [{}]", join_path(parent)),
            };
            // The typed key may hold anything, even "`, expected "; the list of
            // accepted keys (hoist's own names) comes after its last occurrence.
            let accepted = backticked(rest.rsplit_once("`, expected ").map_or("", |(_, e)| e));
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
        let message = if message == "integer number overflowed" {
            // Too large even for 128 bits: the toml crate does not say which.
            let written = inner
                .span()
                .and_then(|s| self.text.get(s))
                .map_or(String::new(), |t| format!(" {}", t.trim()));
            format!("found integer{written}, beyond TOML's 64-bit integers")
        } else {
            plain_serde_message(message)
        };
        ConfigError(format!(
            "{file}: bad value for `{key}`{}: {message}",
            at.map(|p| format!(" ({p})")).unwrap_or_default(),
        ))
    }

    /// The line a byte offset is on (1-based).
    pub(super) fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    /// The text at `span`, as written.
    pub(super) fn slice(&self, span: Range<usize>) -> &str {
        self.text.get(span).unwrap_or_default()
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
    fn locate(&self, path: &[&str]) -> Option<(String, Vec<String>)> {
        let (table, spans) = self.merged().ok()?;
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
        let span = span?;
        Some((self.position(span.start)?, self.prefix(&spans, span.start)))
    }

    /// A message about the key at `path` (e.g. `["hosts", "web1", "root"]`).
    pub fn error(&self, path: &[&str], message: impl std::fmt::Display) -> ConfigError {
        let (at, mut owned) = match self.locate(path) {
            Some((at, prefix)) => (format!(" ({at})"), prefix),
            None => (String::new(), Vec::new()),
        };
        owned.extend(path.iter().map(|s| s.to_string()));
        ConfigError(format!(
            "{}: `{}`{at}: {message}",
            self.path.display(),
            join_path(&owned),
        ))
    }

    /// The keys of the table at `path`, in the order they appear in the file.
    pub fn key_order(&self, path: &[&str]) -> Vec<String> {
        let Ok((table, _)) = self.merged() else {
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

/// Where the first invalid byte sits, as "line L, column C" (columns count
/// characters, as in the other messages) and its value.
fn invalid_utf8(bytes: &[u8], e: std::str::Utf8Error) -> String {
    let valid = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
    let line = valid.matches('\n').count() + 1;
    let column = valid.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    let byte = bytes.get(e.valid_up_to()).copied().unwrap_or_default();
    format!(
        "byte 0x{byte:02X} at line {line}, column {column} is not part of a UTF-8 character; save the file as UTF-8"
    )
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
/// "expected a string, found integer 3" better, in TOML's words. Only
/// serde's own words change: what the user wrote, and hoist's own messages,
/// pass through as they are (backticks included).
fn plain_serde_message(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: ", "invalid length "] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some((found, expected)) = rest.rsplit_once(", expected ")
        {
            let expected = match expected {
                "a map" => "a table",
                "a sequence" => "an array",
                other => other,
            };
            return format!("expected {expected}, found {}", serde_found(found));
        }
    }
    message.to_string()
}

/// serde's name for what it found: "integer `3`" -> "integer 3",
/// "integer `99999999999999999999` as i128" -> "... beyond TOML's 64-bit integers",
/// "map" -> "a table". A string ("string \"a`b\"") stays as it is.
fn serde_found(found: &str) -> String {
    match found {
        "map" => return "a table".into(),
        "sequence" => return "an array".into(),
        _ => {}
    }
    for (kind, word) in [
        ("integer", "integer"),
        ("floating point", "float"),
        ("boolean", "boolean"),
        ("character", "character"),
    ] {
        let Some(value) = found.strip_prefix(kind).and_then(|r| r.strip_prefix(" `")) else {
            continue;
        };
        if let Some(v) = value
            .strip_suffix("` as i128")
            .or_else(|| value.strip_suffix("` as u128"))
        {
            return format!("{word} {v}, beyond TOML's 64-bit integers");
        }
        if let Some(v) = value.strip_suffix('`') {
            return format!("{word} {v}");
        }
    }
    found.to_string()
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
    fn serde_messages_read_in_tomls_words_and_keep_what_the_user_wrote() {
        assert_eq!(
            plain_serde_message("invalid type: string \"a`b\", expected a map"),
            "expected a table, found string \"a`b\""
        );
        assert_eq!(
            plain_serde_message("invalid type: integer `3`, expected a sequence"),
            "expected an array, found integer 3"
        );
        assert_eq!(
            plain_serde_message("invalid type: floating point `1.5`, expected a string"),
            "expected a string, found float 1.5"
        );
        assert_eq!(plain_serde_message("name `a` is odd"), "name `a` is odd");
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
