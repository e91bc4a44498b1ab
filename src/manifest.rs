//! A release's manifest: every entry of the release directory with its type,
//! mode, size, sha256 or symlink target. Built here from the artifact, and on
//! a host by [`crate::engine::layout_release::LIST`] from a release directory,
//! in the same text, byte for byte: so a host proves a release exact by
//! comparing one hash, and `hoist verify` and delta uploads compare entries.
//!
//! The text: a header line `hoist-manifest 1`, then one line per entry,
//! sorted bytewise (what `LC_ALL=C sort` does), fields separated by tabs:
//!
//! ```text
//! PATH \t f \t MODE \t SIZE \t SHA256      a regular file
//! PATH \t d \t MODE                       a directory
//! PATH \t l \t TARGET                     a symlink
//! PATH \t o                               anything else (a fifo, a device)
//! ```
//!
//! PATH is relative to the release (no `./`), MODE the permission bits in
//! octal as `stat -c %a` prints them. In PATH and TARGET a backslash, a tab
//! and a newline are written `\\`, `\t` and `\n` (every other byte as is), so
//! any file name survives on one line.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// The first line of every manifest.
pub const HEADER: &str = "hoist-manifest 1";

/// What is at one path of a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File {
        mode: u32,
        size: u64,
        sha256: String,
    },
    Dir {
        mode: u32,
    },
    Link {
        target: Vec<u8>,
    },
    Other,
}

impl Kind {
    fn word(&self) -> &'static str {
        match self {
            Kind::File { .. } => "file",
            Kind::Dir { .. } => "directory",
            Kind::Link { .. } => "symlink",
            Kind::Other => "special file",
        }
    }
}

/// Paths (raw bytes, relative, no `./`) to what is there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    pub entries: BTreeMap<Vec<u8>, Kind>,
}

/// How a release differs from its manifest (or a new release from the old).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// In the new one only.
    pub added: Vec<Vec<u8>>,
    /// In both, different (content, mode, type or target).
    pub changed: Vec<Vec<u8>>,
    /// In the old one only.
    pub removed: Vec<Vec<u8>>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }

    /// "changed bin/app, added x, removed y", naming at most `most` paths.
    pub fn describe(&self, most: usize) -> String {
        let mut parts = Vec::new();
        let mut named = 0;
        for (what, paths) in [
            ("changed", &self.changed),
            ("added", &self.added),
            ("removed", &self.removed),
        ] {
            if paths.is_empty() {
                continue;
            }
            let shown: Vec<String> = paths
                .iter()
                .take(most.saturating_sub(named).max(1))
                .map(|p| display(p))
                .collect();
            named += shown.len();
            let more = paths.len() - shown.len();
            let tail = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            parts.push(format!("{what} {}{tail}", shown.join(", ")));
        }
        parts.join("; ")
    }
}

/// A path for people: lossy UTF-8, control characters escaped.
pub fn display(path: &[u8]) -> String {
    String::from_utf8_lossy(path).escape_debug().to_string()
}

