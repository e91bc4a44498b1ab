//! Fleets with shape on real OpenSSH hosts: zone by zone, each role with
//! its own hooks and health check, and a throttle on a hook.

use serde_json::Value;

use crate::support::fleet::{Fleet, HEALTH};
use crate::support::http::Http;
use crate::support::project::{noise, phase_at, printed, said, times_in};

/// `[groups.NAME] hosts = [...]` for each (name, hosts).
fn groups(list: &[(&str, &[&str])]) -> String {
    list.iter()
        .map(|(name, hosts)| {
            let hosts: Vec<String> = hosts.iter().map(|h| format!("{h:?}")).collect();
            format!("[groups.{name}]\nhosts = [{}]\n", hosts.join(", "))
        })
        .collect()
}

/// The phases `host` entered in `events`, in order.
fn phases<'a>(events: &'a [Value], host: &str) -> Vec<&'a str> {
    events
        .iter()
        .filter(|e| e["event"] == "host_phase" && e["host"] == host)
        .map(|e| e["phase"].as_str().unwrap())
        .collect()
}

/// The release the summary names.
fn release(events: &[Value]) -> String {
    events.last().unwrap()["release"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_failing_host_in_the_first_zone_rolls_that_zone_back_and_never_touches_the_others() {
    let f = Fleet::ssh(6)
        .toml(&format!(
            "{}{HEALTH}\n[strategy]\ncanary = 0\nbatch = 2\nwave_by = \"zone\"\nzones = [\"az-a\", \"az-b\", \"az-c\"]\n",
            // Zones that interleave the inventory: waves in inventory
            // order would mix them.
            groups(&[
                ("az-a", &["web1", "web3", "web5"]),
                ("az-b", &["web2", "web4"]),
                ("az-c", &["web6"]),
            ])
        ))
        .write();
    let v1 = f.on_v1_then_v2();
    f.mark("web5", "FAIL");
    let events = f.events(&["deploy", "--json"], 5);
    let v2 = release(&events);
    // web1 and web3 went to v2 in the first wave and came back; web5
    // failed its health check in the second.
    for host in f.host_names() {
        assert_eq!(f.current(&host).as_deref(), Some(v1.as_str()), "{host}");
    }
    for host in ["web1", "web3"] {
        assert!(f.switched_to(host, &v2), "{host}");
        assert_eq!(times_in(&events, host, "rollback"), 1, "{host}");
    }
    for host in ["web2", "web4", "web6"] {
        f.assert_holds_nothing_of(host, &v2);
        let seen = phases(&events, host);
        assert!(
            seen.iter()
                .all(|p| ["connect", "preflight", "lock", "unlock"].contains(p)),
            "{host} went beyond preflight: {seen:?}"
        );
        // The fleet lock is taken and freed on every host; nothing else.
        let journal = f.journal(host);
        assert!(
            journal
                .iter()
                .all(|e| e["release"] != v2.as_str() || e["event"] == "lock"),
            "{host}: {journal:?}"
        );
    }
    let zones: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "wave_started")
        .map(|e| &e["hosts"])
        .collect();
    assert_eq!(zones.len(), 2, "zone az-a's two waves only: {zones:?}");
}

#[test]
fn workers_run_only_their_hook_and_get_no_http_probe_while_web_hosts_do() {
    let http = Http::serve(&[("/health", b"ok".to_vec())]);
    let f = Fleet::ssh(4)
        .toml(&format!(
            r#"{groups}
[hooks]
after_switch = ["touch \"$HOIST_DEPLOY_TO/web-restarted\""]
[groups.worker.hooks]
after_switch = ["touch \"$HOIST_DEPLOY_TO/worker-restarted\""]
[health]
http = "{url}"
retries = 1
[groups.worker.health]
enabled = false
[strategy]
canary = 0
batch = "100%"
"#,
            groups = groups(&[("web", &["web1", "web2"]), ("worker", &["web3", "web4"])]),
            url = http.url("/health"),
        ))
        .write();
    let events = f.events(&["deploy", "--json", "--yes"], 0);
    for web in ["web1", "web2"] {
        assert!(f.deploy_path(web).join("web-restarted").exists(), "{web}");
        assert!(
            !f.deploy_path(web).join("worker-restarted").exists(),
            "{web}"
        );
        assert_eq!(times_in(&events, web, "health"), 1, "{web} probed");
    }
    for worker in ["web3", "web4"] {
        assert!(f.deploy_path(worker).join("worker-restarted").exists());
        assert!(!f.deploy_path(worker).join("web-restarted").exists());
        assert_eq!(
            times_in(&events, worker, "health"),
            0,
            "{worker} not probed"
        );
    }
    let probes = http.requests();
    assert_eq!(
        probes.iter().filter(|r| *r == "GET /health").count(),
        2,
        "one probe per web host: {probes:?}"
    );
    // The plan says so, host by host.
    let plan = f.events(&["plan", "--json"], 0);
    let role = |host: &str| {
        plan.iter()
            .find(|e| e["event"] == "row" && e["table"] == "roles" && e["host"] == host)
            .unwrap_or_else(|| panic!("a roles row for {host}: {plan:#?}"))
            .clone()
    };
    assert_eq!(role("web3")["health"], "(no check)");
    assert!(role("web1")["health"].as_str().unwrap().starts_with("GET "));
    assert!(
        role("web4")["after_switch"]
            .as_str()
            .unwrap()
            .contains("worker-restarted")
    );
}

/// (start, end) of each `after_switch` hook, as the hosts wrote them.
fn hook_times(f: &Fleet) -> Vec<(f64, f64)> {
    f.host_names()
        .iter()
        .map(|h| {
            let read = |name: &str| -> f64 {
                let path = f.deploy_path(h).join(name);
                let text =
                    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
                text.trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("{text:?}: {e}"))
            };
            (read("hook-start"), read("hook-end"))
        })
        .collect()
}

