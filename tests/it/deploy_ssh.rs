//! The first whole path over real OpenSSH: deploy, redeploy, rollback, and
//! the safety of host keys and authentication.

use crate::support::fleet::{Fleet, SshSetup};
use crate::support::project::{Project, printed};
use crate::support::sshd::{ClientKey, Sshd};

/// A canary, then the rest in halves.
const STRATEGY: &str = "[strategy]\ncanary = 1\ncanary_pause = \"0s\"\nbatch = \"50%\"";

/// `n` real sshd hosts named web1..webN, all trusting the fleet's key.
fn fleet(n: usize) -> Fleet {
    Fleet::ssh(n).toml(STRATEGY).write()
}

#[test]
fn changed_host_key_on_one_host_refuses_the_whole_deploy() {
    let f = fleet(3);
    // web2's known key is some other server's.
    let impostor = Sshd::start(&[f.key()]);
    let mut lines: Vec<String> = f.servers().iter().map(|h| h.known_hosts_line()).collect();
    // (This once rewrote ":PORT]", which a "[127.0.0.1]:PORT" line never
    // holds, so web2 was merely unknown and the test passed on that.)
    lines[1] = format!(
        "[127.0.0.1]:{} {}",
        f.server("web2").port,
        impostor.host_public_key()
    );
    std::fs::write(f.known_hosts(), lines.join("\n") + "\n").unwrap();

    let out = f.hoist(&["deploy"]).assert().code(3).get_output().clone();
    let stderr = printed(&out);
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("web2") && l.contains("does not match")),
        "a line names web2 and the mismatch: {stderr}"
    );
    assert!(
        stderr.contains(&f.server("web2").host_key_fingerprint()),
        "names the offered key: {stderr}"
    );
    for host in f.host_names() {
        assert!(f.untouched(&host), "nothing written on {host}");
    }
}

#[test]
fn unknown_host_is_refused_under_strict_and_learned_under_accept_new() {
    let f = fleet(1);
    std::fs::write(f.known_hosts(), "").unwrap();
    let out = f.hoist(&["deploy"]).assert().code(3).get_output().clone();
    assert!(
        printed(&out)
            .lines()
            .any(|l| l.contains("web1") && l.contains("unknown")),
        "a line says web1's host key is unknown: {}",
        printed(&out)
    );
    assert!(f.untouched("web1"));

    let f = f.ssh_settings("host_key_checking = \"accept-new\"").write();
    f.hoist(&["deploy"]).assert().success();
    let known = std::fs::read_to_string(f.known_hosts()).unwrap();
    assert_eq!(known.lines().count(), 1);
    // Learned once, it is now checked strictly.
    let f = f.ssh_settings("").write();
    f.hoist(&["status"]).assert().success();
}

#[test]
fn accept_new_with_many_hosts_at_once_leaves_a_valid_known_hosts() {
    let f = Fleet::ssh(12)
        .toml(STRATEGY)
        .ssh_settings("host_key_checking = \"accept-new\"")
        .write();
    std::fs::write(f.known_hosts(), "").unwrap();
    f.hoist(&["check"]).assert().success();
    let known = std::fs::read_to_string(f.known_hosts()).unwrap();
    assert_eq!(known.lines().count(), 12, "{known}");
    for h in f.servers() {
        assert!(known.contains(&format!("[127.0.0.1]:{} ", h.port)));
    }
    let f = f.ssh_settings("").write();
    f.hoist(&["check"]).assert().success();
}

#[test]
fn encrypted_key_with_passphrase_from_the_environment() {
    let f = Fleet::ssh_with(
        1,
        SshSetup {
            key: Some(ClientKey::encrypted("correct horse")),
            ..SshSetup::default()
        },
    )
    .toml(STRATEGY)
    .write();
    f.hoist(&["deploy"])
        .env("HOIST_SSH_PASSPHRASE", "correct horse")
        .assert()
        .success();
    let out = f
        .hoist(&["status"])
        .env("HOIST_SSH_PASSPHRASE", "hunter2-nope")
        .assert()
        .code(3)
        .get_output()
        .clone();
    let stderr = printed(&out);
    assert!(
        !stderr.contains("hunter2-nope") && !stderr.contains("correct horse"),
        "the passphrase never appears: {stderr}"
    );
}

#[test]
fn agent_authentication() {
    let agent_key = ClientKey::ed25519();
    let other = ClientKey::ed25519();
    let host = Sshd::start(&[&agent_key]);
    let agent = crate::support::sshd::Agent::start(&[&agent_key]);
    let project = Project::new()
        .artifact(&[("README", "agent")])
        .ssh_host("web1", host.port, &host.root, "")
        .write_with_ssh(&format!(
            "user = \"{}\"\nidentity_files = [\"{}\"]\nknown_hosts = [\"{}\"]",
            crate::support::project::whoami(),
            other.path.display(),
            "known_hosts"
        ));
    std::fs::write(
        project.path().join("known_hosts"),
        host.known_hosts_line() + "\n",
    )
    .unwrap();
    project.hoist(&["status"]).assert().code(3);
    project
        .hoist(&["deploy", "--yes"])
        .env("SSH_AUTH_SOCK", &agent.sock)
        .assert()
        .success();
    assert_eq!(project.read_current("web1", "README"), "agent");
}

#[test]
fn refused_connection_fails_preflight() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let root = tempfile::tempdir().unwrap();
    let key = ClientKey::ed25519();
    let project = Project::new()
        .artifact(&[("README", "x")])
        .ssh_host("down", port, root.path(), "")
        .write_with_ssh(&format!(
            "identity_files = [\"{}\"]\nknown_hosts = [\"kh\"]\nconnect_timeout = \"3s\"",
            key.path.display()
        ));
    let out = project
        .hoist(&["deploy", "--yes"])
        .assert()
        .code(3)
        .get_output()
        .clone();
    assert!(
        printed(&out)
            .lines()
            .any(|l| l.contains("down") && l.contains("refused")),
        "a line says host `down` refused the connection: {}",
        printed(&out)
    );
}
