//! The SSH transport when the network fails under it (issue 13): links that
//! stop mid-upload, silent peers, jump hosts going away. A dead host must
//! fail within its timeouts, fail what comes after at once, and let go.

use std::io::Cursor;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::support::netns::Netns;
use crate::support::project::noise;
use crate::support::sshd::{ClientKey, Sshd, current_user};
use futures_util::future::join_all;
use hoist::config::{HostKeyChecking, JumpHost, SshTarget};
use hoist::transport::ssh::{SshContext, SshContextOptions, SshHost};
use hoist::transport::{Input, Stdin, Transport, TransportError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

const UPLOAD: usize = 50 * 1024 * 1024;
/// Well into the stream, and reached soon on a loaded machine.
const MIDWAY: usize = 4 * 1024 * 1024;

/// A relay on 127.0.0.1 that a test can freeze: from then on it reads and
/// forwards nothing either way and closes nothing, which is what a link
/// that went down looks like to both ends. It takes little into its own
/// buffers, so that a sender's fill up soon.
struct Relay {
    port: u16,
    frozen: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(to: u16) -> Relay {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(64 * 1024).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(16).unwrap();
        let port = listener.local_addr().unwrap().port();
        let frozen = CancellationToken::new();
        let freeze = frozen.clone();
        let task = tokio::spawn(async move {
            let mut relays = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(("127.0.0.1", to)).await.unwrap();
                let (client_rx, client_tx) = client.into_split();
                let (server_rx, server_tx) = server.into_split();
                relays.spawn(pass(client_rx, server_tx, freeze.clone()));
                relays.spawn(pass(server_rx, client_tx, freeze.clone()));
            }
        });
        Relay { port, frozen, task }
    }

    fn freeze(&self) {
        self.frozen.cancel();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pass(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: CancellationToken,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            _ = frozen.cancelled() => break,
            n = from.read(&mut buf) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
        };
        tokio::select! {
            _ = frozen.cancelled() => break,
            r = to.write_all(&buf[..n]) => if r.is_err() { return },
        }
    }
    // Frozen: hold both sockets open, move nothing.
    std::future::pending::<()>().await;
}

/// Upload bytes that call `midway` once `MIDWAY` of them have been read.
struct Upload {
    data: Cursor<Vec<u8>>,
    midway: Option<Box<dyn FnOnce() + Send>>,
}

fn upload(midway: impl FnOnce() + Send + 'static) -> Stdin {
    Box::new(Upload {
        data: Cursor::new(vec![7u8; UPLOAD]),
        midway: Some(Box::new(midway)),
    })
}

impl AsyncRead for Upload {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.data.position() as usize >= MIDWAY
            && let Some(midway) = self.midway.take()
        {
            midway();
        }
        Pin::new(&mut self.data).poll_read(cx, buf)
    }
}

struct Server {
    key: ClientKey,
    sshd: Sshd,
}

impl Server {
    fn start() -> Server {
        let key = ClientKey::ed25519();
        let sshd = Sshd::start(&[&key]);
        Server { key, sshd }
    }

    /// A target for this server at `address:port`, its key pinned.
    fn target(&self, address: &str, port: u16) -> SshTarget {
        SshTarget {
            name: format!("faulty-{port}"),
            address: address.into(),
            port,
            user: current_user(),
            identity_files: vec![self.key.path.clone()],
            identities_only: true,
            known_hosts: vec![PathBuf::from("/nonexistent")],
            host_key_checking: HostKeyChecking::Strict,
            host_key: Some(self.sshd.host_key_fingerprint()),
            connect_timeout: Duration::from_secs(2),
            connect_retries: 0,
            keepalive: Duration::from_secs(1),
            jump: vec![],
            sources: vec![],
        }
    }
}

fn no_agent() -> Arc<SshContext> {
    SshContext::with_options(SshContextOptions::default())
}

fn is_disconnected(e: &TransportError) -> bool {
    matches!(e, TransportError::Disconnected { .. })
}