/// The most intervals that overlap at one moment.
fn most_at_once(spans: &[(f64, f64)]) -> usize {
    spans
        .iter()
        .map(|&(start, _)| {
            spans
                .iter()
                .filter(|&&(s, e)| s <= start && start < e)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn throttle_after_switch_2_on_8_hosts_never_overlaps_more_than_2_while_uploads_run_8_at_once() {
    let f = Fleet::ssh(8)
        .toml(
            r#"[hooks]
after_switch = ["date +%s.%N > \"$HOIST_DEPLOY_TO/hook-start\"; sleep 0.4; date +%s.%N > \"$HOIST_DEPLOY_TO/hook-end\""]
throttle = { after_switch = 2 }
[strategy]
canary = 0
batch = "100%"
parallel = 8
"#,
        )
        .write();
    // Big enough that an upload takes a while.
    std::fs::write(f.path().join("build/blob"), noise(27, 4 << 20)).unwrap();
    let events = f.events(&["deploy", "--json"], 0);
    let spans = hook_times(&f);
    assert_eq!(most_at_once(&spans), 2, "{spans:?}");
    // Uploads: from a host's upload phase to its next phase, in event order.
    let uploads: Vec<(f64, f64)> = f
        .host_names()
        .iter()
        .map(|h| {
            let at = phase_at(&events, h, "upload");
            let next = (at + 1..events.len())
                .find(|&i| events[i]["event"] == "host_phase" && events[i]["host"] == h.as_str())
                .unwrap();
            (at as f64, next as f64)
        })
        .collect();
    assert_eq!(most_at_once(&uploads), 8, "{uploads:?}");
    // The throttle holds the hook only: every upload began before a third
    // host could start its hook (one of the first two had to end first).
    let mut entered: Vec<usize> = f
        .host_names()
        .iter()
        .map(|h| phase_at(&events, h, "after_switch"))
        .collect();
    entered.sort();
    let last_upload = f
        .host_names()
        .iter()
        .map(|h| phase_at(&events, h, "upload"))
        .max()
        .unwrap();
    assert!(last_upload < entered[2], "uploads waited for the throttle");
}

/// The waves of a `rollout_plan` event: (zone, hosts, before).
fn planned(events: &[Value]) -> Vec<(String, Vec<String>, String)> {
    let plan = events
        .iter()
        .find(|e| e["event"] == "rollout_plan")
        .unwrap_or_else(|| panic!("a rollout_plan event: {events:#?}"));
    plan["waves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["zone"].as_str().unwrap().to_string(),
                strings(&w["hosts"]),
                w["before"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn strings(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn twelve_hosts_in_three_zones_and_two_roles_deploy_as_the_plan_says() {
    let web = ["web1", "web2", "web5", "web6", "web9", "web10"];
    let workers = ["web3", "web4", "web7", "web8", "web11", "web12"];
    let stamp = |role: &str| {
        format!(
            "[\"date +%s.%N > \\\"$HOIST_DEPLOY_TO/hook-start\\\"; touch \\\"$HOIST_DEPLOY_TO/{role}\\\"; sleep 0.2; date +%s.%N > \\\"$HOIST_DEPLOY_TO/hook-end\\\"\"]"
        )
    };
    let f = Fleet::ssh(12)
        .toml(&format!(
            r#"{groups}
[hooks]
after_switch = {web_hook}
throttle = {{ after_switch = 2 }}
[groups.worker.hooks]
after_switch = {worker_hook}
[health]
command = "grep -q v1 README || test ! -e \"$HOIST_DEPLOY_TO/FAIL\""
retries = 1
interval = "200ms"
[groups.worker.health]
enabled = false
[strategy]
canary = 1
canary_pause = "0s"
batch = "50%"
wave_by = "zone"
zones = ["az-a", "az-b", "az-c"]
first_zone_bake = "1s"
zone_bake = "1s"
min_healthy_per_zone = "50%"
"#,
            groups = groups(&[
                ("az-a", &["web1", "web2", "web3", "web4"]),
                ("az-b", &["web5", "web6", "web7", "web8"]),
                ("az-c", &["web9", "web10", "web11", "web12"]),
                ("web", &web),
                ("worker", &workers),
            ]),
            web_hook = stamp("role-web"),
            worker_hook = stamp("role-worker"),
        ))
        .write();
    let plan = planned(&f.events(&["plan", "--json"], 0));
    let events = f.events(&["deploy", "--json"], 0);

    // The waves that ran are the planned ones, zone after zone.
    let starts: Vec<usize> = (0..events.len())
        .filter(|&i| events[i]["event"] == "wave_started")
        .collect();
    let ran: Vec<Vec<String>> = starts
        .iter()
        .map(|&i| strings(&events[i]["hosts"]))
        .collect();
    let planned_hosts: Vec<Vec<String>> = plan.iter().map(|(_, h, _)| h.clone()).collect();
    assert_eq!(ran, planned_hosts);
    let zones: Vec<&str> = plan.iter().map(|(z, ..)| z.as_str()).collect();
    assert_eq!(
        zones,
        ["az-a", "az-a", "az-a", "az-b", "az-b", "az-c", "az-c"]
    );
    let ran_zones: Vec<&str> = starts
        .iter()
        .map(|&i| events[i]["zone"].as_str().unwrap())
        .collect();
    assert_eq!(ran_zones, zones);
    // A zone bake where the plan puts one, over the whole zone before it.
    for (w, (_, _, before)) in plan.iter().enumerate().skip(1) {
        let bake = events[starts[w - 1]..starts[w]]
            .iter()
            .find(|e| e["event"] == "bake_started");
        match bake {
            Some(bake) => {
                assert_eq!(before, "zone bake 1s", "wave {}", w + 1);
                let zone = &plan[w - 1].0;
                let baked: Vec<String> = plan
                    .iter()
                    .filter(|(z, ..)| z == zone)
                    .flat_map(|(_, h, _)| h.clone())
                    .collect();
                let mut seen = strings(&bake["hosts"]);
                seen.sort();
                let mut want = baked;
                want.sort();
                assert_eq!(seen, want, "the bake before wave {}", w + 1);
            }
            None => assert_eq!(before, "none", "wave {}", w + 1),
        }
    }
    // Each role ran its own hook; only web hosts were probed.
    for host in web {
        assert!(f.deploy_path(host).join("role-web").exists(), "{host}");
        assert!(!f.deploy_path(host).join("role-worker").exists(), "{host}");
        assert_eq!(times_in(&events, host, "health"), 1, "{host}");
    }
    for host in workers {
        assert!(f.deploy_path(host).join("role-worker").exists(), "{host}");
        assert_eq!(times_in(&events, host, "health"), 0, "{host}");
    }
    // The throttle held across roles and zones.
    assert!(most_at_once(&hook_times(&f)) <= 2);
    assert!(!said(&events, "rollout stopped"));

    // A bad release in zone A stops there.
    let v1 = release(&events);
    std::fs::write(f.path().join("build/README"), "v2").unwrap();
    f.mark("web2", "FAIL");
    let events = f.events(&["deploy", "--json"], 5);
    let v2 = release(&events);
    for host in f.host_names() {
        assert_eq!(f.current(&host).as_deref(), Some(v1.as_str()), "{host}");
    }
    for i in 5..=12 {
        f.assert_holds_nothing_of(&format!("web{i}"), &v2);
    }
}

#[test]
fn ordered_groups_deploy_one_after_another_and_a_failure_rolls_back_every_group() {
    let f = Fleet::ssh(4)
        .toml(&format!(
            "{}{HEALTH}\n[strategy]\ncanary = 0\nbatch = 1\norder = [\"migrator\", \"web\", \"late\"]\n",
            // The migrator is last in the inventory, first in the order.
            groups(&[
                ("migrator", &["web4"]),
                ("web", &["web1", "web2"]),
                ("late", &["web3"]),
            ])
        ))
        .write();
    let v1 = f.on_v1_then_v2();
    f.mark("web2", "FAIL");
    let events = f.events(&["deploy", "--json"], 5);
    let v2 = release(&events);
    let waves: Vec<Vec<String>> = events
        .iter()
        .filter(|e| e["event"] == "wave_started")
        .map(|e| strings(&e["hosts"]))
        .collect();
    assert_eq!(waves, [vec!["web4"], vec!["web1"], vec!["web2"]]);
    for host in ["web4", "web1"] {
        assert!(f.switched_to(host, &v2), "{host}");
        assert_eq!(times_in(&events, host, "rollback"), 1, "{host}");
    }
    for host in f.host_names() {
        assert_eq!(f.current(&host).as_deref(), Some(v1.as_str()), "{host}");
    }
    f.assert_holds_nothing_of("web3", &v2);
}

#[test]
fn a_wave_that_would_take_a_zone_below_min_healthy_stops_the_rollout() {
    // One zone of four that keeps three in service: one host at a time,
    // and once one failed (max_failures allows it) no other may go.
    let f = Fleet::ssh(4)
        .toml(&format!(
            "{}{HEALTH}\n[strategy]\ncanary = 0\nbatch = 1\nmax_failures = 1\nwave_by = \"zone\"\nzones = [\"az-a\"]\nmin_healthy_per_zone = \"75%\"\n",
            groups(&[("az-a", &["web1", "web2", "web3", "web4"])])
        ))
        .write();
    let v1 = f.on_v1_then_v2();
    f.mark("web1", "FAIL");
    let events = f.events(&["deploy", "--json"], 5);
    let v2 = release(&events);
    assert!(said(
        &events,
        "wave 2 would leave zone az-a with 2 healthy host(s) (1 failed), fewer than min_healthy_per_zone (3)"
    ));
    assert!(f.switched_to("web1", &v2));
    for host in f.host_names() {
        assert_eq!(f.current(&host).as_deref(), Some(v1.as_str()), "{host}");
    }
    for host in ["web2", "web3", "web4"] {
        f.assert_holds_nothing_of(host, &v2);
    }
}

#[test]
fn an_ordered_group_with_its_own_parallel_works_its_hosts_one_at_a_time() {
    let f = Fleet::ssh(4)
        .toml(&format!(
            r#"{}
[hooks]
after_switch = ["date +%s.%N > \"$HOIST_DEPLOY_TO/hook-start\"; sleep 0.3; date +%s.%N > \"$HOIST_DEPLOY_TO/hook-end\""]
[strategy]
canary = 0
batch = "100%"
order = ["serial", "rest"]
[groups.serial.strategy]
parallel = 1
"#,
            groups(&[("serial", &["web1", "web2"]), ("rest", &["web3", "web4"])])
        ))
        .write();
    f.events(&["deploy", "--json"], 0);
    let spans = hook_times(&f);
    // web1 and web2 (one wave, a limit of 1) one after the other; web3 and
    // web4 (the fleet's parallel) together.
    assert_eq!(most_at_once(&spans[..2]), 1, "{spans:?}");
    assert_eq!(most_at_once(&spans[2..]), 2, "{spans:?}");
}

#[test]
fn a_host_in_two_groups_that_disagree_on_a_hook_is_exit_2_naming_both_and_the_key() {
    let f = Fleet::local(2)
        .toml(&format!(
            "{}[groups.web.hooks]\nafter_switch = [\"restart web\"]\n[groups.eu.hooks]\nafter_switch = [\"restart eu\"]\n",
            groups(&[("web", &["web1", "web2"]), ("eu", &["web2"])])
        ))
        .write();
    for command in ["plan", "deploy"] {
        let out = f.hoist(&[command]).assert().code(2).get_output().clone();
        let stderr = printed(&out);
        for needle in ["host `web2`", "`eu`", "`web`", "`hooks.after_switch`"] {
            assert!(
                stderr.contains(needle),
                "{command}: {needle} not in {stderr}"
            );
        }
        assert!(f.untouched("web1") && f.untouched("web2"));
    }
}

#[test]
fn plan_says_the_zone_and_group_of_each_wave_its_bakes_and_the_throttle() {
    let f = Fleet::local(4)
        .toml(&format!(
            "{}[hooks]\nthrottle = {{ after_switch = 1 }}\n[strategy]\ncanary = 0\nbatch = 1\norder = [\"first\", \"second\"]\nwave_by = \"zone\"\nzones = [\"az-a\", \"az-b\"]\nfirst_zone_bake = \"3m\"\nzone_bake = \"1m\"\n",
            groups(&[
                ("first", &["web1", "web2"]),
                ("second", &["web3", "web4"]),
                ("az-a", &["web1", "web3"]),
                ("az-b", &["web2", "web4"]),
            ])
        ))
        .write();
    let out = f.hoist(&["plan"]).assert().success().get_output().clone();
    let text = printed(&out);
    for line in [
        "wave 1 (group first, zone az-a, batch, 1 host(s))",
        "wave 2 (group first, zone az-b, batch, 1 host(s)): after wave 1: zone bake 3m",
        "wave 3 (group second, zone az-a, batch, 1 host(s)): after wave 2: zone bake 1m",
        "wave 4 (group second, zone az-b, batch, 1 host(s)): after wave 3: zone bake 3m",
        "throttle: after_switch on at most 1 host(s) at once fleet-wide",
        "order: first, then second",
    ] {
        assert!(text.contains(line), "{line:?} not in:\n{text}");
    }
    let events = f.events(&["plan", "--json"], 0);
    let plan = events
        .iter()
        .find(|e| e["event"] == "rollout_plan")
        .unwrap();
    assert_eq!(plan["throttle"]["after_switch"], 1);
    assert_eq!(plan["waves"][3]["group"], "second");
    assert_eq!(plan["waves"][3]["zone"], "az-b");
}

#[test]
fn until_canary_is_judged_on_the_planned_waves_of_the_first_ordered_group() {
    let f = Fleet::local(3)
        .toml(&format!(
            "{}[strategy]\ncanary = 1\norder = [\"first\", \"rest\"]\n[groups.first.strategy]\ncanary = 0\n",
            groups(&[("first", &["web1"]), ("rest", &["web2", "web3"])])
        ))
        .write();
    for command in [
        &["plan", "--until", "canary"][..],
        &["deploy", "--until", "canary"],
    ] {
        let out = f.hoist(command).assert().code(2).get_output().clone();
        assert!(
            printed(&out).contains("no canary wave"),
            "{}",
            printed(&out)
        );
    }
    assert!(f.untouched("web1"));
}
