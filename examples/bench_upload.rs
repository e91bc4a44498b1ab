//! Benchmark: hoist against plain OpenSSH on a fleet of real sshd hosts.
//!
//!     cargo build --release --bins --examples
//!     ./target/release/examples/bench_upload [HOSTS] [MEGABYTES] [ROUNDS] [FILES]
//!     BENCH_NETNS=1 BENCH_UPLINK=100mbit ./target/release/examples/bench_upload 50 10 3
//!
//! Defaults: 50 hosts, 10 MB, 3 rounds, 708 files. It starts HOSTS sshd
//! processes (openssh-server must be installed; hoist's binary is taken from
//! beside this example's directory, so build both in release: the
//! `--examples` build alone leaves target/release/hoist as it was), makes an
//! artifact directory of FILES files of incompressible bytes, MEGABYTES in
//! all, and per round, the baseline and hoist alternating which goes first,
//! times:
//!
//! - full push: `ssh host 'tar -xz -C DIR' < artifact.tar.gz` for every
//!   host at once, against `hoist deploy` of the directory to fresh hosts
//!   (with where hoist's time went, from its NDJSON timestamps: reaching
//!   and probing the hosts, preflight and lock, upload (until the last host
//!   has its release unpacked and starts its switch), switch (the rest of
//!   the wave), and the end: the dead-man switch's confirmation over a
//!   fresh connection to each host, unlock and close);
//! - pull from URL: `hoist deploy` with `artifact.url` and `artifact.sha256`
//!   of that same tarball to fresh hosts, each host downloading it from a
//!   small HTTP server the bench starts (the "store");
//! - redeploy of the same content under a new version (a copy on each host);
//! - a deploy where 1 of the FILES files changed;
//! - rollback, against HOSTS parallel `ssh host true` (its phases as a
//!   full push's, its wave all switch).
//!
//! `BENCH_ROWS=curve` leaves out the URL pull and the 1-file delta: what
//! a curve over fleet sizes needs (full push, redeploy, rollback and the
//! plain tool's rows) at a price a 1,000-host run can pay:
//!
//!     TMPDIR=/dev/shm BENCH_LOGIN=none BENCH_ROWS=curve ./target/release/examples/bench_upload 1000 1 3
//!
//! The bench raises its own soft limit on open files to the hard limit
//! (a listener per host, and an ssh client per host at once).
//!
//! It prints per round, then the medians and ratios, the payload bytes
//! hoist sent (the sum of the hosts' `sent_bytes` in its NDJSON summary)
//! against what the baseline sends (HOSTS × the tarball), hoist's
//! largest resident set over all its runs (from wait4) and the most open
//! files it held at once (`/proc/PID/fd`, counted every 20 ms), and the CPU time
//! this whole machine used during each kind of run: every host runs here,
//! so that is the tool's work, SSH's and the hosts' together, and a run
//! on N cores takes at least that over N.
//!
//! Network. By default every sshd and the store listen on 127.0.0.1. With
//! `BENCH_NETNS=1` (as root, with `ip` and `tc`) each host's sshd runs in a
//! network namespace of its own (`hoist-bench-PID-hN`, 10.77.1.1 and on),
//! joined by a veth to one bridge `hbPID` (10.77.0.1/16) in this machine's
//! namespace, and the store runs in a namespace of its own on the same
//! bridge (10.77.0.2). `BENCH_UPLINK=100mbit` then caps what this machine
//! sends into the bridge (`tc qdisc add dev hbPID root tbf rate 100mbit burst
//! 256kb latency 50ms`): plain ssh and hoist go through the same cap, the
//! store's downloads do not (as an S3 download would not use the deployer's
//! uplink). In that mode the bench also prints how many bytes this machine
//! sent into the bridge during each kind of run (the bridge's tx_bytes:
//! payload, SSH and TCP all counted). Namespaces, veths, bridge and qdisc
//! are removed at exit, on a panic and on Ctrl-C or SIGTERM. Without root
//! it says so and runs on loopback.
//!
//! Disk. The hosts' directories are made under `$TMPDIR` (default /tmp),
//! and a round's are removed when it ends. Real hosts each write to a disk
//! of their own; here every host writes to the same one, 500 MB a deploy
//! at 50 hosts x 10 MB, and that disk's writeback then sets the time of every
//! unpack and copy (identical runs of the 1-file delta took 9.4 to 17.5 s
//! on this machine's ext4). `TMPDIR=/dev/shm` keeps the hosts' files in
//! memory instead (2.8 GB at the peak of a 50 x 10 MB round), which
//! measures what the tools do rather than what one shared disk can take.
//!
//! hoist gets `connect_timeout = "60s"` (plain ssh has no connect timeout:
//! a loaded machine running hundreds of sshd logins at once is slow to
//! answer). Each host has a home of its own, as on a real fleet (see
//! [`Login`]: `BENCH_LOGIN=pyenv|none|shared` picks what a login runs).
//! Environment: `BENCH_MAX_STARTUPS` sets every sshd's MaxStartups (default
//! OpenSSH's own "10:30:100", so the pacing of handshakes is part of what is
//! measured); `BENCH_WRAP` runs hoist under a profiler (`heaptrack -o
//! /tmp/h`, `perf record -g -o /tmp/p`); `BENCH_HOIST` runs another hoist
//! binary (an older build, to compare); `BENCH_STRATEGY` replaces hoist's
//! `[strategy]` lines (default `canary = 0` and `batch = "100%"`: one wave,
//! as the pipe does), e.g. `canary = 1\ncanary_pause = "20s"\nbatch =
//! "100%"` for a rollout with a canary and a bake; tables may follow
//! (`batch = "25%"\n[hooks]\nafter_switch = ["sleep 2"]` for waves whose
//! hosts take two seconds after their switch).
//!
//! `BENCH_KILL_RELAY=hN` (with `[relay]` in `BENCH_STRATEGY` and
//! `max_failures = 1`): one round of `ssh | tar` and a full push only,
//! during which host hN (a relaying host: with `fanout = 4` and no zones
//! the seeds are h0 and h1, h2 relays to h10..h13) is killed, its sshd
//! and everything under it, 300 ms after its receive of the relayed
//! stream began; then `hoist verify` says which hosts are exact. A
//! killed host cannot come back in its namespace: run the bench again
//! for another sample.

