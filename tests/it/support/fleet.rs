//! A fleet of hosts web1..webN on either transport, so that one test body
//! runs on local and SSH hosts alike:
//!
//! ```ignore
//! fn deploy_then_rollback(f: Fleet) {
//!     let f = f.toml("[strategy]\ncanary = 1\ncanary_pause = \"0s\"").write();
//!     f.hoist(&["deploy"]).assert().success();
//!     // ...
//! }
//! #[test]
//! fn deploy_then_rollback_on_local_hosts() { deploy_then_rollback(Fleet::local(3)) }
//! #[test]
//! fn deploy_then_rollback_over_ssh() { deploy_then_rollback(Fleet::ssh(3)) }
//! ```
//!
//! A fleet is a `Project` (it derefs to one: `f.hoist(..)`, `f.current(..)`)
//! plus what keeps its hosts alive: one sshd per SSH host, the client key
//! they trust and a known_hosts file that trusts them.
#![allow(dead_code)]

use std::ops::Deref;
use std::path::PathBuf;

use super::netns::{Forward, Netns};
use super::project::{Project, whoami};
use super::sshd::{ClientKey, Sshd, SshdOptions};

/// What every fleet deploys until a test says otherwise.
pub const V1: &[(&str, &str)] = &[("README", "v1"), ("bin/app", "#!/bin/sh\necho v1\n")];

/// Healthy unless the host has a FAIL marker and runs v2: the release it
/// goes back to is healthy again.
pub const HEALTH: &str = "[health]\ncommand = \"grep -q v1 README || test ! -e \\\"$HOIST_DEPLOY_TO/FAIL\\\"\"\nretries = 1\ninterval = \"100ms\"\ntimeout = \"5s\"";

/// Fields drop in order: forwarders, then servers (the namespace, if any,
/// belongs to the test and outlives both).
pub struct Fleet {
    project: Project,
    forwards: Vec<Forward>,
    servers: Vec<Sshd>,
    key: Option<ClientKey>,
    /// Extra lines for the [ssh] table.
    ssh_settings: String,
}

/// Commands an SSH fleet's hosts find first on their PATH (sshd's
/// `SetEnv`): a stand-in for a tool, to make it fail on purpose.
pub struct FirstOnPath {
    dir: tempfile::TempDir,
}

impl FirstOnPath {
    /// `name`, a script reading `script`, ahead of /usr/bin and /bin.
    pub fn new(name: &str, script: &str) -> FirstOnPath {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, script).unwrap();
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(&path)
            .status()
            .unwrap();
        FirstOnPath { dir }
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Servers whose sessions get this PATH.
    pub fn setup(&self) -> SshSetup<'static> {
        SshSetup {
            sshd: SshdOptions {
                extra_config: format!("SetEnv PATH={}:/usr/bin:/bin\n", self.dir().display()),
                ..SshdOptions::default()
            },
            ..SshSetup::default()
        }
    }
}

/// How an SSH fleet's servers differ from the harness's defaults.
#[derive(Default)]
pub struct SshSetup<'a> {
    /// The key every server trusts; a fresh ed25519 key when `None`.
    pub key: Option<ClientKey>,
    pub sshd: SshdOptions,
    /// Start the servers inside this namespace; hoist reaches each through
    /// a forwarded port, and nothing else in the namespace is reachable.
    pub netns: Option<&'a Netns>,
}

impl Fleet {
    /// `n` local-transport hosts web1..webN, each under `hosts/webI`.
    pub fn local(n: usize) -> Fleet {
        let mut project = Project::new().artifact(V1);
        for i in 1..=n {
            project = project.local_host(&format!("web{i}"));
        }
        Fleet {
            project,
            forwards: Vec::new(),
            servers: Vec::new(),
            key: None,
            ssh_settings: String::new(),
        }
    }

    /// `n` SSH hosts web1..webN, one real sshd each, all trusted.
    pub fn ssh(n: usize) -> Fleet {
        Fleet::ssh_with(n, SshSetup::default())
    }

    pub fn ssh_with(n: usize, setup: SshSetup) -> Fleet {
        let key = setup.key.unwrap_or_else(ClientKey::ed25519);
        let options = SshdOptions {
            netns: setup.netns.map(|ns| ns.name.clone()),
            ..setup.sshd
        };
        let servers: Vec<Sshd> = (0..n)
            .map(|_| Sshd::start_with(&[&key], &options))
            .collect();
        let forwards: Vec<Forward> = match setup.netns {
            Some(ns) => servers.iter().map(|s| Forward::start(ns, s.port)).collect(),
            None => Vec::new(),
        };
        let mut project = Project::new().artifact(V1);
        for (i, server) in servers.iter().enumerate() {
            let port = forwards.get(i).map_or(server.port, |f| f.port);
            project = project.ssh_host(&format!("web{}", i + 1), port, &server.root, "");
        }
        let fleet = Fleet {
            project,
            forwards,
            servers,
            key: Some(key),
            ssh_settings: String::new(),
        };
        fleet.trust_all();
        fleet
    }

