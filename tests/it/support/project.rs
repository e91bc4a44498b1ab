//! A test project: a temporary directory with a deploy.toml, an artifact and
//! hosts (local ones, or real sshd ones from `sshd.rs`), and a way to run the
//! hoist binary in it and look at the hosts' files afterwards.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use tempfile::TempDir;

pub struct Project {
    pub dir: TempDir,
    hosts: Vec<(String, String)>,
    sections: Vec<String>,
    /// Per host: where its deploy_to is on this machine.
    deploy_paths: Vec<(String, PathBuf)>,
    /// The body of the [artifact] table.
    artifact_table: String,
    /// Extra lines for the [app] table.
    app: Vec<String>,
}

impl Project {
    pub fn new() -> Project {
        let dir = tempfile::Builder::new()
            .prefix("hoist-test-")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        Project {
            dir,
            hosts: Vec::new(),
            sections: Vec::new(),
            deploy_paths: Vec::new(),
            artifact_table: "path = \"build\"".into(),
            app: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Adds `n` local-transport hosts named local1..localN.
    pub fn local_hosts(mut self, n: usize) -> Project {
        for i in 1..=n {
            self = self.local_host(&format!("local{i}"));
        }
        self
    }

    /// Adds one local-transport host named `name`, under `hosts/NAME`.
    pub fn local_host(mut self, name: &str) -> Project {
        let root = format!("hosts/{name}");
        let toml = format!("[hosts.{name}]\ntransport = \"local\"\nroot = \"{root}\"\n");
        self.deploy_paths
            .push((name.to_string(), self.path().join(&root).join("srv/app")));
        self.hosts.push((name.to_string(), toml));
        self
    }

    /// Adds one SSH host with its own table; `extra` goes into that table.
    pub fn ssh_host(mut self, name: &str, port: u16, root: &Path, extra: &str) -> Project {
        let deploy_to = root.join("srv/app");
        let toml = format!(
            "[hosts.{name}]\naddress = \"127.0.0.1\"\nport = {port}\ndeploy_to = \"{}\"\n{extra}\n",
            deploy_to.display()
        );
        self.deploy_paths.push((name.to_string(), deploy_to));
        self.hosts.push((name.to_string(), toml));
        self
    }

    /// Adds a host table with nothing but its own deploy_to (under
    /// `root/NAME`, so several hosts may share one sshd): everything about
    /// reaching it comes from elsewhere (~/.ssh/config, [ssh]).
    pub fn bare_host(mut self, name: &str, root: &Path) -> Project {
        let deploy_to = root.join(name).join("srv/app");
        let toml = format!("[hosts.{name}]\ndeploy_to = \"{}\"\n", deploy_to.display());
        self.deploy_paths.push((name.to_string(), deploy_to));
        self.hosts.push((name.to_string(), toml));
        self
    }

    /// Writes a file under the HOME the binary runs with (e.g. ".ssh/config").
    pub fn home_file(self, path: &str, text: &str) -> Project {
        let path = self.path().join("home").join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self
    }

    /// Appends raw TOML (e.g. a [strategy] or [hooks] table).
    pub fn toml(mut self, text: &str) -> Project {
        self.sections.push(text.to_string());
        self
    }

    /// Adds lines to the [app] table (e.g. `shared_dirs = ["log"]`); a
    /// `keep_releases` line replaces the default of 3.
    pub fn app(mut self, text: &str) -> Project {
        self.app.push(text.to_string());
        self
    }

    /// Writes the artifact directory `build/` with these files.
    pub fn artifact(self, files: &[(&str, &str)]) -> Project {
        let build = self.path().join("build");
        let _ = std::fs::remove_dir_all(&build);
        for (name, body) in files {
            let path = build.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, body).unwrap();
        }
        self
    }

    /// Replaces the body of the [artifact] table (default `path = "build"`).
    pub fn artifact_table(mut self, text: &str) -> Project {
        self.artifact_table = text.to_string();
        self
    }

    /// Writes deploy.toml from what was added; call after every change.
    pub fn write(self) -> Project {
        self.write_with_ssh("")
    }

    /// Writes deploy.toml with an [ssh] table holding `ssh`.
    pub fn write_with_ssh(self, ssh: &str) -> Project {
        let mut text = String::from("[app]\nname = \"shop-api\"\ndeploy_to = \"/srv/app\"\n");
        if !self.app.iter().any(|l| l.contains("keep_releases")) {
            text.push_str("keep_releases = 3\n");
        }
        for line in &self.app {
            text.push_str(line);
            text.push('\n');
        }
        text.push_str(&format!("\n[artifact]\n{}\n\n", self.artifact_table));
        if !ssh.is_empty() {
            text.push_str(&format!("[ssh]\n{ssh}\n\n"));
        }
        for section in &self.sections {
            text.push_str(section);
            text.push_str("\n\n");
        }
        for (_, host) in &self.hosts {
            text.push_str(host);
            text.push('\n');
        }
        std::fs::write(self.path().join("deploy.toml"), text).unwrap();
        self
    }

    /// `hoist ARGS` in the project directory, with a clean environment.
    /// The events of `hoist ARGS` (`--json` among them), which must exit
    /// with `code`.
    pub fn events(&self, args: &[&str], code: i32) -> Vec<serde_json::Value> {
        let out = self.hoist(args).assert().code(code).get_output().clone();
        ndjson(&out.stdout)
    }

    pub fn hoist(&self, args: &[&str]) -> Command {
        let mut cmd = Command::cargo_bin("hoist").unwrap();
        cmd.current_dir(self.path())
            .args(args)
            .env("HOME", self.path().join("home"))
            .env("USER", whoami())
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("HOIST_CONFIG")
            .env_remove("HOIST_ENV")
            .env_remove("HOIST_SSH_PASSPHRASE")
            .env_remove("NO_COLOR")
            .timeout(std::time::Duration::from_secs(120));
        cmd
    }

    /// `hoist ARGS` in the background, with the environment of
    /// [`Project::hoist`], stdout piped (read it with [`follow`]) and its pid
    /// in `hoist.pid` in the project (where hooks find it to signal it).
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("hoist"))
            .current_dir(self.path())
            .args(args)
            .env("HOME", self.path().join("home"))
            .env("USER", whoami())
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("HOIST_CONFIG")
            .env_remove("HOIST_ENV")
            .env_remove("HOIST_SSH_PASSPHRASE")
            .env_remove("NO_COLOR")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::fs::write(self.path().join("hoist.pid"), child.id().to_string()).unwrap();
        child
    }

    pub fn deploy_path(&self, host: &str) -> PathBuf {
        self.deploy_paths
            .iter()
            .find(|(n, _)| n == host)
            .unwrap_or_else(|| panic!("no host {host}"))
            .1
            .clone()
    }

    pub fn host_names(&self) -> Vec<String> {
        self.hosts.iter().map(|(n, _)| n.clone()).collect()
    }

    /// The release id `current` points at on a host.
    pub fn current(&self, host: &str) -> Option<String> {
        let link = std::fs::read_link(self.deploy_path(host).join("current")).ok()?;
        let text = link.to_string_lossy().into_owned();
        assert!(text.starts_with("releases/"), "current is relative: {text}");
        Some(text.trim_start_matches("releases/").to_string())
    }

    pub fn releases(&self, host: &str) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(self.deploy_path(host).join("releases"))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    pub fn read_current(&self, host: &str, file: &str) -> String {
        std::fs::read_to_string(self.deploy_path(host).join("current").join(file)).unwrap()
    }

    pub fn journal(&self, host: &str) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.deploy_path(host).join(".hoist/journal"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub fn locked(&self, host: &str) -> bool {
        self.deploy_path(host).join(".hoist/lock").exists()
    }

    /// True when nothing at all exists at the host's deploy_to.
    pub fn untouched(&self, host: &str) -> bool {
        !self.deploy_path(host).exists()
    }
}

