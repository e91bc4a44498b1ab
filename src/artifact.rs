//! The artifact: hashed once, packed once, then streamed to every host.
//!
//! A directory or single file is packed into one temporary .tar.gz (packing
//! it once per host would cost the CPU fifty times over); .tar, .tar.gz and
//! .tgz archives are sent as they are. Two hashes: the content hash names the
//! release (and spots a host that already holds it), the transfer hash
//! verifies the bytes on the host.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::config::{ArtifactSpec, Pull};
use crate::manifest::Manifest;

/// How an upload is compressed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    TarGz,
}

#[derive(Debug)]
pub struct Artifact {
    /// sha256 of the content: the file's bytes, or the directory's entries.
    pub content_sha: String,
    /// sha256 of the bytes sent to each host.
    pub transfer_sha: String,
    pub transfer_size: u64,
    /// Bytes the release takes once unpacked.
    pub unpacked_size: u64,
    pub packing: Packing,
    /// The label: `artifact.version`, or the first 12 hex of the content hash.
    pub version: String,
    /// Every entry of the release it makes; `None` for a URL (the bytes
    /// are not here) or an archive whose entries cannot be listed.
    pub manifest: Option<Manifest>,
    /// The manifest gzipped, as it goes to the hosts: made once.
    manifest_gz: std::sync::OnceLock<bytes::Bytes>,
    /// Each host downloads the artifact from here instead.
    pub pull: Option<Pull>,
    /// Send only what a host's current release lacks (`artifact.delta`).
    pub delta: bool,
    /// The shared paths (`app.shared_dirs`, `app.shared_files`): links into
    /// `shared/` in every release, left out of its manifest.
    pub shared_paths: Vec<Vec<u8>>,
    /// `app.ignore`: paths a delta always sends afresh, never trusting
    /// the old release's copy (the app may have written them).
    pub ignore: crate::ignore::Ignore,
    /// Where the artifact is on this machine (what deltas are cut from).
    pub source: PathBuf,
    upload: PathBuf,
    /// The upload's bytes, read once and shared by every host, when small
    /// enough (see [`SHARED_MAX`]).
    shared: Option<bytes::Bytes>,
    _packed: Option<tempfile::TempPath>,
}

/// Uploads up to this size are read into memory once and every host sends
/// the same bytes (250 hosts cost one copy, not 250 read buffers); larger
/// ones are read from the file by each host, a chunk at a time.
const SHARED_MAX: u64 = 64 * 1024 * 1024;

impl Artifact {
    /// The file whose bytes go to every host.
    pub fn upload_path(&self) -> &Path {
        &self.upload
    }

    /// Space a host needs for one more release: the unpacked copy (the
    /// upload is unpacked as it streams in, never stored).
    pub fn needed_kb(&self) -> u64 {
        self.unpacked_size.div_ceil(1024) + 64
    }

    /// The bytes to send to one host.
    pub fn input(&self) -> io::Result<crate::transport::Input> {
        use crate::transport::Input;
        match &self.shared {
            Some(bytes) => Ok(Input::bytes(bytes.clone())),
            None => {
                let file = tokio::fs::File::from_std(File::open(self.upload_path())?);
                Ok(Input::reader(file, self.transfer_size))
            }
        }
    }

    /// The manifest as a host records it, gzipped (about half the bytes:
    /// the hashes are hex), made once and shared by every host.
    pub fn manifest_gz(&self) -> Option<bytes::Bytes> {
        let manifest = self.manifest.as_ref()?;
        Some(
            self.manifest_gz
                .get_or_init(|| manifest.encode_gz().into())
                .clone(),
        )
    }