    /// Appends raw TOML (a [strategy], [hooks] or [health] table).
    pub fn toml(self, text: &str) -> Fleet {
        let project = self.project.toml(text);
        Fleet { project, ..self }
    }

    /// Replaces the body of the [artifact] table (default `path = "build"`).
    pub fn artifact_table(self, text: &str) -> Fleet {
        let project = self.project.artifact_table(text);
        Fleet { project, ..self }
    }

    /// Adds lines to the [app] table.
    pub fn app(self, text: &str) -> Fleet {
        let project = self.project.app(text);
        Fleet { project, ..self }
    }

    /// Replaces the artifact directory `build/` with these files.
    pub fn artifact(self, files: &[(&str, &str)]) -> Fleet {
        let project = self.project.artifact(files);
        Fleet { project, ..self }
    }

    /// Extra lines for the [ssh] table, replacing earlier ones; local
    /// fleets have no [ssh] table.
    pub fn ssh_settings(self, text: &str) -> Fleet {
        Fleet {
            ssh_settings: text.to_string(),
            ..self
        }
    }

    /// Writes deploy.toml; call after every change.
    pub fn write(self) -> Fleet {
        let project = match &self.key {
            None => self.project.write(),
            Some(key) => {
                let ssh = format!(
                    "user = \"{}\"\nidentity_files = [\"{}\"]\nknown_hosts = [\"{}\"]\nconnect_timeout = \"5s\"\n{}",
                    whoami(),
                    key.path.display(),
                    self.project.path().join("known_hosts").display(),
                    self.ssh_settings
                );
                self.project.write_with_ssh(&ssh)
            }
        };
        Fleet { project, ..self }
    }

    pub fn project(&self) -> &Project {
        &self.project
    }

    pub fn is_ssh(&self) -> bool {
        self.key.is_some()
    }

    /// The servers of an SSH fleet, web1's first; none for a local one.
    pub fn servers(&self) -> &[Sshd] {
        &self.servers
    }

    /// The sshd behind `host` ("web2").
    pub fn server(&self, host: &str) -> &Sshd {
        let i: usize = host
            .strip_prefix("web")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no host {host}"));
        &self.servers[i - 1]
    }

    /// The sshd behind `host`, to stop and start again.
    pub fn server_mut(&mut self, host: &str) -> &mut Sshd {
        let i: usize = host
            .strip_prefix("web")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no host {host}"));
        &mut self.servers[i - 1]
    }

    /// The key the servers trust.
    pub fn key(&self) -> &ClientKey {
        self.key.as_ref().expect("an SSH fleet")
    }

    /// The known_hosts file deploy.toml names.
    pub fn known_hosts(&self) -> PathBuf {
        self.project.path().join("known_hosts")
    }

    /// The known_hosts line for server `i` as hoist dials it.
    pub fn known_hosts_line(&self, i: usize) -> String {
        match self.forwards.get(i) {
            Some(f) => format!(
                "[127.0.0.1]:{} {}",
                f.port,
                self.servers[i].host_public_key()
            ),
            None => self.servers[i].known_hosts_line(),
        }
    }

    /// Rewrites known_hosts to trust every server.
    pub fn trust_all(&self) {
        let lines: String = (0..self.servers.len())
            .map(|i| self.known_hosts_line(i) + "\n")
            .collect();
        std::fs::write(self.known_hosts(), lines).unwrap();
    }

    /// Deploys v1 so the fleet has a release to go back to, then switches
    /// the artifact to v2. Returns the v1 release id.
    pub fn on_v1_then_v2(&self) -> String {
        self.hoist(&["deploy", "--yes"]).assert().success();
        let v1 = self.current("web1").unwrap();
        let build = self.path().join("build");
        std::fs::write(build.join("README"), "v2").unwrap();
        v1
    }

    /// Puts an empty file `what` in the host's deploy_to, for hooks and
    /// health checks that test for it (`test ! -e "$HOIST_DEPLOY_TO/FAIL"`).
    pub fn mark(&self, host: &str, what: &str) -> PathBuf {
        let path = self.deploy_path(host).join(what);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "").unwrap();
        path
    }

    /// The host was never switched to `release` and holds no trace of it:
    /// no release, sum or manifest (what an upload ahead of a wave that
    /// never ran leaves once taken back).
    pub fn assert_holds_nothing_of(&self, host: &str, release: &str) {
        assert!(!self.switched_to(host, release), "{host} never switched");
        assert!(
            !self.releases(host).contains(&release.to_string()),
            "{host}: no {release}"
        );
        let hoist = self.deploy_path(host).join(".hoist");
        for dir in ["sums", "manifests"] {
            assert!(
                !hoist.join(dir).join(release).exists(),
                "{host}: {dir}/{release}"
            );
        }
    }

    /// Whether the host's journal records a switch to `release`.
    pub fn switched_to(&self, host: &str, release: &str) -> bool {
        self.journal(host)
            .iter()
            .any(|e| e["event"] == "deploy" && e["release"] == release)
    }
}

impl Deref for Fleet {
    type Target = Project;

    fn deref(&self) -> &Project {
        &self.project
    }
}