#[path = "../tests/it/support/http.rs"]
mod http;
#[path = "../tests/it/support/sshd.rs"]
mod sshd;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::Http;
use sha2::{Digest, Sha256};
use sshd::{ClientKey, Sshd, SshdOptions};

/// Directories to remove when the bench is interrupted (drop does it otherwise).
static TEMP_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Fields drop in order: the servers, the store, then their network.
struct Bench {
    hoist: PathBuf,
    /// The `[strategy]` lines hoist runs with (`BENCH_STRATEGY`).
    strategy: String,
    work: PathBuf,
    servers: Vec<Sshd>,
    key: ClientKey,
    known: PathBuf,
    tree: PathBuf,
    files: usize,
    max_rss_kb: i64,
    max_fds: usize,
    /// Serves the tarball for the URL pulls.
    store: Http,
    /// The tarball's sha256, for `artifact.sha256`.
    sha256: String,
    net: Option<net::Bridge>,
    /// `BENCH_KILL_RELAY`: the host killed during the full push.
    victim: Option<usize>,
}

/// One hoist run: how long, where the time went, payload bytes sent.
struct Run {
    took: Duration,
    /// hoist's own CPU time (user + system).
    cpu: f64,
    phases: Phases,
    sent: u64,
    /// Bytes this machine sent into the bridge meanwhile (0 on loopback).
    wire: u64,
    /// CPU seconds this whole machine used meanwhile (see [`machine_cpu`]).
    machine: f64,
    /// The most open files hoist held at once (sampled, see [`FdWatch`]).
    fds: usize,
}

/// One run of plain ssh: how long, bytes into the bridge (0 on loopback),
/// and the CPU seconds this whole machine used meanwhile.
struct Plain {
    took: Duration,
    wire: u64,
    machine: f64,
}

