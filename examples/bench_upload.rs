//! Benchmark: hoist against plain OpenSSH on a fleet of real sshd hosts.
//!
//!     cargo build --release --bins --examples
//!     ./target/release/examples/bench_upload [HOSTS] [MEGABYTES] [ROUNDS] [FILES]
//!
//! Defaults: 50 hosts, 10 MB, 3 rounds, 708 files. It starts HOSTS sshd
//! processes on 127.0.0.1 (openssh-server must be installed; hoist's binary
//! is taken from beside this example's directory, so build both in release),
//! makes an artifact directory of FILES files of incompressible bytes,
//! MEGABYTES in all, and per round, the baseline and hoist alternating
//! which goes first, times:
//!
//! - full push: `ssh host 'tar -xz -C DIR' < artifact.tar.gz` for every
//!   host at once, against `hoist deploy` of the directory to fresh hosts
//!   (with where hoist's time went, from its NDJSON timestamps: reaching
//!   and probing the hosts, preflight and lock, the wave, unlock and close);
//! - redeploy of the same content under a new version (a copy on each host);
//! - a deploy where 1 of the FILES files changed;
//! - rollback, against HOSTS parallel `ssh host true`.
//!
//! It prints per round, then the medians and ratios, the payload bytes
//! hoist sent (the sum of each host's last `upload_progress`) against what
//! the baseline sends (HOSTS × the tarball), and hoist's largest resident
//! set over all its runs (from wait4).
//!
//! hoist gets `connect_timeout = "60s"` (plain ssh has no connect timeout:
//! a loaded machine running hundreds of sshd logins at once is slow to
//! answer). Each host has a home of its own, as on a real fleet (see
//! [`Login`]: `BENCH_LOGIN=pyenv|none|shared` picks what a login runs).
//! Environment: `BENCH_MAX_STARTUPS` sets every sshd's MaxStartups (default
//! OpenSSH's own "10:30:100", so the pacing of handshakes is part of what is
//! measured); `BENCH_WRAP` runs hoist under a profiler (`heaptrack -o
//! /tmp/h`, `perf record -g -o /tmp/p`). Not built yet: network namespaces behind a bridge with a
//! capped uplink (issue 9, item 6); everything runs on loopback.

#[path = "../tests/it/support/sshd.rs"]
mod sshd;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sshd::{ClientKey, Sshd, SshdOptions};

struct Bench {
    hoist: PathBuf,
    work: PathBuf,
    servers: Vec<Sshd>,
    key: ClientKey,
    known: PathBuf,
    tree: PathBuf,
    files: usize,
    max_rss_kb: i64,
}

/// One hoist run: how long, where the time went, payload bytes sent.
struct Run {
    took: Duration,
    /// hoist's own CPU time (user + system).
    cpu: f64,
    phases: Phases,
    sent: u64,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg =
        |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (hosts, megabytes, rounds, files) = (arg(0, 50), arg(1, 10), arg(2, 3), arg(3, 708));
    let hoist = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("hoist");
    assert!(
        hoist.exists(),
        "build it first: cargo build --release ({} is missing)",
        hoist.display()
    );

    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("build");
    make_tree(&tree, megabytes, files);
    let tarball = work.path().join("artifact.tar.gz");
    pack(&tree, &tarball);
    let size = std::fs::metadata(&tarball).unwrap().len();
    let key = ClientKey::ed25519();
    let login = Login::from_env();
    let servers: Vec<Sshd> = (0..hosts)
        .map(|i| {
            let options = SshdOptions {
                max_startups: Some(
                    std::env::var("BENCH_MAX_STARTUPS").unwrap_or_else(|_| "10:30:100".into()),
                ),
                extra_config: login.home(work.path(), i),
                ..SshdOptions::default()
            };
            Sshd::start_with(&[&key], &options)
        })
        .collect();
    let known = work.path().join("known_hosts");
    let lines: String = servers
        .iter()
        .map(|s| s.known_hosts_line() + "\n")
        .collect();
    std::fs::write(&known, lines).unwrap();
    println!(
        "{hosts} sshd hosts on 127.0.0.1, artifact: {files} files, {megabytes} MB ({:.1} MB .tar.gz), {rounds} rounds; login rc: {login:?}",
        size as f64 / 1e6
    );
    let mut bench = Bench {
        hoist,
        work: work.path().to_path_buf(),
        servers,
        key,
        known,
        tree,
        files,
        max_rss_kb: 0,
    };

