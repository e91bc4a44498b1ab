//! `hoist exec` on hosts whose sshd grants one session per connection
//! (issue 23, item 19): deploy, status and rollback hold one session per
//! host there, and exec must too, its lines still streamed and prefixed by
//! their host and its exit codes those of the command.

use crate::support::fleet::{Fleet, SshSetup};
use crate::support::project::{ndjson, printed};
use crate::support::sshd::SshdOptions;

/// Each host prints its release's README; a host whose release holds a
/// FAIL file says so on stderr and exits 3.
const SHOW: &str = "cat README; echo; if [ -e FAIL ]; then echo broken >&2; exit 3; fi";

fn one_session_each(n: usize) -> Fleet {
    Fleet::ssh_with(
        n,
        SshSetup {
            sshd: SshdOptions {
                max_sessions: Some(1),
                ..SshdOptions::default()
            },
            ..SshSetup::default()
        },
    )
    .write()
}

#[test]
fn exec_runs_on_hosts_that_grant_one_session_and_says_which_failed() {
    let f = one_session_each(3);
    f.hoist(&["deploy", "--yes"]).assert().success();

    let out = f.hoist(&["exec", "--", SHOW]).output().unwrap();
    let text = printed(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for host in ["web1", "web2", "web3"] {
        assert!(text.contains(&format!("{host}  | v1")), "{text}");
    }
    assert!(!text.contains("MaxSessions"), "{text}");

    std::fs::write(f.deploy_path("web2").join("current/FAIL"), "").unwrap();
    let out = f.hoist(&["exec", "--json", "--", SHOW]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", printed(&out));
    let events = ndjson(&out.stdout);
    for host in ["web1", "web2", "web3"] {
        let row = events
            .iter()
            .find(|e| e["event"] == "row" && e["host"] == host)
            .unwrap_or_else(|| panic!("no row for {host}: {}", printed(&out)));
        let code = if host == "web2" { 3 } else { 0 };
        assert_eq!(row["exit_code"], code, "{row}");
        assert!(row["error"].is_null(), "{row}");
        let said: Vec<_> = events
            .iter()
            .filter(|e| e["event"] == "host_output" && e["host"] == host)
            .map(|e| (e["stream"].as_str().unwrap(), e["line"].as_str().unwrap()))
            .collect();
        let mut expected = vec![("stdout", "v1")];
        if host == "web2" {
            expected.push(("stderr", "broken"));
        }
        assert_eq!(said, expected, "{host}");
    }
    let out = f.hoist(&["exec", "--", SHOW]).output().unwrap();
    let text = printed(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("web2  ! broken"), "{text}");
    assert!(
        text.contains("exit 1: the command failed on some hosts"),
        "{text}"
    );
}

#[test]
fn deploy_exec_rollback_in_a_row_on_hosts_that_grant_one_session() {
    let f = one_session_each(2);
    let v1 = f.on_v1_then_v2();
    f.hoist(&["deploy", "--yes"]).assert().success();
    let v2 = f.current("web1").unwrap();
    assert_ne!(v1, v2);

    let out = f.hoist(&["exec", "--", SHOW]).output().unwrap();
    let text = printed(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("web1  | v2") && text.contains("web2  | v2"),
        "{text}"
    );

    let out = f.hoist(&["rollback"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", printed(&out));
    for host in ["web1", "web2"] {
        assert_eq!(f.current(host).as_deref(), Some(v1.as_str()), "{host}");
    }
    let out = f.hoist(&["exec", "--", SHOW]).output().unwrap();
    let text = printed(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("web1  | v1") && text.contains("web2  | v1"),
        "{text}"
    );
}

/// With no second session for a `kill`, Ctrl-C still stops the command:
/// hoist lets go of its channel, and the command's stdin ending stops it.
#[test]
fn ctrl_c_on_exec_kills_the_command_on_hosts_that_grant_one_session() {
    let f = one_session_each(2);
    f.hoist(&["deploy", "--yes"]).assert().success();
    crate::three_am::ctrl_c_on_exec_kills_the_command_and_shows_the_table(f);
}
