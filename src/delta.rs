//! A delta upload, built here: what a host needs to turn a copy of its
//! current release into the new one, as one gzipped tar (see
//! `Layout::receive_delta` for what the host does with it).

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use anyhow::{Context, Result};

use crate::ignore::Ignore;
use crate::manifest::{Kind, Manifest};

/// The bytes for one current release, and what they hold.
#[derive(Debug)]
pub struct Delta {
    /// Shared by every host that gets them (a clone is a reference).
    pub bytes: bytes::Bytes,
    /// Entries sent (new or changed).
    pub sent: usize,
    /// Entries of the current release the new one does not have.
    pub gone: usize,
}

/// Deltas already cut, by the manifest of the release they start from:
/// hosts on the same release share one.
#[derive(Default)]
pub(crate) struct Deltas(Mutex<HashMap<String, Arc<OnceCell<Cut>>>>);

/// A delta once cut: `None` when the artifact cannot be sent as one.
type Cut = Option<Arc<Delta>>;

impl std::fmt::Debug for Deltas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Deltas")
    }
}

impl Deltas {
    /// The delta from `old` to `new` for the artifact at `artifact` (see
    /// [`build`]), cut once per `old` however many hosts ask.
    pub(crate) async fn get(
        &self,
        artifact: &Path,
        shared: &[Vec<u8>],
        ignore: &Ignore,
        new: &Manifest,
        old: Arc<Manifest>,
    ) -> Option<Arc<Delta>> {
        let cell = {
            let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(old.sha256()).or_default().clone()
        };
        cell.get_or_init(|| async {
            let (artifact, shared, ignore, new) = (
                artifact.to_path_buf(),
                shared.to_vec(),
                ignore.clone(),
                new.clone(),
            );
            let built =
                tokio::task::spawn_blocking(move || build(&artifact, &new, &old, &shared, &ignore))
                    .await;
            match built {
                Ok(Ok(delta)) => delta.map(Arc::new),
                _ => None,
            }
        })
        .await
        .clone()
    }
}

/// The manifests of releases the hosts hold, by content (the sha256 each
/// host recorded with its release): a host whose release holds content
/// another host's manifest was already read for borrows that one, with no
/// read of its own. So a fleet on one release costs one read, not one per
/// host, and holds one manifest in memory. Hosts that ask while another
/// host reads the same content's manifest wait for that read, at most
/// [`HeldManifests::WAIT`] (a host may be slow or gone), then borrow what
/// it read, or read their own when it read nothing. A borrowed
/// manifest is only a guess: what is made from it is checked against the
/// artifact's manifest on the host, and when that fails the host's own is
/// read before the host is blamed, and the borrowed one is dropped
/// ([`HeldManifests::forget`]).
#[derive(Default)]
pub(crate) struct HeldManifests(Mutex<HashMap<String, Kept>>);

/// What is known of one content's manifest.
enum Kept {
    /// A host is reading it: its sender is dropped when the read ends,
    /// however it ends.
    Reading(tokio::sync::watch::Receiver<()>),
    Read(Arc<Manifest>),
}

/// A manifest for a host's release, and whether it is another host's.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    pub manifest: Arc<Manifest>,
    /// Read from another host with the same content, not from this one.
    pub borrowed: bool,
}

impl std::fmt::Debug for HeldManifests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeldManifests")
    }
}

impl HeldManifests {
    /// The longest a host waits for another's read of the same manifest.
    pub(crate) const WAIT: std::time::Duration = std::time::Duration::from_secs(10);

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Kept>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn kept(&self, sum: &str) -> Option<Arc<Manifest>> {
        match self.map().get(sum) {
            Some(Kept::Read(m)) => Some(m.clone()),
            _ => None,
        }
    }