/// CPU seconds every process of this machine has used since boot (user,
/// nice, system, irq, softirq from /proc/stat; not idle, iowait or steal).
/// Every host runs here, so over a run it is the tool's CPU, the SSH
/// clients' and servers', and all the hosts' work together (and whatever
/// else runs meanwhile): on N cores a run takes at least that over N.
fn machine_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().next() else {
        return 0.0;
    };
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let busy: f64 = [0, 1, 2, 5, 6].iter().filter_map(|&i| ticks.get(i)).sum();
    // USER_HZ: 100 on every Linux this runs on.
    busy / 100.0
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg =
        |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (hosts, megabytes, rounds, files) = (arg(0, 50), arg(1, 10), arg(2, 3), arg(3, 708));
    // BENCH_ROWS=curve: only what the fleet-size curve needs (full push,
    // redeploy, rollback, and the plain tool's two rows), not the URL pull
    // and the 1-file delta.
    let curve = match std::env::var("BENCH_ROWS").as_deref() {
        Ok("curve") => true,
        Ok("all") | Err(_) => false,
        Ok(other) => panic!("BENCH_ROWS={other}: all or curve"),
    };
    // A listener per host, and at times an ssh client per host, each with
    // its files: as many open files as this machine lets this process have.
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    assert!(
        limit as usize >= hosts * 4 + 64,
        "{hosts} hosts need about {} open files here, the hard limit allows {limit}: raise it (ulimit -Hn) first",
        hosts * 4 + 64
    );
    // BENCH_HOIST: another hoist binary (an older build, to compare).
    let hoist = match std::env::var_os("BENCH_HOIST") {
        Some(path) => PathBuf::from(path),
        None => std::env::current_exe()
            .unwrap()
            .parent()
            .and_then(Path::parent)
            .unwrap()
            .join("hoist"),
    };
    assert!(
        hoist.exists(),
        "build it first: cargo build --release ({} is missing)",
        hoist.display()
    );

    let victim = std::env::var("BENCH_KILL_RELAY").ok().map(|h| {
        h.trim_start_matches('h')
            .parse::<usize>()
            .ok()
            .filter(|&i| i < hosts)
            .unwrap_or_else(|| panic!("BENCH_KILL_RELAY={h}: one of h0..h{}", hosts - 1))
    });
    let work = tempfile::tempdir().unwrap();
    TEMP_DIRS.lock().unwrap().push(work.path().to_path_buf());
    let mut net = network();
    on_interrupt(net.as_ref().map(net::Bridge::teardown));
    let tree = work.path().join("build");
    make_tree(&tree, megabytes, files);
    let tarball = work.path().join("artifact.tar.gz");
    pack(&tree, &tarball);
    let body = std::fs::read(&tarball).unwrap();
    let size = body.len() as u64;
    let sha256 = hex::encode(Sha256::digest(&body));
    let key = ClientKey::ed25519();
    let login = Login::from_env();
    let max_startups = std::env::var("BENCH_MAX_STARTUPS").unwrap_or_else(|_| "10:30:100".into());
    let servers: Vec<Sshd> = (0..hosts)
        .map(|i| {
            let options = SshdOptions {
                max_startups: Some(max_startups.clone()),
                extra_config: login.home(work.path(), i),
                ..SshdOptions::default()
            };
            let options = match &mut net {
                Some(bridge) => {
                    let address = net::Bridge::host_address(i);
                    let ns = bridge
                        .namespace(&format!("h{i}"), &address)
                        .unwrap_or_else(|e| panic!("host {i}'s namespace: {e}"));
                    SshdOptions {
                        netns: Some(ns),
                        listen_address: Some(address),
                        ..options
                    }
                }
                None => options,
            };
            let server = Sshd::start_with(&[&key], &options);
            TEMP_DIRS
                .lock()
                .unwrap()
                .push(server.dir.path().to_path_buf());
            server
        })
        .collect();
    let files_served = [("/artifact.tar.gz", body)];
    let store = match &mut net {
        Some(bridge) => {
            let ns = bridge
                .namespace("store", net::STORE)
                .unwrap_or_else(|e| panic!("the store's namespace: {e}"));
            std::thread::spawn(move || {
                net::enter(&ns);
                Http::serve_on(net::STORE, &files_served)
            })
            .join()
            .unwrap()
        }
        None => Http::serve(&files_served),
    };
    let known = work.path().join("known_hosts");
    let lines: String = servers
        .iter()
        .map(|s| s.known_hosts_line() + "\n")
        .collect();
    std::fs::write(&known, lines).unwrap();
    let place = match &net {
        Some(bridge) => format!(
            "in network namespaces behind bridge {} (10.77.0.0/16), uplink {}, store {}",
            bridge.name,
            bridge
                .uplink
                .as_deref()
                .map_or("not capped".to_string(), |r| format!("capped at {r} (tbf)")),
            net::STORE
        ),
        None => "on 127.0.0.1".to_string(),
    };
    println!(
        "{hosts} sshd hosts {place}, artifact: {files} files, {megabytes} MB ({:.1} MB .tar.gz), {rounds} rounds; login rc: {login:?}",
        size as f64 / 1e6
    );
    // BENCH_STRATEGY: hoist's [strategy] lines, `\n` between them (default:
    // one wave of every host, as the pipe does).
    let strategy = std::env::var("BENCH_STRATEGY")
        .map(|s| s.replace("\\n", "\n"))
        .unwrap_or_else(|_| "canary = 0\nbatch = \"100%\"".into());
    let mut bench = Bench {
        hoist,
        strategy,
        work: work.path().to_path_buf(),
        servers,
        key,
        known,
        tree,
        files,
        max_rss_kb: 0,
        max_fds: 0,
        store,
        sha256,
        net,
        victim,
    };
    if let Some(v) = victim {
        bench.kill_relay_round(&tarball, v);
        return;
    }

    let mut m = Measures {
        curve,
        ..Measures::default()
    };
    for round in 0..rounds {
        let dir = format!("hoist/{round}");
        let url_dir = format!("url/{round}");
        // Alternating which goes first, so neither always meets a warm cache.
        let hoist_first = round % 2 == 1;
        if hoist_first {
            if !curve {
                m.url.push(bench.deploy_url(&url_dir));
            }
            m.full.push(bench.deploy(&dir, &format!("r{round}a")));
        }
        m.base.push(bench.baseline(&tarball, round));
        if !hoist_first {
            m.full.push(bench.deploy(&dir, &format!("r{round}a")));
            if !curve {
                m.url.push(bench.deploy_url(&url_dir));
            }
        }
        m.redeploy.push(bench.deploy(&dir, &format!("r{round}b")));
        if !curve {
            bench.change_one_file(round);
            m.one_file.push(bench.deploy(&dir, &format!("r{round}c")));
        }
        if hoist_first {
            m.rollback.push(bench.rollback(&dir));
            m.ssh_true.push(bench.ssh_true());
        } else {
            m.ssh_true.push(bench.ssh_true());
            m.rollback.push(bench.rollback(&dir));
        }
        bench.clear_round(round);
        let last = |v: &[Run]| v.last().map(|r| r.took.as_secs_f64()).unwrap_or(0.0);
        let others = match curve {
            true => String::new(),
            false => format!(
                ", URL pull {:.2}s, 1 file {:.2}s",
                last(&m.url),
                last(&m.one_file)
            ),
        };
        println!(
            "round {}: ssh|tar {:.2}s | hoist full {:.2}s ({}), redeploy {:.2}s{others} | ssh true {:.2}s, rollback {:.2}s ({})",
            round + 1,
            m.base[round].took.as_secs_f64(),
            last(&m.full),
            m.full[round].phases,
            last(&m.redeploy),
            m.ssh_true[round].took.as_secs_f64(),
            last(&m.rollback),
            m.rollback[round].phases,
        );
    }
    m.print(hosts, size, bench.max_rss_kb, bench.max_fds);
    if let Some(bridge) = &bench.net {
        println!(
            "  bridge {}: {} requests to the store; tc: {}",
            bridge.name,
            bench.store.requests().len(),
            bridge.qdisc_stats()
        );
    }
}