    let mut m = Measures::default();
    for round in 0..rounds {
        let dir = format!("hoist/{round}");
        // Alternating which goes first, so neither always meets a warm cache.
        let hoist_first = round % 2 == 1;
        if hoist_first {
            m.full.push(bench.deploy(&dir, &format!("r{round}a")));
        }
        m.base.push(bench.baseline(&tarball, round));
        if !hoist_first {
            m.full.push(bench.deploy(&dir, &format!("r{round}a")));
        }
        m.redeploy.push(bench.deploy(&dir, &format!("r{round}b")));
        bench.change_one_file(round);
        m.one_file.push(bench.deploy(&dir, &format!("r{round}c")));
        if hoist_first {
            m.rollback.push(bench.rollback(&dir));
            m.ssh_true.push(bench.ssh_true());
        } else {
            m.ssh_true.push(bench.ssh_true());
            m.rollback.push(bench.rollback(&dir));
        }
        let last = |v: &[Run]| v.last().map(|r| r.took.as_secs_f64()).unwrap_or(0.0);
        println!(
            "round {}: ssh|tar {:.2}s | hoist full {:.2}s ({}), redeploy {:.2}s, 1 file {:.2}s | ssh true {:.2}s, rollback {:.2}s",
            round + 1,
            m.base[round].as_secs_f64(),
            last(&m.full),
            m.full[round].phases,
            last(&m.redeploy),
            last(&m.one_file),
            m.ssh_true[round].as_secs_f64(),
            last(&m.rollback),
        );
    }
    m.print(hosts, size, bench.max_rss_kb);
}

/// What a login runs before the command, on every host: the same for
/// plain ssh and hoist. Each host gets a home of its own (sshd's `SetEnv
/// HOME`), as on a real fleet: hosts that share one home share its locks,
/// and pyenv's `rehash` (run by `pyenv init` at every login) holds a lock
/// in the home that concurrent logins wait for in `sleep 0.1` loops, so a
/// fleet of one machine's sshds measures that lock, not SSH. `BENCH_LOGIN`:
#[derive(Debug, Clone, Copy, PartialEq)]
enum Login {
    /// `pyenv` (the default when `~/.pyenv` exists): a heavy rc, pyenv
    /// init and virtualenv-init against a pyenv root of the host's own
    /// (links to this machine's pyenv; its own shims, so its own lock).
    Pyenv,
    /// `none`: an empty home, no rc file.
    Bare,
    /// `shared`: every host logs into this machine's own home and rc files.
    Shared,
}

impl Login {
    fn from_env() -> Login {
        let pyenv = std::env::var("HOME")
            .map(|h| Path::new(&h).join(".pyenv/bin/pyenv").exists())
            .unwrap_or(false);
        match std::env::var("BENCH_LOGIN").as_deref() {
            Ok("shared") => Login::Shared,
            Ok("none") => Login::Bare,
            Ok("pyenv") => Login::Pyenv,
            Ok(other) => panic!("BENCH_LOGIN={other}: pyenv, none or shared"),
            Err(_) if pyenv => Login::Pyenv,
            Err(_) => Login::Bare,
        }
    }

