//! The scripts run here as on a host: `sh -c` under dash and, when
//! installed, busybox (its shell and its tools only), in temporary dirs.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use super::*;
use crate::host_shells::{Ran, Shell, shells};
use crate::manifest::Manifest;

const FROM: &str = "20260101T000000Z-aaaaaaaa";
const TO: &str = "20260102T000000Z-bbbbbbbb";
const TOKEN: &str = "0123456789ab";

fn id(s: &str) -> ReleaseId {
    ReleaseId::parse(s).unwrap()
}

fn mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Names shell tools like to misread, and every entry type.
fn awkward_tree(root: &Path) {
    let name = |s: &[u8]| root.join(std::ffi::OsStr::from_bytes(s));
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::write(root.join("bin/app"), "#!/bin/sh\necho hi\n").unwrap();
    mode(&root.join("bin/app"), 0o755);
    fs::write(root.join("README"), "hello").unwrap();
    fs::write(root.join("empty"), "").unwrap();
    fs::write(root.join("secret"), "s").unwrap();
    mode(&root.join("secret"), 0o600);
    fs::create_dir_all(root.join("private dir/deeper")).unwrap();
    mode(&root.join("private dir"), 0o700);
    // Modes with the set-id and sticky bits.
    fs::write(root.join("setuid"), "u").unwrap();
    mode(&root.join("setuid"), 0o4755);
    fs::create_dir_all(root.join("sticky")).unwrap();
    mode(&root.join("sticky"), 0o1777);
    fs::create_dir_all(root.join("setgid")).unwrap();
    mode(&root.join("setgid"), 0o2750);
    for weird in [
        &b"tab\there"[..],
        b"new\nline",
        b"back\\slash",
        b"-rf",
        b"$(touch pwned)",
        b"glob*?[x",
        b"?",
        b"\xff\xfe latin",
        b"trailing newline\n",
        b"it's \"quoted\"",
        b"//hashes",
    ] {
        fs::write(name(weird), weird).unwrap();
    }
    fs::write(name(b"private dir/deeper/a\\b\nc"), "deep").unwrap();
    std::os::unix::fs::symlink("bin/app", root.join("run")).unwrap();
    std::os::unix::fs::symlink("nowhere\tat all\n", root.join("dangling")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", root.join("zero")).unwrap();
    let made = Command::new("mkfifo")
        .arg(root.join("fifo"))
        .status()
        .unwrap();
    assert!(made.success());
}

fn listing(shell: &Shell, dir: &Path) -> Ran {
    let script = format!(
        "{}\nhoist_manifest {}",
        manifest_fns(),
        q(dir.to_str().unwrap())
    );
    shell.run(dir.parent().unwrap(), &script, b"")
}

#[test]
fn a_host_lists_a_release_exactly_as_hoist_does() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("release");
    awkward_tree(&root);
    let expected = Manifest::of_dir(&root).unwrap();
    assert!(expected.entries.len() > 20);
    for shell in shells() {
        let ran = listing(&shell, &root);
        assert_eq!(ran.code, 0, "{}: {}", shell.name, ran.stderr);
        assert_eq!(
            String::from_utf8_lossy(&ran.stdout),
            String::from_utf8_lossy(&expected.encode()),
            "{}",
            shell.name
        );
        assert_eq!(ran.stdout, expected.encode(), "{}", shell.name);
        assert!(!base.path().join("pwned").exists(), "{}", shell.name);
    }
}

fn unpack(tgz: &[u8], into: &Path) {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tgz));
    archive.set_preserve_permissions(true);
    archive.unpack(into).unwrap();
}

/// A host with release FROM (made from `old`, with its manifest) current.
fn host_with(old: &Path) -> (tempfile::TempDir, Layout) {
    let base = tempfile::tempdir().unwrap();
    let deploy_to = base.path().join("app");
    let release = deploy_to.join("releases").join(FROM);
    fs::create_dir_all(deploy_to.join(".hoist/manifests")).unwrap();
    fs::create_dir_all(deploy_to.join("releases")).unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(old)
        .arg(&release)
        .status()
        .unwrap();
    assert!(status.success());
    fs::write(
        deploy_to.join(".hoist/manifests").join(FROM),
        Manifest::of_dir(old).unwrap().encode(),
    )
    .unwrap();
    (base, Layout::new(deploy_to.to_str().unwrap()))
}