impl Manifest {
    /// The manifest of what `Artifact::prepare` makes of `path`: a
    /// directory's contents, a .tar/.tar.gz/.tgz archive's entries, or one
    /// file. Blocking.
    pub fn of_artifact(path: &Path) -> Result<Manifest> {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("artifact {} cannot be read", path.display()))?;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if meta.is_dir() {
            Manifest::of_dir(path)
        } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
            Manifest::of_tar(flate2::read::GzDecoder::new(open(path)?))
        } else if name.ends_with(".tar") {
            Manifest::of_tar(open(path)?)
        } else {
            let mut m = Manifest::default();
            let file_name = path.file_name().context("artifact has no file name")?;
            m.entries.insert(
                file_name.as_bytes().to_vec(),
                Kind::File {
                    mode: meta.permissions().mode() & 0o7777,
                    size: meta.len(),
                    sha256: hash_reader(open(path)?)?,
                },
            );
            Ok(m)
        }
    }

    /// Every entry under `root` (not `root` itself); symlinks not followed.
    pub fn of_dir(root: &Path) -> Result<Manifest> {
        let mut m = Manifest::default();
        for entry in walkdir::WalkDir::new(root).min_depth(1) {
            let entry = entry.with_context(|| format!("cannot read {}", root.display()))?;
            let rel = entry.path().strip_prefix(root)?.as_os_str().as_bytes();
            let meta = entry.path().symlink_metadata()?;
            let mode = meta.permissions().mode() & 0o7777;
            let ft = meta.file_type();
            let kind = if ft.is_symlink() {
                Kind::Link {
                    target: std::fs::read_link(entry.path())?
                        .as_os_str()
                        .as_bytes()
                        .to_vec(),
                }
            } else if ft.is_dir() {
                Kind::Dir { mode }
            } else if ft.is_file() {
                Kind::File {
                    mode,
                    size: meta.len(),
                    sha256: hash_reader(open(entry.path())?)?,
                }
            } else {
                Kind::Other
            };
            m.entries.insert(rel.to_vec(), kind);
        }
        Ok(m)
    }

    /// The release a tar archive unpacks to. Directories the archive only
    /// implies are made by tar with the host's umask of 022: mode 755.
    pub fn of_tar(reader: impl Read) -> Result<Manifest> {
        let mut m = Manifest::default();
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let Some(path) = normal_path(&entry.path_bytes())? else {
                continue;
            };
            let header = entry.header();
            let mode = header.mode().unwrap_or(0o644) & 0o7777;
            let kind = match header.entry_type() {
                tar::EntryType::Directory => Kind::Dir { mode },
                tar::EntryType::Symlink => Kind::Link {
                    target: entry
                        .link_name_bytes()
                        .map(|t| t.into_owned())
                        .unwrap_or_default(),
                },
                tar::EntryType::Link => {
                    let target = entry.link_name_bytes().map(|t| t.into_owned());
                    let target = target.and_then(|t| normal_path(&t).ok().flatten());
                    match target.and_then(|t| m.entries.get(&t).cloned()) {
                        Some(kind) => kind,
                        None => bail!(
                            "archive entry {} is a hard link to an entry it does not hold",
                            display(&path)
                        ),
                    }
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let size = entry.size();
                    Kind::File {
                        mode,
                        size,
                        sha256: hash_reader(&mut entry)?,
                    }
                }
                _ => Kind::Other,
            };
            // A later entry replaces an earlier one, as tar does.
            if !matches!(kind, Kind::Dir { .. }) {
                let mut under = path.clone();
                under.push(b'/');
                m.entries.retain(|p, _| !p.starts_with(&under));
            }
            m.entries.insert(path, kind);
        }
        let implied: Vec<Vec<u8>> = m
            .entries
            .keys()
            .flat_map(|p| {
                p.iter()
                    .enumerate()
                    .filter(|(_, b)| **b == b'/')
                    .map(|(i, _)| p[..i].to_vec())
                    .collect::<Vec<_>>()
            })
            .collect();
        for dir in implied {
            m.entries.entry(dir).or_insert(Kind::Dir { mode: 0o755 });
        }
        Ok(m)
    }

    /// The text form (see the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut lines: Vec<Vec<u8>> = self
            .entries
            .iter()
            .map(|(path, kind)| {
                let mut line = escape(path);
                match kind {
                    Kind::File { mode, size, sha256 } => line
                        .extend_from_slice(format!("\tf\t{mode:o}\t{size}\t{sha256}").as_bytes()),
                    Kind::Dir { mode } => {
                        line.extend_from_slice(format!("\td\t{mode:o}").as_bytes())
                    }
                    Kind::Link { target } => {
                        line.extend_from_slice(b"\tl\t");
                        line.extend_from_slice(&escape(target));
                    }
                    Kind::Other => line.extend_from_slice(b"\to"),
                }
                line.push(b'\n');
                line
            })
            .collect();
        lines.sort();
        let mut out = format!("{HEADER}\n").into_bytes();
        for line in lines {
            out.extend_from_slice(&line);
        }
        out
    }

    /// [`Manifest::encode`], gzipped.
    pub fn encode_gz(&self) -> Vec<u8> {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&self.encode())
            .expect("writing to memory cannot fail");
        gz.finish().expect("writing to memory cannot fail")
    }

    /// The manifest of a release made from this artifact, whose `shared`
    /// paths (`app.shared_dirs`, `app.shared_files`) are links into
    /// `shared/` instead: what is at or under them is left out (a link,
    /// whose target differs per host, is never listed), and the
    /// directories the link step makes for them are added (mode 755).
    pub fn for_release(mut self, shared: &[String]) -> Manifest {
        for path in shared {
            let path = path.trim_matches('/').as_bytes().to_vec();
            self.entries.retain(|p, _| !is_at_or_under(p, &path));
            let mut parent = Vec::new();
            for part in path
                .split(|b| *b == b'/')
                .collect::<Vec<_>>()
                .split_last()
                .map_or(&[][..], |(_, up)| up)
            {
                if !parent.is_empty() {
                    parent.push(b'/');
                }
                parent.extend_from_slice(part);
                self.entries
                    .entry(parent.clone())
                    .or_insert(Kind::Dir { mode: 0o755 });
            }
        }
        self
    }

    /// The most bytes a host's manifest of a release is read up to, for
    /// an artifact with this manifest: four times this one's text (at
    /// most, each line as long as it can be written), and a megabyte more,
    /// so a release that has shrunk since still gets its delta. A longer
    /// one is refused unread: a host decides what it sends.
    pub fn read_limit(&self) -> u64 {
        let text: u64 = self
            .entries
            .iter()
            .map(|(path, kind)| {
                let target = match kind {
                    Kind::Link { target } => target.len(),
                    _ => 0,
                };
                2 * (path.len() + target) as u64 + 96
            })
            .sum();
        4 * (HEADER.len() as u64 + 1 + text) + (1 << 20)
    }

    /// Without the entries `ignore` covers.
    pub fn without(mut self, ignore: &crate::ignore::Ignore) -> Manifest {
        self.entries.retain(|p, _| !ignore.covers(p));
        self
    }

    /// sha256 of [`Manifest::encode`]: what a host compares its own listing with.
    pub fn sha256(&self) -> String {
        hex::encode(Sha256::digest(self.encode()))
    }

    /// Reads the text form. Every path must stay inside the release.
    pub fn parse(text: &[u8]) -> Result<Manifest> {
        let mut lines = text.split(|b| *b == b'\n');
        if lines.next() != Some(HEADER.as_bytes()) {
            bail!("not a hoist manifest");
        }
        let mut m = Manifest::default();
        for (n, line) in lines.enumerate() {
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&[u8]> = line.split(|b| *b == b'\t').collect();
            let bad = || anyhow::anyhow!("manifest line {} is malformed", n + 2);
            let text = |f: &[u8]| {
                std::str::from_utf8(f)
                    .map_err(|_| bad())
                    .map(str::to_string)
            };
            let mode = |f: &[u8]| u32::from_str_radix(&text(f)?, 8).map_err(|_| bad());
            let path = unescape(fields[0]).ok_or_else(bad)?;
            let path = normal_path(&path)?.ok_or_else(bad)?;
            let kind = match fields[1..] {
                [b"f", m, s, h] => Kind::File {
                    mode: mode(m)?,
                    size: text(s)?.parse().map_err(|_| bad())?,
                    sha256: text(h)?,
                },
                [b"d", m] => Kind::Dir { mode: mode(m)? },
                [b"l", t] => Kind::Link {
                    target: unescape(t).ok_or_else(bad)?,
                },
                [b"o"] => Kind::Other,
                _ => return Err(bad()),
            };
            m.entries.insert(path, kind);
        }
        Ok(m)
    }

    /// What `self` (the new one) has that `old` has not, or has otherwise.
    pub fn diff_from(&self, old: &Manifest) -> Diff {
        let mut diff = Diff::default();
        for (path, kind) in &self.entries {
            match old.entries.get(path) {
                None => diff.added.push(path.clone()),
                Some(was) if was != kind => diff.changed.push(path.clone()),
                Some(_) => {}
            }
        }
        for path in old.entries.keys() {
            if !self.entries.contains_key(path) {
                diff.removed.push(path.clone());
            }
        }
        diff
    }

    /// One line on a changed entry: "mode 644 -> 755", "file -> symlink".
    pub fn explain(&self, old: &Manifest, path: &[u8]) -> Option<String> {
        let (was, now) = (old.entries.get(path)?, self.entries.get(path)?);
        Some(match (was, now) {
            (
                Kind::File {
                    mode: a, sha256: x, ..
                },
                Kind::File {
                    mode: b, sha256: y, ..
                },
            ) => {
                if x != y {
                    "content".to_string()
                } else {
                    format!("mode {a:o} -> {b:o}")
                }
            }
            (Kind::Dir { mode: a }, Kind::Dir { mode: b }) => format!("mode {a:o} -> {b:o}"),
            (Kind::Link { .. }, Kind::Link { .. }) => "symlink target".to_string(),
            (a, b) => format!("{} -> {}", a.word(), b.word()),
        })
    }
}

