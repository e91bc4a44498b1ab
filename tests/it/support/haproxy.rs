//! A real HAProxy (Debian's package) in front of the app of
//! [`crate::support::lb::APP`] on SSH hosts, driven through its runtime API,
//! and a client that counts who answered.
//!
//! - [`Haproxy`]: run as the current user with its files in a directory of
//!   the test's own: a frontend on an ephemeral 127.0.0.1 port, backend
//!   `shop_api` (the name README's recipe uses) with one server per host,
//!   named as the host, pointing at that host's app, health-checked every
//!   300 ms, with 5 s to answer, and down only after ten failed checks in a
//!   row: on a loaded two-core machine an app (or HAProxy itself) may stall
//!   for a second or two, and with one (or three) missed checks a canary
//!   holding every request at the 100 % step, or every server at once, went
//!   down for a moment and HAProxy answered 503 (drains, not checks, keep
//!   requests off a restarting app here), and the
//!   runtime API on a unix socket at `level admin`. No
//!   retries and no redispatch: a request that reaches a stopped app fails,
//!   so a test sees it when a host was not kept out of the pool. Each answer
//!   carries the server that gave it in an `X-Server` header; HAProxy's
//!   Prometheus exporter serves its counters on another port.
//! - [`Client`]: about 50 requests a second through HAProxy, each on a new
//!   connection, until stopped; it keeps every answer (server, release,
//!   status) tagged with the contents of a file the test's hooks write (the
//!   traffic step in force), and every failure.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::support::lb::{Background, free_port};

/// The backend's name, as in README's recipe.
pub const BACKEND: &str = "shop_api";

/// Why the HAProxy tests cannot run here, if they cannot.
pub fn unavailable() -> Option<String> {
    if let Some(why) = crate::support::lb::unavailable() {
        return Some(why);
    }
    for (tool, package) in [("haproxy", "haproxy"), ("socat", "socat")] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!(
                "{tool} is not installed (tests/run.sh installs {package})"
            ));
        }
    }
    None
}

fn haproxy_bin() -> &'static str {
    if Path::new("/usr/sbin/haproxy").exists() {
        "/usr/sbin/haproxy"
    } else {
        "haproxy"
    }
}

/// HAProxy's configuration: the frontend on `port`, the exporter on
/// `metrics`, the backend's servers health-checked every 300 ms.
fn config(
    dir: &Path,
    socket: &Path,
    (port, metrics): (u16, u16),
    backends: &[(String, u16)],
) -> String {
    let servers: String = backends
        .iter()
        .map(|(host, port)| {
            format!(
                "  server {host} 127.0.0.1:{port} check inter 300ms fall 10 rise 1 weight 256\n"
            )
        })
        .collect();
    format!(
        "global
  stats socket {socket} mode 600 level admin
  pidfile {d}/haproxy.pid

defaults
  mode http
  timeout connect 1s
  timeout client 10s
  timeout server 10s
  timeout queue 10s
  timeout check 5s
  retries 0

frontend web
  bind 127.0.0.1:{port}
  default_backend {BACKEND}

frontend metrics
  bind 127.0.0.1:{metrics}
  http-request use-service prometheus-exporter if {{ path /metrics }}

backend {BACKEND}
  balance roundrobin
  option httpchk GET /health
  http-response set-header X-Server %s
{servers}",
        socket = socket.display(),
        d = dir.display(),
    )
}

/// One server's line of `show stat`.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub name: String,
    /// `UP`, `DOWN`, `DRAIN`, `MAINT`, ...
    pub status: String,
    pub weight: u32,
    /// Sessions open now.
    pub sessions: u32,
}

/// HAProxy in `dir/haproxy`, until dropped.
pub struct Haproxy {
    pub port: u16,
    /// HAProxy's own Prometheus exporter, `/metrics`.
    pub metrics_port: u16,
    pub dir: PathBuf,
    pub socket: PathBuf,
    child: Child,
}

impl Haproxy {
    /// Starts HAProxy in front of `backends` (host name, app port) and
    /// waits until its runtime API answers. A port picked free and taken
    /// before HAProxy bound it (another test's connection, on a busy
    /// machine) gets HAProxy started again on new ones.
    pub fn start(dir: &Path, backends: &[(String, u16)]) -> Haproxy {
        let dir = dir.join("haproxy");
        std::fs::create_dir_all(&dir).unwrap();
        for _ in 0..5 {
            if let Some(haproxy) = Haproxy::try_start(&dir, backends) {
                return haproxy;
            }
        }
        panic!("haproxy found its ports taken five times in a row");
    }

