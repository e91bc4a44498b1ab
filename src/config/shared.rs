//! What lives beside the releases: `shared_dirs`, `shared_files` and
//! `[[files]]`, checked so that no path can leave the release (or `shared/`).

use std::collections::BTreeSet;

use super::ConfigError;
use super::doc::Doc;
use super::env::check_user;
use super::file::{RawApp, RawFile};
use super::model::{FileFrom, FileSpec, SecretSpec};

/// The shared dirs and files of `[app]`, checked: each a relative path
/// inside the release, none twice, none inside another.
pub(super) fn shared_paths(
    raw: &RawApp,
    doc: &Doc,
) -> Result<(Vec<String>, Vec<String>), ConfigError> {
    let mut seen: Vec<(String, &str)> = Vec::new();
    let mut lists = (Vec::new(), Vec::new());
    for (key, given) in [
        ("shared_dirs", &raw.shared_dirs),
        ("shared_files", &raw.shared_files),
    ] {
        for path in given.iter().flat_map(|s| s.0.iter()) {
            let path = relative_path(path).map_err(|e| doc.error(&["app", key], e))?;
            for (other, other_key) in &seen {
                if let Some(why) = overlap(&path, other) {
                    return Err(doc.error(
                        &["app", key],
                        format!("{path:?} {why} {other:?} (in {other_key}); each shared path must stand alone"),
                    ));
                }
            }
            seen.push((path.clone(), key));
            match key {
                "shared_dirs" => lists.0.push(path),
                _ => lists.1.push(path),
            }
        }
    }
    Ok(lists)
}

/// `a` and `b` are the same path, or one is inside the other.
fn overlap(a: &str, b: &str) -> Option<&'static str> {
    let inside = |x: &str, y: &str| x.strip_prefix(y).is_some_and(|r| r.starts_with('/'));
    if a == b {
        Some("is listed twice, also as")
    } else if inside(a, b) {
        Some("is inside")
    } else if inside(b, a) {
        Some("holds")
    } else {
        None
    }
}

/// A path relative to a directory that cannot leave it: not absolute, no
/// `.` or `..` part, no empty part, no control character. A trailing `/`
/// is dropped.
pub fn relative_path(path: &str) -> Result<String, String> {
    if path.starts_with('/') {
        return Err(format!(
            "{path:?} is absolute; write it relative to the release (e.g. \"log\")"
        ));
    }
    if path.chars().any(char::is_control) {
        return Err(format!("{path:?} holds a control character"));
    }
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    if trimmed.is_empty() {
        return Err("a path cannot be empty".into());
    }
    for part in trimmed.split('/') {
        match part {
            "" => return Err(format!("{path:?} holds an empty part (`//`)")),
            "." | ".." => {
                return Err(format!(
                    "{path:?} holds `{part}`; a path may not leave the directory it is in"
                ));
            }
            _ => {}
        }
    }
    Ok(trimmed.to_string())
}

/// The `[[files]]` entries, checked: `dest` under `shared/`, none twice,
/// a mode in octal.
pub(super) fn files(raw: Option<Vec<RawFile>>, doc: &Doc) -> Result<Vec<FileSpec>, ConfigError> {
    let mut out: Vec<FileSpec> = Vec::new();
    let mut dests = BTreeSet::new();
    for (i, file) in raw.unwrap_or_default().into_iter().enumerate() {
        let at = |key: &str, e: String| doc.error(&["files"], format!("[{i}].{key}: {e}"));
        let from = match (file.src, file.command, file.content) {
            (Some(src), None, None) if src.trim().is_empty() => {
                return Err(at("src", "the path is empty".into()));
            }
            (Some(src), None, None) => FileFrom::Path(src),
            (None, Some(argv), None) => {
                FileFrom::Command(command(&argv).map_err(|e| at("command", e))?)
            }
            (None, None, Some(content)) => FileFrom::Content(content),
            (None, None, None) => {
                return Err(at(
                    "src",
                    "set one of `src` (a file here), `command` (its output) or `content` (the text)".into(),
                ));
            }
            _ => {
                return Err(at(
                    "src",
                    "set only one of `src`, `command` and `content`".into(),
                ));
            }
        };
        let dest = relative_path(&file.dest).map_err(|e| at("dest", e))?;
        if !dest.starts_with("shared/") {
            return Err(at(
                "dest",
                format!(
                    "{dest:?} is not under shared/; files go to <deploy_to>/shared/ (e.g. \"shared/config/.env\"), which releases link to with shared_files"
                ),
            ));
        }
        if !dests.insert(dest.clone()) {
            return Err(at(
                "dest",
                format!("{dest:?} is the dest of an earlier entry"),
            ));
        }
        // What a command prints (a decrypted file) is a secret unless said otherwise.
        let secret = file.secret.unwrap_or(matches!(from, FileFrom::Command(_)));
        // Inline content is always a template; a file or output when asked.
        let template = matches!(from, FileFrom::Content(_)) || file.template.unwrap_or(false);
        let mode = match &file.mode {
            None if secret => 0o600,
            None => 0o644,
            Some(m) => parse_mode(m).map_err(|e| at("mode", e))?,
        };
        out.push(FileSpec {
            from,
            dest,
            mode,
            secret,
            template,
        });
    }
    Ok(out)
}