fn delta_script(layout: &Layout, new: &Manifest) -> String {
    layout.receive_delta(&id(FROM), &id(TO), TOKEN, &new.sha256(), "c0ffee")
}

#[test]
fn a_delta_turns_a_copy_of_the_current_release_into_the_new_one() {
    let work = tempfile::tempdir().unwrap();
    let old = work.path().join("old");
    awkward_tree(&old);
    fs::remove_file(old.join("fifo")).unwrap();
    let new = work.path().join("new");
    Command::new("cp")
        .arg("-a")
        .arg(&old)
        .arg(&new)
        .status()
        .unwrap();
    // One of each change: content, mode, type, symlink target, removal,
    // a file where a directory was, and a new directory.
    fs::write(new.join("README"), "hello again").unwrap();
    mode(&new.join("secret"), 0o640);
    fs::remove_file(new.join("run")).unwrap();
    std::os::unix::fs::symlink("README", new.join("run")).unwrap();
    fs::remove_file(new.join("empty")).unwrap();
    fs::create_dir(new.join("empty")).unwrap();
    fs::write(new.join("empty/now full"), "x").unwrap();
    fs::remove_file(new.join("-rf")).unwrap();
    fs::remove_dir_all(new.join("private dir")).unwrap();
    fs::write(new.join("private dir"), "a file now").unwrap();
    mode(&new.join("bin"), 0o750);
    let old_m = Manifest::of_dir(&old).unwrap();
    let new_m = Manifest::of_dir(&new).unwrap();
    let delta = crate::delta::build(&new, &new_m, &old_m, &[], &Default::default())
        .unwrap()
        .unwrap();
    assert_eq!(delta.gone, 3, "{delta:?}");

    for shell in shells() {
        let at = shell.name;
        let (base, layout) = host_with(&old);
        let ran = shell.run(base.path(), &delta_script(&layout, &new_m), &delta.bytes);
        assert_eq!(ran.code, 0, "{at}: {}", ran.stderr);
        let made = Path::new(&layout.deploy_to).join("releases").join(TO);
        assert_eq!(Manifest::of_dir(&made).unwrap(), new_m, "{at}");
        let recorded = fs::read(
            Path::new(&layout.deploy_to)
                .join(".hoist/manifests")
                .join(TO),
        );
        assert_eq!(recorded.unwrap(), new_m.encode(), "{at}");
        // The release it was made from is untouched.
        let from = Path::new(&layout.deploy_to).join("releases").join(FROM);
        assert_eq!(Manifest::of_dir(&from).unwrap(), old_m, "{at}");
        let tmp = Path::new(&layout.deploy_to).join(".hoist/tmp");
        assert_eq!(fs::read_dir(tmp).unwrap().count(), 0, "{at}");
    }
}

#[test]
fn a_hand_edited_current_release_fails_the_delta_with_the_listing() {
    let work = tempfile::tempdir().unwrap();
    let old = work.path().join("old");
    awkward_tree(&old);
    let new = work.path().join("new");
    Command::new("cp")
        .arg("-a")
        .arg(&old)
        .arg(&new)
        .status()
        .unwrap();
    fs::write(new.join("README"), "v2").unwrap();
    let old_m = Manifest::of_dir(&old).unwrap();
    let new_m = Manifest::of_dir(&new).unwrap();
    let delta = crate::delta::build(&new, &new_m, &old_m, &[], &Default::default())
        .unwrap()
        .unwrap();
    for shell in shells() {
        let at = shell.name;
        let (base, layout) = host_with(&old);
        let from = Path::new(&layout.deploy_to).join("releases").join(FROM);
        fs::write(from.join("bin/app"), "edited by hand").unwrap();
        let ran = shell.run(base.path(), &delta_script(&layout, &new_m), &delta.bytes);
        assert_eq!(
            ran.code,
            ReleaseStep::Mismatch.code(),
            "{at}: {}",
            ran.stderr
        );
        let listed = Manifest::parse(&ran.stdout).unwrap();
        assert_eq!(
            listed.diff_from(&new_m).changed,
            vec![b"bin/app".to_vec()],
            "{at}"
        );
        assert!(
            !Path::new(&layout.deploy_to)
                .join("releases")
                .join(TO)
                .exists()
        );

        // A directory replaced by a symlink to elsewhere: nothing is written through it.
        let (base, layout) = host_with(&old);
        let from = Path::new(&layout.deploy_to).join("releases").join(FROM);
        let elsewhere = base.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        fs::write(new.join("bin/added"), "x").unwrap();
        mode(&new.join("bin/added"), 0o644);
        let new2 = Manifest::of_dir(&new).unwrap();
        let delta2 = crate::delta::build(&new, &new2, &old_m, &[], &Default::default())
            .unwrap()
            .unwrap();
        fs::remove_dir_all(from.join("bin")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, from.join("bin")).unwrap();
        let ran = shell.run(base.path(), &delta_script(&layout, &new2), &delta2.bytes);
        assert_eq!(
            ran.code,
            ReleaseStep::Mismatch.code(),
            "{at}: {}",
            ran.stderr
        );
        assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0, "{at}");
        fs::remove_file(new.join("bin/added")).unwrap();
    }
}

