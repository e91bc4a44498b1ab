//! `hoist plan` and `hoist deploy` agree: the rollout `plan --json` prints
//! (one `rollout_plan` event: waves, what comes before each, where each
//! wave's hosts get their release) is the rollout `deploy --json` runs on
//! the same file, for every shape of rollout.

use serde_json::Value;

use crate::support::fleet::Fleet;
use crate::support::project::position;

/// A health check that keeps each wave busy for a moment after its
/// uploads, so an upload made during a wave is seen inside it.
const HEALTH: &str = "[health]\ncommand = \"true\"\ngrace = \"300ms\"\n";

/// One wave as (kind, hosts, what comes before it, where its hosts upload).
type Wave = (String, Vec<String>, String, String);

/// The waves of the `rollout_plan` event (of `color`, on a blue-green fleet).
fn planned(events: &[Value], color: Option<&str>) -> (Vec<Wave>, String) {
    let plan = events
        .iter()
        .find(|e| e["event"] == "rollout_plan" && e["color"].as_str() == color)
        .unwrap_or_else(|| panic!("a rollout_plan event: {events:#?}"));
    let waves = plan["waves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            let hosts = w["hosts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h.as_str().unwrap().to_string())
                .collect();
            // A question answered by --yes leaves no trace in a run.
            let before = step(w["before"].as_str().unwrap()).replace("ask", "none");
            let kind = w["kind"].as_str().unwrap().to_string();
            (
                kind,
                hosts,
                before,
                w["upload"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (waves, step(plan["then"].as_str().unwrap()))
}

/// "bake 1s" -> "bake".
fn step(text: &str) -> String {
    text.split_whitespace().next().unwrap().to_string()
}

/// The waves a deploy ran, read from its events: each wave's hosts, what
/// happened between the wave before and it, and when each of its hosts
/// began its upload (all of a wave's hosts must agree).
fn executed(events: &[Value]) -> (Vec<Wave>, String) {
    let at = |what: &dyn Fn(&Value) -> bool| events.iter().position(what);
    let starts: Vec<usize> = (0..events.len())
        .filter(|&i| events[i]["event"] == "wave_started")
        .collect();
    let dones: Vec<usize> = (0..events.len())
        .filter(|&i| events[i]["event"] == "wave_done")
        .collect();
    let between = |from: usize, to: usize| {
        let seen = |f: &dyn Fn(&Value) -> bool| events[from..to].iter().any(f);
        if seen(&|e| e["event"] == "bake_started") {
            "bake"
        } else if seen(&|e| e["text"].as_str().is_some_and(|t| t.starts_with("pausing"))) {
            "wait"
        } else {
            "none"
        }
        .to_string()
    };
    let waves = starts
        .iter()
        .enumerate()
        .map(|(w, &start)| {
            let e = &events[start];
            let hosts: Vec<String> = e["hosts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h.as_str().unwrap().to_string())
                .collect();
            let before = match w {
                0 => "none".to_string(),
                _ => between(dones[w - 1], start),
            };
            let uploads: Vec<&str> = hosts
                .iter()
                .map(|h| {
                    let upload = at(&|e| e["host"] == h.as_str() && e["phase"] == "upload")
                        .unwrap_or_else(|| panic!("{h} was sent its release: {events:#?}"));
                    match w {
                        _ if upload > start => "in_wave",
                        0 => panic!("{h} uploaded before the first wave"),
                        _ if upload > dones[w - 1] => "during_pause",
                        _ if upload > starts[w - 1] => "during_previous_wave",
                        _ => panic!("{h} uploaded before the wave before its own"),
                    }
                })
                .collect();
            assert!(
                uploads.windows(2).all(|p| p[0] == p[1]),
                "wave {}: {uploads:?}",
                w + 1
            );
            let kind = e["kind"].as_str().unwrap().to_string();
            (kind, hosts, before, uploads[0].to_string())
        })
        .collect();
    let last = *dones.last().unwrap();
    let summary = position(events, |e| e["event"] == "summary");
    (waves, between(last, summary))
}

/// `plan --json ARGS` and `deploy --json --yes ARGS` on the fleet agree.
fn agree(shape: &str, f: &Fleet, args: &[&str], color: Option<&str>) {
    let plan = f.events(&[&["plan", "--json"], args].concat(), 0);
    let deploy = f.events(&[&["deploy", "--json", "--yes"], args].concat(), 0);
    let (planned, planned_then) = planned(&plan, color);
    let (ran, ran_then) = executed(&deploy);
    assert_eq!(ran, planned, "{shape}: the deploy ran the plan");
    assert_eq!(ran_then, planned_then, "{shape}: after the last wave");
}

fn fleet(n: usize, toml: &str) -> Fleet {
    Fleet::local(n).toml(&format!("{HEALTH}{toml}")).write()
}

#[test]
fn a_canary_then_batches_uploading_during_the_wave_before() {
    let f = fleet(
        4,
        "[strategy]\ncanary = 1\ncanary_pause = \"manual\"\nbatch = 1\n",
    );
    agree("canary + batches", &f, &[], None);
    let (waves, _) = planned(&f.events(&["plan", "--json"], 0), None);
    let uploads: Vec<&str> = waves.iter().map(|w| w.3.as_str()).collect();
    assert_eq!(
        uploads,
        [
            "in_wave",
            "in_wave",
            "during_previous_wave",
            "during_previous_wave"
        ]
    );
}

#[test]
fn a_ramp() {
    let f = fleet(
        5,
        "[strategy]\ncanary = 1\ncanary_pause = \"0s\"\nbatch = [1, \"50%\"]\n",
    );
    agree("ramp", &f, &[], None);
}

#[test]
fn a_batch_pause_is_when_the_next_batch_uploads() {
    let f = fleet(
        4,
        "[strategy]\ncanary = 0\nbatch = 2\nbatch_pause = \"1s\"\n",
    );
    agree("batch_pause", &f, &[], None);
    let (waves, _) = planned(&f.events(&["plan", "--json"], 0), None);
    assert_eq!(waves[1].2, "wait");
    assert_eq!(waves[1].3, "during_pause");
}

#[test]
fn a_timed_bake_uploads_the_next_wave_meanwhile() {
    let f = fleet(
        4,
        "[strategy]\ncanary = 1\ncanary_pause = \"1s\"\nbatch = \"50%\"\n",
    );
    agree("timed bake", &f, &[], None);
    let (waves, _) = planned(&f.events(&["plan", "--json"], 0), None);
    assert_eq!(
        (waves[1].2.as_str(), waves[1].3.as_str()),
        ("bake", "during_pause")
    );
}

#[test]
fn no_upload_during_the_wave_that_runs_the_once_hook() {
    // Before this plan was a value, `plan` said the second wave uploaded
    // during the first, while the deploy waited for the once hook's wave.
    let f = fleet(
        3,
        "[strategy]\ncanary = 0\nbatch = 1\n[hooks]\nbefore_switch_once = [\"true\"]\n",
    );
    agree("once hook", &f, &[], None);
    let (waves, _) = planned(&f.events(&["plan", "--json"], 0), None);
    let uploads: Vec<&str> = waves.iter().map(|w| w.3.as_str()).collect();
    assert_eq!(uploads, ["in_wave", "in_wave", "during_previous_wave"]);
}

#[test]
fn a_blue_green_deploy_runs_its_colour_s_plan() {
    let f = fleet(
        4,
        "[groups.blue]\nhosts = [\"web1\", \"web2\"]\n[groups.green]\nhosts = [\"web3\", \"web4\"]\n[strategy]\nkind = \"blue-green\"\nbatch = 1\n[blue_green]\ncolors = [\"blue\", \"green\"]\nswitch_local = [\"true\"]\n",
    );
    // The first deploy goes to the first colour.
    agree("blue-green", &f, &[], Some("blue"));
    let plan = f.events(&["plan", "--json"], 0);
    let (green, _) = planned(&plan, Some("green"));
    assert_eq!(green[0].1, ["web3"]);
}

#[test]
fn until_canary_runs_the_canary_and_its_bake_only() {
    let f = fleet(
        3,
        "[strategy]\ncanary = 1\ncanary_pause = \"1s\"\nbatch = 1\n",
    );
    agree("--until canary", &f, &["--until", "canary"], None);
    let (waves, then) = planned(&f.events(&["plan", "--json", "--until", "canary"], 0), None);
    assert_eq!(waves.len(), 1);
    assert_eq!(then, "bake");
}