    /// Reads, hashes and (if needed) packs the artifact. Blocking: call it
    /// from `spawn_blocking`.
    pub fn prepare(spec: &ArtifactSpec) -> Result<Artifact> {
        if let Some(pull) = &spec.pull {
            return Ok(Artifact {
                content_sha: pull.sha256.clone(),
                transfer_sha: pull.sha256.clone(),
                transfer_size: 0,
                unpacked_size: 0,
                packing: Packing::TarGz,
                version: spec
                    .version
                    .clone()
                    .unwrap_or_else(|| pull.sha256[..12].to_string()),
                manifest: None,
                manifest_gz: Default::default(),
                pull: Some(pull.clone()),
                delta: false,
                shared_paths: spec.shared.iter().map(|s| s.as_bytes().to_vec()).collect(),
                ignore: ignore(spec),
                source: PathBuf::new(),
                upload: PathBuf::new(),
                shared: None,
                _packed: None,
            });
        }
        // Before anything opens a file: a FIFO would hang every reader.
        let inside = Inside::of(&spec.path)?;
        if !inside.special.is_empty() {
            bail!("{}", inside.refusal(&spec.path));
        }
        // The manifest needs a pass of its own over the files: beside the packing.
        std::thread::scope(|scope| {
            let listing = scope.spawn(|| Manifest::of_artifact(&spec.path).ok());
            let mut artifact = Artifact::local(spec)?;
            artifact.manifest = listing.join().ok().flatten().map(|m| {
                let mut m = m.for_release(&spec.shared);
                if !spec.allow_setuid {
                    // As the hosts unpack it: without setuid and setgid bits.
                    for kind in m.entries.values_mut() {
                        if let crate::manifest::Kind::File { mode, .. } = kind {
                            *mode &= !0o6000;
                        }
                    }
                }
                m
            });
            Ok(artifact)
        })
    }

    /// Hashes and (if needed) packs a local artifact.
    fn local(spec: &ArtifactSpec) -> Result<Artifact> {
        let path = &spec.path;
        let meta = std::fs::metadata(path)
            .with_context(|| format!("artifact {} cannot be read", path.display()))?;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let (content_sha, transfer_sha, unpacked_size, packing, upload, packed) = if meta.is_dir() {
            let (content_sha, unpacked) = hash_dir(path)?;
            let packed = pack(path, true)?;
            let transfer_sha = hash_file(&packed)?;
            (
                content_sha,
                transfer_sha,
                unpacked,
                Packing::TarGz,
                packed.to_path_buf(),
                Some(packed),
            )
        } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
            let sha = hash_file(path)?;
            let unpacked = archive_size(flate2::read::GzDecoder::new(open(path)?))
                .with_context(|| format!("artifact {} is not a valid .tar.gz", path.display()))?;
            (
                sha.clone(),
                sha,
                unpacked,
                Packing::TarGz,
                path.clone(),
                None,
            )
        } else if name.ends_with(".tar") {
            // Sent compressed: gzip once here rather than the raw bytes to every host.
            let sha = hash_file(path)?;
            let unpacked = archive_size(open(path)?)
                .with_context(|| format!("artifact {} is not a valid .tar", path.display()))?;
            let packed = gzip(path)?;
            let transfer_sha = hash_file(&packed)?;
            (
                sha,
                transfer_sha,
                unpacked,
                Packing::TarGz,
                packed.to_path_buf(),
                Some(packed),
            )
        } else if meta.is_file() {
            let content_sha = hash_file(path)?;
            let packed = pack(path, false)?;
            let transfer_sha = hash_file(&packed)?;
            (
                content_sha,
                transfer_sha,
                meta.len(),
                Packing::TarGz,
                packed.to_path_buf(),
                Some(packed),
            )
        } else {
            bail!(
                "artifact {} is neither a file nor a directory",
                path.display()
            );
        };
        let transfer_size = std::fs::metadata(&upload)?.len();
        let shared = if transfer_size <= SHARED_MAX {
            Some(bytes::Bytes::from(std::fs::read(&upload)?))
        } else {
            None
        };
        let version = spec
            .version
            .clone()
            .unwrap_or_else(|| content_sha[..12].to_string());
        Ok(Artifact {
            content_sha,
            transfer_sha,
            transfer_size,
            unpacked_size,
            packing,
            version,
            manifest: None,
            manifest_gz: Default::default(),
            pull: None,
            delta: spec.delta,
            shared_paths: spec.shared.iter().map(|s| s.as_bytes().to_vec()).collect(),
            ignore: ignore(spec),
            source: path.clone(),
            upload,
            shared,
            _packed: packed,
        })
    }
}