/// Uploads enough at once that, once `cut` runs (when the first one is
/// `MIDWAY`), more may be in flight (each channel's window) than the
/// sockets can hold: the session's own writes stall, as in the finding.
/// Returns each upload's error and when the last one came.
async fn uploads_cut_midway(
    host: &SshHost,
    timeout: Duration,
    cut: impl Fn() + Send + Sync + 'static,
) -> (Vec<TransportError>, Duration) {
    let cut = Arc::new(cut);
    let once = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let uploads = (0..4).map(|_| {
        let (cut, once) = (Arc::clone(&cut), Arc::clone(&once));
        let midway = move || {
            if !once.swap(true, Ordering::SeqCst) {
                cut();
            }
        };
        host.exec(
            "cat >/dev/null",
            Some(Input::reader(upload(midway), UPLOAD as u64)),
            timeout,
        )
    });
    // A bound of our own: without it a hang is only a stuck test run.
    let results = tokio::time::timeout(Duration::from_secs(60), join_all(uploads))
        .await
        .expect("the uploads hung on the dead link");
    let errors = results
        .into_iter()
        .map(|r| r.expect_err("an upload went through a dead link"))
        .collect();
    (errors, started.elapsed())
}

/// What a deploy does after a failed upload: another command on the host,
/// then closing it. Both must be quick on a dead connection.
async fn assert_gone_and_let_go(host: &SshHost) {
    let started = Instant::now();
    let next = host.exec("rm -f partial", None, Duration::from_secs(30));
    let err = tokio::time::timeout(Duration::from_secs(60), next)
        .await
        .expect("the next command hung")
        .unwrap_err();
    assert!(is_disconnected(&err), "{err}");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "the next command took {took:?}"
    );
    assert_closes_promptly(host).await;
}

async fn assert_closes_promptly(host: &SshHost) {
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(60), host.close())
        .await
        .expect("close hung");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "close took {took:?}");
}

// keepalive 1s and connect_timeout 2s: a peer that takes nothing for 3s is dead.
const DEAD_AFTER: Duration = Duration::from_secs(3);
/// Room for a loaded test machine.
const SLACK: Duration = Duration::from_secs(4);

#[tokio::test]
async fn a_link_that_stops_mid_upload_fails_the_host_within_its_timeouts() {
    let server = Server::start();
    for round in 0..3 {
        let relay = Relay::start(server.sshd.port).await;
        let target = server.target("127.0.0.1", relay.port);
        let host = SshHost::connect(&target, &no_agent()).await.unwrap();
        let freeze = relay.frozen.clone();
        let (errors, took) =
            uploads_cut_midway(&host, Duration::from_secs(30), move || freeze.cancel()).await;
        assert!(
            errors.iter().all(is_disconnected),
            "round {round}: {errors:?}"
        );
        assert!(
            took < DEAD_AFTER + SLACK,
            "round {round}: failed after {took:?}"
        );
        assert_gone_and_let_go(&host).await;
    }
}

#[tokio::test]
async fn a_silent_peer_is_found_dead_while_a_command_waits() {
    let server = Server::start();
    let relay = Relay::start(server.sshd.port).await;
    let target = server.target("127.0.0.1", relay.port);
    let host = SshHost::connect(&target, &no_agent()).await.unwrap();
    let waiting = host.exec("sleep 60", None, Duration::from_secs(90));
    let started = Instant::now();
    let freeze = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        relay.freeze();
    };
    let (result, ()) = tokio::join!(waiting, freeze);
    let err = result.unwrap_err();
    // keepalive_max (3) keepalives go unanswered, one a second.
    assert!(is_disconnected(&err), "{err}");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(4) + SLACK,
        "failed after {took:?}"
    );
    assert_gone_and_let_go(&host).await;
}

#[tokio::test]
async fn a_command_timeout_on_a_stalled_upload_is_reported_at_the_timeout() {
    let server = Server::start();
    let relay = Relay::start(server.sshd.port).await;
    let mut target = server.target("127.0.0.1", relay.port);
    // The link is not judged dead for a long while: the timeout comes first.
    target.keepalive = Duration::from_secs(60);
    let host = SshHost::connect(&target, &no_agent()).await.unwrap();
    let freeze = relay.frozen.clone();
    let timeout = Duration::from_secs(2);
    let (errors, took) = uploads_cut_midway(&host, timeout, move || freeze.cancel()).await;
    let timed_out = |e: &TransportError| matches!(e, TransportError::Timeout { .. });
    assert!(errors.iter().all(timed_out), "{errors:?}");
    assert!(took < timeout + SLACK, "reported after {took:?}");
    // The follow-up command gets its own timeout, once.
    let started = Instant::now();
    let next = host.exec("true", None, timeout);
    let err = tokio::time::timeout(Duration::from_secs(60), next)
        .await
        .expect("the next command hung")
        .unwrap_err();
    let took = started.elapsed();
    // Its timeout and the keepalive verdict on the link (connect_timeout
    // after the first timeout, also 2s) fall at the same moment: either
    // may come first, and both end it in time.
    assert!(timed_out(&err) || is_disconnected(&err), "{err}");
    assert!(took < timeout + SLACK, "reported after {took:?}");
    // The session is stuck on the dead link: close gives up on it.
    assert_closes_promptly(&host).await;
    let err = host.exec("true", None, timeout).await.unwrap_err();
    assert!(is_disconnected(&err), "{err}");
}

