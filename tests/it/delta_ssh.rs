//! Delta uploads, pulls from a URL and `hoist verify`, over real OpenSSH.

use crate::support::archive::{sha256, tar_gz};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::fleet::{FirstOnPath, Fleet};
use crate::support::http::Http;
use crate::support::project::{ndjson, noise, printed, said_to, summary_host};

/// Everything in one wave.
const STRATEGY: &str = "[strategy]\ncanary = 0\nbatch = \"100%\"";

/// Each entry under `dir`: its type, mode, and content or symlink target.
fn entries(dir: &Path) -> BTreeMap<String, (char, u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, (char, u32, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(base)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.insert(rel, ('l', 0, target.to_string_lossy().as_bytes().to_vec()));
            } else if meta.is_dir() {
                out.insert(rel, ('d', mode, Vec::new()));
                walk(base, &path, out);
            } else {
                out.insert(rel, ('f', mode, std::fs::read(&path).unwrap()));
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

fn assert_same_tree(expected: &Path, actual: &Path) {
    let (e, a) = (entries(expected), entries(actual));
    let keys = |m: &BTreeMap<String, _>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&e), keys(&a), "the same paths");
    for (path, want) in &e {
        assert_eq!(Some(want), a.get(path), "{path}: type, mode and content");
    }
}

/// `build/` with `n` files of 4 KiB noise in a few directories.
fn many_files(f: &Fleet, n: usize) {
    let build = f.path().join("build");
    let _ = std::fs::remove_dir_all(&build);
    for i in 0..n {
        let path = build.join(format!("dir{}/file{i:03}", i % 7));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, noise(i as u64, 4096)).unwrap();
    }
}

fn release_dir(f: &Fleet, host: &str, id: &str) -> std::path::PathBuf {
    f.deploy_path(host).join("releases").join(id)
}

/// Deploys with --json; returns the bytes the summary says were sent to `host`.
fn deploy_sent(f: &Fleet, host: &str) -> u64 {
    let events = f.events(&["deploy", "--yes", "--json"], 0);
    let summary = events.last().unwrap();
    let row = summary_host(summary, host);
    let done = events
        .iter()
        .find(|e| e["event"] == "host_done" && e["host"] == host)
        .unwrap();
    assert_eq!(
        done["sent_bytes"], row["sent_bytes"],
        "event and summary agree"
    );
    row["sent_bytes"].as_u64().unwrap()
}

#[test]
fn a_one_file_change_sends_a_few_bytes_and_delta_false_sends_all() {
    let f = Fleet::ssh(1).toml(STRATEGY).write();
    many_files(&f, 200);
    let full = deploy_sent(&f, "web1");
    assert!(
        full > 200 * 4096,
        "the first deploy sends everything: {full}"
    );

    std::fs::write(f.path().join("build/dir3/file010"), noise(9999, 4096)).unwrap();
    let delta = deploy_sent(&f, "web1");
    assert!(
        delta * 100 < full * 3,
        "one changed file of 200 sends under 3% of the whole: {delta} of {full}"
    );
    let current = f.current("web1").unwrap();
    assert_same_tree(&f.path().join("build"), &release_dir(&f, "web1", &current));

    let f = f.artifact_table("path = \"build\"\ndelta = false").write();
    std::fs::write(f.path().join("build/dir4/file011"), noise(4242, 4096)).unwrap();
    let all = deploy_sent(&f, "web1");
    assert!(
        all >= full * 9 / 10,
        "delta = false sends the whole artifact: {all} of {full}"
    );
    let current = f.current("web1").unwrap();
    assert_same_tree(&f.path().join("build"), &release_dir(&f, "web1", &current));
}

