//! `hoist deploy --dry-run` on real sshd hosts that differ: it predicts, per
//! host, how the release would reach it, the bytes, the files it changes
//! and its rollback target; it exits as the deploy would (4 for a lock
//! someone holds); it changes no byte on any host; and the real deploy
//! then does what it said.

use serde_json::Value;

use crate::support::fleet::Fleet;
use crate::support::project::{noise, summary_host, tree};

const V1: &[(&str, &str)] = &[("a", "one"), ("b", "same"), ("c", "gone in v2")];
const V2: &[(&str, &str)] = &[("a", "two"), ("b", "same"), ("d", "new in v2")];

/// The artifact: `files`, and a large file the same in every version (so
/// that a delta is worth sending).
fn build(f: &Fleet, files: &[(&str, &str)]) {
    let dir = f.path().join("build");
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    for (path, text) in files {
        std::fs::write(dir.join(path), text).unwrap();
    }
    std::fs::write(dir.join("big"), noise(7, 300_000)).unwrap();
}

/// The dry run's row for `host`.
fn row<'a>(events: &'a [Value], host: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["table"] == "dry_run" && e["host"] == host)
        .unwrap_or_else(|| panic!("a dry_run row for {host}: {events:#?}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// Every file under every host's deploy_to, with its bytes.
fn hosts(f: &Fleet) -> Vec<Vec<(String, Vec<u8>)>> {
    f.host_names()
        .iter()
        .map(|h| f.deploy_path(h))
        .map(|dir| if dir.exists() { tree(&dir) } else { Vec::new() })
        .collect()
}

#[test]
fn a_dry_run_predicts_each_host_changes_nothing_and_the_deploy_does_what_it_said() {
    let f = Fleet::ssh(4).write();
    build(&f, V1);
    // web1 stays fresh; web2, web3, web4 get v1.
    f.hoist(&["deploy", "--yes", "-l", "web2,web3,web4"])
        .assert()
        .success();
    let v1 = f.current("web2").unwrap();
    build(&f, V2);
    // web3 holds v2 already: deployed there, then rolled back to v1.
    f.hoist(&["deploy", "--yes", "-l", "web3"])
        .assert()
        .success();
    let held = f.current("web3").unwrap();
    f.hoist(&["rollback", "--yes", "-l", "web3"])
        .assert()
        .success();
    assert_eq!(f.current("web3").as_deref(), Some(v1.as_str()));
    // Someone holds web4.
    f.hoist(&["lock", "-l", "web4", "-m", "db maintenance"])
        .assert()
        .success();
    let before = hosts(&f);

    let events = f.events(&["deploy", "--dry-run", "--json"], 4);
    assert_eq!(hosts(&f), before, "the dry run changed no byte on any host");
    let plan = events
        .iter()
        .find(|e| e["event"] == "rollout_plan")
        .expect("the waves, as plan shows them");
    assert_eq!(plan["waves"][0]["hosts"], serde_json::json!(["web1"]));

    let fresh = row(&events, "web1");
    assert_eq!(fresh["source"], "whole artifact");
    assert!(
        fresh["added"].is_null() && fresh["rollback_to"].is_null(),
        "{fresh}"
    );
    let on_v1 = row(&events, "web2");
    assert_eq!(on_v1["source"], format!("delta from {v1}"));
    assert_eq!(on_v1["rollback_to"], v1.as_str());
    assert_eq!(strings(&on_v1["added"]), ["d"]);
    assert_eq!(strings(&on_v1["changed"]), ["a"]);
    assert_eq!(strings(&on_v1["removed"]), ["c"]);
    assert_eq!(row(&events, "web3")["source"], format!("copy of {held}"));
    let locked = row(&events, "web4");
    assert!(
        locked["lock"].as_str().unwrap().contains("db maintenance"),
        "{locked}"
    );
    assert_eq!(locked["marked"], true);

    // The deploy, once the lock is gone, does what the dry run said.
    f.hoist(&["unlock", "--force", "-l", "web4"])
        .assert()
        .success();
    let events_again = f.events(&["deploy", "--dry-run", "--json"], 0);
    let deployed = f.events(&["deploy", "--yes", "--json"], 0);
    let summary = deployed.last().unwrap();
    for host in f.host_names() {
        let predicted = row(&events_again, &host)["bytes"].as_u64().unwrap();
        let sent = summary_host(summary, &host)["sent_bytes"]
            .as_u64()
            .unwrap_or(0);
        let off = predicted.abs_diff(sent) as f64 / sent.max(1) as f64;
        assert!(
            off <= 0.10,
            "{host}: predicted {predicted} bytes, sent {sent}"
        );
    }
    // The files it said would change are what changed on web2.
    let new = f.current("web2").unwrap();
    let release = |id: &str| tree(&f.deploy_path("web2").join("releases").join(id));
    let (old, now) = (release(&v1), release(&new));
    let names = |t: &[(String, Vec<u8>)]| t.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
    let added: Vec<String> = names(&now)
        .into_iter()
        .filter(|p| !names(&old).contains(p))
        .collect();
    let removed: Vec<String> = names(&old)
        .into_iter()
        .filter(|p| !names(&now).contains(p))
        .collect();
    let changed: Vec<String> = now
        .iter()
        .filter(|(p, b)| old.iter().any(|(q, c)| p == q && b != c))
        .map(|(p, _)| p.clone())
        .collect();
    let said = row(&events_again, "web2");
    assert_eq!(strings(&said["added"]), added);
    assert_eq!(strings(&said["changed"]), changed);
    assert_eq!(strings(&said["removed"]), removed);
}
