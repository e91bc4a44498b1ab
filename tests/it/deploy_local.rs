//! The whole path on local-transport hosts: no servers needed.

use crate::support::project::{Project, ndjson, printed, tree};

fn three_hosts() -> Project {
    Project::new()
        .local_hosts(3)
        .artifact(&[("bin/app", "#!/bin/sh\necho v1\n"), ("README", "first")])
        .toml("[strategy]\ncanary = 1\ncanary_pause = \"0s\"\nbatch = \"50%\"")
        .write()
}

#[test]
fn deploy_puts_every_host_on_the_same_whole_release() {
    let p = three_hosts();
    p.hoist(&["deploy"]).assert().success();
    let id = p.current("local1").expect("local1 switched");
    for host in p.host_names() {
        assert_eq!(p.current(&host).as_deref(), Some(id.as_str()));
        let release = p.deploy_path(&host).join("releases").join(&id);
        assert_eq!(tree(&release), tree(&p.path().join("build")), "{host}");
        assert!(!p.locked(&host), "lock freed on {host}");
        let journal = p.journal(&host);
        assert!(
            journal
                .iter()
                .any(|e| e["event"] == "deploy" && e["release"] == id.as_str())
        );
    }
}

#[test]
fn keep_releases_prunes_but_never_current_or_the_target() {
    let mut p = three_hosts();
    for i in 0..5 {
        p = p.artifact(&[("README", &format!("r{i}"))]).write();
        p.hoist(&["deploy"]).assert().success();
    }
    let releases = p.releases("local1");
    assert_eq!(releases.len(), 3, "keep_releases = 3: {releases:?}");
    assert!(releases.contains(&p.current("local1").unwrap()));
}

#[test]
fn two_deploys_within_one_second_get_ids_in_deploy_order() {
    let p = three_hosts();
    p.hoist(&["deploy"]).assert().success();
    let first = p.current("local1").unwrap();
    p.hoist(&["deploy"]).assert().success();
    let again = p.current("local1").unwrap();
    assert!(
        again > first,
        "a redeploy is a new, later release: {again} after {first}"
    );
    let p = p.artifact(&[("README", "second")]).write();
    p.hoist(&["deploy"]).assert().success();
    let second = p.current("local1").unwrap();
    assert!(second > again, "{second} sorts after {again}");
}

/// A wave's local hook that fails stops the rollout: `before_batch_local`
/// before its wave's hosts are touched, `after_batch_local` before the next
/// wave starts. The canary, already switched, goes back (exit 5).
#[test]
fn a_failing_batch_hook_stops_the_rollout_and_puts_the_canary_back() {
    // (hook, its command, the waves that start)
    let cases = [
        // Passes for the canary's wave (local1) only.
        (
            "before_batch_local",
            r#"test \"$HOIST_BATCH_HOSTS\" = local1"#,
            2,
        ),
        ("after_batch_local", "exit 4", 1),
    ];
    for (hook, command, waves) in cases {
        let p = three_hosts();
        p.hoist(&["deploy", "--yes"]).assert().success();
        let v1 = p.current("local1").unwrap();
        let p = p
            .artifact(&[("README", "second")])
            .toml(&format!("[hooks]\n{hook} = [\"{command}\"]"))
            .write();
        let out = p
            .hoist(&["deploy", "--yes", "--json"])
            .assert()
            .code(5)
            .get_output()
            .clone();
        let events = ndjson(&out.stdout);
        let started = events
            .iter()
            .filter(|e| e["event"] == "wave_started")
            .count();
        assert_eq!(started, waves, "{hook}: {}", printed(&out));
        let said = events.iter().any(|e| {
            e["event"] == "message"
                && e["text"]
                    .as_str()
                    .is_some_and(|t| t.contains(&format!("{hook} failed")))
        });
        assert!(said, "{hook}: the reason is said: {}", printed(&out));
        for host in p.host_names() {
            assert_eq!(
                p.current(&host).as_deref(),
                Some(v1.as_str()),
                "{hook}: {host}"
            );
            assert!(!p.locked(&host), "{hook}: lock freed on {host}");
        }
    }
}

#[test]
fn an_artifact_that_is_not_there_is_said_before_any_host_is_reached() {
    let p = three_hosts().artifact_table("path = \"dist\"").write();
    let out = p.hoist(&["deploy", "--json"]).assert().code(2);
    let out = out.get_output();
    let text = printed(out);
    assert!(text.contains("dist: No such file"), "{text}");
    let events = ndjson(&out.stdout);
    assert!(
        !events.iter().any(|e| e["event"] == "phase"),
        "no host was reached: {events:?}"
    );
    assert_eq!(events.last().unwrap()["event"], "summary");
    for host in p.host_names() {
        assert!(p.untouched(&host), "{host}");
    }
}

/// The archive is read while the hosts are reached: a broken one ends
/// the run there, with every host as it was.
#[test]
fn a_broken_archive_ends_the_run_once_the_hosts_are_reached_with_nothing_touched() {
    let p = three_hosts()
        .artifact_table("path = \"app.tar.gz\"")
        .write();
    std::fs::write(p.path().join("app.tar.gz"), b"not gzip at all").unwrap();
    let out = p.hoist(&["deploy", "--json"]).assert().code(2);
    let out = out.get_output();
    let text = printed(out);
    assert!(text.contains("is not a valid .tar.gz"), "{text}");
    let events = ndjson(&out.stdout);
    assert_eq!(events.last().unwrap()["event"], "summary");
    assert!(!events.iter().any(|e| e["event"] == "run_started"));
    for host in p.host_names() {
        assert!(p.untouched(&host), "{host}");
    }
}