    /// Makes host `i`'s home under `work`; the sshd_config lines that give it.
    fn home(self, work: &Path, i: usize) -> String {
        if self == Login::Shared {
            return String::new();
        }
        let home = work.join(format!("home/{i}"));
        std::fs::create_dir_all(&home).unwrap();
        if self == Login::Pyenv {
            let mine = Path::new(&std::env::var("HOME").unwrap()).join(".pyenv");
            let root = home.join(".pyenv");
            std::fs::create_dir_all(root.join("shims")).unwrap();
            for part in [
                "bin",
                "libexec",
                "plugins",
                "pyenv.d",
                "completions",
                "versions",
                "version",
            ] {
                if mine.join(part).exists() {
                    std::os::unix::fs::symlink(mine.join(part), root.join(part)).unwrap();
                }
            }
            std::fs::write(
                home.join(".bashrc"),
                "export PYENV_ROOT=\"$HOME/.pyenv\"\nexport PATH=\"$PYENV_ROOT/bin:$PYENV_ROOT/shims:$PATH\"\n\
                 eval \"$(pyenv init -)\"\neval \"$(pyenv virtualenv-init -)\"\n",
            )
            .unwrap();
        }
        format!("SetEnv HOME={}\n", home.display())
    }
}

#[derive(Default)]
struct Measures {
    base: Vec<Duration>,
    full: Vec<Run>,
    redeploy: Vec<Run>,
    one_file: Vec<Run>,
    ssh_true: Vec<Duration>,
    rollback: Vec<Run>,
}

impl Measures {
    fn print(&self, hosts: usize, tarball: u64, max_rss_kb: i64) {
        let secs = |v: &[Run]| median(v.iter().map(|r| r.took.as_secs_f64()).collect());
        let plain = |v: &[Duration]| median(v.iter().map(Duration::as_secs_f64).collect());
        let (base, full) = (plain(&self.base), secs(&self.full));
        let (redeploy, one) = (secs(&self.redeploy), secs(&self.one_file));
        let (fan, rollback) = (plain(&self.ssh_true), secs(&self.rollback));
        let phase =
            |f: fn(&Phases) -> f64| median(self.full.iter().map(|r| f(&r.phases)).collect());
        let bytes = |v: &[Run]| median(v.iter().map(|r| r.sent as f64).collect());
        let baseline_bytes = (hosts as u64 * tarball) as f64;
        println!("medians:");
        println!(
            "  full push:     ssh|tar {base:.2}s, hoist {full:.2}s = {:.2}x (hoist's own CPU {:.2}s)",
            full / base,
            median(self.full.iter().map(|r| r.cpu).collect())
        );
        println!(
            "    hoist phases: reach+probe {:.2}s, lock {:.2}s, wave {:.2}s, unlock+close {:.2}s",
            phase(|p| p.reach),
            phase(|p| p.lock),
            phase(|p| p.wave),
            phase(|p| p.finish)
        );
        println!(
            "  redeploy:      {redeploy:.2}s = {:.2}x a full push",
            redeploy / full
        );
        println!(
            "  1 file changed: {one:.2}s = {:.2}x a full push",
            one / full
        );
        println!(
            "  rollback:      {rollback:.2}s, {hosts} x ssh true {fan:.2}s = {:.2}x",
            rollback / fan
        );
        println!(
            "  bytes sent:    ssh|tar {:.1} MB; hoist full {:.1} MB, redeploy {:.1} MB, 1 file {:.1} MB ({:.1}% of full)",
            baseline_bytes / 1e6,
            bytes(&self.full) / 1e6,
            bytes(&self.redeploy) / 1e6,
            bytes(&self.one_file) / 1e6,
            100.0 * bytes(&self.one_file) / bytes(&self.full).max(1.0)
        );
        println!("  hoist max RSS: {:.1} MB", max_rss_kb as f64 / 1024.0);
    }
}

