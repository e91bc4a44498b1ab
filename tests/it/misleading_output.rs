//! Output that must not mislead: what an interrupted wave did, which NDJSON
//! line comes first, what `plan` promises for blue-green, what an
//! interrupted or refused run says, and what `status` marks.

use crate::support::fleet::Fleet;
use crate::support::project::{follow, printed, said};

/// Where a run under test writes its log, and what hoist writes there once
/// it took a signal in.
const LOG: &str = "term.log";
const NOTICED: &str = "interrupted: starting nothing new";

/// A shell snippet for a local hook: SIGTERM to hoist (the hook's parent),
/// then wait until hoist said it noticed.
fn term_hoist() -> String {
    format!(
        "kill -TERM $(ps -o ppid= -p $PPID) && until grep -qs '{NOTICED}' {LOG}; do sleep 0.05; done"
    )
}

/// `hoist ARGS --json --log-file term.log` run to its end: the exit code,
/// the events and the plain log.
fn run_json(f: &Fleet, args: &[&str]) -> (Option<i32>, Vec<serde_json::Value>, String) {
    let mut child = f.spawn(&[args, &["--json", "--log-file", LOG]].concat());
    let events = follow(&mut child, |_| {});
    let code = child.wait().unwrap().code();
    let log = std::fs::read_to_string(f.path().join(LOG)).unwrap_or_default();
    (code, events, log)
}

/// Four local hosts in two waves of two, no canary; `hooks` is the [hooks] body.
fn two_waves(hooks: &str) -> Fleet {
    Fleet::local(4)
        .toml(&format!(
            "[strategy]\ncanary = 0\nbatch = 2\n\n[hooks]\n{hooks}"
        ))
        .write()
}

#[test]
fn a_wave_interrupted_before_its_hosts_started_says_so_and_points_to_resume() {
    let hook = format!(
        "before_batch_local = [\"test \\\"$HOIST_BATCH_HOSTS\\\" != 'web3 web4' || {{ {}; }}\"]",
        term_hoist()
    );
    let f = two_waves(&hook);
    let (code, events, log) = run_json(&f, &["deploy"]);
    assert_eq!(code, Some(130), "{events:#?}");
    let done: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["event"] == "wave_done")
        .collect();
    assert_eq!(done.len(), 2, "{done:#?}");
    assert_eq!(done[0]["ok"], 2, "{}", done[0]);
    let second = done[1];
    assert_eq!(second["ok"], 0, "{second}");
    assert_eq!(second["failed"], 0, "{second}");
    assert_eq!(second["skipped"], 2, "{second}");
    assert_eq!(second["interrupted"], true, "{second}");
    assert!(
        log.contains("wave 2/2 interrupted: 0 ok, 0 failed, 2 not started"),
        "{log}"
    );
    assert!(!log.contains("wave 2/2 done"), "{log}");
    assert!(said(&events, "`hoist deploy --resume`"), "{events:#?}");
    assert!(!log.contains("consistent release"), "{log}");
    let release = events.last().unwrap()["release"]
        .as_str()
        .unwrap()
        .to_string();
    for host in ["web3", "web4"] {
        assert!(f.current(host).is_none(), "{host} never started");
    }

    // What it pointed to carries the deploy on, with the same release.
    std::fs::remove_file(f.path().join(LOG)).unwrap();
    let toml = f.path().join("deploy.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        text.replace("before_batch_local", "# before_batch_local"),
    )
    .unwrap();
    let (code, _, log) = run_json(&f, &["deploy", "--resume"]);
    assert_eq!(code, Some(0), "{log}");
    for host in f.host_names() {
        assert_eq!(
            f.current(&host).as_deref(),
            Some(release.as_str()),
            "{host}"
        );
    }
}

#[test]
fn run_started_is_the_first_ndjson_line() {
    let f = Fleet::local(2).toml("[strategy]\ncanary = 0").write();
    f.hoist(&["deploy"]).assert().success();
    std::fs::write(f.path().join("build/README"), "v2").unwrap();
    let events = f.events(&["deploy", "--json"], 0);
    assert_eq!(events[0]["event"], "run_started", "{:#?}", &events[..3]);
    // The hosts' connect and preflight phases are still there, after it.
    assert!(events.iter().any(|e| e["phase"] == "connect"));
    let events = f.events(&["rollback", "--json"], 0);
    assert_eq!(events[0]["event"], "run_started", "{:#?}", &events[..3]);
}

