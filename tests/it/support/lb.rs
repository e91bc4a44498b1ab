//! A real load balancer in front of a real app on SSH hosts, and a steady
//! request load that counts what failed.
//!
//! - [`Nginx`]: Debian's nginx, run by the test in a directory of its own,
//!   proxying to one upstream server per host (127.0.0.1:PORT) with passive
//!   health checks (`max_fails`, `proxy_next_upstream`). `./lb drain HOST..`
//!   and `./lb enable HOST..` (a script written into the project, for the
//!   batch hooks) mark hosts `down` or not and reload nginx, waiting until
//!   the new configuration answers; `./lb use COLOUR` (for `switch_local`)
//!   sends traffic to one colour's hosts only. Every call is logged to
//!   `lb.log` with the `HOIST_*` variables it saw.
//! - [`APP`]: the files of a small Python web app. `bin/restart` (from
//!   `after_switch`/`after_rollback`) stops the host's app and starts the
//!   release's, which boots for a while (as a real app does) before it
//!   listens on the host's port (`<deploy_to>/port`); it answers GET with
//!   its release's README, or 500 when the host has a `FAIL` marker and the
//!   release is not v1 (every answer but `/health`'s with an
//!   `ERRORS_FROM_WEIGHT` marker holding a weight, while the host's `weight`
//!   file holds at least that).
//! - [`Load`]: about 50 requests a second through nginx, each on a new
//!   connection, until stopped or a bound is reached; failures are kept.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The app, as artifact files (add a `README` with the version).
pub const APP: &[(&str, &str)] = &[
    (
        "app.py",
        r#"import http.server, os, signal, sys, threading, time
port, deploy_to = int(sys.argv[1]), sys.argv[2]
os.setsid()
time.sleep(0.8)  # a real app takes a while to boot
release = open("README").read().strip()
broken = release != "v1" and os.path.exists(os.path.join(deploy_to, "FAIL"))
# ERRORS_FROM_WEIGHT (holding a weight, e.g. 50): every answer but
# /health's is a 500 while the traffic weight in <deploy_to>/weight (the
# test's set_local writes it) is at least that: a release that passes its
# health check and fails its users only under a larger share of the traffic.
def number(name):
    try:
        return int(open(os.path.join(deploy_to, name)).read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
errors_from = number("ERRORS_FROM_WEIGHT") if release != "v1" else None

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = (release + "\n").encode()
        failing = (errors_from is not None and self.path != "/health"
                   and (number("weight") or 0) >= errors_from)
        self.send_response(500 if broken or failing else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

class Server(http.server.ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

server = Server(("127.0.0.1", port), Handler)
# SIGTERM: stop listening, finish the requests in flight.
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
server.serve_forever()
server.server_close()
"#,
    ),
    (
        "bin/restart",
        r#"#!/bin/sh
# Stops this host's app, starts the one of the release in the current
# directory, and returns once it listens.
port=$(cat "$HOIST_DEPLOY_TO/port")
pidfile="$HOIST_DEPLOY_TO/app.pid"
if [ -f "$pidfile" ]; then
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
fi
python3 app.py "$port" "$HOIST_DEPLOY_TO" </dev/null >>"$HOIST_DEPLOY_TO/app.log" 2>&1 &
echo $! > "$pidfile"
i=0
until curl -s -o /dev/null "http://127.0.0.1:$port/"; do
  i=$((i+1)); [ $i -gt 300 ] && { echo "the app did not listen on $port" >&2; exit 1; }
  sleep 0.05
done
"#,
    ),
];

/// The health check of the app: it answers 200 with this release.
pub const APP_HEALTH: &str = "[health]\ncommand = \"curl -fsS http://127.0.0.1:$(cat $HOIST_DEPLOY_TO/port)/ | grep -qx \\\"$(cat README)\\\"\"\nretries = 3\ninterval = \"200ms\"\ntimeout = \"5s\"\n";

/// Why the load-balancer tests cannot run here, if they cannot.
pub fn unavailable() -> Option<String> {
    for (tool, package) in [
        ("nginx", "nginx-light"),
        ("python3", "python3"),
        ("curl", "curl"),
    ] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "command -v {tool} || test -x /usr/sbin/{tool} || test -x /usr/bin/{tool}"
            ))
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

/// A free port on 127.0.0.1 (free when asked), below the kernel's
/// ephemeral range. One picked by binding port 0 is an ephemeral port,
/// which an outgoing connection (hoist's to an sshd, the test client's)
/// may take as its own before the app, HAProxy or Prometheus binds it:
/// seen in the full suite as "the app did not listen". Ports are handed
/// out in turn from a start of this process's own, each checked free.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const FIRST: u32 = 10_000;
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let span = ephemeral.saturating_sub(FIRST).max(1_000);
    let start = std::process::id().wrapping_mul(7_919) % span;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = u16::try_from(FIRST + (start + n) % span).expect("a port");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn nginx_bin() -> &'static str {
    if Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    }
}