/// The bridge when `BENCH_NETNS=1` and this machine can make one; else
/// loopback, saying why.
fn network() -> Option<net::Bridge> {
    let uplink = std::env::var("BENCH_UPLINK").ok().filter(|r| !r.is_empty());
    if std::env::var("BENCH_NETNS").as_deref() != Ok("1") {
        if uplink.is_some() {
            println!("BENCH_UPLINK needs BENCH_NETNS=1: running on loopback, not capped");
        }
        return None;
    }
    match net::Bridge::create(uplink.as_deref()) {
        Ok(bridge) => Some(bridge),
        Err(why) => {
            println!("BENCH_NETNS=1 but no network namespaces ({why}): running on loopback");
            None
        }
    }
}

/// On Ctrl-C or SIGTERM: removes the namespaces and bridge (`teardown`)
/// and the temporary directories, then exits 130. (A hoist run in flight
/// gets the terminal's Ctrl-C itself; its hosts go away under it.)
fn on_interrupt(teardown: Option<net::Teardown>) {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate()).unwrap();
            let mut int = signal(SignalKind::interrupt()).unwrap();
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        });
        eprintln!("bench interrupted: removing its namespaces, bridge and temporary files");
        // The main thread may trip over what goes away under it: quietly.
        std::panic::set_hook(Box::new(|_| {}));
        if let Some(t) = &teardown {
            t.run();
        }
        for dir in TEMP_DIRS.lock().unwrap().iter() {
            let _ = std::fs::remove_dir_all(dir);
        }
        std::process::exit(130);
    });
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
    /// `BENCH_ROWS=curve`: no URL pull, no 1-file delta.
    curve: bool,
    base: Vec<Plain>,
    full: Vec<Run>,
    url: Vec<Run>,
    redeploy: Vec<Run>,
    one_file: Vec<Run>,
    ssh_true: Vec<Plain>,
    rollback: Vec<Run>,
}

impl Measures {
    fn print(&self, hosts: usize, tarball: u64, max_rss_kb: i64, max_fds: usize) {
        let secs = |v: &[Run]| median(v.iter().map(|r| r.took.as_secs_f64()).collect());
        let plain = |v: &[Plain]| median(v.iter().map(|p| p.took.as_secs_f64()).collect());
        let (base, full) = (plain(&self.base), secs(&self.full));
        let (redeploy, one) = (secs(&self.redeploy), secs(&self.one_file));
        let (fan, rollback) = (plain(&self.ssh_true), secs(&self.rollback));
        let url = secs(&self.url);
        let phase =
            |v: &[Run], f: fn(&Phases) -> f64| median(v.iter().map(|r| f(&r.phases)).collect());
        let phases = |v: &[Run]| Phases {
            reach: phase(v, |p| p.reach),
            lock: phase(v, |p| p.lock),
            upload: v
                .iter()
                .any(|r| r.phases.upload.is_some())
                .then(|| phase(v, |p| p.upload.unwrap_or(0.0))),
            switch: phase(v, |p| p.switch),
            finish: phase(v, |p| p.finish),
        };
        let bytes = |v: &[Run]| median(v.iter().map(|r| r.sent as f64).collect());
        let wire = |v: &[Run]| median(v.iter().map(|r| r.wire as f64).collect());
        let baseline_bytes = (hosts as u64 * tarball) as f64;
        println!("medians:");
        println!(
            "  full push:     ssh|tar {base:.2}s, hoist {full:.2}s = {:.2}x (hoist's own CPU {:.2}s)",
            full / base,
            median(self.full.iter().map(|r| r.cpu).collect())
        );
        println!("    hoist phases: {}", phases(&self.full));
        if !self.curve {
            println!(
                "  URL pull:      {url:.2}s = {:.2}x ssh|tar, {:.2}x a full push",
                url / base,
                url / full
            );
            println!("    hoist phases: {}", phases(&self.url));
        }
        // Logging into every host is a floor no SSH tool goes under; on
        // one machine running every host it is most of a small deploy.
        println!(
            "  redeploy:      {redeploy:.2}s = {:.2}x a full push, {:.2}x {hosts} x ssh true",
            redeploy / full,
            redeploy / fan
        );
        println!("    hoist phases: {}", phases(&self.redeploy));
        if !self.curve {
            println!(
                "  1 file changed: {one:.2}s = {:.2}x a full push, {:.2}x {hosts} x ssh true",
                one / full,
                one / fan
            );
            println!("    hoist phases: {}", phases(&self.one_file));
        }
        println!(
            "  rollback:      {rollback:.2}s, {hosts} x ssh true {fan:.2}s = {:.2}x",
            rollback / fan
        );
        println!("    hoist phases: {}", phases(&self.rollback));
        println!(
            "  payload sent:  ssh|tar {:.1} MB; hoist full {:.1} MB, URL pull {:.0} bytes, redeploy {:.1} MB, 1 file {:.1} MB ({:.1}% of full)",
            baseline_bytes / 1e6,
            bytes(&self.full) / 1e6,
            bytes(&self.url),
            bytes(&self.redeploy) / 1e6,
            bytes(&self.one_file) / 1e6,
            100.0 * bytes(&self.one_file) / bytes(&self.full).max(1.0)
        );
        if self.base.iter().any(|p| p.wire > 0) {
            let base_wire = median(self.base.iter().map(|p| p.wire as f64).collect());
            let fan_wire = median(self.ssh_true.iter().map(|p| p.wire as f64).collect());
            println!(
                "  into the bridge (all this machine sent: payload, SSH, TCP): ssh|tar {:.1} MB, hoist full {:.1} MB; URL pull {:.2} MB; redeploy {:.2} MB; 1 file {:.2} MB; rollback {:.2} MB, ssh true {:.2} MB",
                base_wire / 1e6,
                wire(&self.full) / 1e6,
                wire(&self.url) / 1e6,
                wire(&self.redeploy) / 1e6,
                wire(&self.one_file) / 1e6,
                wire(&self.rollback) / 1e6,
                fan_wire / 1e6,
            );
        }
        let cpu = |v: &[Run]| median(v.iter().map(|r| r.machine).collect());
        let plain_cpu = |v: &[Plain]| median(v.iter().map(|p| p.machine).collect());
        println!(
            "  CPU this machine used ({} cores; tool, SSH, every host's work): ssh|tar {:.1}s, hoist full {:.1}s; URL pull {:.1}s; redeploy {:.1}s; 1 file {:.1}s; rollback {:.1}s, ssh true {:.1}s",
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            plain_cpu(&self.base),
            cpu(&self.full),
            cpu(&self.url),
            cpu(&self.redeploy),
            cpu(&self.one_file),
            cpu(&self.rollback),
            plain_cpu(&self.ssh_true),
        );
        let fds = |v: &[Run]| v.iter().map(|r| r.fds).max().unwrap_or(0);
        println!(
            "  hoist max RSS: {:.1} MB, max open files: {max_fds} (full push {}, redeploy {}, rollback {})",
            max_rss_kb as f64 / 1024.0,
            fds(&self.full),
            fds(&self.redeploy),
            fds(&self.rollback),
        );
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
            .args(["-p", &server.port.to_string(), &server.address])
            .stdout(Stdio::null());
        ssh
    }