pub fn whoami() -> String {
    std::env::var("USER").unwrap_or_else(|_| {
        String::from_utf8(
            std::process::Command::new("id")
                .arg("-un")
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
        .trim()
        .to_string()
    })
}

/// The events of a `--json` run read from its stdout until it ends;
/// `on_line` sees each line as it comes (to act in the middle of the run).
pub fn follow(
    child: &mut std::process::Child,
    mut on_line: impl FnMut(&str),
) -> Vec<serde_json::Value> {
    use std::io::BufRead;
    let mut lines = Vec::new();
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        on_line(&line);
        lines.push(line);
    }
    ndjson((lines.join("\n") + "\n").as_bytes())
}

/// Where the first event matching `what` is in a run's events.
pub fn position(events: &[serde_json::Value], what: impl Fn(&serde_json::Value) -> bool) -> usize {
    events
        .iter()
        .position(what)
        .unwrap_or_else(|| panic!("no such event in {events:#?}"))
}

/// Parses NDJSON output, asserting every line is a JSON object with
/// `event` and `ts`, and that the last is the summary.
/// Where in `events` host `host` first entered `phase`.
pub fn phase_at(events: &[serde_json::Value], host: &str, phase: &str) -> usize {
    position(events, |e| {
        e["event"] == "host_phase" && e["host"] == host && e["phase"] == phase
    })
}

