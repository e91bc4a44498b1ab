//! known_hosts files, read the way OpenSSH reads them: every file at once,
//! plain and hashed (`|1|salt|hash`) host patterns, `*`/`?` wildcards, `!`
//! negation, `[host]:port` for ports other than 22, and the `@revoked` marker.
//!
//! Verdict, as in OpenSSH's `check_key_in_hostkeys`: the same key anywhere
//! means known; otherwise a different key of the same type means changed;
//! otherwise (no entry, or entries of other key types only) the host is unknown.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use hmac::{Hmac, KeyInit, Mac};
use russh::keys::ssh_encoding::base64::{Base64, Encoding};
use russh::keys::ssh_key::{Algorithm, PublicKey};
use sha1::Sha1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Known,
    /// `location` is `file:line` of an entry with another key of the same type.
    Changed {
        location: String,
    },
    /// The key itself is marked `@revoked` at `location`.
    Revoked {
        location: String,
    },
    Unknown,
}

/// How a host appears in known_hosts: `host`, or `[host]:port` off port 22.
pub fn host_entry_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

/// Looks `key` up for `host:port` in every file; a missing file is empty.
pub fn check(files: &[PathBuf], host: &str, port: u16, key: &PublicKey) -> io::Result<Verdict> {
    let name = host_entry_name(host, port);
    let (mut known, mut changed) = (false, None);
    for file in files {
        for entry in read_entries(file)? {
            if !entry.matches_host(&name) {
                continue;
            }
            let same_key = entry.key.key_data() == key.key_data();
            let location = || format!("{}:{}", file.display(), entry.line);
            match entry.marker {
                // Revocation wins wherever it is, as in OpenSSH.
                Marker::Revoked if same_key => {
                    return Ok(Verdict::Revoked {
                        location: location(),
                    });
                }
                Marker::None if same_key => known = true,
                Marker::None if same_type(&entry.key, key) => {
                    changed.get_or_insert_with(location);
                }
                _ => {}
            }
        }
    }
    Ok(match (known, changed) {
        (true, _) => Verdict::Known,
        (false, Some(location)) => Verdict::Changed { location },
        (false, None) => Verdict::Unknown,
    })
}

/// The key types recorded for `host:port`, so that the handshake can ask the
/// server for a key type we already know (as OpenSSH orders HostKeyAlgorithms).
pub fn known_algorithms(files: &[PathBuf], host: &str, port: u16) -> Vec<Algorithm> {
    let name = host_entry_name(host, port);
    let mut found = Vec::new();
    for file in files {
        for entry in read_entries(file).unwrap_or_default() {
            if entry.marker == Marker::None && entry.matches_host(&name) {
                let algorithm = entry.key.algorithm();
                if !found.contains(&algorithm) {
                    found.push(algorithm);
                }
            }
        }
    }
    found
}

/// Records `key` for `host:port` in `files[0]` (creating it and its directory).
///
/// Safe against other hosts and other hoist processes learning at the same
/// time: the file is locked, the verdict taken again under the lock, and a
/// whole line appended only if the host is still unknown. Returns that
/// verdict: `Unknown` means the key was added.
pub fn learn(files: &[PathBuf], host: &str, port: u16, key: &PublicKey) -> io::Result<Verdict> {
    let Some(target) = files.first() else {
        return Err(io::Error::other("no known_hosts file to record the key in"));
    };
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(target)?;
    file.lock()?;
    let verdict = check(files, host, port, key)?;
    if verdict == Verdict::Unknown {
        let mut line = String::new();
        if !ends_with_newline(&mut file)? {
            line.push('\n');
        }
        let bare = PublicKey::new(key.key_data().clone(), "");
        let encoded = bare.to_openssh().map_err(io::Error::other)?;
        line.push_str(&format!("{} {encoded}\n", host_entry_name(host, port)));
        // One write on an O_APPEND file: the line lands whole, at the end.
        file.write_all(line.as_bytes())?;
    }
    Ok(verdict)
}

fn ends_with_newline(file: &mut File) -> io::Result<bool> {
    if file.seek(SeekFrom::End(0))? == 0 {
        return Ok(true);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    CertAuthority,
    Revoked,
}

struct Entry {
    line: usize,
    marker: Marker,
    patterns: String,
    key: PublicKey,
}

fn read_entries(path: &Path) -> io::Result<Vec<Entry>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(parse(&String::from_utf8_lossy(&bytes)))
}

