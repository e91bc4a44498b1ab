//! The 3 am shift (issue 12): evidence kept before a rollback, read back
//! later from any machine, and live output from every host.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::fleet::{Fleet, HEALTH};
use crate::support::project::{follow, ndjson, position, printed, whoami};

#[test]
fn a_canary_failing_health_leaves_its_diagnostics_before_the_rollback() {
    let f = Fleet::ssh(2)
        .toml(&format!(
            "{HEALTH}\n[strategy]\ncanary = 1\ncanary_pause = \"0s\"\n\
             [diagnose]\ncommands = [\"echo \\\"diag $HOIST_HOST $HOIST_RELEASE\\\"\", \"echo disk-full >&2; exit 4\"]"
        ))
        .write();
    let v1 = f.on_v1_then_v2();
    f.mark("web1", "FAIL");
    let out = f.hoist(&["deploy", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", printed(&out));
    let events = ndjson(&out.stdout);
    let v2 = events.last().unwrap()["release"]
        .as_str()
        .unwrap()
        .to_string();

    let at = position(&events, |e| e["event"] == "host_diagnostics");
    let found = &events[at];
    assert_eq!(found["host"], "web1");
    assert_eq!(found["phase"], "health");
    assert_eq!(found["release"], v2.as_str());
    let commands = found["commands"].as_array().unwrap();
    assert_eq!(commands[0]["output"][0], format!("diag web1 {v2}"));
    assert_eq!(commands[0]["exit_code"], 0);
    assert_eq!(commands[1]["output"][0], "disk-full");
    assert_eq!(commands[1]["exit_code"], 4);
    // Evidence first, then the rollback (which restarts what was looked at).
    assert!(at < position(&events, |e| e["event"] == "rollback_started"));
    assert!(at < position(&events, |e| e["event"] == "host_failed"));
    assert_eq!(f.current("web1").as_deref(), Some(v1.as_str()));
    // The failure's display carries the last lines.
    let human = String::from_utf8_lossy(&out.stderr);
    assert!(human.contains("diagnostics, last lines:"), "{human}");
    assert!(human.contains("| disk-full"), "{human}");
    // Whole in the run's log file.
    let log = events.last().unwrap()["log_file"]
        .as_str()
        .unwrap()
        .to_string();
    let log = std::fs::read_to_string(f.path().join(log)).unwrap();
    assert!(
        log.contains("diagnostics after the health failure"),
        "{log}"
    );
    assert!(log.contains(&format!("| diag web1 {v2}")), "{log}");
    // Kept on the host.
    let kept = f.deploy_path("web1").join(".hoist/diagnostics").join(&v2);
    assert!(kept.is_file(), "{}", kept.display());

    // Another machine: a fresh working directory, only the file.
    let elsewhere = tempfile::tempdir().unwrap();
    let status = |extra: &[&str]| {
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("hoist"));
        cmd.current_dir(elsewhere.path())
            .arg("-c")
            .arg(f.path().join("deploy.toml"))
            .args(["status", "--last-failure"])
            .args(extra)
            .env("HOME", elsewhere.path())
            .env("USER", whoami())
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("HOIST_CONFIG")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = status(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", printed(&out));
    let text = printed(&out);
    assert!(
        text.contains("diagnostics after the health failure"),
        "{text}"
    );
    assert!(text.contains(&format!("| diag web1 {v2}")), "{text}");
    assert!(
        text.contains("$ echo disk-full >&2; exit 4  (exit 4)"),
        "{text}"
    );
    let out = status(&["--json"]);
    let events = ndjson(&out.stdout);
    let record = events
        .iter()
        .find(|e| e["event"] == "host_diagnostics")
        .unwrap();
    assert_eq!(record["host"], "web1");
    assert_eq!(record["commands"][1]["output"][0], "disk-full");
}

/// When an NDJSON event was emitted, in ms.
fn ts_ms(event: &serde_json::Value) -> i64 {
    let ts = event["ts"].as_str().unwrap();
    chrono::DateTime::parse_from_rfc3339(ts)
        .unwrap()
        .timestamp_millis()
}

fn output_lines<'a>(
    events: &'a [serde_json::Value],
    host: &'a str,
) -> impl Iterator<Item = (usize, &'a serde_json::Value)> + 'a {
    events
        .iter()
        .enumerate()
        .filter(move |(_, e)| e["event"] == "host_output" && e["host"] == host)
}

const LOOP: &str = "for i in 1 2 3 4 5; do echo \"line $i\"; sleep 1; done";

#[test]
fn exec_streams_each_line_as_it_comes_prefixed_by_its_host() {
    let f = Fleet::ssh(2).write();
    let out = f.hoist(&["exec", "--json", "--", LOOP]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", printed(&out));
    let events = ndjson(&out.stdout);
    let first_row = position(&events, |e| e["event"] == "row");
    for host in ["web1", "web2"] {
        let lines: Vec<_> = output_lines(&events, host).collect();
        let texts: Vec<&str> = lines
            .iter()
            .map(|(_, e)| e["line"].as_str().unwrap())
            .collect();
        assert_eq!(
            texts,
            ["line 1", "line 2", "line 3", "line 4", "line 5"],
            "{host}"
        );
        // The loop takes 4 s between its first and last line: streamed, the
        // first is reported seconds before the last, not with it at the end.
        let (first, last) = (lines[0].1, lines[4].1);
        assert!(
            ts_ms(last) - ts_ms(first) >= 2000,
            "{host}: line 1 at {}, line 5 at {}",
            first["ts"],
            last["ts"]
        );
        assert!(lines[4].0 < first_row, "output comes before the table");
    }
    // Plain lines, each prefixed by its host.
    let out = f
        .hoist(&["exec", "--", "echo one; echo two >&2"])
        .output()
        .unwrap();
    let text = printed(&out);
    for host in ["web1", "web2"] {
        assert!(text.contains(&format!("{host}  | one")), "{text}");
        assert!(text.contains(&format!("{host}  ! two")), "{text}");
    }
}

#[test]
fn exec_on_more_hosts_than_run_at_once_says_how_to_reach_them_all() {
    let f = Fleet::ssh(3).write();
    let out = f
        .hoist(&["exec", "--parallel", "2", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", printed(&out));
    let text = printed(&out);
    assert!(text.contains("3 hosts, at most 2 at once"), "{text}");
    assert!(text.contains("--parallel 3"), "{text}");
    let out = f
        .hoist(&["exec", "--parallel", "3", "--", "true"])
        .output()
        .unwrap();
    assert!(!printed(&out).contains("at once"), "{}", printed(&out));
}

#[test]
fn exec_group_output_keeps_each_hosts_output_together() {
    let f = Fleet::ssh(2).write();
    let out = f
        .hoist(&[
            "exec",
            "--json",
            "--group-output",
            "--",
            "echo a; sleep 0.3; echo b",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", printed(&out));
    let events = ndjson(&out.stdout);
    let order: Vec<String> = events
        .iter()
        .filter(|e| e["event"] == "host_output")
        .map(|e| {
            format!(
                "{} {}",
                e["host"].as_str().unwrap(),
                e["line"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(order, ["web1 a", "web1 b", "web2 a", "web2 b"]);
}

/// Processes running (not zombies) whose command line is `wanted`.
fn running(wanted: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let dir = entry.path();
        let Ok(cmdline) = std::fs::read(dir.join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let zombie = std::fs::read_to_string(dir.join("stat"))
            .is_ok_and(|s| s.rsplit(") ").next().unwrap_or("").starts_with('Z'));
        if cmdline.trim_end() == wanted && !zombie {
            found.push(format!("{}: {cmdline}", dir.display()));
        }
    }
    found
}

#[test]
fn ctrl_c_on_exec_kills_the_command_on_every_host_and_shows_the_table() {
    ctrl_c_on_exec_kills_the_command_and_shows_the_table(Fleet::ssh(2).write());
}

/// hoist killed (no Ctrl-C, no goodbye) while its hosts run a command:
/// sshd ends the channels, and the end of the command's stdin stops it.
#[test]
fn killing_hoist_mid_exec_leaves_nothing_running_on_the_hosts() {
    use std::io::BufRead;
    let f = Fleet::ssh(2).write();
    let naptime = format!("100.{}9", std::process::id());
    let command = format!("echo started; sleep {naptime}");
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("hoist"))
        .current_dir(f.path())
        .args(["exec", "--json", "--", &command])
        .env("HOME", f.path().join("home"))
        .env("USER", whoami())
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let started = stdout
        .lines()
        .map(Result::unwrap)
        .filter(|l| l.contains("\"host_output\"") && l.contains("started"))
        .take(2)
        .count();
    assert_eq!(started, 2, "both hosts started");
    let sleeping = || running(&format!("sleep {naptime}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sleeping().len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(sleeping().len(), 2, "one sleep per host");
    child.kill().unwrap();
    child.wait().unwrap();
    // sshd sees the connection close at once; its sessions end within moments.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !sleeping().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(sleeping(), Vec::<String>::new(), "left running");
}

/// Ctrl-C while `f`'s two hosts run a `sleep`: exit 130, a row per host,
/// and no `sleep` left running.
pub(crate) fn ctrl_c_on_exec_kills_the_command_and_shows_the_table(f: Fleet) {
    // A duration no other test uses, to find exactly these processes.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let naptime = format!("100.{}{call}", std::process::id());
    let command = format!("echo started; sleep {naptime}");
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("hoist"))
        .current_dir(f.path())
        .args(["exec", "--json", "--", &command])
        .env("HOME", f.path().join("home"))
        .env("USER", whoami())
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let mut started = 0;
    let events = follow(&mut child, |line| {
        if line.contains("\"host_output\"") && line.contains("started") {
            started += 1;
            if started == 2 {
                // `sleep` starts right after the echo.
                let sleeping = || running(&format!("sleep {naptime}")).len();
                for _ in 0..100 {
                    if sleeping() == 2 {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                assert_eq!(sleeping(), 2, "one sleep per host");
                Command::new("kill").args(["-INT", &pid]).status().unwrap();
            }
        }
    });
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let rows: Vec<_> = events.iter().filter(|e| e["event"] == "row").collect();
    assert_eq!(rows.len(), 2, "the per-host table: {events:#?}");
    for row in rows {
        assert_eq!(row["error"], "interrupted", "{row}");
    }
    let noise = events
        .iter()
        .any(|e| e["event"] == "host_output" && e["line"] == "Terminated");
    assert!(
        !noise,
        "a stopped command is not followed by its shell's note"
    );
    let left = running(&format!("sleep {naptime}"));
    assert!(left.is_empty(), "still running after hoist ended: {left:?}");
}