    /// Bytes sent into the bridge so far (0 on loopback).
    fn wire(&self) -> u64 {
        self.net.as_ref().map_or(0, net::Bridge::sent)
    }

    fn baseline(&self, tarball: &Path, round: usize) -> Plain {
        let (started, wire, machine) = (Instant::now(), self.wire(), machine_cpu());
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
        Plain {
            took: started.elapsed(),
            wire: self.wire() - wire,
            machine: machine_cpu() - machine,
        }
    }

    fn ssh_true(&self) -> Plain {
        let (started, wire, machine) = (Instant::now(), self.wire(), machine_cpu());
        let children: Vec<_> = self
            .servers
            .iter()
            .map(|s| self.ssh(s).arg("true").spawn().unwrap())
            .collect();
        for mut c in children {
            assert!(c.wait().unwrap().success(), "ssh true failed");
        }
        Plain {
            took: started.elapsed(),
            wire: self.wire() - wire,
            machine: machine_cpu() - machine,
        }
    }

    /// Writes deploy.toml for every host's `<root>/<dir>`, with `artifact`
    /// as the `[artifact]` table's lines.
    fn config(&self, dir: &str, artifact: &str) -> PathBuf {
        let mut toml = format!(
            "[app]\nname = \"bench\"\ndeploy_to = \"/srv/bench\"\nkeep_releases = 5\n\n[ssh]\nconnect_timeout = \"60s\"\nuser = \"{}\"\nidentity_files = [\"{}\"]\nknown_hosts = [\"{}\"]\n\n[artifact]\n{artifact}\n\n[strategy]\nparallel = {}\n{}\n\n",
            std::env::var("USER").unwrap_or_else(|_| "root".into()),
            self.key.path.display(),
            self.known.display(),
            self.servers.len(),
            self.strategy
        );
        for (i, s) in self.servers.iter().enumerate() {
            toml.push_str(&format!(
                "[hosts.h{i}]\naddress = \"{}\"\nport = {}\ndeploy_to = \"{}\"\n",
                s.address,
                s.port,
                s.root.join(dir).display()
            ));
        }
        let config = self.work.join("deploy.toml");
        std::fs::write(&config, toml).unwrap();
        config
    }

    fn deploy(&mut self, dir: &str, version: &str) -> Run {
        let artifact = format!(
            "path = \"{}\"\nversion = \"{version}\"",
            self.tree.display()
        );
        self.run_hoist(&["deploy", "--yes", "--json"], dir, &artifact, version)
    }

    /// A deploy where each host downloads the tarball from the store.
    fn deploy_url(&mut self, dir: &str) -> Run {
        let artifact = format!(
            "url = \"{}\"\nsha256 = \"{}\"",
            self.store.url("/artifact.tar.gz"),
            self.sha256
        );
        self.run_hoist(&["deploy", "--yes", "--json"], dir, &artifact, "url")
    }

    fn rollback(&mut self, dir: &str) -> Run {
        let artifact = format!("path = \"{}\"", self.tree.display());
        self.run_hoist(&["rollback", "--yes", "--json"], dir, &artifact, "")
    }