#[tokio::test]
async fn a_jump_host_that_goes_away_mid_upload_fails_the_host_behind_it() {
    let server = Server::start();
    let bastion = Sshd::start(&[&server.key]);
    let relay = Relay::start(bastion.port).await;
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = dir.path().join("known_hosts");
    let line = format!("[127.0.0.1]:{} {}\n", relay.port, bastion.host_public_key());
    std::fs::write(&known_hosts, line).unwrap();
    let mut target = server.target("127.0.0.1", server.sshd.port);
    target.known_hosts = vec![known_hosts];
    target.jump = vec![JumpHost {
        address: "127.0.0.1".into(),
        port: relay.port,
        ..Default::default()
    }];
    let host = SshHost::connect(&target, &no_agent()).await.unwrap();
    let freeze = relay.frozen.clone();
    let (errors, took) =
        uploads_cut_midway(&host, Duration::from_secs(30), move || freeze.cancel()).await;
    assert!(errors.iter().all(is_disconnected), "{errors:?}");
    assert!(took < DEAD_AFTER + SLACK, "failed after {took:?}");
    assert_gone_and_let_go(&host).await;
}

#[tokio::test]
async fn closing_a_host_behind_a_frozen_jump_host_returns() {
    let server = Server::start();
    let bastion = Sshd::start(&[&server.key]);
    let relay = Relay::start(bastion.port).await;
    let mut target = server.target("127.0.0.1", server.sshd.port);
    target.keepalive = Duration::from_secs(60);
    target.jump = vec![JumpHost {
        address: "127.0.0.1".into(),
        port: relay.port,
        host_key_checking: Some(HostKeyChecking::Off),
        ..Default::default()
    }];
    let host = SshHost::connect(&target, &no_agent()).await.unwrap();
    let freeze = relay.frozen.clone();
    let (errors, _) =
        uploads_cut_midway(&host, Duration::from_secs(1), move || freeze.cancel()).await;
    let timed_out = |e: &TransportError| matches!(e, TransportError::Timeout { .. });
    assert!(errors.iter().all(timed_out), "{errors:?}");
    assert_closes_promptly(&host).await;
}

/// The finding itself: real sshd in a network namespace, reached over a
/// veth pair whose far end is taken down while the uploads are sending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_veth_link_taken_down_mid_upload_fails_the_host_within_its_timeouts() {
    let ns = match Netns::create() {
        Ok(ns) => ns,
        Err(why) => {
            eprintln!("skipped: needs a network namespace ({why})");
            return;
        }
    };
    let veth = match ns.veth() {
        Ok(veth) => Arc::new(veth),
        Err(why) => {
            eprintln!("skipped: cannot make a veth pair ({why})");
            return;
        }
    };
    let key = ClientKey::ed25519();
    let options = crate::support::sshd::SshdOptions {
        netns: Some(ns.name.clone()),
        extra_config: format!("ListenAddress {}:22\n", veth.inside),
        ..Default::default()
    };
    let sshd = Sshd::start_with(&[&key], &options);
    let server = Server { key, sshd };
    for round in 0..3 {
        veth.mend().unwrap();
        let target = server.target(&veth.inside, 22);
        let host = connect_when_up(&target).await;
        let link = Arc::clone(&veth);
        let (errors, took) =
            uploads_cut_midway(&host, Duration::from_secs(30), move || link.cut().unwrap()).await;
        assert!(
            errors.iter().all(is_disconnected),
            "round {round}: {errors:?}"
        );
        assert!(
            took < DEAD_AFTER + SLACK,
            "round {round}: failed after {took:?}"
        );
        assert_gone_and_let_go(&host).await;
    }
}