fn blue_green_local(strategy: &str) -> Fleet {
    Fleet::local(4)
        .toml(&format!(
            "[groups.blue]\nhosts = [\"web1\", \"web2\"]\n[groups.green]\nhosts = [\"web3\", \"web4\"]\n\
             [strategy]\nkind = \"blue-green\"\nbatch = 1\n{strategy}\n[blue_green]\ncolors = [\"blue\", \"green\"]\n\
             switch_local = [\"printf '%s' \\\"$HOIST_COLOR\\\" > lb\"]"
        ))
        .write()
}

#[test]
fn plan_of_a_blue_green_file_promises_no_canary_and_numbers_waves_within_a_colour() {
    let f = blue_green_local("");
    let out = f.hoist(&["plan"]).assert().success().get_output().clone();
    let text = printed(&out);
    assert!(!text.contains("after the canary"), "{text}");
    assert!(!text.contains("ask before promoting"), "{text}");
    assert!(!text.contains("4 wave(s)"), "{text}");
    assert!(
        text.contains("in 2 wave(s) for blue or 2 for green"),
        "{text}"
    );
    let rows: Vec<serde_json::Value> = f
        .events(&["plan", "--json"], 0)
        .into_iter()
        .filter(|e| e["event"] == "row")
        .collect();
    let waves: Vec<(String, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["color"].as_str().unwrap().to_string(),
                r["wave"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        waves,
        [
            ("blue".to_string(), 1),
            ("blue".to_string(), 2),
            ("green".to_string(), 1),
            ("green".to_string(), 2)
        ]
    );
}

#[test]
fn canary_keys_in_a_blue_green_file_are_refused_and_no_question_is_needed() {
    let f = blue_green_local("canary = 1\ncanary_pause = \"manual\"");
    let out = f.hoist(&["deploy"]).assert().code(2).get_output().clone();
    let text = printed(&out);
    assert!(text.contains("canary, canary_pause do not apply"), "{text}");
    assert!(text.contains("`strategy.canary`"), "{text}");
    assert!(f.untouched("web1"));
    // Without them, a deploy with no terminal and no --yes asks nothing and switches.
    let f = blue_green_local("");
    f.hoist(&["deploy"]).assert().success();
    assert_eq!(
        std::fs::read_to_string(f.path().join("lb")).unwrap(),
        "blue"
    );
}

#[test]
fn a_refused_resume_does_not_say_done() {
    let f = Fleet::local(2).toml("[strategy]\ncanary = 0").write();
    f.hoist(&["deploy"]).assert().success();
    let out = f
        .hoist(&["deploy", "--resume"])
        .assert()
        .code(2)
        .get_output()
        .clone();
    let text = printed(&out);
    assert!(text.contains("nothing to resume"), "{text}");
    assert!(!text.contains("deploy: done"), "{text}");
    assert!(text.contains("deploy: ended after"), "{text}");
}

#[test]
fn status_on_a_blue_green_fleet_marks_no_host_of_either_colour() {
    let f = blue_green_local("");
    f.hoist(&["deploy"]).assert().success();
    std::fs::write(f.path().join("build/README"), "v2").unwrap();
    f.hoist(&["deploy"]).assert().success();
    // Blue, live again, runs the older release: by design, not a difference.
    f.hoist(&["rollback"]).assert().success();
    let rows: Vec<serde_json::Value> = f
        .events(&["status", "--json"], 0)
        .into_iter()
        .filter(|e| e["event"] == "row")
        .collect();
    assert_eq!(rows.len(), 4);
    for row in &rows {
        assert_eq!(row["differs"], false, "{row}");
        assert_eq!(row["marked"], false, "{row}");
    }
}

#[test]
fn an_abandoned_cleanup_does_not_claim_a_consistent_release() {
    let hook = format!(
        "before_batch_local = [\"test \\\"$HOIST_BATCH_HOSTS\\\" != 'web3 web4' || {{ {}; kill -TERM $(ps -o ppid= -p $PPID); until grep -qs 'cleanup abandoned' {LOG}; do sleep 0.05; done; }}\"]",
        term_hoist()
    );
    let f = two_waves(&hook);
    let (code, events, log) = run_json(&f, &["deploy"]);
    assert!(log.contains("cleanup abandoned"), "{log}");
    assert_eq!(code, Some(1), "{log}");
    assert_eq!(events.last().unwrap()["exit_code"], 1);
    assert!(!log.contains("consistent release"), "{log}");
}
