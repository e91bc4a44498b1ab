//! Real OpenSSH servers, agents and client keys for tests.
//!
//! ```ignore
//! let key = ClientKey::ed25519();
//! let host = Sshd::start(&[&key]);
//! // connect to 127.0.0.1:host.port as the current user with key.path,
//! // trusting host.known_hosts_line(); the host's files live under host.root.
//! ```
//!
//! Everything lives in temp dirs and every process is killed on drop.
#![allow(dead_code)]

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

const SSHD: &str = "/usr/sbin/sshd";
/// Generous: tests may run on a loaded machine.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A client key pair made by ssh-keygen.
pub struct ClientKey {
    /// The private key file.
    pub path: PathBuf,
    /// The public key line: `ssh-ed25519 AAAA... comment`.
    pub public: String,
    _dir: TempDir,
}

impl ClientKey {
    pub fn ed25519() -> ClientKey {
        ClientKey::generate("ed25519", false, "")
    }
    pub fn rsa() -> ClientKey {
        ClientKey::generate("rsa", false, "")
    }
    pub fn ecdsa() -> ClientKey {
        ClientKey::generate("ecdsa", false, "")
    }
    /// An ed25519 key protected by `passphrase` (OpenSSH format).
    pub fn encrypted(passphrase: &str) -> ClientKey {
        ClientKey::generate("ed25519", false, passphrase)
    }
    /// A key of `kind` ("rsa", "ecdsa") in the old PEM format (`ssh-keygen -m PEM`).
    pub fn pem(kind: &str) -> ClientKey {
        ClientKey::generate(kind, true, "")
    }

    /// `kind`: ed25519, rsa or ecdsa; `passphrase` empty for none.
    pub fn generate(kind: &str, pem: bool, passphrase: &str) -> ClientKey {
        let dir = tempfile::tempdir().expect("temp dir for a client key");
        let path = dir.path().join(format!("id_{kind}"));
        let mut keygen = Command::new("ssh-keygen");
        keygen.args(["-q", "-t", kind, "-N", passphrase, "-C", "hoist-test", "-f"]);
        keygen.arg(&path);
        if kind == "rsa" {
            keygen.args(["-b", "2048"]);
        }
        if pem {
            keygen.args(["-m", "PEM"]);
        }
        run(&mut keygen);
        let public = read(&path.with_extension("pub")).trim().to_string();
        ClientKey {
            path,
            public,
            _dir: dir,
        }
    }
}

/// How a test's sshd differs from the harness's generous defaults.
#[derive(Debug, Clone, Default)]
pub struct SshdOptions {
    /// `MaxStartups`; `None` keeps the harness's 100:30:200. OpenSSH's own
    /// default is "10:30:100".
    pub max_startups: Option<String>,
    /// `LogLevel`; `None` is VERBOSE. DEBUG1 logs each direct-tcpip request.
    pub log_level: Option<String>,
    /// Run inside this network namespace (`ip netns exec NS sshd ...`).
    pub netns: Option<String>,
    /// The address to listen on; `None` is 127.0.0.1. With `netns`, one of
    /// that namespace's own addresses (e.g. its end of a veth).
    pub listen_address: Option<String>,
    /// Lines appended to sshd_config (e.g. a `ForceCommand`).
    pub extra_config: String,
    /// `MaxSessions`; `None` keeps the harness's 50. (Set here: sshd takes
    /// a keyword's first value, so `extra_config` cannot lower it.)
    pub max_sessions: Option<u32>,
}

/// A running sshd on 127.0.0.1 (or `SshdOptions::listen_address`), logging
/// in as the current user.
pub struct Sshd {
    /// Where it listens: 127.0.0.1 unless the options said otherwise.
    pub address: String,
    pub port: u16,
    /// Stands for the host's filesystem: tests put the host's files under it.
    pub root: PathBuf,
    pub dir: TempDir,
    /// Private host key files, the first one being "the" host key.
    host_keys: Vec<PathBuf>,
    log_path: PathBuf,
    child: Child,
}

impl Sshd {
    /// Starts a server with an ed25519 host key that accepts `authorized`
    /// keys; returns once it listens.
    pub fn start(authorized: &[&ClientKey]) -> Sshd {
        Sshd::start_with_host_keys(authorized, &["ed25519"])
    }