/// nginx in `dir`, in front of `backends` (host name, port), until dropped.
pub struct Nginx {
    pub port: u16,
    pub dir: PathBuf,
    child: Child,
}

impl Nginx {
    /// Starts nginx with its files in `dir` (the project's directory, where
    /// the batch hooks run), and writes `dir/lb`. With `colors`, only the
    /// first colour's hosts take traffic until `./lb use COLOUR`.
    pub fn start(dir: &Path, backends: &[(String, u16)], colors: &[(&str, &[&str])]) -> Nginx {
        let dir = dir.to_path_buf();
        let port = free_port();
        for sub in ["nginx", "nginx/tmp", "nginx/drained"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        // Workers may run as another user: let them at their temp files.
        chmod(&dir.join("nginx/tmp"), "777");
        let ports: String = backends
            .iter()
            .map(|(host, port)| format!("{host} {port}\n"))
            .collect();
        std::fs::write(dir.join("nginx/ports"), ports).unwrap();
        let colors: String = colors
            .iter()
            .map(|(c, hosts)| format!("{c} {}\n", hosts.join(" ")))
            .collect();
        std::fs::write(dir.join("nginx/colors"), colors).unwrap();
        if let Some(first) = std::fs::read_to_string(dir.join("nginx/colors"))
            .unwrap()
            .split_whitespace()
            .next()
        {
            std::fs::write(dir.join("nginx/live"), format!("{first}\n")).unwrap();
        }
        std::fs::write(dir.join("nginx/gen"), "0\n").unwrap();
        let user = if unsafe_is_root() { "user root;\n" } else { "" };
        let conf = format!(
            "{user}worker_processes 1;
pid {d}/nginx/nginx.pid;
error_log {d}/nginx/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log {d}/nginx/access.log;
  client_body_temp_path {d}/nginx/tmp/body;
  proxy_temp_path {d}/nginx/tmp/proxy;
  fastcgi_temp_path {d}/nginx/tmp/fastcgi;
  uwsgi_temp_path {d}/nginx/tmp/uwsgi;
  scgi_temp_path {d}/nginx/tmp/scgi;
  include {d}/nginx/upstream.conf;
  server {{
    listen 127.0.0.1:{port};
    location = /__lb {{ return 200 \"$lb_gen\\n\"; }}
    location / {{
      proxy_pass http://app;
      proxy_connect_timeout 1s;
      proxy_read_timeout 5s;
      proxy_next_upstream error timeout http_502 http_503 non_idempotent;
      proxy_next_upstream_tries 0;
    }}
  }}
}}
",
            d = dir.display()
        );
        std::fs::write(dir.join("nginx/nginx.conf"), conf).unwrap();
        std::fs::write(dir.join("lb"), lb_script(&dir, port)).unwrap();
        chmod(&dir.join("lb"), "755");
        // The first upstream file, as `./lb` writes them.
        let status = Command::new(dir.join("lb"))
            .arg("write")
            .current_dir(&dir)
            .status()
            .unwrap();
        assert!(status.success(), "./lb write");
        let child = Command::new(nginx_bin())
            .args(["-p", &format!("{}/nginx", dir.display())])
            .args(["-c", &format!("{}/nginx/nginx.conf", dir.display())])
            .args(["-e", &format!("{}/nginx/error.log", dir.display())])
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nginx starts");
        let nginx = Nginx { port, dir, child };
        nginx.wait_answering();
        nginx
    }

    fn wait_answering(&self) {
        let until = Instant::now() + Duration::from_secs(20);
        while get(self.port, "/__lb").is_err() {
            assert!(
                Instant::now() < until,
                "nginx did not answer on {}: {}",
                self.port,
                std::fs::read_to_string(self.dir.join("nginx/error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One GET through nginx: (status, body).
    pub fn get(&self, path: &str) -> Result<(u16, String), String> {
        get(self.port, path)
    }

    /// Every line `./lb` logged so far.
    pub fn log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("lb.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // TERM lets the master stop its workers.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn unsafe_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn chmod(path: &Path, mode: &str) {
    let status = Command::new("chmod").arg(mode).arg(path).status().unwrap();
    assert!(status.success());
}

/// `./lb`: what the batch hooks and `switch_local` run.
fn lb_script(dir: &Path, port: u16) -> String {
    format!(
        r#"#!/bin/sh
# ./lb drain HOST...   take hosts out of nginx's upstream, reload, wait
# ./lb enable HOST...  put them back, except those in $HOIST_FAILED_HOSTS
# ./lb use COLOUR      send traffic to that colour's hosts only
# ./lb write           write the upstream file, no reload
set -e
d={d}/nginx
action=$1; shift || true
echo "$action $* result=$HOIST_RESULT failed=$HOIST_FAILED_HOSTS addresses=$HOIST_BATCH_ADDRESSES release=$HOIST_RELEASE color=$HOIST_COLOR" >> {d}/lb.log
case $action in
  drain) for h in "$@"; do touch "$d/drained/$h"; done ;;
  enable)
    for h in "$@"; do
      case " $HOIST_FAILED_HOSTS " in *" $h "*) continue ;; esac
      rm -f "$d/drained/$h"
    done ;;
  use) echo "$1" > "$d/live" ;;
  write) ;;
  *) echo "lb: unknown action $action" >&2; exit 2 ;;
esac
gen=$(( $(cat $d/gen) + 1 ))
live=$(cat $d/live 2>/dev/null || true)
members=$(awk -v c="$live" '$1 == c {{ $1 = ""; print }}' $d/colors 2>/dev/null || true)
{{
  echo "map \"\" \$lb_gen {{ default $gen; }}"
  echo "upstream app {{"
  while read host port; do
    if [ -e "$d/drained/$host" ]; then down=" down"; else down=""; fi
    if [ -n "$live" ]; then
      case " $members " in *" $host "*) ;; *) down=" down" ;; esac
    fi
    echo "  server 127.0.0.1:$port max_fails=1 fail_timeout=1s$down;"
  done < $d/ports
  echo "}}"
}} > $d/upstream.conf.new
mv $d/upstream.conf.new $d/upstream.conf
echo $gen > $d/gen
[ "$action" = write ] && exit 0
nginx=/usr/sbin/nginx; [ -x $nginx ] || nginx=nginx
$nginx -p $d -c $d/nginx.conf -e $d/error.log -s reload
# Reloaded once the new configuration answers and the old worker has
# finished its requests and gone (worker_processes 1: one child left).
master=$(cat $d/nginx.pid)
i=0
until [ "$(curl -s http://127.0.0.1:{port}/__lb)" = "$gen" ] \
  && [ "$(ps --ppid "$master" -o pid= | wc -l)" -eq 1 ]; do
  i=$((i+1)); [ $i -gt 200 ] && {{ echo "lb: nginx did not reload" >&2; exit 1; }}
  sleep 0.05
done
"#,
        d = dir.display()
    )
}

