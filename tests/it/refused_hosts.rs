//! Hosts that refuse connections cost their backoff once in all, not once
//! per round of `parallel` (issue 23, item 18): a host waiting to retry
//! gives its turn to the next host.

use crate::support::project::{Project, ndjson, printed, whoami};
use crate::support::sshd::ClientKey;

#[test]
fn a_host_backing_off_gives_its_parallel_turn_to_the_next_host() {
    const HOSTS: usize = 100;
    const PARALLEL: usize = 4;
    // A port nothing listens on: every connect is refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let key = ClientKey::ed25519();
    let mut p = Project::new().artifact(&[("README", "v1")]);
    for i in 1..=HOSTS {
        let root = p.path().join(format!("h{i}"));
        p = p.ssh_host(&format!("h{i:03}"), port, &root, "");
    }
    let p = p
        .toml(&format!("[strategy]\nparallel = {PARALLEL}"))
        .write_with_ssh(&format!(
            "user = \"{}\"\nidentity_files = [\"{}\"]\nconnect_timeout = \"10s\"\nconnect_retries = 2",
            whoami(),
            key.path.display()
        ));
    let out = p.hoist(&["check", "--json", "-v"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", printed(&out));
    let events = ndjson(&out.stdout);

    // While the first host waits out its first backoff (between its first
    // and second retry), other hosts take its turn and start connecting.
    let first = "h001";
    let retry = |attempt: u64| {
        events
            .iter()
            .position(|e| {
                e["event"] == "connect_retry" && e["host"] == first && e["attempt"] == attempt
            })
            .unwrap_or_else(|| panic!("{first} retried ({attempt}): {}", printed(&out)))
    };
    let (from, to) = (retry(1), retry(2));
    let started_meanwhile = events[from..to]
        .iter()
        .filter(|e| e["event"] == "host_phase" && e["phase"] == "connect")
        .count();
    assert!(
        started_meanwhile > PARALLEL,
        "{started_meanwhile} hosts started connecting while {first} backed off"
    );
}