    /// The manifest of a release whose content is `sum`: one already read
    /// for that content (borrowed), else, once another host's read of it
    /// ended, what that host read (borrowed), else what `read` gets from
    /// this host (`Ok(None)` when it has none to give), kept for the next
    /// host unless one is kept already. Without a `sum` (not recorded),
    /// always `read`.
    pub(crate) async fn get<E, F, Fut>(&self, sum: Option<&str>, read: F) -> Result<Option<Held>, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Option<Manifest>, E>>,
    {
        let borrowed = |manifest| {
            Some(Held {
                manifest,
                borrowed: true,
            })
        };
        // This host's read, while it lasts, for the others to wait on.
        let mut _reading = None;
        if let Some(sum) = sum {
            let waiting = match self.map().get(sum) {
                Some(Kept::Read(known)) => return Ok(borrowed(known.clone())),
                // A read that ended with nothing kept: this host reads.
                Some(Kept::Reading(other)) if other.has_changed().is_ok() => Some(other.clone()),
                _ => None,
            };
            match waiting {
                Some(mut other) => {
                    // Ends when the other's read ends (its sender is gone).
                    let _ = tokio::time::timeout(Self::WAIT, other.changed()).await;
                    if let Some(known) = self.kept(sum) {
                        return Ok(borrowed(known));
                    }
                }
                None => {
                    let (tx, rx) = tokio::sync::watch::channel(());
                    self.map().insert(sum.to_string(), Kept::Reading(rx));
                    _reading = Some(tx);
                }
            }
        }
        let Some(read) = read().await? else {
            return Ok(None);
        };
        let Some(sum) = sum else {
            return Ok(Some(Held {
                manifest: Arc::new(read),
                borrowed: false,
            }));
        };
        // One equal to the one kept is dropped for it (it is this host's
        // content all the same).
        let mut map = self.map();
        let manifest = match map.get(sum) {
            Some(Kept::Read(kept)) if **kept == read => kept.clone(),
            Some(Kept::Read(_)) => Arc::new(read),
            _ => {
                let manifest = Arc::new(read);
                map.insert(sum.to_string(), Kept::Read(manifest.clone()));
                manifest
            }
        };
        Ok(Some(Held {
            manifest,
            borrowed: false,
        }))
    }

    /// Keeps `manifest` for content `sum`, unless one is kept already.
    pub(crate) fn offer(&self, sum: &str, manifest: Arc<Manifest>) {
        let mut map = self.map();
        if !matches!(map.get(sum), Some(Kept::Read(_))) {
            map.insert(sum.to_string(), Kept::Read(manifest));
        }
    }

    /// Lends `manifest` no more for content `sum`: what was made from it
    /// did not check out. (Another kept meanwhile stays.)
    pub(crate) fn forget(&self, sum: &str, manifest: &Arc<Manifest>) {
        let mut map = self.map();
        if matches!(map.get(sum), Some(Kept::Read(kept)) if Arc::ptr_eq(kept, manifest)) {
            map.remove(sum);
        }
    }
}

/// The delta from `old` (the host's current release) to `new` (the
/// artifact at `artifact`). The host copies only what `old` lists and
/// keeps (`keep`), so what the app added to its release is never carried
/// along; what `ignore` covers is never taken from `old` but sent afresh.
/// The `shared` paths are always deleted from the copy (they are links the
/// deploy makes again). `None` when the artifact holds something a delta
/// cannot carry (a hard link among the changed entries of an archive):
/// then the whole artifact goes.
pub fn build(
    artifact: &Path,
    new: &Manifest,
    old: &Manifest,
    shared: &[Vec<u8>],
    ignore: &Ignore,
) -> Result<Option<Delta>> {
    let trusted = old.clone().without(ignore);
    let diff = new.diff_from(&trusted);
    // Changed entries go first, unless a directory stays a directory (tar
    // then only sets its mode, and keeps what is in it); so do added ones,
    // in case the app made something there.
    let mut remove: BTreeSet<Vec<u8>> = diff
        .removed
        .iter()
        .chain(&diff.added)
        .chain(shared)
        .cloned()
        .collect();
    for path in &diff.changed {
        let both_dirs = matches!(
            (trusted.entries.get(path), new.entries.get(path)),
            (Some(Kind::Dir { .. }), Some(Kind::Dir { .. }))
        );
        if !both_dirs {
            remove.insert(path.clone());
        }
    }
    // Deleting a directory deletes what is in it.
    let remove: Vec<Vec<u8>> = remove
        .iter()
        .filter(|p| !ancestors(p).any(|a| remove.contains(a)))
        .cloned()
        .collect();
    let gone: BTreeSet<&[u8]> = remove.iter().map(Vec::as_slice).collect();
    let keep = trusted
        .entries
        .keys()
        .filter(|p| !gone.contains(p.as_slice()) && !ancestors(p).any(|a| gone.contains(a)));
    let send: BTreeSet<Vec<u8>> = diff.added.iter().chain(&diff.changed).cloned().collect();
    let dirs: BTreeSet<&[u8]> = send.iter().flat_map(|p| ancestors(p)).collect();

    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    append_list(&mut tar, "remove", "", remove.iter().map(Vec::as_slice))?;
    append_list(&mut tar, "dirs", "", dirs.iter().copied())?;
    // For `tar -T`: `./` first, so that no name reads as an option.
    append_list(&mut tar, "keep", "./", keep.map(Vec::as_slice))?;
    append_list(&mut tar, "paths", "", new.entries.keys().map(Vec::as_slice))?;
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o755);
    header.set_size(0);
    header.set_cksum();
    tar.append_data(&mut header, "files", std::io::empty())?;

    let meta = std::fs::metadata(artifact)
        .with_context(|| format!("artifact {} cannot be read", artifact.display()))?;
    let name = artifact.file_name().and_then(|n| n.to_str()).unwrap_or("");
    // Directories from the manifest (some only implied, or made for the
    // shared paths), the rest from the artifact.
    for path in &send {
        if let Some(Kind::Dir { mode }) = new.entries.get(path) {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(*mode);
            header.set_size(0);
            header.set_cksum();
            tar.append_data(&mut header, in_files(path), std::io::empty())?;
        }
    }
    let send: BTreeSet<Vec<u8>> = send
        .into_iter()
        .filter(|p| !matches!(new.entries.get(p), Some(Kind::Dir { .. })))
        .collect();
    if meta.is_dir() {
        for path in &send {
            let on_disk = artifact.join(OsStr::from_bytes(path));
            tar.append_path_with_name(&on_disk, in_files(path))
                .with_context(|| format!("cannot pack {}", on_disk.display()))?;
        }
    } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") || name.ends_with(".tar") {
        let file = BufReader::with_capacity(256 * 1024, File::open(artifact)?);
        let reader: Box<dyn Read> = if name.ends_with(".tar") {
            Box::new(file)
        } else {
            Box::new(flate2::read::GzDecoder::new(file))
        };
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries()? {
            let entry = entry?;
            let Some(path) = crate::manifest::normal_path(&entry.path_bytes())? else {
                continue;
            };
            if !send.contains(&path) {
                continue;
            }
            if entry.header().entry_type() == tar::EntryType::Link {
                return Ok(None);
            }
            let mut header = entry.header().clone();
            let link = entry.link_name_bytes().map(|l| l.into_owned());
            match link {
                Some(target) if header.entry_type() == tar::EntryType::Symlink => {
                    header.set_size(0);
                    tar.append_link(&mut header, in_files(&path), OsStr::from_bytes(&target))?;
                }
                _ => tar.append_data(&mut header, in_files(&path), entry)?,
            }
        }
    } else {
        for path in &send {
            tar.append_path_with_name(artifact, in_files(path))?;
        }
    }
    let mut gz = tar.into_inner()?;
    gz.flush()?;
    Ok(Some(Delta {
        bytes: gz.finish()?.into(),
        sent: diff.added.len() + diff.changed.len(),
        gone: diff.removed.len(),
    }))
}

