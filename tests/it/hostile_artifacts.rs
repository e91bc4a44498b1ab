//! What an artifact holds that a release must not make real: special files
//! (refused before anything is touched), owners (never kept) and setuid or
//! setgid bits (dropped unless `allow_setuid`). The SSH user is root here,
//! as it is on many fleets: the case where tar would keep all of it.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use crate::support::fleet::Fleet;
use crate::support::project::printed;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// One entry of a test archive.
enum Entry {
    File {
        path: &'static str,
        body: String,
        mode: u32,
        uid: u64,
    },
    CharDevice {
        path: &'static str,
    },
}

fn write_tar(path: &Path, entries: &[Entry]) {
    let mut tar = tar::Builder::new(std::fs::File::create(path).unwrap());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        match entry {
            Entry::File {
                path,
                body,
                mode,
                uid,
            } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                header.set_uid(*uid);
                header.set_gid(*uid);
                header.set_size(body.len() as u64);
                header.set_cksum();
                tar.append_data(&mut header, path, body.as_bytes()).unwrap();
            }
            Entry::CharDevice { path } => {
                // Like /dev/mem, and writable by anyone.
                header.set_entry_type(tar::EntryType::Char);
                header.set_mode(0o666);
                header.set_device_major(1).unwrap();
                header.set_device_minor(1).unwrap();
                header.set_size(0);
                header.set_cksum();
                tar.append_data(&mut header, path, std::io::empty())
                    .unwrap();
            }
        }
    }
    tar.finish().unwrap();
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn release_of(content: &str, version: &str) -> Vec<Entry> {
    vec![
        Entry::File {
            path: "README",
            body: format!("{version}\n"),
            mode: 0o644,
            uid: 0,
        },
        Entry::File {
            path: "bin/helper",
            body: format!("#!/bin/sh\necho {content}\n"),
            mode: 0o4755,
            uid: 0,
        },
        Entry::File {
            path: "bin/group-tool",
            body: format!("#!/bin/sh\necho {content} group\n"),
            mode: 0o2755,
            uid: 0,
        },
        Entry::File {
            path: "data/owned",
            body: format!("{content}\n"),
            mode: 0o644,
            uid: 12345,
        },
    ]
}

/// A full upload, then a delta (only changed files sent), then with
/// `allow_setuid`: never a foreign owner, setuid bits only when allowed,
/// and `verify` agrees with what the hosts hold.
fn setuid_bits_and_owners_are_not_kept(f: Fleet) {
    if !is_root() {
        eprintln!("skipped: needs root (owners and setuid bits)");
        return;
    }
    let f = f
        .artifact_table("path = \"app.tar\"")
        .toml("[strategy]\ncanary = 0\nbatch = 2")
        .write();
    let tar = f.path().join("app.tar");
    let check = |f: &Fleet, setuid: bool| {
        for host in f.host_names() {
            let current = f.deploy_path(&host).join("current");
            for path in ["README", "bin/helper", "bin/group-tool", "data/owned"] {
                let meta = std::fs::metadata(current.join(path)).unwrap();
                assert_eq!((meta.uid(), meta.gid()), (0, 0), "{host}: {path}");
            }
            let (helper, group) = if setuid {
                (0o4755, 0o2755)
            } else {
                (0o755, 0o755)
            };
            assert_eq!(mode(&current.join("bin/helper")), helper, "{host}");
            assert_eq!(mode(&current.join("bin/group-tool")), group, "{host}");
        }
        let out = f.hoist(&["verify"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", printed(&out));
    };

    write_tar(&tar, &release_of("one", "v1"));
    let out = f.hoist(&["plan"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", printed(&out));
    let text = printed(&out);
    assert!(text.contains("owners are not kept"), "{text}");
    assert!(
        text.contains("setuid/setgid bits of bin/group-tool, bin/helper are dropped"),
        "{text}"
    );
    let out = f.hoist(&["deploy"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", printed(&out));
    check(&f, false);

    // A delta: the changed files only, applied to what the host holds,
    // which is what the manifest says (else a warning, and a full upload).
    write_tar(&tar, &release_of("two", "v2"));
    let events = f.events(&["deploy", "--json"], 0);
    let warned: Vec<_> = events.iter().filter(|e| e["level"] == "warn").collect();
    assert!(warned.is_empty(), "{warned:?}");
    check(&f, false);

    let f = f
        .artifact_table("path = \"app.tar\"\nallow_setuid = true")
        .write();
    write_tar(&tar, &release_of("three", "v3"));
    let out = f.hoist(&["plan"]).output().unwrap();
    assert!(
        printed(&out).contains("keep their setuid/setgid bits"),
        "{}",
        printed(&out)
    );
    let out = f.hoist(&["deploy"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", printed(&out));
    check(&f, true);
}

#[test]
fn setuid_bits_and_owners_from_the_artifact_are_not_kept_over_ssh() {
    setuid_bits_and_owners_are_not_kept(Fleet::ssh(2));
}

#[test]
fn setuid_bits_and_owners_from_the_artifact_are_not_kept_on_local_hosts() {
    setuid_bits_and_owners_are_not_kept(Fleet::local(2));
}

#[test]
fn a_device_in_an_artifact_tarball_is_refused_before_anything_is_touched() {
    let f = Fleet::ssh(2)
        .artifact_table("path = \"app.tar\"")
        .toml("[strategy]\ncanary = 0\nbatch = 2")
        .write();
    let mut entries = release_of("one", "v1");
    entries.push(Entry::CharDevice { path: "dev/mem" });
    write_tar(&f.path().join("app.tar"), &entries);
    for command in ["plan", "deploy"] {
        let out = f.hoist(&[command]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{command}: {}", printed(&out));
        let text = printed(&out);
        assert!(
            text.contains("holds special files: dev/mem (a character device)"),
            "{command}: {text}"
        );
    }
    for host in f.host_names() {
        assert!(f.untouched(&host), "{host}");
    }
}

/// A FIFO in a directory artifact once hung hoist before it printed
/// anything (reading it to hash it); a character device failed with a
/// packing error. Both are refused at once, naming them.
#[test]
fn special_files_in_a_directory_artifact_are_refused_at_once_with_one_message() {
    let f = Fleet::local(2)
        .toml("[strategy]\ncanary = 0\nbatch = 2")
        .write();
    let build = f.path().join("build");
    let fifo = build.join("run/app.fifo");
    std::fs::create_dir_all(fifo.parent().unwrap()).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let mut special = vec!["run/app.fifo (a FIFO)"];
    if is_root() {
        let made = std::process::Command::new("mknod")
            .args([build.join("mem").to_str().unwrap(), "c", "1", "1"])
            .status()
            .unwrap();
        assert!(made.success());
        special.insert(0, "mem (a character device)");
    }
    for command in ["plan", "deploy"] {
        let out = f
            .hoist(&[command])
            .timeout(Duration::from_secs(30))
            .output()
            .unwrap();
        let text = printed(&out);
        assert_eq!(out.status.code(), Some(2), "{command}: {text}");
        assert!(
            text.contains(&format!("holds special files: {}", special.join(", "))),
            "{command}: {text}"
        );
    }
    for host in f.host_names() {
        assert!(f.untouched(&host), "{host}");
    }
}
