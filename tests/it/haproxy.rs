//! A real HAProxy (Debian's package) in front of real SSH hosts running the
//! Python app of `support::lb`, driven through its runtime API by README's
//! `haproxy-lb` script, with a client counting who answered. Skipped,
//! saying why, when haproxy, socat, python3 or curl are missing.

use std::time::Duration;

use crate::support::fleet::Fleet;
use crate::support::haproxy::{Client, Haproxy, get, readme_block, unavailable};
use crate::support::lb::{APP, APP_HEALTH, Apps};
use crate::support::project::printed;

/// README's `haproxy-lb` script, written into the project, talking to the
/// test's HAProxy.
fn write_script(f: &Fleet, haproxy: &Haproxy) {
    let script = readme_block("**HAProxy's runtime API, one script.**", "sh").replace(
        "/run/haproxy/admin.sock",
        &haproxy.socket.display().to_string(),
    );
    let path = f.path().join("haproxy-lb");
    std::fs::write(&path, script).unwrap();
    let status = std::process::Command::new("chmod")
        .arg("755")
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
}

/// README's `[hooks]` lines for the script, after the app's restart hooks.
fn hooks() -> String {
    let recipe = readme_block("**HAProxy's runtime API, one script.**", "toml");
    let recipe = recipe.trim_start_matches("[hooks]\n");
    format!(
        "[hooks]\nafter_switch = [\"sh bin/restart\"]\nafter_rollback = [\"sh bin/restart\"]\n{recipe}"
    )
}

/// Six hosts on v1 behind HAProxy (every server up), and the apps to kill;
/// `later` is added to deploy.toml once they are.
fn six_hosts_on_v1(strategy: &str, later: &str) -> (Fleet, Haproxy, Apps) {
    let mut files: Vec<(&str, &str)> = APP.to_vec();
    files.push(("README", "v1"));
    let f = Fleet::ssh(6)
        .artifact(&files)
        .toml(&format!("{}{APP_HEALTH}{strategy}", hooks()))
        .write();
    let (backends, apps) = Apps::ports_for(&f);
    let haproxy = Haproxy::start(f.path(), &backends);
    write_script(&f, &haproxy);
    let deployed = f.hoist(&["deploy", "--yes"]).output().unwrap();
    assert!(deployed.status.success(), "{}", printed(&deployed));
    haproxy.wait_all_up();
    let toml = f.path().join("deploy.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, format!("{text}\n{later}")).unwrap();
    (f, haproxy, apps)
}

/// Round robin, equal weights: 60 requests reach every server, and each
/// answers with v2.
fn assert_every_host_answers_v2(f: &Fleet, haproxy: &Haproxy) {
    let after: Vec<(u16, String, String)> = (0..60)
        .map(|_| get(haproxy.port).expect("an answer after the deploy"))
        .collect();
    for host in f.host_names() {
        let answered: Vec<&str> = after
            .iter()
            .filter(|(status, server, _)| *status == 200 && *server == host)
            .map(|(_, _, release)| release.as_str())
            .collect();
        assert!(
            !answered.is_empty() && answered.iter().all(|r| *r == "v2"),
            "{host} answers with v2: {answered:?}"
        );
    }
}

#[test]
fn a_rolling_deploy_of_six_hosts_drained_through_the_runtime_api_loses_no_request() {
    if let Some(why) = unavailable() {
        eprintln!("drain through HAProxy's runtime API: skipped: {why}");
        return;
    }
    let (f, haproxy, _apps) = six_hosts_on_v1(
        "[strategy]\ncanary = 1\ncanary_pause = \"0s\"\nbatch = 2\n",
        "",
    );
    std::fs::write(f.path().join("build/README"), "v2").unwrap();
    let client = Client::start(haproxy.port, None, Duration::from_secs(180));
    let out = f.hoist(&["deploy", "--yes"]).output().unwrap();
    let during = client.stop();
    let said = printed(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        during.failed.is_empty(),
        "{} of {} requests failed, first {:?}\n{said}",
        during.failed.len(),
        during.answers.len(),
        &during.failed[..during.failed.len().min(5)]
    );
    assert!(
        during.answers.len() > 100,
        "the client ran ({} requests)",
        during.answers.len()
    );
    // Each host was drained and is back: up, in the pool, on v2.
    haproxy.wait_all_up();
    let servers = haproxy.servers();
    assert!(servers.iter().all(|s| s.weight == 256), "{servers:?}");
    assert_every_host_answers_v2(&f, &haproxy);
    // Every host answered with both releases during the deploy: none was
    // left out of the pool.
    let per_server = during.per_server();
    for host in f.host_names() {
        for release in ["v1", "v2"] {
            assert!(
                per_server.contains_key(&(host.clone(), release.to_string())),
                "{host} answered with {release} during the deploy: {per_server:?}"
            );
        }
    }
}