/// What a local artifact holds that hosts do not make real as it is: special
/// files (devices, FIFOs, sockets: refused), files with a setuid or setgid
/// bit (dropped unless `artifact.allow_setuid`). Paths relative to the
/// artifact, in name order.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Inside {
    /// Each with what it is (`a FIFO`, `a character device`, ...).
    pub special: Vec<(String, &'static str)>,
    pub setuid: Vec<String>,
}

impl Inside {
    /// Reads entries' types and modes only, never a file's content (a FIFO
    /// would block the read).
    pub fn of(path: &Path) -> Result<Inside> {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        let meta = std::fs::metadata(path)
            .with_context(|| format!("artifact {} cannot be read", path.display()))?;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let mut inside = Inside::default();
        let special = |t: std::fs::FileType| {
            if t.is_fifo() {
                Some("a FIFO")
            } else if t.is_char_device() {
                Some("a character device")
            } else if t.is_block_device() {
                Some("a block device")
            } else if t.is_socket() {
                Some("a socket")
            } else {
                None
            }
        };
        if meta.is_dir() {
            for entry in walkdir::WalkDir::new(path).sort_by_file_name().min_depth(1) {
                let entry = entry.with_context(|| format!("cannot read {}", path.display()))?;
                let rel = entry
                    .path()
                    .strip_prefix(path)?
                    .to_string_lossy()
                    .into_owned();
                let meta = entry.path().symlink_metadata()?;
                if let Some(what) = special(meta.file_type()) {
                    inside.special.push((rel, what));
                } else if meta.is_file() && meta.permissions().mode() & 0o6000 != 0 {
                    inside.setuid.push(rel);
                }
            }
        } else if let Some(what) = special(meta.file_type()) {
            inside.special.push((name.to_string(), what));
        } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") || name.ends_with(".tar") {
            let file = open(path)?;
            let reader: Box<dyn Read> = if name.ends_with(".tar") {
                Box::new(file)
            } else {
                Box::new(flate2::read::GzDecoder::new(file))
            };
            let mut archive = tar::Archive::new(reader);
            // An archive that cannot be read is said by the packing step,
            // which names what is wrong with it; here it holds nothing.
            let Ok(entries) = archive.entries() else {
                return Ok(inside);
            };
            for entry in entries {
                let Ok(entry) = entry else { break };
                let rel = String::from_utf8_lossy(&entry.path_bytes())
                    .trim_start_matches("./")
                    .to_string();
                let what = match entry.header().entry_type() {
                    tar::EntryType::Char => Some("a character device"),
                    tar::EntryType::Block => Some("a block device"),
                    tar::EntryType::Fifo => Some("a FIFO"),
                    _ => None,
                };
                let mode = entry.header().mode().unwrap_or(0);
                if let Some(what) = what {
                    inside.special.push((rel, what));
                } else if entry.header().entry_type().is_file() && mode & 0o6000 != 0 {
                    inside.setuid.push(rel);
                }
            }
        } else if meta.permissions().mode() & 0o6000 != 0 {
            inside.setuid.push(name.to_string());
        }
        inside.special.sort();
        inside.setuid.sort();
        Ok(inside)
    }

    /// Why an artifact holding special files is refused: a few of them named.
    pub fn refusal(&self, artifact: &Path) -> String {
        let named: Vec<String> = self
            .special
            .iter()
            .take(3)
            .map(|(p, what)| format!("{p} ({what})"))
            .collect();
        let more = match self.special.len().saturating_sub(3) {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        format!(
            "artifact {} holds special files: {}{more}; a release holds only files, directories and symlinks (remove them from the artifact)",
            artifact.display(),
            named.join(", ")
        )
    }
}

/// `app.ignore`, compiled; the config already refused a bad glob.
fn ignore(spec: &ArtifactSpec) -> crate::ignore::Ignore {
    crate::ignore::Ignore::new(&spec.ignore).unwrap_or_default()
}

fn open(path: &Path) -> Result<BufReader<File>> {
    Ok(BufReader::with_capacity(
        256 * 1024,
        File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
    ))
}

fn hash_file(path: &Path) -> Result<String> {
    let mut hasher = Sha256::new();
    io::copy(&mut open(path)?, &mut HashWriter(&mut hasher))?;
    Ok(hex::encode(hasher.finalize()))
}

struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Hashes a directory by its entries in name order: path, kind, mode and
/// content, so the same tree always gets the same hash whatever its mtimes.
fn hash_dir(root: &Path) -> Result<(String, u64)> {
    use std::os::unix::fs::PermissionsExt;
    let mut hasher = Sha256::new();
    let mut size = 0;
    for entry in walkdir::WalkDir::new(root).sort_by_file_name().min_depth(1) {
        let entry = entry.with_context(|| format!("cannot read {}", root.display()))?;
        let rel = entry
            .path()
            .strip_prefix(root)?
            .to_string_lossy()
            .into_owned();
        let meta = entry.path().symlink_metadata()?;
        let mode = meta.permissions().mode() & 0o7777;
        let kind = entry.file_type();
        hasher.update(rel.as_bytes());
        hasher.update([0]);
        if kind.is_symlink() {
            let target = std::fs::read_link(entry.path())?;
            hasher.update(b"l\0");
            hasher.update(target.to_string_lossy().as_bytes());
        } else if kind.is_dir() {
            hasher.update(format!("d\0{mode:o}").as_bytes());
        } else {
            size += meta.len();
            hasher.update(format!("f\0{mode:o}\0{}\0", meta.len()).as_bytes());
            io::copy(&mut open(entry.path())?, &mut HashWriter(&mut hasher))?;
        }
        hasher.update([0xff]);
    }
    Ok((hex::encode(hasher.finalize()), size))
}

fn temp_tgz() -> Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix("hoist-artifact-")
        .suffix(".tar.gz")
        .tempfile()
        .context("cannot create a temporary file to pack the artifact")
}

/// Compresses a .tar into a temporary .tar.gz.
fn gzip(path: &Path) -> Result<tempfile::TempPath> {
    let (file, tmp_path) = temp_tgz()?.into_parts();
    let mut gz = flate2::write::GzEncoder::new(
        io::BufWriter::with_capacity(256 * 1024, file),
        flate2::Compression::fast(),
    );
    io::copy(&mut open(path)?, &mut gz)?;
    gz.finish()?.flush()?;
    Ok(tmp_path)
}

/// Packs a directory's contents (or one file) into a temporary .tar.gz.
fn pack(path: &Path, is_dir: bool) -> Result<tempfile::TempPath> {
    let (file, tmp_path) = temp_tgz()?.into_parts();
    let gz = flate2::write::GzEncoder::new(
        io::BufWriter::with_capacity(256 * 1024, file),
        flate2::Compression::fast(),
    );
    let mut builder = tar::Builder::new(gz);
    builder.follow_symlinks(false);
    if is_dir {
        for entry in walkdir::WalkDir::new(path).sort_by_file_name().min_depth(1) {
            let entry = entry?;
            let rel = entry.path().strip_prefix(path)?;
            builder
                .append_path_with_name(entry.path(), rel)
                .with_context(|| format!("cannot pack {}", entry.path().display()))?;
        }
    } else {
        let name = path.file_name().context("artifact has no file name")?;
        builder.append_path_with_name(path, name)?;
    }
    builder.into_inner()?.finish()?.flush()?;
    Ok(tmp_path)
}

