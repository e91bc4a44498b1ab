//! `[app] ignore`: paths the app writes into its own release
//! (`__pycache__/`, `tmp/cache/`), left out of `hoist verify` and never
//! trusted from an old release by a delta.
//!
//! Gitignore-style globs over paths relative to the release: `*` and `?`
//! stay within one path segment, `**` crosses them; a pattern with no `/`
//! but a trailing one matches at any depth (`*.pyc`, `__pycache__/`); a
//! leading `/` only anchors; a path is covered when it or a directory above
//! it matches, and `dir/**` also covers `dir` itself. No `!` negation.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

#[derive(Debug, Clone, Default)]
pub struct Ignore {
    set: GlobSet,
}

impl Ignore {
    /// The globs, checked; an error names the one refused and why.
    pub fn new(patterns: &[String]) -> Result<Ignore, String> {
        let mut set = GlobSetBuilder::new();
        for given in patterns {
            for glob in expand(given)? {
                let glob = GlobBuilder::new(&glob)
                    .literal_separator(true)
                    .backslash_escape(true)
                    .build()
                    .map_err(|e| format!("{given:?} is not a glob: {}", e.kind()))?;
                set.add(glob);
            }
        }
        let set = set.build().map_err(|e| e.to_string())?;
        Ok(Ignore { set })
    }

    /// `path` (relative to the release, as a manifest holds it) or a
    /// directory above it matches one of the globs.
    pub fn covers(&self, path: &[u8]) -> bool {
        if self.set.is_empty() {
            return false;
        }
        let mut end = path.len();
        loop {
            if self.set.is_match(OsStr::from_bytes(&path[..end])) {
                return true;
            }
            match path[..end].iter().rposition(|b| *b == b'/') {
                Some(slash) => end = slash,
                None => return false,
            }
        }
    }
}

/// One gitignore-style pattern as the globs over whole relative paths
/// that mean the same.
fn expand(given: &str) -> Result<Vec<String>, String> {
    if given.starts_with('!') {
        return Err(format!(
            "{given:?}: `!` (re-including a path) is not supported; list only what to leave out"
        ));
    }
    let trimmed = given.trim_end_matches('/');
    let (anchored, body) = match trimmed.strip_prefix('/') {
        Some(rest) => (true, rest),
        None => (false, trimmed),
    };
    if body.is_empty()
        || body
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
    {
        return Err(format!(
            "{given:?} is not a path inside the release (no empty, `.` or `..` part)"
        ));
    }
    let body = if anchored || body.contains('/') {
        body.to_string()
    } else {
        format!("**/{body}")
    };
    let mut globs = vec![body.clone()];
    if let Some(dir) = body.strip_suffix("/**")
        && !dir.is_empty()
    {
        globs.push(dir.to_string());
    }
    Ok(globs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(patterns: &[&str]) -> Ignore {
        Ignore::new(&patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn globs_cover_paths_as_gitignore_does() {
        let i = ignore(&["**/__pycache__/**", "tmp/cache/**", "*.log", "/top"]);
        for yes in [
            "__pycache__",
            "__pycache__/app.cpython-311.pyc",
            "pkg/sub/__pycache__",
            "pkg/sub/__pycache__/m.pyc",
            "tmp/cache",
            "tmp/cache/assets/x",
            "a.log",
            "deep/down/b.log",
            "top",
            "top/inside",
        ] {
            assert!(i.covers(yes.as_bytes()), "{yes}");
        }
        for no in [
            "app.py",
            "pkg/__pycache__x",
            "tmp",
            "tmp/cached",
            "other/tmp/cache/x",
            "a.log.txt",
            "sub/top",
        ] {
            assert!(!i.covers(no.as_bytes()), "{no}");
        }
        assert!(!Ignore::default().covers(b"anything"));
        assert!(ignore(&["__pycache__/"]).covers(b"a/__pycache__/x.pyc"));
    }

    #[test]
    fn patterns_that_cannot_mean_a_path_in_the_release_are_refused() {
        for (bad, says) in [
            ("!keep.pyc", "`!`"),
            ("", "not a path"),
            ("/", "not a path"),
            ("a/../b", "`..`"),
            ("a//b", "empty"),
            ("[z-a]", "not a glob"),
        ] {
            let err = Ignore::new(&[bad.to_string()]).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