/// A command as argv: a program and its words, run without a shell.
pub(super) fn command(argv: &[String]) -> Result<Vec<String>, String> {
    match argv.first() {
        None => Err("the command is empty; e.g. [\"sops\", \"-d\", \"secrets/prod.env\"]".into()),
        Some(program) if program.trim().is_empty() => Err("the program name is empty".into()),
        Some(_) => Ok(argv.to_vec()),
    }
}

/// `[secrets]`: each name `[A-Za-z0-9_]+`, its variable `HOIST_SECRET_<NAME>`
/// or `env` (a shell variable name, none twice, none of hoist's own).
pub(super) fn secrets(
    raw: Option<std::collections::BTreeMap<String, super::file::RawSecret>>,
    doc: &Doc,
) -> Result<Vec<SecretSpec>, ConfigError> {
    let mut out: Vec<SecretSpec> = Vec::new();
    for (name, secret) in raw.unwrap_or_default() {
        let at = |key: &str, e: String| doc.error(&["secrets", &name, key], e);
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(doc.error(
                &["secrets", &name],
                format!("{name:?}: a secret's name is letters, digits and `_` (it becomes HOIST_SECRET_<NAME>)"),
            ));
        }
        let env = match secret.env {
            None => format!("HOIST_SECRET_{}", name.to_ascii_uppercase()),
            Some(env) => {
                let shell_name = env
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && env.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !shell_name {
                    return Err(at(
                        "env",
                        format!("{env:?} is not a variable name (letters, digits, `_`)"),
                    ));
                }
                if env.starts_with("HOIST_") && !env.starts_with("HOIST_SECRET_") {
                    return Err(at(
                        "env",
                        format!(
                            "{env:?}: HOIST_ names are hoist's own (HOIST_SECRET_ ones excepted)"
                        ),
                    ));
                }
                env
            }
        };
        if let Some(other) = out.iter().find(|s| s.env == env) {
            return Err(at(
                "env",
                format!("{env} is already the variable of {}", other.name),
            ));
        }
        let command = command(&secret.command).map_err(|e| at("command", e))?;
        out.push(SecretSpec { name, env, command });
    }
    Ok(out)
}

/// Every `{{ secrets.NAME }}` of the inline templates names a secret of `[secrets]`.
pub(super) fn check_templates(
    files: &[FileSpec],
    secrets: &[SecretSpec],
    doc: &Doc,
) -> Result<(), ConfigError> {
    for (i, file) in files.iter().enumerate() {
        let FileFrom::Content(text) = &file.from else {
            continue;
        };
        let names = crate::secrets::template_names(text)
            .map_err(|e| doc.error(&["files"], format!("[{i}].content: {e}")))?;
        for name in names {
            if !secrets.iter().any(|s| s.name == name) {
                return Err(doc.error(
                    &["files"],
                    format!("[{i}].content: {{{{ secrets.{name} }}}} names no secret of [secrets]"),
                ));
            }
        }
    }
    Ok(())
}

/// "0600", "600" or "0o600".
fn parse_mode(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    let ok = (3..=4).contains(&digits.len()) && digits.chars().all(|c| ('0'..='7').contains(&c));
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if ok && mode <= 0o7777 => Ok(mode),
        _ => Err(format!(
            "expected a mode in octal such as \"0600\" or \"0644\", found {text:?}"
        )),
    }
}

/// `become`: a user name sudo can take.
pub(super) fn become_user(user: &str, doc: &Doc) -> Result<String, ConfigError> {
    check_user(user)
        .and_then(|()| {
            if user.contains(['\'', '"', '\\', '/']) {
                Err(format!("{user:?} is not a usable user name"))
            } else {
                Ok(())
            }
        })
        .map_err(|e| doc.error(&["hooks", "become"], e))?;
    Ok(user.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_stay_inside() {
        assert_eq!(relative_path("log").unwrap(), "log");
        assert_eq!(relative_path("config/.env").unwrap(), "config/.env");
        assert_eq!(relative_path("tmp/pids/").unwrap(), "tmp/pids");
        for bad in [
            "/etc",
            "../x",
            "a/../../b",
            ".",
            "a//b",
            "",
            "/",
            "a/./b",
            "a\nb",
        ] {
            assert!(relative_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn overlapping_shared_paths_are_named() {
        assert!(overlap("log", "log").is_some());
        assert!(overlap("log/x", "log").is_some());
        assert!(overlap("log", "log/x").is_some());
        assert!(overlap("log", "logs").is_none());
        assert!(overlap("a/log", "log").is_none());
    }

    #[test]
    fn modes_are_octal() {
        assert_eq!(parse_mode("0600"), Ok(0o600));
        assert_eq!(parse_mode("640"), Ok(0o640));
        assert_eq!(parse_mode("0o755"), Ok(0o755));
        for bad in ["", "9", "0800", "rw-", "12345", "60"] {
            assert!(parse_mode(bad).is_err(), "{bad:?}");
        }
    }
}