    /// `label` (may be empty) names the run in the output and its NDJSON file.
    // Waited for with wait4, for its resident set.
    #[allow(clippy::zombie_processes)]
    fn run_hoist(&mut self, args: &[&str], dir: &str, artifact: &str, label: &str) -> Run {
        let config = self.config(dir, artifact);
        let (started, wire, machine) = (Instant::now(), self.wire(), machine_cpu());
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
        let fds = FdWatch::start(child.id());
        let killer = self
            .victim
            .filter(|_| args[0] == "deploy")
            .map(|v| kill_when_relayed_to(&self.servers[v], dir, started));
        let mut out = String::new();
        stdout.read_to_string(&mut out).unwrap();
        let (status, rss_kb, cpu) = wait4(child.id());
        let fds = fds.stop();
        let took = started.elapsed();
        let wire = self.wire() - wire;
        let machine = machine_cpu() - machine;
        let name = [args[0], label]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        // The last run of each kind, for a look at what hoist said.
        let _ = std::fs::write(
            std::env::temp_dir().join(format!("bench-hoist-{}.ndjson", name.replace(' ', "-"))),
            &out,
        );
        self.max_rss_kb = self.max_rss_kb.max(rss_kb);
        self.max_fds = self.max_fds.max(fds);
        println!(
            "    hoist {name}: max RSS {:.1} MB, max open files {fds}",
            rss_kb as f64 / 1024.0
        );
        if let Some(killer) = killer {
            match killer.join().unwrap() {
                Some(at) => println!(
                    "    killed h{} at {:.2}s, mid-stream; hoist exited {status} after {:.2}s",
                    self.victim.unwrap(),
                    at.as_secs_f64(),
                    took.as_secs_f64()
                ),
                None => println!("    the victim's receive never began: not killed"),
            }
        } else {
            assert!(
                status == 0,
                "hoist {args:?} failed ({status}): {}",
                err.join().unwrap()
            );
        }
        Run {
            took,
            cpu,
            phases: phases(wall, &out),
            sent: bytes_sent(&out),
            wire,
            machine,
            fds,
        }
    }

    /// `BENCH_KILL_RELAY`: `ssh | tar`, then a full push during which host
    /// `victim` is killed; then what `hoist verify` finds and who served whom.
    fn kill_relay_round(&mut self, tarball: &Path, victim: usize) {
        let base = self.baseline(tarball, 0);
        let run = self.deploy("hoist/0", "r0a");
        println!(
            "ssh|tar {:.2}s | hoist full, h{victim} killed: {:.2}s ({}) = {:.2}x; payload from here {:.1} MB",
            base.took.as_secs_f64(),
            run.took.as_secs_f64(),
            run.phases,
            run.took.as_secs_f64() / base.took.as_secs_f64(),
            run.sent as f64 / 1e6
        );
        let events =
            std::fs::read_to_string(std::env::temp_dir().join("bench-hoist-deploy-r0a.ndjson"))
                .unwrap_or_default();
        for line in events.lines() {
            let Ok(e) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let text = e["text"].as_str().unwrap_or_default();
            if text.starts_with("relay:") || text.contains("did not get the release whole") {
                println!("  {} {text}", e["host"].as_str().unwrap_or(""));
            }
        }
        let out = Command::new(&self.hoist)
            .current_dir(&self.work)
            .args(["verify", "-c"])
            .arg(self.work.join("deploy.toml"))
            .env_remove("SSH_AUTH_SOCK")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let ok = text
            .lines()
            .filter(|l| l.split_whitespace().nth(2) == Some("ok"))
            .count();
        println!(
            "hoist verify ({}): {ok} of {} host(s) ok (their release exactly as made); its last lines:",
            out.status,
            self.servers.len()
        );
        for line in text
            .lines()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            println!("  {line}");
        }
    }

    /// Removes what a round left on the hosts, so that the next round meets
    /// the same free space (and a tmpfs holds all the rounds).
    fn clear_round(&self, round: usize) {
        std::thread::scope(|scope| {
            for server in &self.servers {
                scope.spawn(move || {
                    for dir in ["baseline", "hoist", "url"] {
                        let _ = std::fs::remove_dir_all(server.root.join(format!("{dir}/{round}")));
                    }
                });
            }
        });
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

/// Counts a running process's open files (`/proc/PID/fd`) every 20 ms
/// until stopped; the most it saw. (A sample: a peak shorter than 20 ms
/// may go unseen.)
struct FdWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<usize>,
}

impl FdWatch {
    fn start(pid: u32) -> FdWatch {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let dir = format!("/proc/{pid}/fd");
            let mut most = 0;
            while !stopped.load(Ordering::Relaxed) {
                if let Ok(entries) = std::fs::read_dir(&dir) {
                    most = most.max(entries.count());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            most
        });
        FdWatch { stop, thread }
    }