/// `path` is `top` or inside it.
pub fn is_at_or_under(path: &[u8], top: &[u8]) -> bool {
    path.strip_prefix(top)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(b"/"))
}

/// A path as the release holds it: `./` and trailing `/` dropped; `None`
/// for the release itself. Refused when it would leave the release.
pub fn normal_path(raw: &[u8]) -> Result<Option<Vec<u8>>> {
    let path = Path::new(std::ffi::OsStr::from_bytes(raw));
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p.as_bytes()),
            Component::CurDir => {}
            _ => bail!("entry {} would land outside the release", display(raw)),
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join(&b'/')))
}

pub fn escape(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    for &b in raw {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b => out.push(b),
        }
    }
    out
}

fn unescape(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.iter();
    while let Some(&b) = bytes.next() {
        if b == b'\\' {
            out.push(match bytes.next()? {
                b'\\' => b'\\',
                b't' => b'\t',
                b'n' => b'\n',
                _ => return None,
            });
        } else {
            out.push(b);
        }
    }
    Some(out)
}

fn open(path: &Path) -> Result<BufReader<File>> {
    Ok(BufReader::with_capacity(
        256 * 1024,
        File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
    ))
}

fn hash_reader(mut reader: impl Read) -> Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_any_name() {
        let mut m = Manifest::default();
        for name in [
            &b"plain"[..],
            b"with space",
            b"tab\there",
            b"new\nline",
            b"back\\slash\\n",
            b"dir/\xff\xfe",
        ] {
            m.entries.insert(
                name.to_vec(),
                Kind::File {
                    mode: 0o4755,
                    size: 3,
                    sha256: "ab".repeat(32),
                },
            );
        }
        m.entries.insert(b"dir".to_vec(), Kind::Dir { mode: 0o700 });
        m.entries.insert(
            b"link".to_vec(),
            Kind::Link {
                target: b"../a\tb\n".to_vec(),
            },
        );
        m.entries.insert(b"fifo".to_vec(), Kind::Other);
        let text = m.encode();
        assert_eq!(text.iter().filter(|b| **b == b'\n').count(), 10);
        assert_eq!(Manifest::parse(&text).unwrap(), m);
        // What a host's `gzip -dc` gets back is the text, byte for byte.
        let mut unzipped = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(&m.encode_gz()[..]),
            &mut unzipped,
        )
        .unwrap();
        assert_eq!(unzipped, text);
    }

    #[test]
    fn a_hosts_manifest_is_read_up_to_a_multiple_of_the_artifacts_own() {
        let mut m = Manifest::default();
        for i in 0..1000 {
            m.entries.insert(
                format!("dir/file-{i}\twith a tab").into_bytes(),
                Kind::File {
                    mode: 0o644,
                    size: u64::MAX,
                    sha256: "a".repeat(64),
                },
            );
        }
        let own = m.encode().len() as u64;
        assert!(m.read_limit() >= 4 * own + (1 << 20), "{}", m.read_limit());
        assert!(m.read_limit() <= 8 * own + (1 << 20), "{}", m.read_limit());
        assert_eq!(Manifest::default().read_limit(), 4 * 17 + (1 << 20));
    }

    #[test]
    fn parse_refuses_paths_outside_the_release() {
        for bad in ["../x\td\t755", "/etc\td\t755", "a/../../b\to"] {
            let text = format!("{HEADER}\n{bad}\n");
            assert!(Manifest::parse(text.as_bytes()).is_err(), "{bad}");
        }
        assert!(Manifest::parse(b"junk\n").is_err());
        assert!(Manifest::parse(format!("{HEADER}\nx\tq\n").as_bytes()).is_err());
    }

    #[test]
    fn diff_names_added_changed_and_removed() {
        let file = |sha: &str, mode| Kind::File {
            mode,
            size: 1,
            sha256: sha.into(),
        };
        let mut old = Manifest::default();
        old.entries.insert(b"same".to_vec(), file("a", 0o644));
        old.entries.insert(b"edited".to_vec(), file("a", 0o644));
        old.entries.insert(b"chmod".to_vec(), file("a", 0o644));
        old.entries.insert(b"gone".to_vec(), file("a", 0o644));
        let mut new = old.clone();
        new.entries.remove(b"gone".as_slice());
        new.entries.insert(b"edited".to_vec(), file("b", 0o644));
        new.entries.insert(b"chmod".to_vec(), file("a", 0o755));
        new.entries
            .insert(b"fresh".to_vec(), Kind::Dir { mode: 0o755 });
        let d = new.diff_from(&old);
        assert_eq!(d.added, vec![b"fresh".to_vec()]);
        assert_eq!(d.changed, vec![b"chmod".to_vec(), b"edited".to_vec()]);
        assert_eq!(d.removed, vec![b"gone".to_vec()]);
        assert_eq!(
            d.describe(10),
            "changed chmod, edited; added fresh; removed gone"
        );
        assert_eq!(
            new.explain(&old, b"chmod").as_deref(),
            Some("mode 644 -> 755")
        );
    }

    #[test]
    fn a_directory_and_its_tarball_have_the_same_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("build");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(root.join("bin/app"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(root.join("bin/app"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::fs::write(root.join("README"), "hi").unwrap();
        std::os::unix::fs::symlink("bin/app", root.join("run")).unwrap();
        let from_dir = Manifest::of_dir(&root).unwrap();
        let tar_path = dir.path().join("a.tar");
        let mut b = tar::Builder::new(File::create(&tar_path).unwrap());
        b.follow_symlinks(false);
        b.append_dir_all(".", &root).unwrap();
        b.finish().unwrap();
        drop(b);
        let from_tar = Manifest::of_artifact(&tar_path).unwrap();
        assert_eq!(from_dir, from_tar);
        assert_eq!(from_dir.entries.len(), 4);
    }

    #[test]
    fn a_tarball_without_directory_entries_implies_them() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o600);
        h.set_cksum();
        b.append_data(&mut h, "a/b/c", &b"hi"[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        let m = Manifest::of_tar(&bytes[..]).unwrap();
        assert_eq!(
            m.entries.get(b"a".as_slice()),
            Some(&Kind::Dir { mode: 0o755 })
        );
        assert_eq!(
            m.entries.get(b"a/b".as_slice()),
            Some(&Kind::Dir { mode: 0o755 })
        );
        assert!(matches!(
            m.entries.get(b"a/b/c".as_slice()),
            Some(Kind::File {
                mode: 0o600,
                size: 2,
                ..
            })
        ));
    }
}