/// A `tar` that refuses `--no-recursion`, as busybox's may: the host then
/// copies with `cp -a` and deletes what the new release does not list.
const NO_LIST_TAR: &str =
    "tar() { case $1 in --no-recursion) return 1 ;; esac; command tar \"$@\"; }\n";

/// The two ways a host copies the release a delta starts from.
const COPIES: [(&str, &str); 2] = [("tar by the list", ""), ("cp -a", NO_LIST_TAR)];

fn copy_of(old: &Path, to: &Path) {
    let status = Command::new("cp").arg("-a").arg(old).arg(to).status();
    assert!(status.unwrap().success());
}

/// The awkward tree without its fifo, and a copy of it with a new README.
fn old_and_new(work: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let old = work.join("old");
    awkward_tree(&old);
    fs::remove_file(old.join("fifo")).unwrap();
    let new = work.join("new");
    copy_of(&old, &new);
    fs::write(new.join("README"), "hello again").unwrap();
    (old, new)
}

#[test]
fn a_delta_leaves_behind_what_the_app_wrote_into_the_old_release() {
    let work = tempfile::tempdir().unwrap();
    let (old, new) = old_and_new(work.path());
    let (old_m, new_m) = (
        Manifest::of_dir(&old).unwrap(),
        Manifest::of_dir(&new).unwrap(),
    );
    let delta = crate::delta::build(&new, &new_m, &old_m, &[], &Default::default())
        .unwrap()
        .unwrap();
    for shell in shells() {
        for (how, prelude) in COPIES {
            let at = format!("{}, {how}", shell.name);
            let (base, layout) = host_with(&old);
            let from = Path::new(&layout.deploy_to).join("releases").join(FROM);
            fs::create_dir_all(from.join("__pycache__")).unwrap();
            fs::write(from.join("__pycache__/app.pyc"), "bytecode").unwrap();
            fs::create_dir_all(from.join("bin/__pycache__")).unwrap();
            fs::write(from.join("bin/__pycache__/x.pyc"), "x").unwrap();
            fs::write(from.join("private dir/deeper/cache\nfile"), "c").unwrap();
            let before = Manifest::of_dir(&from).unwrap();
            let script = format!("{prelude}{}", delta_script(&layout, &new_m));
            let ran = shell.run(base.path(), &script, &delta.bytes);
            assert_eq!(ran.code, 0, "{at}: {}", ran.stderr);
            let made = Path::new(&layout.deploy_to).join("releases").join(TO);
            assert_eq!(Manifest::of_dir(&made).unwrap(), new_m, "{at}");
            assert_eq!(Manifest::of_dir(&from).unwrap(), before, "{at}");
        }
    }
}

#[test]
fn what_ignore_covers_is_sent_afresh_instead_of_copied() {
    let work = tempfile::tempdir().unwrap();
    let (old, new) = old_and_new(work.path());
    for dir in [&old, &new] {
        fs::create_dir_all(dir.join("tmp/cache")).unwrap();
        fs::write(dir.join("tmp/cache/seed"), "cold").unwrap();
    }
    let (old_m, new_m) = (
        Manifest::of_dir(&old).unwrap(),
        Manifest::of_dir(&new).unwrap(),
    );
    let ignore = crate::ignore::Ignore::new(&["tmp/cache/**".to_string()]).unwrap();
    for (ignore, code) in [
        (Default::default(), ReleaseStep::Mismatch.code()),
        (ignore, 0),
    ] {
        let delta = crate::delta::build(&new, &new_m, &old_m, &[], &ignore)
            .unwrap()
            .unwrap();
        for shell in shells() {
            for (how, prelude) in COPIES {
                let at = format!("{}, {how}, {code}", shell.name);
                let (base, layout) = host_with(&old);
                let from = Path::new(&layout.deploy_to).join("releases").join(FROM);
                fs::write(from.join("tmp/cache/seed"), "warm").unwrap();
                let script = format!("{prelude}{}", delta_script(&layout, &new_m));
                let ran = shell.run(base.path(), &script, &delta.bytes);
                assert_eq!(ran.code, code, "{at}: {}", ran.stderr);
                if code == 0 {
                    let made = Path::new(&layout.deploy_to).join("releases").join(TO);
                    assert_eq!(Manifest::of_dir(&made).unwrap(), new_m, "{at}");
                    assert_eq!(fs::read(from.join("tmp/cache/seed")).unwrap(), b"warm");
                }
            }
        }
    }
}