/// Lines that cannot be parsed are skipped, as OpenSSH does.
fn parse(text: &str) -> Vec<Entry> {
    let mut entries = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let mut fields = line.split_whitespace().peekable();
        let marker = match fields.peek() {
            None => continue,
            Some(f) if f.starts_with('#') => continue,
            Some(&"@revoked") => Marker::Revoked,
            Some(&"@cert-authority") => Marker::CertAuthority,
            Some(f) if f.starts_with('@') => continue,
            Some(_) => Marker::None,
        };
        if marker != Marker::None {
            fields.next();
        }
        let (Some(patterns), Some(key_type), Some(blob)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Ok(key) = PublicKey::from_openssh(&format!("{key_type} {blob}")) else {
            continue;
        };
        entries.push(Entry {
            line: index + 1,
            marker,
            patterns: patterns.to_string(),
            key,
        });
    }
    entries
}

impl Entry {
    fn matches_host(&self, name: &str) -> bool {
        if let Some(hashed) = self.patterns.strip_prefix("|1|") {
            return hashed_matches(hashed, name);
        }
        let mut matched = false;
        for pattern in self.patterns.split(',') {
            if let Some(negated) = pattern.strip_prefix('!') {
                if glob(&negated.to_ascii_lowercase(), name) {
                    return false;
                }
            } else if glob(&pattern.to_ascii_lowercase(), name) {
                matched = true;
            }
        }
        matched
    }
}

/// `salt|hash`, both base64: HMAC-SHA1 of the name keyed with the salt.
fn hashed_matches(salt_and_hash: &str, name: &str) -> bool {
    let Some((salt, hash)) = salt_and_hash.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (Base64::decode_vec(salt), Base64::decode_vec(hash)) else {
        return false;
    };
    let Ok(mac) = Hmac::<Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.chain_update(name.as_bytes())
        .verify_slice(&hash)
        .is_ok()
}