    fn stop(self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// Waits for `pid`; its exit status (or 128 + signal), largest resident
/// set and CPU seconds.
/// Kills `server` (its sshd and every process under it) 300 ms after
/// its receive of a relayed stream began (a `*.relay` part under its
/// `.hoist/tmp`); returns when, after `started`, or `None` if it never began.
fn kill_when_relayed_to(
    server: &Sshd,
    dir: &str,
    started: Instant,
) -> std::thread::JoinHandle<Option<Duration>> {
    let tmp = server.root.join(dir).join(".hoist/tmp");
    let pid = server.pid();
    std::thread::spawn(move || {
        while started.elapsed() < Duration::from_secs(600) {
            let receiving = std::fs::read_dir(&tmp).is_ok_and(|entries| {
                entries
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().contains(".relay"))
            });
            if receiving {
                std::thread::sleep(Duration::from_millis(300));
                let mut doomed = vec![pid];
                let mut at = 0;
                while at < doomed.len() {
                    doomed.extend(children_of(doomed[at]));
                    at += 1;
                }
                if let Ok(path) = std::env::var("BENCH_KILL_LOG") {
                    let said: String = doomed
                        .iter()
                        .map(|p| {
                            let cmd =
                                std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                            format!("{p} {}\n", String::from_utf8_lossy(&cmd).replace('\0', " "))
                        })
                        .collect();
                    let _ = std::fs::write(path, said);
                }
                // Some may have ended meanwhile.
                let _ = Command::new("kill")
                    .arg("-9")
                    .args(doomed.iter().map(u32::to_string))
                    .stderr(Stdio::null())
                    .status();
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    })
}

/// The processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|stat| {
                // pid (comm) state ppid ...: comm may hold spaces.
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(pid)
            })
        })
        .collect()
}

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

/// The payload bytes sent: the hosts' `sent_bytes` in the run's summary
/// (artifact, delta or manifest; 0 for a URL pull).
fn bytes_sent(ndjson: &str) -> u64 {
    ndjson
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "summary")
        .and_then(|v| {
            v["hosts"]
                .as_array()
                .map(|hosts| hosts.iter().filter_map(|h| h["sent_bytes"].as_u64()).sum())
        })
        .unwrap_or(0)
}

/// Seconds spent in each part of a hoist run.
struct Phases {
    reach: f64,
    lock: f64,
    /// Until the last host has its release unpacked (`None` for a run
    /// that uploads nothing: a rollback).
    upload: Option<f64>,
    switch: f64,
    finish: f64,
}

impl std::fmt::Display for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "reach+probe {:.2}s, lock {:.2}s", self.reach, self.lock)?;
        if let Some(upload) = self.upload {
            write!(f, ", upload {upload:.2}s")?;
        }
        write!(f, ", switch {:.2}s, end {:.2}s", self.switch, self.finish)
    }
}

/// Phases a host goes through before its switch, when it receives a release.
const RECEIVING: [&str; 4] = ["upload", "unpack", "ready", "link"];
/// The first phases of a switch.
const SWITCHING: [&str; 3] = ["before_switch_once", "before_switch", "switch"];