/// A link just brought back up may take a moment to carry packets.
async fn connect_when_up(target: &SshTarget) -> SshHost {
    let mut attempts = 0;
    loop {
        match SshHost::connect(target, &no_agent()).await {
            Ok(host) => return host,
            Err(TransportError::Unreachable { .. }) if attempts < 10 => attempts += 1,
            Err(e) => panic!("{e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A whole deploy with some hosts' links cut while their uploads are sending:
/// it ends within connect_timeout + command_timeout and a few seconds, with
/// exit 5, a summary, every other host back where it was and no lock left.
/// `HOIST_CUT_RUNS=20` repeats it (the figure issue 13 asks for).
#[test]
fn a_deploy_with_links_cut_mid_upload_ends_in_time_with_exit_5() {
    let runs: usize = std::env::var("HOIST_CUT_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for run in 1..=runs {
        let took = runtime.block_on(deploy_with_cut_links());
        eprintln!("cut-mid-upload run {run}/{runs}: ended {took:.1?} after the cut");
    }
}

async fn deploy_with_cut_links() -> Duration {
    use crate::support::project::{Project, ndjson, whoami};
    const CONNECT: u64 = 3;
    const COMMAND: u64 = 15;
    let key = ClientKey::ed25519();
    let hosts: Vec<Sshd> = (0..6).map(|_| Sshd::start(&[&key])).collect();
    let mut relays = Vec::new();
    let mut p = Project::new();
    for (i, h) in hosts.iter().enumerate() {
        // web4..web6 are reached through relays that the test will freeze.
        let port = if i >= 3 {
            let relay = Relay::start(h.port).await;
            let port = relay.port;
            relays.push(relay);
            port
        } else {
            h.port
        };
        p = p.ssh_host(&format!("web{}", i + 1), port, &h.root, "");
    }
    let known: String = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let port = if i >= 3 { relays[i - 3].port } else { h.port };
            h.known_hosts_line().replacen(
                &format!("[127.0.0.1]:{}", h.port),
                &format!("[127.0.0.1]:{port}"),
                1,
            ) + "\n"
        })
        .collect();
    std::fs::write(p.path().join("known_hosts"), known).unwrap();
    // Incompressible, so that the uploads are still sending when the links go.
    let build = p.path().join("build");
    std::fs::create_dir_all(&build).unwrap();
    std::fs::write(build.join("payload.bin"), noise(1, 24 * 1024 * 1024)).unwrap();
    let p = p
        .toml("[strategy]\ncanary = 0\nbatch = \"100%\"\nparallel = 6")
        .write_with_ssh(&format!(
            "user = \"{}\"\nidentity_files = [\"{}\"]\nknown_hosts = [\"known_hosts\"]\nconnect_timeout = \"{CONNECT}s\"\ncommand_timeout = \"{COMMAND}s\"",
            whoami(),
            key.path.display()
        ));
    // web1..web3 hold a release to go back to.
    let small = p.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    std::fs::write(small.join("app.txt"), "v1").unwrap();
    let config = std::fs::read_to_string(p.path().join("deploy.toml")).unwrap();
    let first = config.replace("path = \"build\"", "path = \"small\"");
    std::fs::write(p.path().join("first.toml"), first).unwrap();
    p.hoist(&["deploy", "--yes", "-c", "first.toml"])
        .assert()
        .success();
    let before: Vec<Option<String>> = (1..=6).map(|i| p.current(&format!("web{i}"))).collect();

    let freezes: Vec<CancellationToken> = relays.iter().map(|r| r.frozen.clone()).collect();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("hoist"))
        .current_dir(p.path())
        .args(["deploy", "--yes", "--json"])
        .env("HOME", p.path().join("home"))
        .env_remove("SSH_AUTH_SOCK")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        let mut cut_at = None;
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let line = line.unwrap();
            if cut_at.is_none() && line.contains("\"upload_progress\"") {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                let host = v["host"].as_str().unwrap_or("");
                if ["web4", "web5", "web6"].contains(&host) && v["bytes"].as_u64() > Some(1 << 20) {
                    freezes.iter().for_each(CancellationToken::cancel);
                    cut_at = Some(Instant::now());
                }
            }
            lines.push(line);
        }
        (lines, cut_at)
    });
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    let ended = Instant::now();
    let (lines, cut_at) = reader.join().unwrap();
    let cut_at = cut_at.expect("the links were cut mid-upload");
    let took = ended - cut_at;
    let events = ndjson((lines.join("\n") + "\n").as_bytes());
    let summary = events.last().unwrap();
    assert_eq!(summary["event"], "summary");
    assert_eq!(status.code(), Some(5), "{summary}");
    // The step on the cut link times out, then the final unlock of that host
    // gets the command timeout too (it is the run's own lock to free).
    assert!(
        took < Duration::from_secs(CONNECT + 2 * COMMAND + 6),
        "ended {took:?} after the cut"
    );
    for (i, was) in before.iter().enumerate().take(3) {
        let host = format!("web{}", i + 1);
        assert_eq!(&p.current(&host), was, "{host} is back where it was");
        assert!(!p.locked(&host), "no lock left on {host}");
    }
    drop(relays);
    took
}
