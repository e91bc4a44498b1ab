//! A real HAProxy (Debian's package) in front of real SSH hosts running the
//! Python app of `support::lb`, driven through its runtime API by README's
//! `haproxy-lb` script, with a client counting who answered; with a real
//! Prometheus and an analysis gate, each analysed run read in NDJSON, in
//! its full log (plain lines) and on a pseudo-terminal (the live view).
//! Skipped, saying why, when haproxy, socat, python3 or curl are missing
//! (prometheus for a gate, util-linux `script` for a terminal).

use std::time::Duration;

use crate::support::fleet::Fleet;
use crate::support::haproxy::{
    Answer, Client, Haproxy, Prometheus, Sample, Seen, get, logs, new_log, no_terminal,
    on_a_terminal, readme_block, samples_in_events, samples_in_lines, summary_rows, unavailable,
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

/// The app's health check, on `/health` (which an `ERRORS_FROM_WEIGHT`
/// release passes).
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

/// The gate of the analysed deploys.
const GATE: &str = "error-ratio";

/// A canary with a 10 s bake, traffic steps 10/50/100 held 10 s each, a
/// 10 s bake after every wave, and a gate comparing the canary's share of
/// 5xx answers with the baseline's, from a real Prometheus scraping
/// HAProxy's own exporter (servers are named as the hosts, so `{{canary}}`
/// matches the `server` label); a side with no request in the window
/// (a canary just back in the pool on a loaded machine, the old release at
/// 100%) has a ratio of 0, not 0/0, which would end the gate's sampling
/// for that bake as inconclusive. `set_local` sets the weights with README's
/// script, tags the client's requests with the step (`step`, replaced
/// whole), and writes the weight into each canary host's `weight` file
/// (through `hosts/NAME`, a link to its deploy_to), which an
/// `ERRORS_FROM_WEIGHT` release reads.
fn analysed(prometheus: &Prometheus) -> String {
    let ratio = |code: &str| {
        format!(
            "sum(rate(haproxy_server_http_responses_total{{proxy=\"shop_api\",server=~\"{{{{canary}}}}\"{code}}}[5s]))"
        )
    };
    format!(
        r#"[strategy]
canary = 1
canary_pause = "10s"
batch = "100%"
wave_bake = "10s"

[[analysis]]
name = "{GATE}"
prometheus = {{ url = "http://127.0.0.1:{port}", query = '{errors} / clamp_min({all}, 0.001)', pass = "canary <= baseline * 1.2" }}
interval = "1s"
failure_limit = 1
on_inconclusive = "pass"

[traffic]
steps = [10, 50, 100]
set_local = [
  "./haproxy-lb weights",
  "echo $HOIST_WEIGHT $HOIST_CANARY_HOSTS > step.new && mv step.new step",
  "for h in $HOIST_CANARY_HOSTS; do echo $HOIST_WEIGHT > hosts/$h/weight.new && mv hosts/$h/weight.new hosts/$h/weight; done",
]
step_bake = "10s"

[diagnose]
commands = ["echo diagnosed at weight $(cat $HOIST_DEPLOY_TO/weight)"]
"#,
        port = prometheus.port,
        errors = ratio(",code=\"5xx\""),
        all = ratio("")
    )
}

/// The six hosts on v1 behind HAProxy and Prometheus, deploy.toml then
/// analysing v2; `None` (saying why) where they cannot run.
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
    std::fs::create_dir_all(f.path().join("hosts")).unwrap();
    for host in f.host_names() {
        std::os::unix::fs::symlink(f.deploy_path(&host), f.path().join("hosts").join(&host))
            .unwrap();
    }
    std::fs::write(f.path().join("build/README"), "v2").unwrap();
    Some((f, haproxy, apps, prometheus))
}

/// What one analysed deploy left: its exit code, its samples of the gate
/// as its main output gave them (NDJSON or the terminal), its full log
/// (plain lines), and what the client saw.
struct Deployed {
    code: Option<i32>,
    /// NDJSON events (`--json`), or none (on a terminal).
    events: Vec<serde_json::Value>,
    /// What the terminal showed (on a terminal), or stdout and stderr.
    shown: String,
    log: String,
    seen: Seen,
}

