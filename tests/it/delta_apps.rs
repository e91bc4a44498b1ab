//! Deltas from releases that changed after their switch, over real
//! OpenSSH: an app writing into its own release, a manifest on one host
//! that is wrong for the others, and a release moved to another disk and
//! linked back.

use std::path::{Path, PathBuf};

use crate::support::fleet::Fleet;
use crate::support::project::{noise, said_to, tree};

/// Everything in one wave.
const ONE_WAVE: &str = "[strategy]\ncanary = 0\nbatch = \"100%\"";

/// `build/` beside `files`: 30 files of 4 KiB noise, so that a delta is
/// smaller than the whole artifact.
fn artifact_with(f: Fleet, files: &[(&str, &str)]) -> Fleet {
    let f = f.artifact(files);
    let build = f.path().join("build");
    for i in 0..30 {
        let path = build.join(format!("assets/dir{}/file{i:03}", i % 5));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, noise(i, 4096)).unwrap();
    }
    f
}

/// A change to one of [`artifact_with`]'s noise files.
fn touch_asset(f: &Fleet, i: u64, seed: u64) {
    let path = f
        .path()
        .join(format!("build/assets/dir{}/file{i:03}", i % 5));
    std::fs::write(path, noise(seed, 4096)).unwrap();
}

fn release_dir(f: &Fleet, host: &str, id: &str) -> PathBuf {
    f.deploy_path(host).join("releases").join(id)
}

fn warnings(events: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    events
        .iter()
        .filter(|e| e["event"] == "message" && e["level"] == "warn")
        .collect()
}

#[test]
fn a_python_app_writing_pycache_deploys_ten_times_by_delta_without_a_warning() {
    let f = Fleet::ssh(2)
        .toml(ONE_WAVE)
        .toml("[hooks]\nafter_switch = [\"python3 -c 'import app, pkg.models'\"]");
    let app = |v: u32| format!("VERSION = {v}\n");
    let f = artifact_with(
        f,
        &[
            ("app.py", &app(0)),
            ("pkg/__init__.py", ""),
            ("pkg/models.py", "class Order: pass\n"),
        ],
    )
    .write();
    f.hoist(&["deploy", "--yes"]).assert().success();
    let first = f.current("web1").unwrap();
    let cache = release_dir(&f, "web1", &first).join("__pycache__");
    assert!(
        std::fs::read_dir(&cache).unwrap().count() > 0,
        "the app wrote its bytecode into its release"
    );

    for v in 1..10 {
        std::fs::write(f.path().join("build/app.py"), app(v)).unwrap();
        let events = f.events(&["deploy", "--yes", "--json"], 0);
        assert_eq!(
            warnings(&events),
            Vec::<&serde_json::Value>::new(),
            "deploy {v}"
        );
        for host in ["web1", "web2"] {
            assert!(
                said_to(&events, host, "delta from"),
                "deploy {v} went to {host} as a delta: {events:#?}"
            );
            assert_eq!(
                f.read_current(host, "app.py"),
                app(v),
                "deploy {v} on {host}"
            );
        }
    }

    // Without `ignore`, verify names the bytecode as added, nothing else.
    let events = f.events(&["verify", "--json"], 1);
    let rows: Vec<_> = events.iter().filter(|e| e["table"] == "verify").collect();
    assert_eq!(rows.len(), 2);
    for row in rows {
        assert_eq!(row["result"], "added", "{row}");
        assert_eq!(row["changed"], serde_json::json!([]), "{row}");
        assert_eq!(row["removed"], serde_json::json!([]), "{row}");
        let added = row["added"].as_array().unwrap();
        assert!(added.iter().any(|p| p == "pkg/__pycache__"), "{row}");
        assert!(
            added
                .iter()
                .all(|p| p.as_str().unwrap().contains("__pycache__")),
            "{row}"
        );
    }
    assert!(
        events.iter().any(|e| e["event"] == "message"
            && e["text"]
                .as_str()
                .unwrap_or("")
                .contains("`ignore` in [app]")),
        "verify says how to leave them out: {events:#?}"
    );
    let f = f.app("ignore = [\"**/__pycache__/**\"]").write();
    f.hoist(&["verify"]).assert().success();
}

#[test]
fn a_file_the_app_rewrites_warns_once_naming_it_until_ignore_covers_it() {
    let f = Fleet::ssh(1)
        .toml(ONE_WAVE)
        .toml("[hooks]\nafter_switch = [\"echo warm > tmp/cache/seed\"]");
    let f = artifact_with(f, &[("tmp/cache/seed", "cold\n"), ("README", "v1")]).write();
    f.hoist(&["deploy", "--yes"]).assert().success();

    touch_asset(&f, 3, 100);
    let events = f.events(&["deploy", "--yes", "--json"], 0);
    let warned = warnings(&events);
    assert_eq!(warned.len(), 1, "one warning: {warned:#?}");
    let text = warned[0]["text"].as_str().unwrap();
    for says in [
        "changed since its switch (by hand or by the app)",
        "tmp/cache/seed",
        "whole artifact",
        "`ignore` in [app]",
    ] {
        assert!(text.contains(says), "says {says:?}: {text}");
    }
    assert_eq!(warned[0]["host"], "web1");

    let f = f.app("ignore = [\"tmp/cache/**\"]").write();
    touch_asset(&f, 4, 101);
    let events = f.events(&["deploy", "--yes", "--json"], 0);
    assert_eq!(warnings(&events), Vec::<&serde_json::Value>::new());
    assert!(said_to(&events, "web1", "delta from"), "{events:#?}");
    f.hoist(&["verify"]).assert().success();
}