    /// `None` when a port it was given was taken by the time it bound it.
    fn try_start(dir: &Path, backends: &[(String, u16)]) -> Option<Haproxy> {
        let port = free_port();
        let metrics_port = free_port();
        let socket = dir.join("admin.sock");
        std::fs::write(
            dir.join("haproxy.cfg"),
            config(dir, &socket, (port, metrics_port), backends),
        )
        .unwrap();
        let child = Command::new(haproxy_bin())
            .arg("-db")
            .arg("-f")
            .arg(dir.join("haproxy.cfg"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("haproxy.log")).unwrap())
            .spawn()
            .expect("haproxy starts");
        let mut haproxy = Haproxy {
            port,
            metrics_port,
            dir: dir.to_path_buf(),
            socket,
            child,
        };
        let until = Instant::now() + Duration::from_secs(20);
        while haproxy.try_api("show info").is_err() {
            let log = || std::fs::read_to_string(dir.join("haproxy.log")).unwrap_or_default();
            if let Ok(Some(_)) = haproxy.child.try_wait() {
                assert!(
                    log().contains("Address already in use"),
                    "haproxy stopped: {}",
                    log()
                );
                return None;
            }
            assert!(
                Instant::now() < until,
                "haproxy's runtime API did not answer: {}",
                log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(haproxy)
    }

    fn try_api(&self, command: &str) -> std::io::Result<String> {
        let mut stream = UnixStream::connect(&self.socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        writeln!(stream, "{command}")?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    }

    /// One command of the runtime API, its answer.
    pub fn api(&self, command: &str) -> String {
        self.try_api(command)
            .unwrap_or_else(|e| panic!("haproxy runtime API, `{command}`: {e}"))
    }

    /// The backend's servers, from `show stat`.
    pub fn servers(&self) -> Vec<Server> {
        let stat = self.api("show stat");
        let mut lines = stat.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
        let (px, sv, status, weight, scur) = (
            col("pxname"),
            col("svname"),
            col("status"),
            col("weight"),
            col("scur"),
        );
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| f.len() > scur.max(weight) && f[px] == BACKEND)
            .filter(|f| f[sv] != "BACKEND" && f[sv] != "FRONTEND")
            .map(|f| Server {
                name: f[sv].to_string(),
                status: f[status].to_string(),
                weight: f[weight].parse().unwrap_or(0),
                sessions: f[scur].parse().unwrap_or(0),
            })
            .collect()
    }

    /// Waits (at most 20 s) until every server passes its health check.
    pub fn wait_all_up(&self) {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let servers = self.servers();
            if !servers.is_empty() && servers.iter().all(|s| s.status == "UP") {
                return;
            }
            assert!(
                Instant::now() < until,
                "not every server came up: {servers:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        // SIGUSR1: a soft stop, connections in flight finish; then wait.
        let _ = Command::new("kill")
            .args(["-USR1", &self.child.id().to_string()])
            .status();
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One answer through HAProxy.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// Seconds since the client started.
    pub at: f64,
    /// The contents of the tag file when the request was sent ("" without).
    pub tag: String,
    /// The server that answered (`X-Server`), "" if none did.
    pub server: String,
    pub status: u16,
    /// The release that answered (the app's body).
    pub release: String,
}

/// One GET on a new connection: (status, X-Server, body).
pub fn get(port: u16) -> Result<(u16, String, String), String> {
    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET / HTTP/1.0\r\nHost: app\r\n\r\n").map_err(|e| format!("send: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {response:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {response:?}"))?;
    let server = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-server")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    Ok((status, server, body.trim().to_string()))
}

/// What a client saw.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    pub answers: Vec<Answer>,
    /// (seconds since the client started, what went wrong): no answer at
    /// all, or one that was not 200.
    pub failed: Vec<(f64, String)>,
}

impl Seen {
    /// Answers (200 or not) per (server, release).
    pub fn per_server(&self) -> BTreeMap<(String, String), usize> {
        let mut counts = BTreeMap::new();
        for a in &self.answers {
            *counts
                .entry((a.server.clone(), a.release.clone()))
                .or_default() += 1;
        }
        counts
    }

    /// Of the answers sent under `tag`: (how many, how many came from a
    /// server in `servers`).
    pub fn share(&self, tag: &str, servers: &[&str]) -> (usize, usize) {
        let under: Vec<&Answer> = self.answers.iter().filter(|a| a.tag == tag).collect();
        let from = under
            .iter()
            .filter(|a| servers.contains(&a.server.as_str()))
            .count();
        (under.len(), from)
    }

    /// The tags seen, in order, each once per run.
    pub fn tags(&self) -> Vec<String> {
        let mut tags: Vec<String> = Vec::new();
        for a in &self.answers {
            if tags.last() != Some(&a.tag) {
                tags.push(a.tag.clone());
            }
        }
        tags
    }
}

/// About 50 requests a second through HAProxy, on a thread, until
/// [`Client::stop`] or `bound` has passed.
pub struct Client {
    run: Background<Seen>,
}

impl Client {
    /// `tag`: a file whose contents (trimmed) tag each request sent while
    /// they are there.
    pub fn start(port: u16, tag: Option<PathBuf>, bound: Duration) -> Client {
        let run = Background::start(move |stop, seen: &Mutex<Seen>| {
            let started = Instant::now();
            let every = Duration::from_millis(20);
            let mut next = started;
            while !stop.load(Ordering::SeqCst) && started.elapsed() < bound {
                let tag = tag
                    .as_ref()
                    .and_then(|t| std::fs::read_to_string(t).ok())
                    .map(|t| t.trim().to_string())
                    .unwrap_or_default();
                let answer = get(port);
                let at = started.elapsed().as_secs_f64();
                let mut seen = seen.lock().unwrap();
                match answer {
                    Ok((status, server, release)) => {
                        if status != 200 {
                            seen.failed
                                .push((at, format!("{status} from {server:?}: {release}")));
                        }
                        seen.answers.push(Answer {
                            at,
                            tag,
                            server,
                            status,
                            release,
                        });
                    }
                    Err(e) => seen.failed.push((at, e)),
                }
                drop(seen);
                // The pace of a steady load, not a wait for an event.
                // No burst to catch up after a slow answer: the rate
                // stays steady.
                next = (next + every).max(Instant::now());
                if let Some(left) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(left);
                }
            }
        });
        Client { run }
    }

    /// What the client saw so far.
    pub fn seen(&self) -> Seen {
        self.run.seen()
    }

    /// Stops the client and returns what it saw.
    pub fn stop(self) -> Seen {
        self.run.stop()
    }
}

/// The body of the first fenced block (```LANG) after the line of
/// README.md that contains `after`.
pub fn readme_block(after: &str, lang: &str) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find(after)
        .unwrap_or_else(|| panic!("README has no {after:?}"));
    let open = format!("```{lang}\n");
    let from = start + readme[start..].find(&open).unwrap() + open.len();
    let len = readme[from..].find("```\n").unwrap();
    readme[from..from + len].to_string()
}

/// A real Prometheus scraping HAProxy's exporter every 500 ms, until
/// dropped.
pub struct Prometheus {
    pub port: u16,
    child: Child,
}

impl Prometheus {
    /// Starts it in `dir/prometheus` and waits until it holds a sample of
    /// HAProxy's servers. `None` when prometheus is not installed.
    pub fn scraping(haproxy: &Haproxy) -> Option<Prometheus> {
        let found = Command::new("sh")
            .args(["-c", "command -v prometheus"])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return None;
        }
        let dir = haproxy.dir.join("prometheus");
        std::fs::create_dir_all(&dir).unwrap();
        let config = format!(
            "global:\n  scrape_interval: 500ms\n  scrape_timeout: 450ms\nscrape_configs:\n  - job_name: haproxy\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            haproxy.metrics_port
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        // A port picked free and taken before it listened (another test's
        // connection, on a busy machine): it stops, and starts again on
        // another.
        for _ in 0..5 {
            if let Some(prometheus) = Prometheus::try_start(&dir) {
                return Some(prometheus);
            }
        }
        panic!("prometheus found its port taken five times in a row");
    }

    /// `None` when it stopped before it answered.
    fn try_start(dir: &Path) -> Option<Prometheus> {
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .unwrap();
        let mut prometheus = Prometheus { port, child };
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(_)) = prometheus.child.try_wait() {
                let log = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
                assert!(
                    log.contains("address already in use"),
                    "prometheus stopped: {log}"
                );
                return None;
            }
            let answer = crate::support::lb::get(
                port,
                "/api/v1/query?query=count(haproxy_server_http_responses_total)",
            );
            if let Ok((200, body)) = &answer
                && body.contains("\"value\"")
            {
                return Some(prometheus);
            }
            assert!(
                Instant::now() < until,
                "prometheus never scraped haproxy: {answer:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One sample of an analysis gate, as an output shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The bake: `canary bake`, `traffic 10%`, `wave 2 bake`.
    pub step: String,
    pub verdict: String,
    /// What it saw: `{"canary": n, "baseline": n}` for a comparison, null
    /// when the provider could not answer.
    pub value: serde_json::Value,
}

impl Sample {
    /// `canary` or `baseline`, when the sample has it.
    pub fn side(&self, side: &str) -> Option<f64> {
        self.value[side].as_f64()
    }
}

/// The samples of `gate` among NDJSON events (`analysis`).
pub fn samples_in_events(events: &[serde_json::Value], gate: &str) -> Vec<Sample> {
    events
        .iter()
        .filter(|e| e["event"] == "analysis" && e["gate"] == gate)
        .map(|e| Sample {
            step: e["step"].as_str().unwrap().to_string(),
            verdict: e["verdict"].as_str().unwrap().to_string(),
            value: e["value"].clone(),
        })
        .collect()
}

/// The samples of `gate` in plain lines, one per line wherever it starts
/// (`gate G [STEP k/n]: VERDICT, value V`).
pub fn samples_in_lines(text: &str, gate: &str) -> Vec<Sample> {
    let line = regex_lite::Regex::new(&format!(
        r"gate {} \[(.+) \d+/\d+\]: (\w+), value (\{{[^{{}}]*\}}|null|[-+0-9.eE]+)",
        regex_lite::escape(gate)
    ))
    .unwrap();
    text.lines()
        .filter_map(|l| line.captures(l))
        .map(|c| Sample {
            step: c[1].to_string(),
            verdict: c[2].to_string(),
            value: serde_json::from_str(&c[3])
                .unwrap_or_else(|e| panic!("a value in {:?}: {e}", &c[0])),
        })
        .collect()
}

/// The summary's rows for `gate` (`gate G, STEP: V verdict, V verdict`),
/// in order: each step with its samples (of a row cut short at a
/// terminal's width, those shown whole).
pub fn summary_rows(text: &str, gate: &str) -> Vec<(String, Vec<Sample>)> {
    let head = format!("gate {gate}, ");
    let sample =
        regex_lite::Regex::new(r"(\{[^{}]*\}|null|[-+0-9.eE]+) (pass|fail|inconclusive|error)\b")
            .unwrap();
    text.lines()
        .filter_map(|l| Some(&l[l.find(&head)? + head.len()..]))
        .filter_map(|row| row.split_once(": "))
        .map(|(step, samples)| {
            let samples = sample
                .captures_iter(samples)
                .map(|c| Sample {
                    step: step.to_string(),
                    verdict: c[2].to_string(),
                    value: serde_json::from_str(&c[1]).unwrap(),
                })
                .collect();
            (step.to_string(), samples)
        })
        .collect()
}

/// What a terminal showed while hoist ran on it.
#[derive(Debug)]
pub struct Screen {
    pub code: Option<i32>,
    /// Everything written to the terminal, escape sequences taken out
    /// (each redraw of a line is still there, after a `\r` or on a line of
    /// its own).
    pub text: String,
}

/// The terminal's width: wide enough for a countdown line with a gate's
/// values, and for a summary row of a few samples.
pub const COLUMNS: u16 = 250;

/// Why hoist cannot be run on a pseudo-terminal here, if it cannot.
pub fn no_terminal() -> Option<String> {
    let found = Command::new("sh")
        .args(["-c", "command -v script && command -v stty"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    (!found).then(|| "util-linux's script is not installed (Debian: bsdutils)".to_string())
}

/// `hoist ARGS` in `dir` as a person runs it: stdin, stdout and stderr a
/// pseudo-terminal of [`COLUMNS`] x 50 (util-linux `script`; `stty` sets
/// the size, which the live view reads from the terminal), TERM=xterm;
/// killed after `bound`.
pub fn on_a_terminal(dir: &Path, args: &str, bound: Duration) -> Screen {
    let bin = assert_cmd::cargo::cargo_bin("hoist");
    let command = format!("stty cols {COLUMNS} rows 50; exec {} {args}", bin.display());
    let mut child = Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .current_dir(dir)
        .env("HOME", dir.join("home"))
        .env("USER", crate::support::project::whoami())
        .env("TERM", "xterm")
        .env("COLUMNS", COLUMNS.to_string())
        .env("LINES", "50")
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("HOIST_CONFIG")
        .env_remove("HOIST_ENV")
        .env_remove("HOIST_SSH_PASSPHRASE")
        .env_remove("NO_COLOR")
        .env_remove("GITHUB_ACTIONS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("script starts");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut raw = Vec::new();
        let _ = stdout.read_to_end(&mut raw);
        raw
    });
    let until = Instant::now() + bound;
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let raw = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
    Screen {
        code,
        text: screen_lines(&raw),
    }
}

/// What a terminal was sent, as lines of text: a cursor move, an erase or
/// a carriage return ends a line (a redraw starts a new one), colours are
/// taken out.
fn screen_lines(raw: &str) -> String {
    let moves = regex_lite::Regex::new(r"\x1b\[[0-9;?]*[A-Za-ln-z]").unwrap();
    let lines = moves.replace_all(raw, "\n").replace('\r', "\n");
    console::strip_ansi_codes(&lines).into_owned()
}

/// The full log of the run that wrote it since `before` (the logs then).
pub fn new_log(dir: &Path, before: &[PathBuf]) -> String {
    let logs = logs(dir);
    let new: Vec<&PathBuf> = logs.iter().filter(|l| !before.contains(l)).collect();
    assert_eq!(new.len(), 1, "one new log: {new:?}");
    std::fs::read_to_string(new[0]).unwrap()
}

/// The run logs under `dir/.hoist/logs`.
pub fn logs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir.join(".hoist/logs"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}