/// One GET on a new connection: (status, body).
pub fn get(port: u16, path: &str) -> Result<(u16, String), String> {
    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: app\r\n\r\n").map_err(|e| format!("send: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {response:?}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// What a load saw.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    pub ok: usize,
    /// (seconds since the load started, what went wrong)
    pub failed: Vec<(f64, String)>,
    /// The bodies of successful answers, in order, each once per run of
    /// equal ones ("v1", "v2", "v1").
    pub releases: Vec<String>,
}

/// About 50 requests a second through nginx, on a thread, until
/// [`Load::stop`] or `bound` has passed.
/// A thread that runs until stopped (or dropped), filling an `S` as it
/// goes: the life of the tests' request clients (nginx's [`Load`],
/// HAProxy's client), each with its own loop.
pub struct Background<S> {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<S>>,
    thread: Option<JoinHandle<()>>,
}

impl<S: Default + Clone + Send + 'static> Background<S> {
    /// Runs `body` on a thread of its own with the stop flag to watch and
    /// what it fills.
    pub fn start(body: impl FnOnce(&AtomicBool, &Mutex<S>) + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(S::default()));
        let thread = {
            let (stop, seen) = (stop.clone(), seen.clone());
            std::thread::spawn(move || body(&stop, &seen))
        };
        Background {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// What it filled so far.
    pub fn seen(&self) -> S {
        self.seen.lock().unwrap().clone()
    }

    /// Stops it and returns what it filled.
    pub fn stop(mut self) -> S {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.seen()
    }
}