impl Bench {
    fn ssh(&self, server: &Sshd) -> Command {
        let mut ssh = Command::new("ssh");
        ssh.arg("-i")
            .arg(&self.key.path)
            .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known.display()))
            .args(["-p", &server.port.to_string(), "127.0.0.1"])
            .stdout(Stdio::null());
        ssh
    }

    fn baseline(&self, tarball: &Path, round: usize) -> Duration {
        let started = Instant::now();
        let children: Vec<_> = self
            .servers
            .iter()
            .map(|s| {
                let dir = s.root.join(format!("baseline/{round}"));
                self.ssh(s)
                    .arg(format!("mkdir -p {0} && tar -xz -C {0}", dir.display()))
                    .stdin(std::fs::File::open(tarball).unwrap())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut c in children {
            assert!(c.wait().unwrap().success(), "baseline ssh failed");
        }
        started.elapsed()
    }

    fn ssh_true(&self) -> Duration {
        let started = Instant::now();
        let children: Vec<_> = self
            .servers
            .iter()
            .map(|s| self.ssh(s).arg("true").spawn().unwrap())
            .collect();
        for mut c in children {
            assert!(c.wait().unwrap().success(), "ssh true failed");
        }
        started.elapsed()
    }

    /// Writes deploy.toml for every host's `<root>/<dir>`.
    fn config(&self, dir: &str, version: &str) -> PathBuf {
        let mut toml = format!(
            "[app]\nname = \"bench\"\ndeploy_to = \"/srv/bench\"\nkeep_releases = 5\n\n[ssh]\nconnect_timeout = \"60s\"\nuser = \"{}\"\nidentity_files = [\"{}\"]\nknown_hosts = [\"{}\"]\n\n[artifact]\npath = \"{}\"\nversion = \"{version}\"\n\n[strategy]\ncanary = 0\nbatch = \"100%\"\nparallel = {}\n\n",
            std::env::var("USER").unwrap_or_else(|_| "root".into()),
            self.key.path.display(),
            self.known.display(),
            self.tree.display(),
            self.servers.len()
        );
        for (i, s) in self.servers.iter().enumerate() {
            toml.push_str(&format!(
                "[hosts.h{i}]\naddress = \"127.0.0.1\"\nport = {}\ndeploy_to = \"{}\"\n",
                s.port,
                s.root.join(dir).display()
            ));
        }
        let config = self.work.join("deploy.toml");
        std::fs::write(&config, toml).unwrap();
        config
    }

    fn deploy(&mut self, dir: &str, version: &str) -> Run {
        self.run_hoist(&["deploy", "--yes", "--json"], dir, version)
    }

    fn rollback(&mut self, dir: &str) -> Run {
        self.run_hoist(&["rollback", "--yes", "--json"], dir, "unused")
    }

    // Waited for with wait4, for its resident set.
    #[allow(clippy::zombie_processes)]
    fn run_hoist(&mut self, args: &[&str], dir: &str, version: &str) -> Run {
        let config = self.config(dir, version);
        let started = Instant::now();
        let wall = chrono::Utc::now();
        // BENCH_WRAP: a profiler to run hoist under (e.g. "heaptrack -o /tmp/h").
        let wrap = std::env::var("BENCH_WRAP").unwrap_or_default();
        let mut wrap = wrap.split_whitespace();
        let mut command = match wrap.next() {
            Some(tool) => {
                let mut c = Command::new(tool);
                c.args(wrap).arg(&self.hoist);
                c
            }
            None => Command::new(&self.hoist),
        };
        let mut child = command
            .current_dir(&self.work)
            .args(args)
            .arg("-c")
            .arg(&config)
            .env_remove("SSH_AUTH_SOCK")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let err = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let mut out = String::new();
        stdout.read_to_string(&mut out).unwrap();
        let (status, rss_kb, cpu) = wait4(child.id());
        // The last run of each kind, for a look at what hoist said.
        let _ = std::fs::write(
            std::env::temp_dir().join(format!("bench-hoist-{}-{version}.ndjson", args[0])),
            &out,
        );
        let took = started.elapsed();
        self.max_rss_kb = self.max_rss_kb.max(rss_kb);
        println!(
            "    hoist {}: max RSS {:.1} MB",
            args[0],
            rss_kb as f64 / 1024.0
        );
        assert!(
            status == 0,
            "hoist {args:?} failed ({status}): {}",
            err.join().unwrap()
        );
        Run {
            took,
            cpu,
            phases: phases(wall, &out),
            sent: bytes_sent(&out),
        }
    }

    /// Rewrites file 0 of the tree (same size, new bytes).
    fn change_one_file(&self, round: usize) {
        let path = self.tree.join(file_name(0, self.files));
        let mut data = std::fs::read(&path).unwrap();
        let mut x = 0x5151_u64 + round as u64;
        fill(&mut data, &mut x);
        std::fs::write(path, data).unwrap();
    }
}

/// Waits for `pid`; its exit status (or 128 + signal), largest resident
/// set and CPU seconds.
fn wait4(pid: u32) -> (i32, i64, f64) {
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child, not yet waited for; the pointers are valid.
    let got = unsafe { libc::wait4(pid as i32, &mut status, 0, &mut usage) };
    assert_eq!(got, pid as i32, "wait4");
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (
        code,
        usage.ru_maxrss,
        secs(usage.ru_utime) + secs(usage.ru_stime),
    )
}

/// The payload bytes sent: each host's last `upload_progress`, summed.
fn bytes_sent(ndjson: &str) -> u64 {
    let mut last = std::collections::HashMap::new();
    for v in ndjson
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
    {
        if v["event"] == "upload_progress"
            && let (Some(host), Some(bytes)) = (v["host"].as_str(), v["bytes"].as_u64())
        {
            last.insert(host.to_string(), bytes);
        }
    }
    last.values().sum()
}

/// Seconds spent in each part of a hoist run.
struct Phases {
    reach: f64,
    lock: f64,
    wave: f64,
    finish: f64,
}

impl std::fmt::Display for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "reach+probe {:.2}s, lock {:.2}s, wave {:.2}s, unlock+close {:.2}s",
            self.reach, self.lock, self.wave, self.finish
        )
    }
}