/// Splits a run by its events' timestamps: start → run_started (connect and
/// probe every host), → wave_started (preflight and lock), → the moment the
/// last host starts its switch (upload: every host has its release), →
/// wave_done (switch, and the rest of the wave), → summary (the end: a
/// deploy's dead-man confirmation, a fresh connection to each host, then
/// unlock and close). A rollback receives nothing: its wave is all switch.
fn phases(started: chrono::DateTime<chrono::Utc>, ndjson: &str) -> Phases {
    type Time = chrono::DateTime<chrono::Utc>;
    let events: Vec<(serde_json::Value, Time)> = ndjson
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            let ts = chrono::DateTime::parse_from_rfc3339(v["ts"].as_str()?).ok()?;
            Some((v, ts.with_timezone(&chrono::Utc)))
        })
        .collect();
    let times = |event: &str| -> Vec<Time> {
        events
            .iter()
            .filter(|(v, _)| v["event"] == event)
            .map(|(_, t)| *t)
            .collect()
    };
    let first = |event: &str| times(event).first().copied().unwrap_or(started);
    let last = |event: &str| times(event).last().copied().unwrap_or(started);
    let secs = |a: Time, b: Time| (b - a).num_milliseconds().max(0) as f64 / 1000.0;
    let (run, wave, done, end) = (
        first("run_started"),
        first("wave_started"),
        last("wave_done"),
        last("summary"),
    );
    let in_phase = |names: &'static [&'static str]| {
        events.iter().filter(move |(v, _)| {
            v["event"] == "host_phase" && names.iter().any(|n| v["phase"] == *n)
        })
    };
    let receives = in_phase(&RECEIVING).next().is_some();
    // Each host's first step into its switch; the last of those.
    let mut switching: std::collections::HashMap<&str, Time> = Default::default();
    for (v, t) in in_phase(&SWITCHING) {
        switching
            .entry(v["host"].as_str().unwrap_or(""))
            .or_insert(*t);
    }
    let received = switching
        .values()
        .max()
        .copied()
        .unwrap_or(wave)
        .clamp(wave, done.max(wave));
    let (upload, switch) = if receives {
        (Some(secs(wave, received)), secs(received, done))
    } else {
        (None, secs(wave, done))
    };
    Phases {
        reach: secs(started, run),
        lock: secs(run, wave),
        upload,
        switch,
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

/// The hosts' own network: one namespace per host (and one for the
/// artifact store), each joined by a veth to one bridge in this machine's
/// namespace, on 10.77.0.0/16. What this machine sends into the bridge can
/// be capped with tbf; what the store sends the hosts crosses the bridge
/// without touching that cap, as an S3 download does not use the
/// deployer's uplink. Everything is named with the bench's pid
/// (`hoist-bench-PID-*`, `hbPID*`) and removed on drop, or by the
/// interrupt thread on Ctrl-C or SIGTERM.
mod net {
    use std::os::fd::AsRawFd;
    use std::process::Command;

    /// The store's address; hosts are at 10.77.1.1 and on.
    pub const STORE: &str = "10.77.0.2";
    const BRIDGE_ADDRESS: &str = "10.77.0.1/16";

    pub struct Bridge {
        pub name: String,
        /// The tbf rate on the bridge, if any ("100mbit").
        pub uplink: Option<String>,
        prefix: String,
        veths: usize,
    }

    impl Bridge {
        /// The bridge (up, 10.77.0.1/16, capped at `uplink`), or why not.
        pub fn create(uplink: Option<&str>) -> Result<Bridge, String> {
            if !is_root() {
                return Err("not running as root".into());
            }
            let used = output(&["-o", "addr", "show", "to", "10.77.0.0/16"])?;
            if !used.trim().is_empty() {
                return Err(format!(
                    "10.77.0.0/16 is in use here (a bench still running, or its leftovers):\n{used}"
                ));
            }
            let pid = std::process::id();
            let bridge = Bridge {
                name: format!("hb{pid}"),
                uplink: uplink.map(str::to_string),
                prefix: format!("hoist-bench-{pid}-"),
                veths: 0,
            };
            ip(&["link", "add", &bridge.name, "type", "bridge"])?;
            ip(&["addr", "add", BRIDGE_ADDRESS, "dev", &bridge.name])?;
            ip(&["link", "set", &bridge.name, "up"])?;
            if let Some(rate) = uplink {
                run(Command::new("tc").args([
                    "qdisc",
                    "add",
                    "dev",
                    &bridge.name,
                    "root",
                    "tbf",
                    "rate",
                    rate,
                    "burst",
                    "256kb",
                    "latency",
                    "50ms",
                ]))?;
            }
            Ok(bridge)
        }

        /// The address of host `i`: 10.77.1.1, 10.77.1.2, ...
        pub fn host_address(i: usize) -> String {
            format!("10.77.{}.{}", 1 + i / 250, 1 + i % 250)
        }

        /// A new namespace `hoist-bench-PID-LABEL` with `address` on its
        /// end of a veth into the bridge; its name.
        pub fn namespace(&mut self, label: &str, address: &str) -> Result<String, String> {
            let ns = format!("{}{label}", self.prefix);
            let veth = format!("{}v{}", self.name, self.veths);
            self.veths += 1;
            ip(&["netns", "add", &ns])?;
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            ip(&["link", "set", &veth, "master", &self.name, "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{address}/16"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            Ok(ns)
        }

        /// Bytes this machine has sent into the bridge so far.
        pub fn sent(&self) -> u64 {
            let path = format!("/sys/class/net/{}/statistics/tx_bytes", self.name);
            std::fs::read_to_string(path)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0)
        }

        /// tc's own count for the cap: sent, dropped, overlimits.
        pub fn qdisc_stats(&self) -> String {
            let out = Command::new("tc")
                .args(["-s", "qdisc", "show", "dev", &self.name])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            out.lines()
                .find(|l| l.trim_start().starts_with("Sent"))
                .unwrap_or("")
                .trim()
                .to_string()
        }

        /// What the interrupt thread needs to remove everything.
        pub fn teardown(&self) -> Teardown {
            Teardown {
                prefix: self.prefix.clone(),
                bridge: self.name.clone(),
            }
        }
    }

    impl Drop for Bridge {
        fn drop(&mut self) {
            self.teardown().run();
        }
    }

    /// Removes the bench's namespaces (ending whatever still runs in them:
    /// the bench's own sshd and their sessions), its veths, and its bridge
    /// with its qdisc.
    pub struct Teardown {
        prefix: String,
        bridge: String,
    }

    impl Teardown {
        pub fn run(&self) {
            let names: Vec<String> = std::fs::read_dir("/run/netns")
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(&self.prefix))
                .collect();
            for ns in &names {
                let pids = output(&["netns", "pids", ns]).unwrap_or_default();
                for pid in pids.split_whitespace().filter_map(|p| p.parse().ok()) {
                    // SAFETY: a plain kill(2) of a process in our own namespace.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                let _ = ip(&["netns", "del", ns]);
            }
            // A namespace outlives its name while a socket of it still
            // closes (the store's, say): delete the veths themselves too.
            let links = output(&["-o", "link", "show"]).unwrap_or_default();
            let veth = format!("{}v", self.bridge);
            for name in links
                .lines()
                .filter_map(|l| l.split(": ").nth(1))
                .filter_map(|n| n.split('@').next())
                .filter(|n| n.starts_with(&veth))
            {
                let _ = ip(&["link", "del", name]);
            }
            let _ = ip(&["link", "del", &self.bridge]);
        }
    }

    /// Moves the calling thread (only it) into namespace `ns`.
    pub fn enter(ns: &str) {
        let file = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
        // SAFETY: setns on a valid namespace fd, for this thread only.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
    }

    fn is_root() -> bool {
        // SAFETY: geteuid cannot fail.
        unsafe { libc::geteuid() == 0 }
    }

    fn ip(args: &[&str]) -> Result<(), String> {
        run(Command::new("ip").args(args))
    }

    fn output(args: &[&str]) -> Result<String, String> {
        let out = Command::new("ip")
            .args(args)
            .output()
            .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    fn run(command: &mut Command) -> Result<(), String> {
        let out = command.output().map_err(|e| format!("{command:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{command:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}
