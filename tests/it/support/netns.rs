//! A network namespace of a test's own: servers started inside it listen on
//! its loopback, which nothing outside can reach. `Forward` lets the test's
//! process in through one port, the way the internet reaches a bastion.
//! Needs root and `ip netns`; `Netns::create` says why not otherwise.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

static NEXT: AtomicUsize = AtomicUsize::new(0);

pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A fresh namespace with its loopback up, or why this machine cannot make one.
    pub fn create() -> Result<Netns, String> {
        if !super::sshd::is_root() {
            return Err("not running as root".into());
        }
        let name = format!(
            "hoist-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        ip(&["netns", "add", &name])?;
        let ns = Netns { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }
}

/// Moves the calling thread (only it) into the namespace `name`: what it
/// binds or dials from then on is inside.
pub fn enter(name: &str) {
    let file = std::fs::File::open(format!("/run/netns/{name}")).unwrap();
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// 127.0.0.1:`port` out here, forwarded to 127.0.0.1:`to` inside a namespace.
pub struct Forward {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl Forward {
    pub fn start(ns: &Netns, to: u16) -> Forward {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let netns = std::fs::File::open(format!("/run/netns/{}", ns.name)).unwrap();
        let stopped = Arc::clone(&stop);
        std::thread::spawn(move || {
            // This thread alone moves into the namespace: the listener was
            // made outside and stays there; what it dials is inside.
            let rc = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            while !stopped.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((outside, _)) => {
                        outside.set_nonblocking(false).unwrap();
                        if let Ok(inside) = TcpStream::connect(("127.0.0.1", to)) {
                            pipe(outside, inside);
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => break,
                }
            }
        });
        Forward { port, stop }
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn pipe(a: TcpStream, b: TcpStream) {
    let copy = |mut from: TcpStream, mut to: TcpStream| {
        std::thread::spawn(move || {
            let mut buf = [0u8; 32 * 1024];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        });
    };
    copy(a.try_clone().unwrap(), b.try_clone().unwrap());
    copy(b, a);
}

/// A veth pair from the test's own namespace into `Netns`: a real link that
/// a test can take down. `outside` and `inside` are the two ends' addresses.
pub struct Veth {
    pub outside: String,
    pub inside: String,
    ns: String,
    outer: String,
    inner: String,
}

impl Netns {
    /// A /30 between here and the namespace, both ends up.
    pub fn veth(&self) -> Result<Veth, String> {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let id = std::process::id() % 100_000;
        let (outer, inner) = (format!("hv{id}x{n}a"), format!("hv{id}x{n}b"));
        let net = format!("10.{}.{}", 100 + id % 100, n % 250);
        let veth = Veth {
            outside: format!("{net}.1"),
            inside: format!("{net}.2"),
            ns: self.name.clone(),
            outer,
            inner,
        };
        ip(&[
            "link",
            "add",
            &veth.outer,
            "type",
            "veth",
            "peer",
            "name",
            &veth.inner,
        ])?;
        ip(&["link", "set", &veth.inner, "netns", &self.name])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/30", veth.outside),
            "dev",
            &veth.outer,
        ])?;
        let inside = format!("{}/30", veth.inside);
        ip(&["-n", &self.name, "addr", "add", &inside, "dev", &veth.inner])?;
        veth.mend()?;
        ip(&["link", "set", &veth.outer, "up"])?;
        Ok(veth)
    }
}

impl Veth {
    /// Takes the namespace's end down: from then on both sides' packets
    /// are dropped without a word, as with a pulled cable.
    pub fn cut(&self) -> Result<(), String> {
        ip(&["-n", &self.ns, "link", "set", &self.inner, "down"])
    }

    /// Brings the link back, forgetting the neighbours that failed to
    /// answer meanwhile (else the next connect is "no route to host").
    pub fn mend(&self) -> Result<(), String> {
        ip(&["-n", &self.ns, "link", "set", &self.inner, "up"])?;
        ip(&["neigh", "flush", "dev", &self.outer])?;
        ip(&["-n", &self.ns, "neigh", "flush", "dev", &self.inner])
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.outer]);
    }
}