/// `hoist deploy --yes` under the client's load: with `--json`, or on a
/// pseudo-terminal (the live view).
fn deploy(f: &Fleet, haproxy: &Haproxy, terminal: bool) -> Deployed {
    let before = logs(f.path());
    let client = Client::start(haproxy.port, Some(f.path().join("step")), SLOW);
    let (code, events, shown) = if terminal {
        let screen = on_a_terminal(f.path(), "deploy --yes", SLOW);
        (screen.code, Vec::new(), screen.text)
    } else {
        let out = f
            .hoist(&["deploy", "--yes", "--json"])
            .timeout(SLOW)
            .output()
            .unwrap();
        (out.status.code(), ndjson(&out.stdout), printed(&out))
    };
    let seen = client.stop();
    Deployed {
        code,
        events,
        log: new_log(f.path(), &before),
        shown,
        seen,
    }
}

/// Whether a sample compared a canary and a baseline that served no error.
fn clean(s: &Sample) -> bool {
    s.verdict == "pass" && s.side("canary") == Some(0.0) && s.side("baseline") == Some(0.0)
}

/// Each of `steps` sampled at least `at_least` times, every sample
/// passing with no error on either side.
fn assert_clean(samples: &[Sample], steps: &[&str], at_least: usize, said: &str) {
    for step in steps {
        let of: Vec<&Sample> = samples.iter().filter(|s| s.step == *step).collect();
        assert!(
            of.len() >= at_least && of.iter().all(|s| clean(s)),
            "{step}: {of:?}\n{said}"
        );
    }
}

/// A healthy release's samples in one output: the canary bake and the
/// steps of 10 and 50% clean; at 100% and in the last wave's bake (no
/// baseline left: inconclusive, passed on) nothing failed.
fn assert_healthy_samples(samples: &[Sample], said: &str) {
    assert_clean(
        samples,
        &["canary bake", "traffic 10%", "traffic 50%"],
        3,
        said,
    );
    for step in ["traffic 100%", "wave 2 bake"] {
        assert!(samples.iter().any(|s| s.step == step), "{step}: {said}");
    }
    assert!(
        samples
            .iter()
            .all(|s| s.verdict == "pass" || s.verdict == "inconclusive"),
        "{samples:?}"
    );
    assert!(
        samples
            .iter()
            .any(|s| s.step == "wave 2 bake" && s.verdict == "inconclusive"),
        "{said}"
    );
}

/// A healthy release under the client's load: every output's checks
/// passed to `outputs`, then no request failed and every host answers v2.
fn healthy(terminal: bool, outputs: impl Fn(&Deployed)) {
    let Some((f, haproxy, _apps, _prometheus)) = analysed_fleet() else {
        return;
    };
    let run = deploy(&f, &haproxy, terminal);
    assert_eq!(run.code, Some(0), "{}\n{}", run.shown, run.log);
    // Plain lines: the full log has every sample, then the summary's rows.
    assert_healthy_samples(&samples_in_lines(&run.log, GATE), &run.log);
    let rows = summary_rows(&run.log, GATE);
    let steps: Vec<&str> = rows.iter().map(|(step, _)| step.as_str()).collect();
    assert_eq!(
        steps,
        [
            "canary bake",
            "traffic 10%",
            "traffic 50%",
            "traffic 100%",
            "wave 2 bake"
        ],
        "{}",
        run.log
    );
    outputs(&run);
    assert!(
        run.seen.failed.is_empty(),
        "{:?}",
        &run.seen.failed[..run.seen.failed.len().min(5)]
    );
    let all = "web1 web2 web3 web4 web5 web6";
    assert_eq!(
        run.seen.tags(),
        ["", "10 web1", "50 web1", "100 web1", &format!("100 {all}")],
        "{}",
        run.log
    );
    assert_every_host_answers_v2(&f, &haproxy);
}

#[test]
fn a_healthy_release_passes_the_canary_analysis_behind_haproxy() {
    healthy(false, |run| {
        assert_healthy_samples(&samples_in_events(&run.events, GATE), &run.shown);
    });
}

/// The live view's countdown line for a step, with the gate's last value.
fn countdown(weight: Option<u8>, value: &str) -> String {
    let weight = weight
        .map(|w| format!(" · traffic {w}%"))
        .unwrap_or_default();
    format!("left{weight} · gates: {GATE} {value}")
}

/// The value of a clean sample, as the outputs print it.
const CLEAN: &str = r#"{"baseline":0.0,"canary":0.0}"#;