/// Rewrites the line of `path` in a manifest on a host to the file
/// `content` would make (same mode).
fn claim_in_manifest(manifest: &Path, path: &str, content: &[u8]) {
    use sha2::{Digest, Sha256};
    let text = std::fs::read_to_string(manifest).unwrap();
    let mut found = false;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            if fields[0] != path {
                return line.to_string();
            }
            found = true;
            format!(
                "{path}\tf\t{}\t{}\t{}",
                fields[2],
                content.len(),
                hex::encode(Sha256::digest(content))
            )
        })
        .collect();
    assert!(found, "{path} is in {}", manifest.display());
    std::fs::write(manifest, lines.join("\n") + "\n").unwrap();
}

#[test]
fn a_wrong_manifest_on_the_canary_never_blames_the_other_hosts() {
    let f = Fleet::ssh(3).toml("[strategy]\ncanary = 1\ncanary_pause = \"0s\"\nbatch = \"100%\"");
    let f = artifact_with(f, &[("README", "v1")]).write();
    f.hoist(&["deploy", "--yes"]).assert().success();
    let manifests = f.deploy_path("web1").join(".hoist/manifests");
    let file = "assets/dir3/file003";

    // The canary's manifest lies: it says file003 already holds what the
    // next artifact has. Its own delta fails; the others read their own.
    let v1 = f.current("web1").unwrap();
    claim_in_manifest(&manifests.join(&v1), file, &noise(500, 4096));
    touch_asset(&f, 3, 500);
    touch_asset(&f, 4, 501);
    let events = f.events(&["deploy", "--yes", "--json"], 0);
    assert!(said_to(&events, "web1", "changed since its switch"));
    for host in ["web2", "web3"] {
        assert!(said_to(&events, host, "delta from"), "{host}: {events:#?}");
        assert!(
            !said_to(&events, host, "changed since its switch"),
            "{host} is not blamed: {events:#?}"
        );
    }

    // Now the canary's release and manifest were both changed the same
    // way: its own delta works, and the hosts that borrow its manifest
    // find out, read their own, and still get a delta, unblamed.
    let v2 = f.current("web1").unwrap();
    let crafted = noise(600, 4096);
    std::fs::write(release_dir(&f, "web1", &v2).join(file), &crafted).unwrap();
    claim_in_manifest(&manifests.join(&v2), file, &crafted);
    touch_asset(&f, 3, 600);
    touch_asset(&f, 4, 601);
    let events = f.events(&["deploy", "--yes", "--json"], 0);
    assert_eq!(warnings(&events), Vec::<&serde_json::Value>::new());
    let v3 = f.current("web1").unwrap();
    for host in ["web1", "web2", "web3"] {
        assert!(said_to(&events, host, "delta from"), "{host}: {events:#?}");
        assert_eq!(f.current(host).as_deref(), Some(v3.as_str()));
        assert_eq!(
            tree(&release_dir(&f, host, &v3)),
            tree(&f.path().join("build")),
            "{host} holds exactly the artifact"
        );
    }
    for host in ["web2", "web3"] {
        assert!(said_to(&events, host, "reading its own"), "{events:#?}");
    }
    f.hoist(&["verify"]).assert().success();
}

#[test]
fn a_release_moved_to_another_disk_and_linked_back_is_copied_not_changed() {
    let f = Fleet::ssh(1).toml(ONE_WAVE);
    let f = artifact_with(f, &[("README", "v1")]).write();
    f.hoist(&["deploy", "--yes"]).assert().success();
    let v1 = f.current("web1").unwrap();
    let v1_files = tree(&f.path().join("build"));
    // The operator's move: the release elsewhere, a link in its place.
    let disk = tempfile::tempdir().unwrap();
    let moved = disk.path().join(&v1);
    let status = std::process::Command::new("mv")
        .arg(release_dir(&f, "web1", &v1))
        .arg(&moved)
        .status()
        .unwrap();
    assert!(status.success());
    std::os::unix::fs::symlink(&moved, release_dir(&f, "web1", &v1)).unwrap();

    std::fs::write(f.path().join("build/README"), "v2").unwrap();
    touch_asset(&f, 2, 700);
    let events = f.events(&["deploy", "--yes", "--json"], 0);
    assert!(said_to(&events, "web1", "delta from"), "{events:#?}");
    let v2 = f.current("web1").unwrap();
    let made = release_dir(&f, "web1", &v2);
    assert!(
        !std::fs::symlink_metadata(&made)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the new release is a directory of its own"
    );
    assert_eq!(tree(&made), tree(&f.path().join("build")));
    assert_eq!(tree(&moved), v1_files, "the moved release is untouched");

    f.hoist(&["rollback"]).assert().success();
    assert_eq!(f.current("web1").as_deref(), Some(v1.as_str()));
    assert_eq!(f.read_current("web1", "README"), "v1");
    f.hoist(&["verify"]).assert().success();
}