/// How many times host `host` entered `phase` in `events`.
pub fn times_in(events: &[serde_json::Value], host: &str, phase: &str) -> usize {
    events
        .iter()
        .filter(|e| e["event"] == "host_phase" && e["host"] == host && e["phase"] == phase)
        .count()
}

/// Whether a `message` event in `events` says `text`.
pub fn said(events: &[serde_json::Value], text: &str) -> bool {
    events
        .iter()
        .any(|e| e["event"] == "message" && e["text"].as_str().unwrap_or("").contains(text))
}

/// Whether a `message` event in `events` about `host` says `text`.
pub fn said_to(events: &[serde_json::Value], host: &str, text: &str) -> bool {
    events.iter().any(|e| {
        e["event"] == "message"
            && e["host"] == host
            && e["text"].as_str().unwrap_or("").contains(text)
    })
}

/// The summary (the last event) says every host was sent bytes.
pub fn assert_every_host_was_sent_bytes(events: &[serde_json::Value]) {
    let summary = events.last().unwrap();
    for row in summary["hosts"].as_array().unwrap() {
        assert!(row["sent_bytes"].as_u64().unwrap() > 0, "{row}");
    }
}

pub fn ndjson(stdout: &[u8]) -> Vec<serde_json::Value> {
    let text = String::from_utf8(stdout.to_vec()).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for e in &events {
        assert!(e["event"].is_string(), "no event: {e}");
        assert!(e["ts"].is_string(), "no ts: {e}");
    }
    assert_eq!(
        events.last().map(|e| e["event"].as_str().unwrap()),
        Some("summary"),
        "last line is the summary"
    );
    events
}

/// `host`'s row in an NDJSON `summary` line.
pub fn summary_host<'a>(summary: &'a serde_json::Value, host: &str) -> &'a serde_json::Value {
    summary["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == host)
        .unwrap_or_else(|| panic!("{host} not in {summary}"))
}

/// Lists every file under `dir` with its contents, relative and sorted.
pub fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                let rel = path
                    .strip_prefix(base)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, std::fs::read(&path).unwrap()));
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Everything a run printed, stdout then stderr.
pub fn printed(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Incompressible bytes (xorshift), the same for the same seed and
/// different for each: nothing can cheat on their size.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut data = vec![0u8; len];
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    data
}