    /// Same, with one host key per type in `kinds` ("ed25519", "ecdsa", "rsa").
    pub fn start_with_host_keys(authorized: &[&ClientKey], kinds: &[&str]) -> Sshd {
        Sshd::start_with_options(authorized, kinds, &SshdOptions::default())
    }

    /// An ed25519 host whose sshd_config ends with `extra`.
    pub fn start_with_config(authorized: &[&ClientKey], extra: &str) -> Sshd {
        let options = SshdOptions {
            extra_config: extra.to_string(),
            ..SshdOptions::default()
        };
        Sshd::start_with(authorized, &options)
    }

    /// An ed25519 server configured by `options`.
    pub fn start_with(authorized: &[&ClientKey], options: &SshdOptions) -> Sshd {
        Sshd::start_with_options(authorized, &["ed25519"], options)
    }

    fn start_with_options(
        authorized: &[&ClientKey],
        kinds: &[&str],
        options: &SshdOptions,
    ) -> Sshd {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} not found: install openssh-server (e.g. apt-get install openssh-server) to run the SSH tests"
        );
        let dir = tempfile::tempdir().expect("temp dir for sshd");
        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        let host_keys: Vec<PathBuf> = kinds
            .iter()
            .map(|kind| {
                let path = dir.path().join(format!("ssh_host_{kind}_key"));
                run(Command::new("ssh-keygen")
                    .args(["-q", "-t", kind, "-N", "", "-f"])
                    .arg(&path));
                path
            })
            .collect();
        let authorized_keys = dir.path().join("authorized_keys");
        let lines: Vec<&str> = authorized.iter().map(|k| k.public.as_str()).collect();
        fs::write(&authorized_keys, lines.join("\n") + "\n").unwrap();
        if is_root() {
            // Privilege separation directory; missing in containers.
            let _ = fs::create_dir_all("/run/sshd");
        }
        let log_path = dir.path().join("sshd.log");
        let address = options
            .listen_address
            .clone()
            .unwrap_or_else(|| "127.0.0.1".into());

        for _attempt in 0..5 {
            let port = free_port();
            let config = dir.path().join("sshd_config");
            fs::write(
                &config,
                config_text(
                    dir.path(),
                    &address,
                    port,
                    &host_keys,
                    &authorized_keys,
                    options,
                ) + &options.extra_config,
            )
            .unwrap();
            let log = fs::File::create(&log_path).unwrap();
            let mut command = match &options.netns {
                Some(ns) => {
                    let mut c = Command::new("ip");
                    c.args(["netns", "exec", ns, SSHD]);
                    c
                }
                None => Command::new(SSHD),
            };
            let mut child = command
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start sshd");
            if wait_for_port(&address, port, &mut child, &log_path) {
                return Sshd {
                    address,
                    port,
                    root,
                    dir,
                    host_keys,
                    log_path,
                    child,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("sshd did not start; its log:\n{}", read(&log_path));
    }

    /// The public host key: `ssh-ed25519 AAAA...`.
    pub fn host_public_key(&self) -> String {
        public_key_of(&self.host_keys[0])
    }

    /// `[127.0.0.1]:PORT ssh-ed25519 AAAA...`, ready for a known_hosts file.
    pub fn known_hosts_line(&self) -> String {
        format!(
            "[{}]:{} {}",
            self.address,
            self.port,
            self.host_public_key()
        )
    }

    /// The known_hosts line for the host key of type `kind` ("ecdsa", ...).
    pub fn known_hosts_line_for(&self, kind: &str) -> String {
        let key = self
            .host_keys
            .iter()
            .find(|k| k.ends_with(format!("ssh_host_{kind}_key")))
            .unwrap_or_else(|| panic!("this sshd has no {kind} host key"));
        format!("[{}]:{} {}", self.address, self.port, public_key_of(key))
    }

    /// `SHA256:...`, as `host_key` pins it.
    pub fn host_key_fingerprint(&self) -> String {
        let out = run(Command::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f"])
            .arg(self.host_keys[0].with_extension("pub")));
        out.split_whitespace().nth(1).unwrap().to_string()
    }

    /// sshd's log so far ("Accepted publickey for ...", "Connection closed ...").
    pub fn log(&self) -> String {
        read(&self.log_path)
    }

    /// How many session channels (commands, shells) sshd has started so far.
    pub fn sessions_started(&self) -> usize {
        self.log().matches("Starting session:").count()
    }

    /// The listener's process id (for a hook that stops it from the host).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server: the host is down, its files stay.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a stopped server again, on the same port with the same keys
    /// (not for servers in a network namespace). Its log starts anew.
    pub fn start_again(&mut self) {
        let log = fs::File::create(&self.log_path).unwrap();
        let config = self.dir.path().join("sshd_config");
        for _attempt in 0..50 {
            let mut child = Command::new(SSHD)
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log.try_clone().unwrap())
                .spawn()
                .expect("start sshd");
            if wait_for_port(&self.address, self.port, &mut child, &self.log_path) {
                self.child = child;
                return;
            }
            // The port may linger for a moment after the stop.
            let _ = child.kill();
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "sshd did not start again; its log:\n{}",
            read(&self.log_path)
        );
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_text(
    dir: &Path,
    address: &str,
    port: u16,
    host_keys: &[PathBuf],
    authorized_keys: &Path,
    options: &SshdOptions,
) -> String {
    let host_keys: String = host_keys
        .iter()
        .map(|k| format!("HostKey {}\n", k.display()))
        .collect();
    // MaxAuthTries is high because a developer's own ssh-agent may offer many keys first.
    format!(
        "ListenAddress {address}:{port}
{host_keys}AuthorizedKeysFile {authorized_keys}
PidFile {pid}
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin yes
AllowTcpForwarding yes
MaxStartups {max_startups}
MaxSessions {max_sessions}
MaxAuthTries 50
LogLevel {log_level}
",
        authorized_keys = authorized_keys.display(),
        pid = dir.join("sshd.pid").display(),
        max_startups = options.max_startups.as_deref().unwrap_or("100:30:200"),
        max_sessions = options.max_sessions.unwrap_or(50),
        log_level = options.log_level.as_deref().unwrap_or("VERBOSE"),
    )
}

/// Writes a known_hosts file that trusts `hosts`.
pub fn write_known_hosts(path: &Path, hosts: &[&Sshd]) {
    let lines: String = hosts.iter().map(|h| h.known_hosts_line() + "\n").collect();
    fs::write(path, lines).unwrap();
}

/// The user the servers log in as: whoever runs the tests.
pub fn current_user() -> String {
    run(Command::new("id").arg("-un")).trim().to_string()
}

/// A running `ssh-agent` holding some keys.
pub struct Agent {
    pub sock: PathBuf,
    _dir: TempDir,
    child: Child,
}

impl Agent {
    pub fn start(keys: &[&ClientKey]) -> Agent {
        let dir = tempfile::tempdir().expect("temp dir for ssh-agent");
        let sock = dir.path().join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ssh-agent");
        let agent = Agent {
            sock,
            _dir: dir,
            child,
        };
        let started = Instant::now();
        while !agent.sock.exists() {
            assert!(started.elapsed() < START_TIMEOUT, "ssh-agent did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        for key in keys {
            run(Command::new("ssh-add")
                .arg("-q")
                .arg(&key.path)
                .env("SSH_AUTH_SOCK", &agent.sock));
        }
        agent
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().unwrap().port()
}

/// Waits for sshd to say it listens (no probe connection, so the log holds
/// only the test's own connections). False when sshd exited, e.g. because
/// another process took the port in the meantime: try another.
fn wait_for_port(address: &str, port: u16, child: &mut Child, log: &Path) -> bool {
    let ready = format!("Server listening on {address} port {port}");
    let started = Instant::now();
    while started.elapsed() < START_TIMEOUT {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if fs::read_to_string(log).is_ok_and(|text| text.contains(&ready)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn run(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `ssh-ed25519 AAAA...`, without the comment.
fn public_key_of(private_key: &Path) -> String {
    let line = read(&private_key.with_extension("pub"));
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn is_root() -> bool {
    run(Command::new("id").arg("-u")).trim() == "0"
}