#[test]
fn a_healthy_release_shows_the_gate_values_on_a_terminal_behind_haproxy() {
    if let Some(why) = no_terminal() {
        eprintln!("the live view behind HAProxy: skipped: {why}");
        return;
    }
    healthy(true, |run| {
        let screen = &run.shown;
        // The countdown of each bake shows the gate's last value and
        // verdict, and the weight in force.
        for weight in [None, Some(10), Some(50)] {
            let line = countdown(weight, &format!("{CLEAN} pass"));
            assert!(screen.contains(&line), "{line:?}:\n{screen}");
        }
        // The summary lists every step's samples.
        let rows = summary_rows(screen, GATE);
        let steps: Vec<&str> = rows.iter().map(|(step, _)| step.as_str()).collect();
        assert_eq!(
            steps,
            [
                "canary bake",
                "traffic 10%",
                "traffic 50%",
                "traffic 100%",
                "wave 2 bake"
            ],
            "{screen}"
        );
        let samples: Vec<Sample> = rows.into_iter().flat_map(|(_, s)| s).collect();
        assert_clean(
            &samples,
            &["canary bake", "traffic 10%", "traffic 50%"],
            3,
            screen,
        );
        // The last wave's bake, with no baseline: said as it came.
        assert!(
            samples_in_lines(screen, GATE)
                .iter()
                .any(|s| s.step == "wave 2 bake" && s.verdict == "inconclusive"),
            "{screen}"
        );
    });
}

/// A bad release's samples in one output: the canary bake and the step of
/// 10% clean, then at 50% the canary's errors against none on the
/// baseline, the second failing sample stopping it (`failure_limit = 1`);
/// no later step sampled.
fn assert_caught_at_50(samples: &[Sample], said: &str) {
    assert_clean(samples, &["canary bake", "traffic 10%"], 3, said);
    let at_50: Vec<&Sample> = samples.iter().filter(|s| s.step == "traffic 50%").collect();
    let failed: Vec<&&Sample> = at_50.iter().filter(|s| s.verdict == "fail").collect();
    assert_eq!(failed.len(), 2, "{at_50:?}\n{said}");
    assert_eq!(at_50.last().unwrap().verdict, "fail", "{at_50:?}");
    for s in failed {
        assert!(
            s.side("canary").unwrap() > 0.0 && s.side("baseline") == Some(0.0),
            "{s:?}"
        );
    }
    let steps = ["canary bake", "traffic 10%", "traffic 50%"];
    assert!(
        samples.iter().all(|s| steps.contains(&s.step.as_str())),
        "{samples:?}"
    );
}

/// web1 on a release that serves 500s once it has half the traffic:
/// every output's checks passed to `outputs`, then what the hosts, the
/// balancer and the client saw.
fn caught_at_50(terminal: bool, outputs: impl Fn(&Deployed)) {
    let Some((f, haproxy, _apps, _prometheus)) = analysed_fleet() else {
        return;
    };
    let v1 = f.current("web1").unwrap();
    std::fs::write(f.deploy_path("web1").join("ERRORS_FROM_WEIGHT"), "50").unwrap();
    let run = deploy(&f, &haproxy, terminal);
    assert_eq!(run.code, Some(5), "{}\n{}", run.shown, run.log);
    let log = &run.log;
    // Plain lines: each sample, the reason the rollout stopped, the summary.
    assert_caught_at_50(&samples_in_lines(log, GATE), log);
    assert!(stopped_at_50(log), "{log}");
    let rows = summary_rows(log, GATE);
    let steps: Vec<&str> = rows.iter().map(|(step, _)| step.as_str()).collect();
    assert_eq!(
        steps,
        ["canary bake", "traffic 10%", "traffic 50%"],
        "{log}"
    );
    outputs(&run);
    // web1 went back, and only web1 was ever switched.
    for host in f.host_names() {
        assert_eq!(f.current(&host).as_deref(), Some(v1.as_str()), "{host}");
        let switches = f
            .journal(&host)
            .iter()
            .filter(|e| e["event"] == "deploy" && e["release"] != v1.as_str())
            .count();
        assert_eq!(switches, usize::from(host == "web1"), "{host}: {log}");
    }
    // The steps in order, 100% never reached; web1 at weight 0 while it
    // went back, then (every host back) every server its whole weight.
    let tags = run.seen.tags();
    assert_eq!(tags[..4], ["", "10 web1", "50 web1", "0 web1"], "{log}");
    assert!(tags[4..].iter().all(|t| t.trim() == "0"), "{tags:?}");
    let servers = haproxy.servers();
    assert!(servers.iter().all(|s| s.weight == 256), "{servers:?}");
    // web1 restarted on its way back: it takes requests again once
    // HAProxy's check of it passes.
    haproxy.wait_all_up();
    assert_every_host_answers_v1(&f, &haproxy);
    // No request lost but the canary's own 500s on v2.
    let failed: Vec<&Answer> = run
        .seen
        .answers
        .iter()
        .filter(|a| a.status != 200)
        .collect();
    assert!(
        failed
            .iter()
            .all(|a| a.status == 500 && a.server == "web1" && a.release == "v2"),
        "{failed:?}"
    );
    assert!(!failed.is_empty(), "the client met the bad release");
    assert_eq!(
        run.seen.failed.len(),
        failed.len(),
        "every request was answered: {:?}",
        run.seen.failed
    );
}