fn in_files(path: &[u8]) -> std::path::PathBuf {
    Path::new("files").join(OsStr::from_bytes(path))
}

/// `a/b/c` -> `a/b`, `a`.
fn ancestors(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.iter()
        .enumerate()
        .rev()
        .filter(|(_, b)| **b == b'/')
        .map(move |(i, _)| &path[..i])
}

/// A file of escaped paths, a line each, each after `prefix`.
fn append_list<'a, W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    prefix: &str,
    paths: impl Iterator<Item = &'a [u8]>,
) -> Result<()> {
    let mut text = Vec::new();
    for p in paths {
        text.extend_from_slice(prefix.as_bytes());
        text.extend_from_slice(&crate::manifest::escape(p));
        text.push(b'\n');
    }
    let mut header = tar::Header::new_gnu();
    header.set_size(text.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, name, &text[..])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestors_go_up_to_the_top() {
        let up: Vec<&[u8]> = ancestors(b"a/b/c").collect();
        assert_eq!(up, vec![&b"a/b"[..], &b"a"[..]]);
        assert_eq!(ancestors(b"top").count(), 0);
    }

    /// Gets a manifest from `held` for `sum`, counting the reads; `gives`
    /// is what a read finds.
    async fn get(
        held: &HeldManifests,
        sum: Option<&str>,
        gives: Option<&Manifest>,
        reads: &std::sync::atomic::AtomicUsize,
    ) -> Option<Arc<Manifest>> {
        let read = || async {
            reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok::<_, ()>(gives.cloned())
        };
        held.get(sum, read).await.unwrap().map(|h| h.manifest)
    }

    #[tokio::test]
    async fn a_manifest_is_read_once_per_content_and_only_once_found() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "a").unwrap();
        let manifest = Manifest::of_dir(dir.path()).unwrap();
        let held = HeldManifests::default();
        let reads = std::sync::atomic::AtomicUsize::new(0);
        let n = || reads.load(std::sync::atomic::Ordering::SeqCst);

        // A host with none to give keeps nothing: the next one reads.
        assert!(get(&held, Some("x"), None, &reads).await.is_none());
        let first = get(&held, Some("x"), Some(&manifest), &reads).await;
        assert_eq!(first.as_deref(), Some(&manifest));
        assert_eq!(n(), 2);
        // The same content again: no read.
        let again = get(&held, Some("x"), None, &reads).await;
        assert_eq!(again.as_deref(), Some(&manifest));
        assert_eq!(n(), 2);
        // Other content, or none recorded: a read each time.
        assert!(get(&held, Some("y"), None, &reads).await.is_none());
        get(&held, None, Some(&manifest), &reads).await.unwrap();
        get(&held, None, Some(&manifest), &reads).await.unwrap();
        assert_eq!(n(), 5);
    }

    #[tokio::test]
    async fn a_borrowed_manifest_says_so_and_a_forgotten_one_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "a").unwrap();
        let manifest = Manifest::of_dir(dir.path()).unwrap();
        let held = HeldManifests::default();
        let read = |m: Option<Manifest>| move || async move { Ok::<_, ()>(m) };

        let own = held.get(Some("x"), read(Some(manifest.clone()))).await;
        let own = own.unwrap().unwrap();
        assert!(!own.borrowed, "read from the host itself");
        let lent = held.get(Some("x"), read(None)).await.unwrap().unwrap();
        assert!(lent.borrowed, "another host's");
        assert!(Arc::ptr_eq(&lent.manifest, &own.manifest));

        held.forget("x", &lent.manifest);
        assert!(held.get(Some("x"), read(None)).await.unwrap().is_none());
        // Forgetting one no longer kept leaves the one kept since.
        let next = held.get(Some("x"), read(Some(manifest.clone()))).await;
        let next = next.unwrap().unwrap();
        held.forget("x", &own.manifest);
        let still = held.get(Some("x"), read(None)).await.unwrap().unwrap();
        assert!(Arc::ptr_eq(&still.manifest, &next.manifest));
    }

    #[tokio::test]
    async fn hosts_that_ask_while_one_reads_wait_for_its_read_and_borrow_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "a").unwrap();
        let manifest = Manifest::of_dir(dir.path()).unwrap();
        let held = HeldManifests::default();
        let reads = std::sync::atomic::AtomicUsize::new(0);
        // Three hosts ask before any has read (each read yields first):
        // one reads, the other two wait for it.
        let read = || {
            let m = manifest.clone();
            let reads = &reads;
            move || async move {
                reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::task::yield_now().await;
                Ok::<_, ()>(Some(m))
            }
        };
        let (first, second, third) = tokio::join!(
            held.get(Some("x"), read()),
            held.get(Some("x"), read()),
            held.get(Some("x"), read()),
        );
        let all = [first, second, third].map(|h| h.unwrap().unwrap());
        assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(all.iter().filter(|h| !h.borrowed).count(), 1);
        assert!(
            all.iter()
                .all(|h| Arc::ptr_eq(&h.manifest, &all[0].manifest))
        );
    }

    #[tokio::test]
    async fn a_read_that_finds_nothing_leaves_the_others_to_read_their_own() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "a").unwrap();
        let manifest = Manifest::of_dir(dir.path()).unwrap();
        let held = HeldManifests::default();
        let slow_none = || async {
            tokio::task::yield_now().await;
            Ok::<_, ()>(None)
        };
        let own = |m: &Manifest| {
            let m = m.clone();
            move || async move { Ok::<_, ()>(Some(m)) }
        };
        let (none, second) = tokio::join!(
            held.get(Some("x"), slow_none),
            held.get(Some("x"), own(&manifest)),
        );
        assert!(none.unwrap().is_none());
        let second = second.unwrap().unwrap();
        assert!(
            !second.borrowed,
            "it read its own once the first found none"
        );
        assert_eq!(*second.manifest, manifest);
        // And the next host borrows that one.
        let third = held.get(Some("x"), slow_none).await.unwrap().unwrap();
        assert!(third.borrowed && Arc::ptr_eq(&third.manifest, &second.manifest));
    }

    #[tokio::test(start_paused = true)]
    async fn a_host_waits_for_a_slow_read_at_most_a_while() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "a").unwrap();
        let manifest = Manifest::of_dir(dir.path()).unwrap();
        let held = HeldManifests::default();
        let m = manifest.clone();
        let stuck = || async {
            std::future::pending::<()>().await;
            Ok::<_, ()>(None)
        };
        let started = tokio::time::Instant::now();
        let second = tokio::select! {
            _ = held.get(Some("x"), stuck) => unreachable!("never ends"),
            second = async {
                tokio::task::yield_now().await;
                held.get(Some("x"), move || async move { Ok::<_, ()>(Some(m)) }).await
            } => second,
        };
        let second = second.unwrap().unwrap();
        assert!(!second.borrowed);
        assert_eq!(started.elapsed(), HeldManifests::WAIT);
    }
}