#[test]
fn a_release_that_is_a_link_to_elsewhere_is_copied_through_never_changed() {
    let work = tempfile::tempdir().unwrap();
    let (old, new) = old_and_new(work.path());
    let (old_m, new_m) = (
        Manifest::of_dir(&old).unwrap(),
        Manifest::of_dir(&new).unwrap(),
    );
    let delta = crate::delta::build(&new, &new_m, &old_m, &[], &Default::default())
        .unwrap()
        .unwrap();
    let is_link = |p: &Path| fs::symlink_metadata(p).unwrap().file_type().is_symlink();
    for shell in shells() {
        for (how, prelude) in COPIES {
            let at = format!("{}, {how}", shell.name);
            let (base, layout) = host_with(&old);
            let releases = Path::new(&layout.deploy_to).join("releases");
            let moved = base.path().join("other disk");
            fs::rename(releases.join(FROM), &moved).unwrap();
            std::os::unix::fs::symlink(&moved, releases.join(FROM)).unwrap();
            let script = format!("{prelude}{}", delta_script(&layout, &new_m));
            let ran = shell.run(base.path(), &script, &delta.bytes);
            assert_eq!(ran.code, 0, "{at}: {}", ran.stderr);
            assert!(!is_link(&releases.join(TO)), "{at}");
            assert_eq!(Manifest::of_dir(&releases.join(TO)).unwrap(), new_m, "{at}");
            assert_eq!(Manifest::of_dir(&moved).unwrap(), old_m, "{at}");
        }
        // A copy of the same content, with no manifest to check it by.
        let (base, layout) = host_with(&old);
        let releases = Path::new(&layout.deploy_to).join("releases");
        let moved = base.path().join("other disk");
        fs::rename(releases.join(FROM), &moved).unwrap();
        std::os::unix::fs::symlink(&moved, releases.join(FROM)).unwrap();
        fs::create_dir_all(Path::new(&layout.deploy_to).join(".hoist/tmp")).unwrap();
        fs::create_dir_all(Path::new(&layout.deploy_to).join(".hoist/sums")).unwrap();
        let script = layout.copy_release(&id(FROM), &id(TO), TOKEN, "c0ffee");
        let ran = shell.run(base.path(), &script, b"");
        assert_eq!(ran.code, 0, "{}: {}", shell.name, ran.stderr);
        assert!(!is_link(&releases.join(TO)), "{}", shell.name);
        assert_eq!(Manifest::of_dir(&releases.join(TO)).unwrap(), old_m);
    }
}

#[test]
fn verify_listing_reads_the_recorded_manifest_and_the_release() {
    let work = tempfile::tempdir().unwrap();
    let old = work.path().join("old");
    awkward_tree(&old);
    for shell in shells() {
        let (base, layout) = host_with(&old);
        let ran = shell.run(base.path(), &layout.verify_listing(&id(FROM)), b"");
        assert_eq!(ran.code, 0, "{}: {}", shell.name, ran.stderr);
        let listing = Listing::parse(&ran.stdout).unwrap();
        assert_eq!(
            listing.recorded,
            Some(listing.actual.clone()),
            "{}",
            shell.name
        );
        fs::remove_file(
            Path::new(&layout.deploy_to)
                .join(".hoist/manifests")
                .join(FROM),
        )
        .unwrap();
        let ran = shell.run(base.path(), &layout.verify_listing(&id(FROM)), b"");
        let listing = Listing::parse(&ran.stdout).unwrap();
        assert_eq!(listing.recorded, None, "{}", shell.name);
        assert_eq!(
            Manifest::parse(&listing.actual).unwrap(),
            Manifest::of_dir(&old).unwrap()
        );
    }
}