/// OpenSSH's `match_pattern`: `*` any run of characters, `?` any one.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                backtrack = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match backtrack {
                Some((star, matched)) => {
                    pi = star + 1;
                    ti = matched + 1;
                    backtrack = Some((star, matched + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Same key type in OpenSSH's sense: every ECDSA curve is one type.
fn same_type(a: &PublicKey, b: &PublicKey) -> bool {
    match (a.algorithm(), b.algorithm()) {
        (Algorithm::Ecdsa { .. }, Algorithm::Ecdsa { .. }) => true,
        (Algorithm::Rsa { .. }, Algorithm::Rsa { .. }) => true,
        (x, y) => x == y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
    const ED_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAYYq2wBFV4TAJ3v3dD4abcs2AerIJHX87y/OS+xEhbT";
    const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBHjH3lEUf6Sw/VlIWSGuz7c9S7n5KoimCiPHOcAPSAgdR+UlHbODfNl9CBsJtTOxfQqBRv2J107TbEP2eINbaY8=";

    fn key(text: &str) -> PublicKey {
        PublicKey::from_openssh(text).unwrap()
    }

    fn file_with(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn same_key_is_known_on_a_non_default_port() {
        let dir = tempfile::tempdir().unwrap();
        let f = file_with(&dir, "kh", &format!("[Example.com]:2222 {ED_A}\n"));
        let v = check(&[f], "example.com", 2222, &key(ED_A)).unwrap();
        assert_eq!(v, Verdict::Known);
    }

    #[test]
    fn port_22_uses_the_bare_name() {
        let dir = tempfile::tempdir().unwrap();
        let f = file_with(&dir, "kh", &format!("[example.com]:2222 {ED_A}\n"));
        let v = check(std::slice::from_ref(&f), "example.com", 22, &key(ED_A)).unwrap();
        assert_eq!(v, Verdict::Unknown);
        let f = file_with(&dir, "kh", &format!("example.com {ED_A}\n"));
        assert_eq!(
            check(&[f], "example.com", 22, &key(ED_A)).unwrap(),
            Verdict::Known
        );
    }

    #[test]
    fn other_key_of_same_type_is_changed_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = file_with(&dir, "kh", &format!("# comment\n\nweb1 {ED_B}\n"));
        let v = check(std::slice::from_ref(&f), "web1", 22, &key(ED_A)).unwrap();
        assert_eq!(
            v,
            Verdict::Changed {
                location: format!("{}:3", f.display())
            }
        );
    }

    #[test]
    fn entry_of_another_type_only_is_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let f = file_with(&dir, "kh", &format!("web1 {ECDSA}\n"));
        assert_eq!(
            check(std::slice::from_ref(&f), "web1", 22, &key(ED_A)).unwrap(),
            Verdict::Unknown
        );
        assert_eq!(
            known_algorithms(&[f], "web1", 22),
            vec![key(ECDSA).algorithm()]
        );
    }

    #[test]
    fn a_match_in_any_file_beats_a_changed_entry_in_another() {
        let dir = tempfile::tempdir().unwrap();
        let old = file_with(&dir, "a", &format!("web1 {ED_B}\n"));
        let new = file_with(&dir, "b", &format!("web1 {ED_A}\n"));
        let missing = dir.path().join("missing");
        let v = check(&[missing, old, new], "web1", 22, &key(ED_A)).unwrap();
        assert_eq!(v, Verdict::Known);
    }

    #[test]
    fn hashed_entries_match() {
        // Written by `ssh-keygen -H` for "example.com".
        let dir = tempfile::tempdir().unwrap();
        let line = format!("|1|l4DObG3hzYcRxjP6+NFzEHQEdt0=|LXMZgb78qRITVp9AM0IGErUOvf4= {ED_B}\n");
        let f = file_with(&dir, "kh", &line);
        assert_eq!(
            check(std::slice::from_ref(&f), "example.com", 22, &key(ED_B)).unwrap(),
            Verdict::Known
        );
        assert_eq!(
            check(&[f], "example.org", 22, &key(ED_B)).unwrap(),
            Verdict::Unknown
        );
    }

    #[test]
    fn wildcards_and_negation() {
        let dir = tempfile::tempdir().unwrap();
        let f = file_with(
            &dir,
            "kh",
            &format!("*.example.com,!bad.example.com {ED_A}\n"),
        );
        assert_eq!(
            check(std::slice::from_ref(&f), "web1.example.com", 22, &key(ED_A)).unwrap(),
            Verdict::Known
        );
        assert_eq!(
            check(&[f], "bad.example.com", 22, &key(ED_A)).unwrap(),
            Verdict::Unknown
        );
        assert!(glob("web?.example.*", "web1.example.com"));
        assert!(!glob("web?.example.*", "web12.example.com"));
    }

    #[test]
    fn revoked_key_is_refused_wherever_it_is_listed() {
        let dir = tempfile::tempdir().unwrap();
        let f = file_with(&dir, "kh", &format!("web1 {ED_A}\n@revoked * {ED_A}\n"));
        let v = check(&[f], "web1", 22, &key(ED_A)).unwrap();
        assert!(matches!(v, Verdict::Revoked { location } if location.ends_with(":2")));
    }

    #[test]
    fn garbage_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let f = file_with(
            &dir,
            "kh",
            &format!(
                "web1\nweb1 ssh-ed25519 !!!\n@weird x y z\nweb1\t{}\n",
                ED_A.replace(' ', "\t")
            ),
        );
        assert_eq!(check(&[f], "web1", 22, &key(ED_A)).unwrap(), Verdict::Known);
    }

    #[test]
    fn learn_creates_the_file_and_adds_one_line_once() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("new/dir/known_hosts");
        let files = [f.clone()];
        assert_eq!(
            learn(&files, "10.0.0.1", 2200, &key(ED_A)).unwrap(),
            Verdict::Unknown
        );
        assert_eq!(
            learn(&files, "10.0.0.1", 2200, &key(ED_A)).unwrap(),
            Verdict::Known
        );
        let text = std::fs::read_to_string(&f).unwrap();
        assert_eq!(text, format!("[10.0.0.1]:2200 {ED_A}\n"));
        assert_eq!(
            check(&files, "10.0.0.1", 2200, &key(ED_A)).unwrap(),
            Verdict::Known
        );
    }

    #[test]
    fn learn_adds_a_newline_when_the_file_lacks_one() {
        let dir = tempfile::tempdir().unwrap();
        let f = file_with(&dir, "kh", &format!("web1 {ED_B}"));
        learn(std::slice::from_ref(&f), "web2", 22, &key(ED_A)).unwrap();
        let text = std::fs::read_to_string(&f).unwrap();
        assert_eq!(text, format!("web1 {ED_B}\nweb2 {ED_A}\n"));
    }

    #[test]
    fn concurrent_learners_leave_one_line_per_host() {
        // Each learner opens the file itself, as another process would: the
        // lock is per open file, so this is the cross-process case too.
        for _round in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let f = dir.path().join("known_hosts");
            let start = std::sync::Arc::new(std::sync::Barrier::new(40));
            let threads: Vec<_> = (0..40)
                .map(|i| {
                    let (files, start) = ([f.clone()], start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        learn(&files, "127.0.0.1", 3000 + (i % 10), &key(ED_A)).unwrap();
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            let text = std::fs::read_to_string(&f).unwrap();
            assert_eq!(text.lines().count(), 10, "{text}");
            for port in 3000..3010 {
                let v = check(std::slice::from_ref(&f), "127.0.0.1", port, &key(ED_A));
                assert_eq!(v.unwrap(), Verdict::Known);
            }
        }
    }
}