impl<S> Drop for Background<S> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub struct Load {
    run: Background<Seen>,
}

impl Load {
    pub fn start(port: u16, bound: Duration) -> Load {
        let run = Background::start(move |stop, seen: &Mutex<Seen>| {
            let started = Instant::now();
            let every = Duration::from_millis(20);
            let mut next = started;
            while !stop.load(Ordering::SeqCst) && started.elapsed() < bound {
                let answer = get(port, "/");
                let at = started.elapsed().as_secs_f64();
                let mut seen = seen.lock().unwrap();
                match answer {
                    Ok((200, body)) => {
                        seen.ok += 1;
                        if seen.releases.last() != Some(&body) {
                            seen.releases.push(body);
                        }
                    }
                    Ok((status, body)) => seen.failed.push((at, format!("{status} {body}"))),
                    Err(e) => seen.failed.push((at, e)),
                }
                drop(seen);
                // The pace of a steady load, not a wait for an event.
                next += every;
                if let Some(left) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(left);
                }
            }
        });
        Load { run }
    }

    /// Stops the load and returns what it saw.
    pub fn stop(self) -> Seen {
        self.run.stop()
    }
}

/// Kills the apps the hosts' hooks started (their pid files), when dropped.
pub struct Apps {
    pub pidfiles: Vec<PathBuf>,
}

impl Apps {
    /// Gives each host of `f` a free port for its app (the file `port` in
    /// its deploy_to, which the app's start script reads): the backends for
    /// [`Nginx::start`], and the apps to kill once the test ends.
    pub fn ports_for(f: &crate::support::fleet::Fleet) -> (Vec<(String, u16)>, Apps) {
        let mut backends = Vec::new();
        let mut pidfiles = Vec::new();
        for host in f.host_names() {
            let port = free_port();
            let deploy_to = f.deploy_path(&host);
            std::fs::create_dir_all(&deploy_to).unwrap();
            std::fs::write(deploy_to.join("port"), port.to_string()).unwrap();
            pidfiles.push(deploy_to.join("app.pid"));
            backends.push((host, port));
        }
        (backends, Apps { pidfiles })
    }
}

impl Drop for Apps {
    fn drop(&mut self) {
        for pidfile in &self.pidfiles {
            if let Ok(pid) = std::fs::read_to_string(pidfile) {
                let _ = Command::new("kill")
                    .args(["-KILL", pid.trim()])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}
