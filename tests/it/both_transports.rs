//! What a user sees the same whichever way hoist reaches its hosts: one
//! body per story, run once on local hosts and once over real OpenSSH.

use crate::support::fleet::{Fleet, HEALTH};
use crate::support::project::{ndjson, tree};

#[test]
fn deploy_then_a_second_release_then_rollback_on_local_hosts() {
    deploy_then_rollback(Fleet::local(3));
}

#[test]
fn deploy_then_a_second_release_then_rollback_over_ssh() {
    deploy_then_rollback(Fleet::ssh(5));
}

#[test]
fn a_canary_that_fails_its_health_check_rolls_back_and_no_other_host_switches_on_local_hosts() {
    failed_canary(Fleet::local(4));
}

#[test]
fn a_canary_that_fails_its_health_check_rolls_back_and_no_other_host_switches_over_ssh() {
    failed_canary(Fleet::ssh(4));
}

#[test]
fn redeploying_the_same_artifact_uploads_nothing_on_local_hosts() {
    redeploy_uploads_nothing(Fleet::local(3));
}

#[test]
fn redeploying_the_same_artifact_uploads_nothing_over_ssh() {
    redeploy_uploads_nothing(Fleet::ssh(2));
}

fn redeploy_uploads_nothing(f: Fleet) {
    let f = f
        .toml("[strategy]\ncanary = 1\ncanary_pause = \"0s\"\nbatch = \"50%\"")
        .artifact(&[("bin/app", "#!/bin/sh\necho v1\n"), ("README", "first")])
        .write();
    f.hoist(&["deploy"]).assert().success();
    let events = f.events(&["deploy", "--json"], 0);
    assert!(
        !events
            .iter()
            .any(|e| e["event"] == "host_phase" && e["phase"] == "upload"),
        "no upload phase on a redeploy"
    );
    assert!(
        !events.iter().any(|e| e["event"] == "upload_progress"),
        "nothing uploaded"
    );
    for host in f.host_names() {
        assert_eq!(f.releases(&host).len(), 2);
        assert_eq!(f.read_current(&host, "README"), "first");
    }
}

fn deploy_then_rollback(f: Fleet) {
    let f = f
        .toml("[strategy]\ncanary = 1\ncanary_pause = \"0s\"\nbatch = \"50%\"")
        .artifact(&[
            ("bin/app", "#!/bin/sh\necho v1\n"),
            ("README", "first"),
            ("conf/app.toml", "port = 8080\n"),
        ])
        .write();
    f.hoist(&["deploy"]).assert().success();
    let first = f.current("web1").unwrap();
    for host in f.host_names() {
        assert_eq!(f.current(&host).as_deref(), Some(first.as_str()), "{host}");
        let release = f.deploy_path(&host).join("releases").join(&first);
        assert_eq!(
            tree(&release),
            tree(&f.path().join("build")),
            "{host}: file for file"
        );
        assert!(!f.locked(&host));
    }

    let f = f
        .artifact(&[("bin/app", "#!/bin/sh\necho v2\n"), ("README", "second")])
        .write();
    f.hoist(&["deploy"]).assert().success();
    let second = f.current("web3").unwrap();
    assert_ne!(first, second);
    for host in f.host_names() {
        assert_eq!(f.read_current(&host, "README"), "second");
        assert!(
            !f.deploy_path(&host).join("current/conf").exists(),
            "release is the artifact exactly"
        );
    }

    f.hoist(&["rollback"]).assert().success();
    for host in f.host_names() {
        assert_eq!(
            f.current(&host).as_deref(),
            Some(first.as_str()),
            "{host} back on the first id"
        );
        assert_eq!(f.read_current(&host, "README"), "first");
    }
    let status = f
        .hoist(&["status", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let rows: Vec<_> = ndjson(&status)
        .into_iter()
        .filter(|e| e["event"] == "row")
        .collect();
    assert_eq!(rows.len(), f.host_names().len());
    assert!(
        rows.iter()
            .all(|r| r["release"] == first.as_str() && r["differs"] == false)
    );
    // The rolled-back release is never the automatic target again.
    f.hoist(&["rollback"]).assert().code(3);
}

fn failed_canary(f: Fleet) {
    let f = f
        .toml(&format!(
            "{HEALTH}\n[strategy]\ncanary = 1\ncanary_pause = \"0s\"\nbatch = \"50%\""
        ))
        .write();
    let v1 = f.on_v1_then_v2();
    f.mark("web1", "FAIL");
    let events = f.events(&["deploy", "--json"], 5);
    let summary = events.last().unwrap();
    assert_eq!(summary["exit_code"], 5);
    let v2 = summary["release"].as_str().unwrap().to_string();
    for host in f.host_names() {
        assert_eq!(
            f.current(&host).as_deref(),
            Some(v1.as_str()),
            "{host} on the old release"
        );
        assert!(!f.locked(&host));
    }
    assert!(f.switched_to("web1", &v2), "the canary was switched");
    for host in ["web2", "web3", "web4"] {
        assert!(!f.switched_to(host, &v2), "{host} was never switched");
    }
    // The failed release is never the automatic target of a later rollback.
    let journal = f.journal("web1");
    assert!(
        journal
            .iter()
            .any(|e| e["event"] == "rollback" && e["previous"] == v2.as_str())
    );
}
