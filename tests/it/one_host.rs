//! One host deciding for the fleet, or costing hoist its memory (issue 23,
//! items 4, 5 and 7): a host's files, edited as a compromised host or a
//! careless operator would, on real OpenSSH hosts.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::support::fleet::Fleet;
use crate::support::project::{ndjson, printed, said, said_to, whoami};
use crate::support::sshd::{ClientKey, Sshd, current_user};
use hoist::config::{HostKeyChecking, SshTarget};
use hoist::transport::Transport;
use hoist::transport::ssh::{SshContext, SshContextOptions, SshHost};

/// Runs `script` with `sh -c`, as someone on the host would.
fn on_host(script: &str) {
    let status = Command::new("sh").arg("-c").arg(script).status().unwrap();
    assert!(status.success(), "{script}");
}

fn build(f: &Fleet, version: &str) {
    std::fs::write(f.path().join("build/README"), version).unwrap();
}

fn lb(f: &Fleet) -> String {
    std::fs::read_to_string(f.path().join("lb")).unwrap_or_default()
}

/// web1 and web2 are blue, web3 and web4 green; `switch_local` writes the
/// live colour to `lb`, as a load balancer's configuration would hold it.
fn blue_green() -> Fleet {
    Fleet::ssh(4)
        .toml(
            r#"[groups.blue]
hosts = ["web1", "web2"]

[groups.green]
hosts = ["web3", "web4"]

[strategy]
kind = "blue-green"

[blue_green]
colors = ["blue", "green"]
switch_local = ["printf '%s' \"$HOIST_COLOR\" > lb"]
"#,
        )
        .write()
}

#[test]
fn a_forged_live_colour_on_one_host_stops_the_deploy_until_told_which_is_live() {
    let f = blue_green();
    f.hoist(&["deploy"]).assert().success();
    build(&f, "v2");
    f.hoist(&["deploy"]).assert().success();
    assert_eq!(lb(&f), "green");
    let r1 = f.current("web1").unwrap();
    let r2 = f.current("web3").unwrap();
    let currents = |f: &Fleet| -> Vec<Option<String>> {
        f.host_names().iter().map(|h| f.current(h)).collect()
    };
    let before = currents(&f);

    // web1 (blue, idle) claims blue is live, in a line dated 2099.
    let forged =
        r#"{"ts":"2099-01-01T00:00:00Z","event":"traffic","by":"mallory@web1","color":"blue"}"#;
    let journal = f.deploy_path("web1").join(".hoist/journal");
    let mut text = std::fs::read_to_string(&journal).unwrap();
    text.push_str(forged);
    text.push('\n');
    std::fs::write(&journal, text).unwrap();

    build(&f, "v3");
    for command in ["deploy", "rollback"] {
        let out = f.hoist(&[command]).output().unwrap();
        let text = printed(&out);
        assert_eq!(out.status.code(), Some(2), "{command}: {text}");
        for record in [
            "web1 says blue (2099-01-01T00:00:00Z, dated after now)",
            "web2 says green (",
            "web3 says green (",
            "--live blue or --live green",
        ] {
            assert!(text.contains(record), "{command}: {record}: {text}");
        }
        assert_eq!(lb(&f), "green", "{command}: traffic did not move");
        assert_eq!(currents(&f), before, "{command}: no host was switched");
        assert!(f.host_names().iter().all(|h| !f.locked(h)));
    }
    let status = f.hoist(&["status"]).assert().success().get_output().clone();
    let text = printed(&status);
    assert!(text.contains("the journals disagree"), "{text}");
    f.hoist(&["deploy", "--live", "purple"]).assert().code(2);

    // Told which colour is live: the deploy goes to the other one.
    let events = f.events(&["deploy", "--live", "green", "--json"], 0);
    assert!(said_to(&events, "web1", "dated after now"), "{events:?}");
    assert_eq!(lb(&f), "blue");
    let r3 = f.current("web1").unwrap();
    assert!(r3 > r1 && r3 > r2, "{r3}");
    assert_eq!(f.current("web2").as_deref(), Some(r3.as_str()));
    for host in ["web3", "web4"] {
        assert_eq!(f.current(host).as_deref(), Some(r2.as_str()), "{host}");
    }
    // Every journal says blue again: the next deploy needs no --live.
    build(&f, "v4");
    f.hoist(&["deploy"]).assert().success();
    assert_eq!(lb(&f), "green");
}

