//! A real HAProxy (Debian's package) in front of real SSH hosts running the
//! Python app of `support::lb`, driven through its runtime API by README's
//! `haproxy-lb` script, with a client counting who answered. Skipped,
//! saying why, when haproxy, socat, python3 or curl are missing.

use std::time::Duration;

use crate::support::fleet::Fleet;
use crate::support::haproxy::{
    Answer, Client, Haproxy, Prometheus, get, readme_block, unavailable,
};
use crate::support::lb::{APP, APP_HEALTH, Apps};
use crate::support::project::{ndjson, printed};

/// How long a deploy behind HAProxy may take: drains go one at a time, each
/// host's app restarts, bakes hold 8 to 30 s, and the whole suite runs
/// beside it on two cores (120 s, the harness's default, was too short there).
const SLOW: Duration = Duration::from_secs(600);

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
    // Its [hooks] table (the [traffic] one is the test's own).
    let recipe = recipe.trim_start_matches("[hooks]\n");
    let recipe = recipe.split("\n\n").next().unwrap();
    format!(
        "[hooks]\nafter_switch = [\"sh bin/restart\"]\nafter_rollback = [\"sh bin/restart\"]\n{recipe}\n"
    )
}

/// The app's health check, on `/health` (which an `ERRORS` release
/// passes).
fn health() -> String {
    APP_HEALTH.replace("/ | grep", "/health | grep")
}