/// Whether `text` gives the reason the rollout stopped, naming the gate,
/// the step and its last values (a terminal may wrap it).
fn stopped_at_50(text: &str) -> bool {
    let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
    regex_lite::Regex::new(&format!(
        r#"gate {GATE} 2 of \d+ sample\(s\) failed \(failure_limit 1\) during the traffic 50%; last values: \{{"baseline":0\.0,"canary":[0-9.]+\}}"#
    ))
    .unwrap()
    .is_match(&words)
}

/// Each host's app answers v1 on its own port, and HAProxy's 60 answers
/// are all v1, web1's among them (its weight given back).
fn assert_every_host_answers_v1(f: &Fleet, haproxy: &Haproxy) {
    for host in f.host_names() {
        let port: u16 = std::fs::read_to_string(f.deploy_path(&host).join("port"))
            .unwrap()
            .parse()
            .unwrap();
        let answer = crate::support::lb::get(port, "/");
        assert_eq!(answer, Ok((200, "v1".to_string())), "{host}");
    }
    // Through HAProxy, round robin again: web1 among them.
    let mut answered = std::collections::BTreeSet::new();
    for _ in 0..60 {
        let (status, server, release) = get(haproxy.port).expect("an answer");
        assert!(
            status == 200 && release == "v1",
            "{status} {server} {release}"
        );
        answered.insert(server);
    }
    assert!(answered.contains("web1"), "{answered:?}");
}

#[test]
fn a_release_failing_under_half_the_traffic_is_caught_at_the_50_percent_step_and_rolled_back() {
    caught_at_50(false, |run| {
        assert_caught_at_50(&samples_in_events(&run.events, GATE), &run.shown);
        let events = &run.events;
        let weights: Vec<u64> = events
            .iter()
            .filter(|e| e["event"] == "traffic_step")
            .map(|e| e["weight"].as_u64().unwrap())
            .collect();
        // 0 before the rollback, and 0 with every host as the baseline after.
        assert_eq!(weights, [10, 50, 0, 0], "{}", run.shown);
        // Weight 0, then [diagnose] (which saw it on web1), then the
        // rollback.
        let at = |what: &dyn Fn(&serde_json::Value) -> bool| {
            events.iter().position(what).expect("the event")
        };
        let zero = at(&|e| e["event"] == "traffic_step" && e["weight"] == 0);
        let diagnosed = at(&|e| e["event"] == "host_diagnostics");
        let back = at(&|e| e["event"] == "rollback_started");
        assert!(zero < diagnosed && diagnosed < back, "{}", run.shown);
        let diagnostics = &events[diagnosed];
        assert_eq!(diagnostics["host"], "web1");
        assert_eq!(
            diagnostics["commands"][0]["output"],
            serde_json::json!(["diagnosed at weight 0"])
        );
    });
}

#[test]
fn the_same_release_on_a_terminal_shows_the_failing_gate_values() {
    if let Some(why) = no_terminal() {
        eprintln!("the live view behind HAProxy: skipped: {why}");
        return;
    }
    caught_at_50(true, |run| {
        let screen = &run.shown;
        for weight in [None, Some(10)] {
            let line = countdown(weight, &format!("{CLEAN} pass"));
            assert!(screen.contains(&line), "{line:?}:\n{screen}");
        }
        assert!(screen.contains(&countdown(Some(50), "{")), "{screen}");
        // The summary lists every sample (of a long row, those that fit).
        let rows: Vec<Sample> = summary_rows(screen, GATE)
            .into_iter()
            .flat_map(|(_, s)| s)
            .collect();
        assert_caught_at_50(&rows, screen);
        // The samples that did not pass, each on a line of its own.
        let printed: Vec<Sample> = samples_in_lines(screen, GATE)
            .into_iter()
            .filter(|s| s.verdict != "pass")
            .collect();
        assert_eq!(printed.len(), 2, "{printed:?}");
        assert!(
            printed.iter().all(|s| s.verdict == "fail"
                && s.step == "traffic 50%"
                && s.side("canary") > Some(0.0)),
            "{printed:?}"
        );
        assert!(stopped_at_50(screen), "{screen}");
    });
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