/// A release id is `yyyymmddThhmmssZ-` and 8 hex digits.
fn well_formed(id: &str) -> bool {
    let (stamp, hash) = id.split_once('-').unwrap_or_default();
    stamp.len() == 16
        && stamp.as_bytes()[8] == b'T'
        && stamp.ends_with('Z')
        && stamp[..8].bytes().all(|b| b.is_ascii_digit())
        && hash.len() == 8
        && hash.bytes().all(|b| b.is_ascii_hexdigit())
}

#[test]
fn a_release_dated_9999_on_one_host_does_not_date_the_fleets_next_ones() {
    let f = Fleet::ssh(2)
        .toml("[strategy]\ncanary = 0\nbatch = \"100%\"")
        .write();
    let v1 = f.on_v1_then_v2();
    let forged = "99991231T235959Z-deadbeef";
    let release = f.deploy_path("web2").join("releases").join(forged);
    std::fs::create_dir_all(&release).unwrap();
    std::fs::write(release.join("README"), "forged").unwrap();

    let events = f.events(&["deploy", "--json"], 0);
    assert!(said_to(&events, "web2", forged), "{events:?}");
    let v2 = f.current("web1").unwrap();
    let year = chrono::Utc::now().format("%Y").to_string();
    assert!(well_formed(&v2) && v2.starts_with(&year), "{v2}");
    assert!(v2 > v1);
    assert_eq!(f.current("web2").as_deref(), Some(v2.as_str()));

    build(&f, "v3");
    f.hoist(&["deploy"]).assert().success();
    let v3 = f.current("web2").unwrap();
    assert!(well_formed(&v3) && v3 > v2, "{v3}");

    let out = f.hoist(&["status", "--json"]).assert().success();
    let rows = ndjson(&out.get_output().stdout);
    for row in rows.iter().filter(|e| e["event"] == "row") {
        assert_eq!(row["release"], v3.as_str(), "{row}");
    }
    f.hoist(&["rollback"]).assert().success();
    for host in ["web1", "web2"] {
        assert_eq!(f.current(host).as_deref(), Some(v2.as_str()), "{host}");
    }
}

/// Runs hoist with `args` in the project to its end: its exit code, its
/// stdout, its stderr, and the most memory it held (its peak RSS, KiB).
fn measured(f: &Fleet, args: &[&str]) -> (Option<i32>, String, String, u64) {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("hoist"))
        .current_dir(f.path())
        .args(args)
        .env("HOME", f.path().join("home"))
        .env("USER", whoami())
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("HOIST_CONFIG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    // The peak of hoist's own memory (VmHWM, which only grows), read until
    // it exits. Not wait4's ru_maxrss: a child forked from this test
    // process starts with the test's own peak, which other tests raise.
    let status = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0;
    let exit = loop {
        if let Some(kb) = std::fs::read_to_string(&status).ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        }) {
            peak_kb = peak_kb.max(kb);
        }
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    let read = |path| std::fs::read_to_string(path).unwrap();
    (exit.code(), read(&out), read(&err), peak_kb)
}

/// `head -c BYTES` of one repeated character and no newline, into `path`
/// (appended with `>>`).
fn one_long_line(bytes: u64, path: &Path, append: bool) {
    on_host(&format!(
        "head -c {bytes} /dev/zero | tr '\\0' x {} '{}'",
        if append { ">>" } else { ">" },
        path.display()
    ));
}

#[test]
fn a_200_mb_lock_line_and_a_100_mb_journal_line_cost_status_no_memory() {
    let f = Fleet::ssh(3).write();
    f.hoist(&["deploy", "--yes"]).assert().success();
    let lock = f.deploy_path("web1").join(".hoist/lock");
    one_long_line(200_000_000, &lock, false);
    let journal = f.deploy_path("web2").join(".hoist/journal");
    one_long_line(100_000_000, &journal, true);
    on_host(&format!("echo >> '{}'", journal.display()));

    let (code, out, err, rss_kb) = measured(&f, &["status"]);
    let text = format!("{out}{err}");
    eprintln!("status with a 200 MB lock line: max RSS {rss_kb} KiB");
    // web2 fails alone, with why; web1 shows a lock that is not hoist's.
    assert_eq!(code, Some(3), "{text}");
    assert!(
        text.contains("a file whose first line is over 4096 bytes"),
        "{text}"
    );
    assert!(text.contains("has a line over 64 KiB"), "{text}");
    assert!(rss_kb < 100 * 1024, "max RSS {rss_kb} KiB: {text}");
    // A deploy stops at that lock, which only --force removes.
    f.hoist(&["deploy", "-l", "web1"]).assert().code(4);
    f.hoist(&["unlock", "--force", "-l", "web1"])
        .assert()
        .success();
    assert!(!f.locked("web1"));
}