/// A `cat` that also writes down each manifest it is asked for, in
/// `manifest-reads` beside itself.
/// A host reads a manifest with `head -c` (bounded: see `Manifest::read_limit`).
const LOGGING_HEAD: &str = r#"#!/bin/sh
for a in "$@"; do
  case $a in */.hoist/manifests/*) printf '%s\n' "$a" >> "${0%/*}/manifest-reads" ;; esac
done
exec /usr/bin/head "$@"
"#;

#[test]
fn after_the_canary_the_hosts_on_its_release_take_its_manifest_instead_of_reading_their_own() {
    let cat = FirstOnPath::new("head", LOGGING_HEAD);
    let f = Fleet::ssh_with(3, cat.setup())
        .toml("[strategy]\ncanary = 1\ncanary_pause = \"0s\"\nbatch = \"100%\"")
        .write();
    many_files(&f, 40);
    f.hoist(&["deploy", "--yes"]).assert().success();
    let reads = cat.dir().join("manifest-reads");
    assert!(!reads.exists(), "a first deploy reads no manifest");

    std::fs::write(f.path().join("build/dir3/file010"), noise(7, 4096)).unwrap();
    let events = f.events(&["deploy", "--yes", "--json"], 0);
    let reads = std::fs::read_to_string(&reads).unwrap();
    assert_eq!(reads.lines().count(), 1, "one read, the canary's: {reads}");
    assert!(
        reads.starts_with(&f.deploy_path("web1").display().to_string()),
        "{reads}"
    );
    let current = f.current("web1").unwrap();
    for host in ["web1", "web2", "web3"] {
        assert!(
            said_to(&events, host, "delta from"),
            "{host} got a delta: {events:#?}"
        );
        assert_eq!(f.current(host).as_deref(), Some(current.as_str()));
        assert_same_tree(&f.path().join("build"), &release_dir(&f, host, &current));
    }
    f.hoist(&["verify"]).assert().success();
}

/// A release from before manifests (here: its manifest deleted) is checked
/// against another host's manifest for the same content, and gets a delta.
#[test]
fn a_release_without_a_manifest_takes_the_canarys_for_the_same_content() {
    let f = Fleet::ssh(2)
        .toml("[strategy]\ncanary = 1\ncanary_pause = \"0s\"\nbatch = \"100%\"")
        .write();
    many_files(&f, 40);
    f.hoist(&["deploy", "--yes"]).assert().success();
    let v1 = f.current("web2").unwrap();
    std::fs::remove_file(f.deploy_path("web2").join(".hoist/manifests").join(&v1)).unwrap();

    std::fs::write(f.path().join("build/dir3/file010"), noise(11, 4096)).unwrap();
    let events = f.events(&["deploy", "--yes", "--json"], 0);
    assert!(
        said_to(&events, "web2", "delta from"),
        "web2 got a delta: {events:#?}"
    );
    let current = f.current("web2").unwrap();
    assert_same_tree(&f.path().join("build"), &release_dir(&f, "web2", &current));
    f.hoist(&["verify"]).assert().success();
}

#[test]
fn delta_carries_a_deleted_file_a_changed_mode_and_a_changed_symlink() {
    let f = Fleet::ssh(1).toml(STRATEGY).write();
    many_files(&f, 40);
    let build = f.path().join("build");
    std::fs::create_dir_all(build.join("bin")).unwrap();
    std::fs::write(build.join("bin/app"), "#!/bin/sh\necho v1\n").unwrap();
    std::fs::set_permissions(
        build.join("bin/app"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(build.join("README"), "v1").unwrap();
    std::os::unix::fs::symlink("bin/app", build.join("run")).unwrap();
    f.hoist(&["deploy", "--yes"]).assert().success();

    std::fs::remove_file(build.join("dir2/file002")).unwrap();
    std::fs::set_permissions(
        build.join("bin/app"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    std::fs::remove_file(build.join("run")).unwrap();
    std::os::unix::fs::symlink("README", build.join("run")).unwrap();
    let out = f
        .hoist(&["deploy", "--yes"])
        .assert()
        .success()
        .get_output()
        .clone();
    assert!(
        printed(&out).contains("delta from"),
        "it went as a delta: {}",
        printed(&out)
    );
    let current = f.current("web1").unwrap();
    assert_same_tree(&build, &release_dir(&f, "web1", &current));
    f.hoist(&["verify"]).assert().success();
}

#[test]
fn a_hand_edited_previous_release_still_yields_an_exact_release() {
    let (f, v1) = a_release_edited_by_hand("dir1/file008");
    std::fs::write(f.path().join("build/dir3/file003"), "the new content").unwrap();

    deploy_past_a_hand_edit(&f, &v1, "dir1/file008");
    f.hoist(&["verify"]).assert().success();
}

/// What a hand edit writes into a release.
const EDITED: &str = "edited by hand";

/// web1 on a first release of 30 files, then `path` in it edited by hand:
/// the fleet and that release.
fn a_release_edited_by_hand(path: &str) -> (Fleet, String) {
    let f = Fleet::ssh(1).toml(STRATEGY).write();
    many_files(&f, 30);
    f.hoist(&["deploy", "--yes"]).assert().success();
    let v1 = f.current("web1").unwrap();
    std::fs::write(release_dir(&f, "web1", &v1).join(path), EDITED).unwrap();
    (f, v1)
}

/// Deploys to web1, whose release `from` has `path` edited by hand: the
/// output names the file and says the whole artifact went, the new release
/// is exactly `build/`, and the edited release is left as it was. Returns
/// the new release.
fn deploy_past_a_hand_edit(f: &Fleet, from: &str, path: &str) -> String {
    let out = f
        .hoist(&["deploy", "--yes"])
        .assert()
        .success()
        .get_output()
        .clone();
    let text = printed(&out);
    assert!(
        text.lines()
            .any(|l| l.contains("web1") && l.contains(path) && l.contains("whole artifact")),
        "says which file was edited and that the whole artifact went: {text}"
    );
    let new = f.current("web1").unwrap();
    assert_ne!(from, new);
    assert_same_tree(&f.path().join("build"), &release_dir(f, "web1", &new));
    let edited = release_dir(f, "web1", from).join(path);
    assert_eq!(std::fs::read_to_string(&edited).unwrap(), EDITED);
    new
}

#[test]
fn verify_is_clean_then_names_what_was_edited_by_hand() {
    let f = Fleet::ssh(2).toml(STRATEGY).write();
    f.hoist(&["deploy", "--yes"]).assert().success();
    let out = f.hoist(&["verify"]).assert().success().get_output().clone();
    assert!(printed(&out).contains("ok"), "{}", printed(&out));

    let current = f.deploy_path("web2").join("current");
    std::fs::write(current.join("README"), "patched on the server").unwrap();
    std::fs::write(current.join("extra.txt"), "left behind").unwrap();
    std::fs::remove_file(current.join("bin/app")).unwrap();
    let out = f.hoist(&["verify"]).assert().code(1).get_output().clone();
    let text = printed(&out);
    for (what, path) in [
        ("changed", "README"),
        ("added", "extra.txt"),
        ("removed", "bin/app"),
    ] {
        assert!(
            text.lines()
                .any(|l| l.contains("web2") && l.contains(what) && l.contains(path)),
            "names {what} {path} on web2: {text}"
        );
    }
    assert!(
        !text
            .lines()
            .any(|l| l.contains("web1") && l.contains("README")),
        "web1 is clean: {text}"
    );

    let events = f.events(&["verify", "--json"], 1);
    let rows: Vec<_> = events.iter().filter(|e| e["table"] == "verify").collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["result"], "ok");
    assert_eq!(rows[1]["result"], "differs");
    assert_eq!(rows[1]["changed"], serde_json::json!(["README"]));
    assert_eq!(rows[1]["added"], serde_json::json!(["extra.txt"]));
    assert_eq!(rows[1]["removed"], serde_json::json!(["bin/app"]));
}

#[test]
fn verify_says_when_a_release_has_no_manifest() {
    let f = Fleet::ssh(1).toml(STRATEGY).write();
    f.hoist(&["deploy", "--yes"]).assert().success();
    let manifests = f.deploy_path("web1").join(".hoist/manifests");
    std::fs::remove_dir_all(&manifests).unwrap();
    let out = f.hoist(&["verify"]).assert().success().get_output().clone();
    assert!(
        printed(&out)
            .lines()
            .any(|l| l.contains("web1") && l.contains("no manifest")),
        "{}",
        printed(&out)
    );
    // Then a deploy sends the whole artifact and records one again.
    let f = f.artifact(&[("README", "v2")]).write();
    let out = f
        .hoist(&["deploy", "--yes"])
        .assert()
        .success()
        .get_output()
        .clone();
    assert!(
        printed(&out).contains("has no manifest"),
        "{}",
        printed(&out)
    );
    assert_eq!(std::fs::read_dir(&manifests).unwrap().count(), 1);
}

#[test]
fn hosts_pull_from_a_url_and_refuse_a_wrong_hash() {
    let good = tar_gz(&[("README", b"pulled"), ("bin/app", b"#!/bin/sh\n")]);
    let http = Http::serve(&[("/app.tar.gz", good.clone())]);
    let url = http.url("/app.tar.gz");
    let f = Fleet::ssh(2)
        .toml(STRATEGY)
        .artifact_table(&format!("url = \"{url}\"\nsha256 = \"{}\"", sha256(&good)))
        .write();
    f.hoist(&["check"]).assert().success();
    assert!(http.requests().contains(&"HEAD /app.tar.gz".to_string()));

    let out = f
        .hoist(&["deploy", "--yes", "--json"])
        .assert()
        .success()
        .get_output()
        .clone();
    for host in ["web1", "web2"] {
        assert_eq!(f.read_current(host, "README"), "pulled");
        let id = f.current(host).unwrap();
        assert!(
            id.ends_with(&sha256(&good)[..8]),
            "the id comes from the sha256: {id}"
        );
    }
    let gets = http
        .requests()
        .iter()
        .filter(|r| r.starts_with("GET"))
        .count();
    assert_eq!(gets, 2, "each host downloaded it");
    let summary = ndjson(&out.stdout).pop().unwrap();
    assert_eq!(
        summary["hosts"][0]["sent_bytes"], 0,
        "no artifact bytes from here"
    );
    f.hoist(&["verify"]).assert().success();
    // The same URL again: a local copy, no download, and still verifiable.
    f.hoist(&["deploy", "--yes"]).assert().success();
    let gets = http
        .requests()
        .iter()
        .filter(|r| r.starts_with("GET"))
        .count();
    assert_eq!(gets, 2, "no second download");
    let out = f.hoist(&["verify"]).assert().success().get_output().clone();
    assert!(!printed(&out).contains("no manifest"), "{}", printed(&out));

    // The same URL now serves other bytes than the sha256 says.
    let evil = tar_gz(&[("README", b"tampered")]);
    let http = Http::serve(&[("/app.tar.gz", evil)]);
    let f = f
        .artifact_table(&format!(
            "url = \"{}\"\nsha256 = \"{}\"",
            http.url("/app.tar.gz"),
            sha256(&tar_gz(&[("README", b"v3")]))
        ))
        .write();
    let before = f.releases("web1");
    let out = f
        .hoist(&["deploy", "--yes", "--json"])
        .assert()
        .code(5)
        .get_output()
        .clone();
    let failed: Vec<_> = ndjson(&out.stdout)
        .into_iter()
        .filter(|e| e["event"] == "host_failed")
        .collect();
    assert!(!failed.is_empty());
    for e in &failed {
        assert_eq!(e["phase"], "upload", "{e}");
        assert!(e["error"].as_str().unwrap().contains("sha256"), "{e}");
    }
    for host in ["web1", "web2"] {
        assert_eq!(f.releases(host), before, "nothing unpacked on {host}");
        assert_eq!(f.read_current(host, "README"), "pulled");
        let tmp = f.deploy_path(host).join(".hoist/tmp");
        assert_eq!(
            std::fs::read_dir(tmp).unwrap().count(),
            0,
            "no leftovers on {host}"
        );
    }
}

#[test]
fn a_host_without_curl_or_wget_fails_preflight_for_a_url() {
    // A local host whose PATH has every tool but curl and wget.
    let bin = tempfile::tempdir().unwrap();
    for dir in ["/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name();
            if name == "curl" || name == "wget" || bin.path().join(&name).exists() {
                continue;
            }
            std::os::unix::fs::symlink(entry.path(), bin.path().join(&name)).unwrap();
        }
    }
    let f = Fleet::local(1)
        .toml(STRATEGY)
        .artifact_table(&format!(
            "url = \"http://127.0.0.1:9/app.tar.gz\"\nsha256 = \"{}\"",
            "a".repeat(64)
        ))
        .write();
    let out = f
        .hoist(&["deploy", "--yes"])
        .env("PATH", bin.path())
        .assert()
        .code(3)
        .get_output()
        .clone();
    assert!(
        printed(&out)
            .lines()
            .any(|l| l.contains("web1") && l.contains("neither curl nor wget")),
        "{}",
        printed(&out)
    );
    assert!(f.releases("web1").is_empty());
}

#[test]
fn an_unreachable_url_is_a_clear_error_in_check_and_deploy() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let url = format!("http://127.0.0.1:{port}/app.tar.gz");
    let f = Fleet::ssh(1)
        .toml(STRATEGY)
        .artifact_table(&format!("url = \"{url}\"\nsha256 = \"{}\"", "a".repeat(64)))
        .write();
    let out = f.hoist(&["check"]).assert().code(3).get_output().clone();
    assert!(
        printed(&out)
            .lines()
            .any(|l| l.contains("web1") && l.contains("cannot reach")),
        "{}",
        printed(&out)
    );
    let out = f
        .hoist(&["deploy", "--yes"])
        .assert()
        .code(5)
        .get_output()
        .clone();
    assert!(
        printed(&out)
            .lines()
            .any(|l| l.contains("web1") && l.contains("downloading") && l.contains(&url)),
        "{}",
        printed(&out)
    );
}

#[test]
fn shared_paths_stay_out_of_manifests_and_deltas() {
    let f = Fleet::ssh(1)
        .toml(STRATEGY)
        .app("shared_dirs = [\"log\", \"tmp/cache\"]")
        .write();
    many_files(&f, 20);
    // The artifact holds something at a shared path; the link replaces it.
    let build = f.path().join("build");
    std::fs::create_dir_all(build.join("log")).unwrap();
    std::fs::write(build.join("log/from-the-build"), "x").unwrap();
    f.hoist(&["deploy", "--yes"]).assert().success();
    f.hoist(&["verify"]).assert().success();

    std::fs::write(build.join("dir1/file001"), "changed").unwrap();
    let out = f
        .hoist(&["deploy", "--yes"])
        .assert()
        .success()
        .get_output()
        .clone();
    let text = printed(&out);
    assert!(text.contains("delta from"), "{text}");
    assert!(!text.contains("whole artifact"), "no fallback: {text}");
    let current = f.deploy_path("web1").join("current");
    assert!(
        std::fs::symlink_metadata(current.join("log"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(
        std::fs::symlink_metadata(current.join("tmp/cache"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        std::fs::read_to_string(current.join("dir1/file001")).unwrap(),
        "changed"
    );
    f.hoist(&["verify"]).assert().success();
}

#[test]
fn a_redeploy_of_the_same_content_does_not_copy_a_hand_edit_along() {
    let (f, v1) = a_release_edited_by_hand("dir2/file009");

    // The same content again: a copy of v1 on the host, unless v1 changed.
    let v2 = deploy_past_a_hand_edit(&f, &v1, "dir2/file009");

    // Untouched, the next one is a copy again: nothing uploaded.
    let events = f.events(&["deploy", "--yes", "--json"], 0);
    assert!(
        !events.iter().any(|e| e["event"] == "upload_progress"),
        "a copy uploads nothing"
    );
    let v3 = f.current("web1").unwrap();
    assert_ne!(v2, v3);
    assert_same_tree(&f.path().join("build"), &release_dir(&f, "web1", &v3));
}