/// Total size of an archive's files; reading it through also proves it whole.
fn archive_size(reader: impl Read) -> Result<u64> {
    let mut archive = tar::Archive::new(reader);
    let mut size = 0;
    for entry in archive.entries()? {
        let entry = entry?;
        let path = entry.path()?;
        if path.is_absolute() || path.components().any(|c| c.as_os_str() == "..") {
            bail!(
                "archive entry {} would land outside the release",
                path.display()
            );
        }
        size += entry.size();
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(path: &Path) -> ArtifactSpec {
        ArtifactSpec {
            path: path.to_path_buf(),
            pull: None,
            version: None,
            delta: true,
            shared: Vec::new(),
            allow_setuid: false,
            ignore: Vec::new(),
        }
    }

    fn tree(dir: &Path) {
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::write(dir.join("bin/app"), "#!/bin/sh\necho hi\n").unwrap();
        std::fs::write(dir.join("README"), "hello").unwrap();
    }

    #[test]
    fn directory_hash_ignores_mtimes_but_not_content() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        tree(a.path());
        std::thread::sleep(std::time::Duration::from_millis(20));
        tree(b.path());
        let ha = Artifact::prepare(&spec(a.path())).unwrap();
        let hb = Artifact::prepare(&spec(b.path())).unwrap();
        assert_eq!(ha.content_sha, hb.content_sha);
        assert_eq!(ha.version, ha.content_sha[..12]);
        std::fs::write(b.path().join("README"), "hellO").unwrap();
        let hc = Artifact::prepare(&spec(b.path())).unwrap();
        assert_ne!(ha.content_sha, hc.content_sha);
    }

    #[test]
    fn packed_directory_unpacks_to_the_same_files() {
        let src = tempfile::tempdir().unwrap();
        tree(src.path());
        let art = Artifact::prepare(&spec(src.path())).unwrap();
        assert_eq!(art.packing, Packing::TarGz);
        assert_eq!(art.transfer_sha, hash_file(art.upload_path()).unwrap());
        let out = tempfile::tempdir().unwrap();
        tar::Archive::new(flate2::read::GzDecoder::new(
            File::open(art.upload_path()).unwrap(),
        ))
        .unpack(out.path())
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(out.path().join("README")).unwrap(),
            "hello"
        );
        assert!(out.path().join("bin/app").exists());
        let upload = art.upload_path().to_path_buf();
        drop(art);
        assert!(!upload.exists(), "the packed temp file is removed");
    }

    #[test]
    fn tarball_is_sent_as_is() {
        let src = tempfile::tempdir().unwrap();
        tree(src.path());
        let packed = Artifact::prepare(&spec(src.path())).unwrap();
        let tgz = src.path().join("../x.tgz");
        let dir = tempfile::tempdir().unwrap();
        let tgz = dir.path().join(tgz.file_name().unwrap());
        std::fs::copy(packed.upload_path(), &tgz).unwrap();
        let art = Artifact::prepare(&spec(&tgz)).unwrap();
        assert_eq!(art.upload_path(), tgz);
        assert_eq!(art.content_sha, art.transfer_sha);
        assert_eq!(art.unpacked_size, 5 + 18);
    }

    #[test]
    fn plain_tar_is_compressed_for_the_wire() {
        let src = tempfile::tempdir().unwrap();
        tree(src.path());
        let dir = tempfile::tempdir().unwrap();
        let tar_path = dir.path().join("app.tar");
        let mut builder = tar::Builder::new(File::create(&tar_path).unwrap());
        builder.append_dir_all(".", src.path()).unwrap();
        builder.into_inner().unwrap().flush().unwrap();
        let art = Artifact::prepare(&spec(&tar_path)).unwrap();
        assert_eq!(art.content_sha, hash_file(&tar_path).unwrap());
        assert_eq!(art.packing, Packing::TarGz);
        assert!(art.transfer_size < std::fs::metadata(&tar_path).unwrap().len());
        let out = tempfile::tempdir().unwrap();
        tar::Archive::new(flate2::read::GzDecoder::new(
            File::open(art.upload_path()).unwrap(),
        ))
        .unpack(out.path())
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(out.path().join("README")).unwrap(),
            "hello"
        );
    }

    #[test]
    fn corrupt_tarball_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let tgz = dir.path().join("bad.tar.gz");
        std::fs::write(&tgz, b"not gzip at all").unwrap();
        assert!(Artifact::prepare(&spec(&tgz)).is_err());
    }

    #[test]
    fn single_file_becomes_a_release_holding_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("shop-api");
        std::fs::write(&file, "binary").unwrap();
        let art = Artifact::prepare(&ArtifactSpec {
            path: file.clone(),
            pull: None,
            version: Some("1.4.2".into()),
            delta: true,
            shared: Vec::new(),
            allow_setuid: false,
            ignore: Vec::new(),
        })
        .unwrap();
        assert_eq!(art.version, "1.4.2");
        assert_eq!(art.content_sha, hash_file(&file).unwrap());
        let names: Vec<String> = tar::Archive::new(flate2::read::GzDecoder::new(
            File::open(art.upload_path()).unwrap(),
        ))
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
        assert_eq!(names, vec!["shop-api"]);
    }
}