#[test]
fn a_huge_manifest_on_one_host_fails_that_host_alone_and_the_fleet_is_unlocked() {
    let f = Fleet::ssh(2)
        .toml("[strategy]\ncanary = 0\nbatch = \"100%\"\nmax_failures = 1")
        .write();
    // Different content on each host: each reads its own manifest.
    f.hoist(&["deploy", "-l", "web1"]).assert().success();
    build(&f, "v1b");
    f.hoist(&["deploy", "-l", "web2"]).assert().success();
    let old = f.current("web2").unwrap();
    let manifest = f.deploy_path("web2").join(".hoist/manifests").join(&old);
    assert!(manifest.is_file());
    one_long_line(300_000_000, &manifest, false);

    build(&f, "v2");
    let (code, text, err, rss_kb) = measured(&f, &["deploy", "--json"]);
    eprintln!("deploy with a 300 MB manifest line: max RSS {rss_kb} KiB");
    assert_eq!(code, Some(1), "{text}{err}");
    let events = ndjson(text.as_bytes());
    let failed = events
        .iter()
        .find(|e| e["event"] == "host_failed" && e["host"] == "web2")
        .unwrap_or_else(|| panic!("web2 failed: {text}"));
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("the manifest of {old}")),
        "{failed}"
    );
    assert!(error.contains("not read"), "{failed}");
    assert_eq!(f.current("web2").as_deref(), Some(old.as_str()));
    assert_eq!(f.read_current("web1", "README"), "v2");
    assert!(!said(&events, "allocation"));
    for host in ["web1", "web2"] {
        assert!(!f.locked(host), "{host} is not left locked");
    }
}

fn target(sshd: &Sshd, key: &ClientKey, known_hosts: &Path) -> SshTarget {
    SshTarget {
        name: format!("test-{}", sshd.port),
        address: "127.0.0.1".into(),
        port: sshd.port,
        user: current_user(),
        identity_files: vec![key.path.clone()],
        identities_only: false,
        known_hosts: vec![known_hosts.to_path_buf()],
        host_key_checking: HostKeyChecking::Strict,
        host_key: None,
        connect_timeout: Duration::from_secs(10),
        connect_retries: 0,
        keepalive: Duration::from_secs(15),
        jump: vec![],
        sources: vec![],
    }
}

/// In the persistent shell and on a channel of its own (two at once: the
/// second finds the shell busy), a command's output is kept to its last
/// bytes, and what came before is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_host_command_prints_is_kept_to_its_tail() {
    let key = ClientKey::ed25519();
    let sshd = Sshd::start(&[&key]);
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, sshd.known_hosts_line() + "\n").unwrap();
    let context = SshContext::with_options(SshContextOptions {
        interactive: false,
        passphrase: None,
        agent_socket: None,
    });
    let host = Arc::new(
        SshHost::connect(&target(&sshd, &key, &known_hosts), &context)
            .await
            .unwrap(),
    );
    let script = "head -c 3000000 /dev/zero | tr '\\0' o; echo; echo the-end; \
                  head -c 2000000 /dev/zero | tr '\\0' e >&2; echo err-end >&2";
    let keep = 64 * 1024;
    let run = || {
        let host = Arc::clone(&host);
        async move {
            host.exec_keeping(script, None, Duration::from_secs(240), keep)
                .await
                .unwrap()
        }
    };
    let (a, b) = tokio::join!(run(), run());
    for out in [a, b] {
        assert!(out.success());
        assert_eq!(out.stdout.len(), keep);
        assert!(out.stdout.ends_with(b"ooo\nthe-end\n"));
        assert_eq!(out.stderr.len(), keep);
        assert!(out.stderr.ends_with(b"eeeerr-end\n"));
        // The login shell may print a line or two of its own.
        let total = 3_000_000 + 9 + 2_000_000 + 8;
        assert!(out.cut >= total - 2 * keep as u64, "{}", out.cut);
        assert!(out.cut < total, "{}", out.cut);
    }
    host.close().await;
}
