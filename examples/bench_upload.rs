//! Benchmark: a 50-host deploy of a 10 MB tarball against the baseline of
//! `ssh host 'tar -xz -C DIR' < artifact` run for every host at once.
//!
//!     cargo run --release --example bench_upload [-- HOSTS MEGABYTES ROUNDS]
//!
//! It starts HOSTS real sshd processes on 127.0.0.1 (openssh-server must be
//! installed), times both ways ROUNDS times each, alternating, and prints the
//! medians and their ratio, where hoist's time went (from the timestamps of
//! its NDJSON events: reaching and probing the hosts, taking the lock, the
//! wave, freeing the lock) and hoist's largest resident set. The hoist
//! binary must be built first (`cargo build --release`).

#[path = "../tests/it/support/sshd.rs"]
mod sshd;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sshd::{ClientKey, Sshd};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let hosts: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(50);
    let megabytes: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let rounds: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(3);
    let hoist = std::env::current_dir()
        .unwrap()
        .join("target/release/hoist");
    assert!(hoist.exists(), "build it first: cargo build --release");

    let work = tempfile::tempdir().unwrap();
    let artifact = work.path().join("artifact.tar.gz");
    make_tarball(&artifact, megabytes);
    let size = std::fs::metadata(&artifact).unwrap().len();
    let key = ClientKey::ed25519();
    let servers: Vec<Sshd> = (0..hosts).map(|_| Sshd::start(&[&key])).collect();
    let known = work.path().join("known_hosts");
    let lines: String = servers
        .iter()
        .map(|s| s.known_hosts_line() + "\n")
        .collect();
    std::fs::write(&known, lines).unwrap();
    println!(
        "{hosts} sshd hosts on 127.0.0.1, artifact {:.1} MB (.tar.gz), {rounds} rounds each",
        size as f64 / 1e6
    );

    let mut base = Vec::new();
    let mut ours = Vec::new();
    let mut phases: Vec<Phases> = Vec::new();
    for round in 0..rounds {
        base.push(baseline(&servers, &key, &known, &artifact, round));
        let (took, split) = with_hoist(
            &hoist,
            work.path(),
            &servers,
            &key,
            &known,
            &artifact,
            round,
        );
        ours.push(took);
        println!("  hoist phases: {split}");
        phases.push(split);
        println!(
            "round {}: ssh|tar {:.2}s   hoist deploy {:.2}s",
            round + 1,
            base[round].as_secs_f64(),
            ours[round].as_secs_f64()
        );
    }
    let (b, h) = (median(&mut base), median(&mut ours));
    println!(
        "median: ssh|tar {:.2}s, hoist deploy {:.2}s, ratio hoist/baseline = {:.2}",
        b.as_secs_f64(),
        h.as_secs_f64(),
        h.as_secs_f64() / b.as_secs_f64()
    );
    let pick = |f: fn(&Phases) -> f64| {
        let mut v: Vec<f64> = phases.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "hoist phase medians: reach+probe {:.2}s, lock {:.2}s, wave {:.2}s, unlock+close {:.2}s; max RSS {} MB",
        pick(|p| p.reach),
        pick(|p| p.lock),
        pick(|p| p.wave),
        pick(|p| p.finish),
        max_child_rss_kb() / 1024
    );
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
    // The first of each event (one wave here), the last wave_done.
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

/// The largest resident set of any child waited for so far: the hoist runs
/// (every ssh of the baseline is far smaller).
fn max_child_rss_kb() -> i64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given; RUSAGE_CHILDREN is valid.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    usage.ru_maxrss
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Incompressible content, so the tarball really is about `megabytes` big.
fn make_tarball(path: &Path, megabytes: usize) {
    let mut data = vec![0u8; megabytes * 1024 * 1024];
    let mut x: u64 = 0x9E3779B97F4A7C15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let file = std::fs::File::create(path).unwrap();
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "payload.bin", &data[..])
        .unwrap();
    tar.into_inner().unwrap().finish().unwrap().flush().unwrap();
}

fn baseline(
    servers: &[Sshd],
    key: &ClientKey,
    known: &Path,
    artifact: &Path,
    round: usize,
) -> Duration {
    let started = Instant::now();
    let children: Vec<_> = servers
        .iter()
        .map(|s| {
            let dir = s.root.join(format!("baseline/{round}"));
            Command::new("ssh")
                .args(["-i"])
                .arg(&key.path)
                .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
                .arg("-o")
                .arg(format!("UserKnownHostsFile={}", known.display()))
                .args(["-p", &s.port.to_string(), "127.0.0.1"])
                .arg(format!("mkdir -p {0} && tar -xz -C {0}", dir.display()))
                .stdin(std::fs::File::open(artifact).unwrap())
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success(), "baseline ssh failed");
    }
    started.elapsed()
}

fn with_hoist(
    hoist: &Path,
    work: &Path,
    servers: &[Sshd],
    key: &ClientKey,
    known: &Path,
    artifact: &Path,
    round: usize,
) -> (Duration, Phases) {
    let mut toml = format!(
        "[app]\nname = \"bench\"\ndeploy_to = \"/srv/bench\"\nkeep_releases = 2\n\n[ssh]\nuser = \"{}\"\nidentity_files = [\"{}\"]\nknown_hosts = [\"{}\"]\n\n[artifact]\npath = \"{}\"\nversion = \"r{round}\"\n\n[strategy]\ncanary = 0\nbatch = \"100%\"\nparallel = {}\n\n",
        std::env::var("USER").unwrap_or_else(|_| "root".into()),
        key.path.display(),
        known.display(),
        artifact.display(),
        servers.len()
    );
    for (i, s) in servers.iter().enumerate() {
        // A fresh deploy_to each round, so every round uploads.
        toml.push_str(&format!(
            "[hosts.h{i}]\naddress = \"127.0.0.1\"\nport = {}\ndeploy_to = \"{}\"\n",
            s.port,
            s.root.join(format!("hoist/{round}")).display()
        ));
    }
    let config = work.join("deploy.toml");
    std::fs::write(&config, toml).unwrap();
    let started = Instant::now();
    let wall = chrono::Utc::now();
    let out = Command::new(hoist)
        .current_dir(work)
        .args(["deploy", "--yes", "--json", "-c"])
        .arg(&config)
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    assert!(
        out.status.success(),
        "hoist deploy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (elapsed, phases(wall, &String::from_utf8_lossy(&out.stdout)))
}