/// Six hosts on v1 behind HAProxy (every server up), and the apps to kill;
/// once they are, `later` stands for `strategy` in deploy.toml.
fn six_hosts_on_v1(strategy: &str, later: &str) -> (Fleet, Haproxy, Apps) {
    let mut files: Vec<(&str, &str)> = APP.to_vec();
    files.push(("README", "v1"));
    let f = Fleet::ssh(6)
        .artifact(&files)
        .toml(&format!("{}{}{strategy}", hooks(), health()))
        .write();
    let (backends, apps) = Apps::ports_for(&f);
    let haproxy = Haproxy::start(f.path(), &backends);
    write_script(&f, &haproxy);
    let deployed = f
        .hoist(&["deploy", "--yes"])
        .timeout(SLOW)
        .output()
        .unwrap();
    assert!(deployed.status.success(), "{}", printed(&deployed));
    haproxy.wait_all_up();
    let toml = f.path().join("deploy.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    assert!(text.contains(strategy));
    std::fs::write(&toml, text.replace(strategy, later)).unwrap();
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
    let strategy = "[strategy]\ncanary = 1\ncanary_pause = \"0s\"\nbatch = 2\n";
    let (f, haproxy, _apps) = six_hosts_on_v1(strategy, strategy);
    std::fs::write(f.path().join("build/README"), "v2").unwrap();
    let client = Client::start(haproxy.port, None, SLOW);
    let out = f
        .hoist(&["deploy", "--yes"])
        .timeout(SLOW)
        .output()
        .unwrap();
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

/// A canary, a 30 s bake after every wave, and a gate comparing the
/// canary's share of 5xx answers with the baseline's, from a real
/// Prometheus scraping HAProxy's own exporter (servers are named as the
/// hosts, so `{{canary}}` matches the `server` label).
fn analysed(prometheus: &Prometheus) -> String {
    let ratio = |code: &str| {
        format!(
            "sum(rate(haproxy_server_http_responses_total{{proxy=\"shop_api\",server=~\"{{{{canary}}}}\"{code}}}[5s]))"
        )
    };
    format!(
        "[strategy]\ncanary = 1\ncanary_pause = \"30s\"\nbatch = \"100%\"\nwave_bake = \"30s\"\n\n[[analysis]]\nname = \"error-ratio\"\nprometheus = {{ url = \"http://127.0.0.1:{}\", query = '{} / {}', pass = \"canary <= baseline * 1.2\" }}\ninterval = \"1s\"\nfailure_limit = 1\non_inconclusive = \"pass\"\n\n[traffic]\nsteps = [10, 50, 100]\nset_local = [\"./haproxy-lb weights\", \"echo $HOIST_WEIGHT $HOIST_CANARY_HOSTS > step.new && mv step.new step\"]\nstep_bake = \"5s\"\n",
        prometheus.port,
        ratio(",code=\"5xx\""),
        ratio("")
    )
}

/// The six hosts on v1 behind HAProxy and Prometheus, deploy.toml then
/// analysing v2.
fn analysed_fleet() -> Option<(Fleet, Haproxy, Apps, Prometheus)> {
    if let Some(why) = unavailable() {
        eprintln!("canary analysis behind HAProxy: skipped: {why}");
        return None;
    }
    let strategy = "[strategy]\ncanary = 1\ncanary_pause = \"0s\"\nbatch = \"100%\"\n";
    let (f, haproxy, apps) = six_hosts_on_v1(strategy, strategy);
    let Some(prometheus) = Prometheus::scraping(&haproxy) else {
        eprintln!("canary analysis behind HAProxy: skipped: prometheus is not installed");
        return None;
    };
    let toml = f.path().join("deploy.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, text.replace(strategy, &analysed(&prometheus))).unwrap();
    std::fs::write(f.path().join("build/README"), "v2").unwrap();
    Some((f, haproxy, apps, prometheus))
}

#[test]
fn a_healthy_release_passes_the_canary_analysis_behind_haproxy() {
    let Some((f, haproxy, _apps, _prometheus)) = analysed_fleet() else {
        return;
    };
    let client = Client::start(haproxy.port, None, SLOW);
    let out = f
        .hoist(&["deploy", "--yes"])
        .timeout(SLOW)
        .output()
        .unwrap();
    let seen = client.stop();
    let said = printed(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        seen.failed.is_empty(),
        "{:?}",
        &seen.failed[..seen.failed.len().min(5)]
    );
    // The gate's values, sample by sample, in the plain output: the canary
    // bake compares web1 with the others (no 5xx on either side).
    let samples: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("gate error-ratio ["))
        .collect();
    assert!(
        samples
            .iter()
            .filter(|l| l.contains("[canary bake ") && l.contains(": pass, value {"))
            .filter(|l| l.contains("\"canary\":0.0") && l.contains("\"baseline\":0.0"))
            .count()
            >= 20,
        "{said}"
    );
    // Then each traffic step, the gate sampled again under its weight.
    for step in ["traffic 10%", "traffic 50%"] {
        assert!(
            samples
                .iter()
                .any(|l| l.contains(&format!("[{step} ")) && l.contains(": pass, value {")),
            "{step}: {said}"
        );
    }
    // The last wave's bake has no baseline left: inconclusive, passed on.
    assert!(samples.iter().any(|l| l.contains("inconclusive")), "{said}");
    assert_every_host_answers_v2(&f, &haproxy);
}

#[test]
fn a_release_serving_errors_on_the_canary_is_caught_by_the_gate_and_rolled_back() {
    let Some((f, haproxy, _apps, _prometheus)) = analysed_fleet() else {
        return;
    };
    f.mark("web1", "ERRORS");
    let client = Client::start(haproxy.port, None, SLOW);
    let stepped = f.path().join("step");
    let out = f
        .hoist(&["deploy", "--yes", "--json"])
        .timeout(SLOW)
        .output()
        .unwrap();
    let seen = client.stop();
    let said = printed(&out);
    assert_eq!(out.status.code(), Some(5), "{said}");
    let events = ndjson(&out.stdout);
    let samples: Vec<&serde_json::Value> =
        events.iter().filter(|e| e["event"] == "analysis").collect();
    let failed: Vec<&&serde_json::Value> =
        samples.iter().filter(|e| e["verdict"] == "fail").collect();
    assert_eq!(
        failed.len(),
        2,
        "failure_limit = 1: the second fails it: {samples:?}"
    );
    for sample in &failed {
        let canary = sample["value"]["canary"].as_f64().unwrap();
        let baseline = sample["value"]["baseline"].as_f64().unwrap();
        assert!(canary > 0.0 && baseline == 0.0, "{sample}");
    }
    // web1 went back; no other host was touched; the client saw errors
    // only from web1 on v2.
    assert_eq!(f.current("web1").as_deref(), f.current("web2").as_deref());
    // Caught in the canary's bake: no traffic step ever ran.
    assert!(!stepped.exists(), "set_local ran: {said}");
    for host in ["web2", "web3", "web4", "web5", "web6"] {
        assert!(
            !f.journal(host).iter().any(
                |e| e["event"] == "deploy" && e["release"] != f.current(host).unwrap().as_str()
            ),
            "{host} untouched"
        );
    }
    // The client saw web1's 500s on v2, and nothing else fail but
    // web1's restart on its way back (a host that passed its health check
    // is not drained again for a rollback: see README's per-host drain).
    let v2_errors = seen
        .answers
        .iter()
        .filter(|a| a.status == 500 && a.server == "web1" && a.release == "v2")
        .count();
    assert!(v2_errors > 0, "{:?}", seen.failed);
    let others: Vec<&Answer> = seen
        .answers
        .iter()
        .filter(|a| a.status != 200 && !(a.server == "web1" && a.release == "v2"))
        .collect();
    assert!(others.len() <= 5, "{others:?}");
}

#[test]
fn traffic_steps_set_weights_through_the_runtime_api_and_the_client_sees_each_share() {
    if let Some(why) = unavailable() {
        eprintln!("traffic steps through HAProxy's runtime API: skipped: {why}");
        return;
    }
    // README's script sets the weights; `step` (replaced whole, never read
    // half-written) tags the client's requests with the step in force.
    let traffic = "[traffic]\nsteps = [10, 50, 100]\nset_local = [\"./haproxy-lb weights\", \"echo $HOIST_WEIGHT $HOIST_CANARY_HOSTS > step.new && mv step.new step\"]\nstep_bake = \"8s\"\n";
    let strategy = "[strategy]\ncanary = 1\ncanary_pause = \"0s\"\nbatch = \"100%\"\n";
    let (f, haproxy, _apps) = six_hosts_on_v1(strategy, &format!("{strategy}\n{traffic}"));
    std::fs::write(f.path().join("build/README"), "v2").unwrap();
    let client = Client::start(haproxy.port, Some(f.path().join("step")), SLOW);
    let out = f
        .hoist(&["deploy", "--yes"])
        .timeout(SLOW)
        .output()
        .unwrap();
    let seen = client.stop();
    let said = printed(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        seen.failed.is_empty(),
        "{} of {} requests failed, first {:?}\n{said}",
        seen.failed.len(),
        seen.answers.len(),
        &seen.failed[..seen.failed.len().min(5)]
    );
    let all = "web1 web2 web3 web4 web5 web6";
    assert_eq!(
        seen.tags(),
        ["", "10 web1", "50 web1", "100 web1", &format!("100 {all}")],
        "the steps in order, then every host at 100%\n{said}"
    );
    for (tag, low, high) in [
        ("10 web1", 0.05, 0.20),
        ("50 web1", 0.35, 0.65),
        ("100 web1", 0.95, 1.0),
    ] {
        let (sent, canary) = seen.share(tag, &["web1"]);
        let share = canary as f64 / sent as f64;
        eprintln!("at {tag}: web1 answered {canary} of {sent} ({share:.3})");
        assert!(
            sent >= 100 && (low..=high).contains(&share),
            "at {tag}: web1 answered {canary} of {sent} ({share:.2}), not within {low}..{high}"
        );
    }
    // The balancer ends balanced: every server back at full weight, on v2.
    let servers = haproxy.servers();
    assert!(
        servers.iter().all(|s| s.weight == 256 && s.status == "UP"),
        "{servers:?}"
    );
    assert_every_host_answers_v2(&f, &haproxy);
}
