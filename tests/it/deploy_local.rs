//! The whole path on local-transport hosts: no servers needed.

use crate::support::project::{Project, tree};

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
