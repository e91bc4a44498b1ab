//! The first whole path over real OpenSSH: deploy, redeploy, rollback, and
//! the safety of host keys and authentication.

use crate::support::project::{Project, ndjson, printed, tree};
use crate::support::sshd::{ClientKey, Sshd};

/// A project with `n` real sshd hosts named web1..webN, all trusting `key`.
struct Fleet {
    project: Project,
    hosts: Vec<Sshd>,
    key: ClientKey,
}

impl Fleet {
    fn new(n: usize) -> Fleet {
        Fleet::with_key(n, ClientKey::ed25519())
    }

    fn with_key(n: usize, key: ClientKey) -> Fleet {
        let hosts: Vec<Sshd> = (0..n).map(|_| Sshd::start(&[&key])).collect();
        let mut project = Project::new()
            .toml("[strategy]\ncanary = 1\ncanary_pause = \"0s\"\nbatch = \"50%\"")
            .artifact(&[
                ("bin/app", "#!/bin/sh\necho v1\n"),
                ("README", "first"),
                ("conf/app.toml", "port = 8080\n"),
            ]);
        for (i, h) in hosts.iter().enumerate() {
            project = project.ssh_host(&format!("web{}", i + 1), h.port, &h.root, "");
        }
        let fleet = Fleet {
            project,
            hosts,
            key,
        };
        fleet.trust_all();
        fleet
    }

    fn known_hosts(&self) -> std::path::PathBuf {
        self.project.path().join("known_hosts")
    }

    fn trust_all(&self) {
        let lines: String = self
            .hosts
            .iter()
            .map(|h| h.known_hosts_line() + "\n")
            .collect();
        std::fs::write(self.known_hosts(), lines).unwrap();
    }

    /// Writes deploy.toml with the [ssh] table pointing at this fleet's key.
    fn write(self, extra_ssh: &str) -> Fleet {
        let ssh = format!(
            "user = \"{}\"\nidentity_files = [\"{}\"]\nknown_hosts = [\"{}\"]\nconnect_timeout = \"5s\"\n{extra_ssh}",
            crate::support::project::whoami(),
            self.key.path.display(),
            self.known_hosts().display()
        );
        let project = self.project.write_with_ssh(&ssh);
        Fleet { project, ..self }
    }

    fn artifact(self, files: &[(&str, &str)]) -> Fleet {
        let project = self.project.artifact(files);
        Fleet { project, ..self }
    }
}

#[test]
fn deploy_to_five_hosts_then_a_second_release_then_rollback() {
    let f = Fleet::new(5).write("");
    let p = &f.project;
    p.hoist(&["deploy"]).assert().success();
    let first = p.current("web1").unwrap();
    for host in p.host_names() {
        assert_eq!(p.current(&host).as_deref(), Some(first.as_str()), "{host}");
        let release = p.deploy_path(&host).join("releases").join(&first);
        assert_eq!(
            tree(&release),
            tree(&p.path().join("build")),
            "{host}: file for file"
        );
        assert!(!p.locked(&host));
    }

    let f = f
        .artifact(&[("bin/app", "#!/bin/sh\necho v2\n"), ("README", "second")])
        .write("");
    let p = &f.project;
    p.hoist(&["deploy"]).assert().success();
    let second = p.current("web3").unwrap();
    assert_ne!(first, second);
    for host in p.host_names() {
        assert_eq!(p.read_current(&host, "README"), "second");
        assert!(
            !p.deploy_path(&host).join("current/conf").exists(),
            "release is the artifact exactly"
        );
    }

    p.hoist(&["rollback"]).assert().success();
    for host in p.host_names() {
        assert_eq!(
            p.current(&host).as_deref(),
            Some(first.as_str()),
            "{host} back on the first id"
        );
        assert_eq!(p.read_current(&host, "README"), "first");
    }
    let status = p
        .hoist(&["status", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let rows: Vec<_> = ndjson(&status)
        .into_iter()
        .filter(|e| e["event"] == "row")
        .collect();
    assert_eq!(rows.len(), 5);
    assert!(
        rows.iter()
            .all(|r| r["release"] == first.as_str() && r["differs"] == false)
    );
}

#[test]
fn redeploy_of_the_same_artifact_uploads_nothing() {
    let f = Fleet::new(2).write("");
    let p = &f.project;
    p.hoist(&["deploy"]).assert().success();
    // Needed until two deploys within one second get ordered ids (see
    // deploy_local's `two_deploys_within_one_second_get_ids_in_deploy_order`).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = p
        .hoist(&["deploy", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let events = ndjson(&out);
    assert!(
        !events.iter().any(|e| e["event"] == "upload_progress"),
        "nothing uploaded"
    );
    for host in p.host_names() {
        assert_eq!(p.releases(&host).len(), 2);
    }
}

#[test]
fn changed_host_key_on_one_host_refuses_the_whole_deploy() {
    let f = Fleet::new(3).write("");
    // web2's known key is some other server's.
    let impostor = Sshd::start(&[&f.key]);
    let mut lines: Vec<String> = f.hosts.iter().map(|h| h.known_hosts_line()).collect();
    lines[1] = impostor.known_hosts_line().replace(
        &format!(":{}]", impostor.port),
        &format!(":{}]", f.hosts[1].port),
    );
    std::fs::write(f.known_hosts(), lines.join("\n") + "\n").unwrap();

    let out = f
        .project
        .hoist(&["deploy"])
        .assert()
        .code(3)
        .get_output()
        .clone();
    let stderr = printed(&out);
    assert!(stderr.contains("web2"), "{stderr}");
    assert!(
        stderr.contains(&f.hosts[1].host_key_fingerprint()),
        "names the offered key: {stderr}"
    );
    for host in f.project.host_names() {
        assert!(f.project.untouched(&host), "nothing written on {host}");
    }
}

#[test]
fn unknown_host_is_refused_under_strict_and_learned_under_accept_new() {
    let f = Fleet::new(1).write("");
    std::fs::write(f.known_hosts(), "").unwrap();
    let out = f
        .project
        .hoist(&["deploy"])
        .assert()
        .code(3)
        .get_output()
        .clone();
    assert!(printed(&out).contains("unknown"));
    assert!(f.project.untouched("web1"));

    let f = f.write("host_key_checking = \"accept-new\"");
    f.project.hoist(&["deploy"]).assert().success();
    let known = std::fs::read_to_string(f.known_hosts()).unwrap();
    assert_eq!(known.lines().count(), 1);
    // Learned once, it is now checked strictly.
    let f = f.write("");
    f.project.hoist(&["status"]).assert().success();
}

#[test]
fn accept_new_with_many_hosts_at_once_leaves_a_valid_known_hosts() {
    let f = Fleet::new(12).write("host_key_checking = \"accept-new\"");
    std::fs::write(f.known_hosts(), "").unwrap();
    f.project.hoist(&["check"]).assert().success();
    let known = std::fs::read_to_string(f.known_hosts()).unwrap();
    assert_eq!(known.lines().count(), 12, "{known}");
    for h in &f.hosts {
        assert!(known.contains(&format!("[127.0.0.1]:{} ", h.port)));
    }
    let f = f.write("");
    f.project.hoist(&["check"]).assert().success();
}

#[test]
fn encrypted_key_with_passphrase_from_the_environment() {
    let f = Fleet::with_key(1, ClientKey::encrypted("correct horse")).write("");
    f.project
        .hoist(&["deploy"])
        .env("HOIST_SSH_PASSPHRASE", "correct horse")
        .assert()
        .success();
    let out = f
        .project
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
    assert!(printed(&out).contains("down"));
}