#[test]
fn a_unpacked_tarball_matches_its_manifest() {
    // What a full upload records is what the host then holds.
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    awkward_tree(&src);
    fs::remove_file(src.join("fifo")).unwrap();
    let spec = crate::config::ArtifactSpec {
        path: src.clone(),
        pull: None,
        version: None,
        delta: true,
        shared: Vec::new(),
        // The tarball keeps the bits; a host drops them (see `tame_fn`).
        allow_setuid: true,
        ignore: Vec::new(),
    };
    let art = crate::artifact::Artifact::prepare(&spec).unwrap();
    let out = work.path().join("out");
    fs::create_dir(&out).unwrap();
    unpack(&fs::read(art.upload_path()).unwrap(), &out);
    assert_eq!(Some(Manifest::of_dir(&out).unwrap()), art.manifest);
}

#[test]
fn the_hash_tool_is_openssl_only_where_it_prints_what_is_expected() {
    let picked = |path: &str| {
        let out = Command::new("sh")
            .args(["-c", &format!("{PICK_SHA}\nprintf %s \"$HOIST_SHA\"")])
            .env("PATH", path)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let system = std::env::var("PATH").unwrap();
    let has_openssl = Command::new("sh")
        .args(["-c", "command -v openssl"])
        .output()
        .unwrap()
        .status
        .success();
    if has_openssl {
        assert_eq!(picked(&system), "openssl dgst -sha256 -r");
    }
    // An openssl that prints its default format (or anything else) is not taken.
    let bin = tempfile::tempdir().unwrap();
    let fake = bin.path().join("openssl");
    fs::write(
        &fake,
        "#!/bin/sh\necho 'SHA2-256(stdin)= e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'\n",
    )
    .unwrap();
    mode(&fake, 0o755);
    let path = format!("{}:{system}", bin.path().display());
    assert_eq!(picked(&path), "sha256sum");
}

/// The relayed receive of a delta, passing it on to one reader that copies
/// it to `copy`: with the delta's own sha256 it makes the release as
/// `receive_delta` does; with another it uses nothing of it; either way
/// the reader gets every byte, and nothing is left in `.hoist/tmp`.
#[test]
fn a_relayed_delta_is_passed_on_and_used_only_when_its_hash_matches() {
    let work = tempfile::tempdir().unwrap();
    let (old, new) = old_and_new(work.path());
    fs::write(new.join("README"), "relayed").unwrap();
    let old_m = Manifest::of_dir(&old).unwrap();
    let new_m = Manifest::of_dir(&new).unwrap();
    let delta = crate::delta::build(&new, &new_m, &old_m, &[], &Default::default())
        .unwrap()
        .unwrap();
    let sha = {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(&delta.bytes[..]))
    };
    for shell in shells() {
        for (good, want) in [(true, 0), (false, ReceiveStep::Checksum.code())] {
            let at = format!(
                "{} (hash {})",
                shell.name,
                if good { "matches" } else { "differs" }
            );
            let (base, layout) = host_with(&old);
            let copy = base.path().join("copy");
            let setup = format!(
                "mkfifo \"$P.c0\" || exit 3\n{{ cat > {}; }} < \"$P.c0\" &\nK=\"$K $!\"\n",
                q(copy.to_str().unwrap())
            );
            let relayed = DeltaHop {
                sha: if good { &sha } else { "0bad" },
                fan: (&setup, " \"$P.c0\""),
            };
            let script = layout.receive_delta_fanning(
                &id(FROM),
                &id(TO),
                TOKEN,
                &new_m.sha256(),
                "c0ffee",
                Some(relayed),
            );
            let ran = shell.run(base.path(), &script, &delta.bytes);
            assert_eq!(ran.code, want, "{at}: {}", ran.stderr);
            assert_eq!(
                fs::read(&copy).unwrap(),
                delta.bytes.to_vec(),
                "{at}: passed on whole"
            );
            let made = Path::new(&layout.deploy_to).join("releases").join(TO);
            if good {
                assert_eq!(Manifest::of_dir(&made).unwrap(), new_m, "{at}");
            } else {
                assert!(!made.exists(), "{at}");
                assert!(
                    ran.stderr.contains("checksum mismatch"),
                    "{at}: {}",
                    ran.stderr
                );
            }
            let tmp = Path::new(&layout.deploy_to).join(".hoist/tmp");
            assert_eq!(fs::read_dir(tmp).unwrap().count(), 0, "{at}");
        }
    }
}