/// Splits a run by its events' timestamps: start → run_started (connect and
/// probe every host), → wave_started (preflight and lock), → wave_done,
/// → summary (unlock, close).
fn phases(started: chrono::DateTime<chrono::Utc>, ndjson: &str) -> Phases {
    let times = |event: &str| -> Vec<chrono::DateTime<chrono::Utc>> {
        ndjson
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["event"] == event)
            .filter_map(|v| {
                chrono::DateTime::parse_from_rfc3339(v["ts"].as_str()?)
                    .ok()
                    .map(|t| t.with_timezone(&chrono::Utc))
            })
            .collect()
    };
    let first = |event: &str| times(event).first().copied().unwrap_or(started);
    let last = |event: &str| times(event).last().copied().unwrap_or(started);
    let secs = |a: chrono::DateTime<chrono::Utc>, b: chrono::DateTime<chrono::Utc>| {
        (b - a).num_milliseconds().max(0) as f64 / 1000.0
    };
    let (run, wave, done, end) = (
        first("run_started"),
        first("wave_started"),
        last("wave_done"),
        last("summary"),
    );
    Phases {
        reach: secs(started, run),
        lock: secs(run, wave),
        wave: secs(wave, done),
        finish: secs(done, end),
    }
}

/// The middle value; of an even count, the mean of the two middle ones.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn file_name(i: usize, files: usize) -> String {
    // A few levels of directories, as a real tree has.
    format!("d{}/e{}/f{i}.bin", i % 7, i % (files / 20).max(1))
}

/// Incompressible bytes (xorshift).
fn fill(data: &mut [u8], x: &mut u64) {
    for chunk in data.chunks_mut(8) {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
}

/// `files` files of incompressible bytes, `megabytes` in all.
fn make_tree(dir: &Path, megabytes: usize, files: usize) {
    let total = megabytes * 1024 * 1024;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..files {
        let size = total / files + usize::from(i < total % files);
        let path = dir.join(file_name(i, files));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut data = vec![0u8; size];
        fill(&mut data, &mut x);
        std::fs::write(path, data).unwrap();
    }
}

/// The baseline's tarball of the tree, packed as hoist packs it.
fn pack(tree: &Path, tarball: &Path) {
    let file = std::fs::File::create(tarball).unwrap();
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.append_dir_all(".", tree).unwrap();
    tar.into_inner().unwrap().finish().unwrap().flush().unwrap();
}
