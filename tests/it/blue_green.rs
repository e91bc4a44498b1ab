//! Blue-green on real OpenSSH hosts: web1-3 are blue, web4-6 green, and
//! `switch_local` writes the live colour to `lb` in the project, as a load
//! balancer's configuration would hold it.

use std::time::Instant;

use crate::support::fleet::Fleet;
use crate::support::project::{ndjson, printed};

const BLUE: [&str; 3] = ["web1", "web2", "web3"];
const GREEN: [&str; 3] = ["web4", "web5", "web6"];

/// Six SSH hosts in two colours. Health: README v3 is unhealthy on a host
/// marked FAIL; README v4 is unhealthy once `lb` says green and the project
/// holds BREAK (a release that breaks under real traffic).
fn fleet() -> Fleet {
    let f = Fleet::ssh(6);
    let proj = f.path().display().to_string();
    let toml = format!(
        r#"[groups.blue]
hosts = ["web1", "web2", "web3"]

[groups.green]
hosts = ["web4", "web5", "web6"]

[strategy]
kind = "blue-green"
batch = 2

[blue_green]
colors = ["blue", "green"]
switch_local = ["printf '%s' \"$HOIST_COLOR\" > lb"]

[health]
command = "{{ ! grep -q v3 README || test ! -e \"$HOIST_DEPLOY_TO/FAIL\"; }} && {{ ! grep -q v4 README || test ! -e {proj}/BREAK || ! grep -qx green {proj}/lb; }}"
retries = 1
interval = "100ms"
"#
    );
    f.toml(&toml).write()
}

fn build(f: &Fleet, version: &str) {
    std::fs::write(f.path().join("build/README"), version).unwrap();
}

fn lb(f: &Fleet) -> String {
    std::fs::read_to_string(f.path().join("lb")).unwrap_or_default()
}

/// Every host of a colour has `release` as its current release.
fn assert_on(f: &Fleet, colour: [&str; 3], release: &str, why: &str) {
    for host in colour {
        assert_eq!(f.current(host).as_deref(), Some(release), "{host} {why}");
    }
}

fn currents(f: &Fleet) -> Vec<Option<String>> {
    f.host_names().iter().map(|h| f.current(h)).collect()
}

#[test]
fn blue_green_deploys_switch_colours_and_rollback_moves_only_traffic() {
    let f = fleet();
    // First deploy: the first colour, made live.
    let out = f
        .hoist(&["deploy", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let r1 = ndjson(&out).last().unwrap()["release"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(lb(&f), "blue");
    assert_on(&f, BLUE, &r1, "live");
    for host in GREEN {
        assert!(f.current(host).is_none(), "{host} untouched");
        assert!(f.releases(host).is_empty(), "{host} got no upload");
    }

    // Second deploy: green gets the new release and the traffic.
    build(&f, "v2");
    let events = f.events(&["deploy", "--json"], 0);
    let r2 = events.last().unwrap()["release"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(lb(&f), "green");
    assert_on(&f, BLUE, &r1, "unchanged");
    assert_on(&f, GREEN, &r2, "deployed");
    for host in GREEN {
        assert_eq!(f.read_current(host, "README"), "v2");
    }
    let traffic = events.iter().find(|e| e["event"] == "traffic").unwrap();
    assert_eq!(traffic["color"], "green");
    assert_eq!(traffic["previous"], "blue");

    // Status from a checkout that never deployed names the live colour.
    let fresh = tempfile::Builder::new()
        .prefix("hoist-fresh-")
        .tempdir()
        .unwrap();
    std::fs::copy(
        f.path().join("deploy.toml"),
        fresh.path().join("deploy.toml"),
    )
    .unwrap();
    let status = |args: &[&str]| {
        let mut cmd = f.hoist(args);
        cmd.current_dir(fresh.path());
        cmd.assert().success().get_output().clone()
    };
    let text = printed(&status(&["status"]));
    assert!(text.contains("live colour: green (blue is idle)"), "{text}");
    let rows = ndjson(&status(&["status", "--json"]).stdout);
    for row in rows.iter().filter(|e| e["event"] == "row") {
        let green = GREEN.contains(&row["host"].as_str().unwrap());
        assert_eq!(row["color"], if green { "green" } else { "blue" });
        assert_eq!(row["live"], green, "{row}");
    }

    // Rollback: traffic back to blue; no host's current changes.
    let before = currents(&f);
    let started = Instant::now();
    let out = f
        .hoist(&["rollback"])
        .assert()
        .success()
        .get_output()
        .clone();
    let took = started.elapsed();
    eprintln!("blue-green rollback of 6 SSH hosts took {took:?}");
    assert_eq!(lb(&f), "blue", "{}", printed(&out));
    // A rollback is one local command: no host was switched (its time is
    // said above, not asserted: a loaded machine would fail it).
    assert_eq!(currents(&f), before, "no host was switched");
    for host in f.host_names() {
        let last = f
            .journal(&host)
            .into_iter()
            .rev()
            .find(|e| e["event"] == "traffic")
            .unwrap();
        assert_eq!(last["color"], "blue", "{host} records blue live");
        assert!(!f.locked(&host));
    }
    let text = printed(&status(&["status"]));
    assert!(text.contains("live colour: blue (green is idle)"), "{text}");

    // A deploy that fails its health check on the idle colour: traffic never moves.
    build(&f, "v3");
    f.mark("web5", "FAIL");
    f.hoist(&["deploy"]).assert().code(5);
    assert_eq!(lb(&f), "blue");
    assert_on(&f, GREEN, &r2, "back on r2");
    assert_on(&f, BLUE, &r1, "never touched");
    std::fs::remove_file(f.deploy_path("web5").join("FAIL")).unwrap();

    // The probe after the switch fails: traffic goes back, the idle colour too.
    build(&f, "v4");
    std::fs::write(f.path().join("BREAK"), "").unwrap();
    let events = f.events(&["deploy", "--json"], 5);
    let switches: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "traffic")
        .map(|e| e["color"].as_str().unwrap())
        .collect();
    assert_eq!(switches, ["green", "blue"], "switched, then back");
    assert_eq!(lb(&f), "blue");
    assert_on(&f, GREEN, &r2, "back on r2");
    assert_on(&f, BLUE, &r1, "live again");
    let text = printed(&status(&["status"]));
    assert!(text.contains("live colour: blue"), "{text}");
}

#[test]
fn a_limit_that_cuts_across_colours_is_refused() {
    let f = fleet();
    let out = f
        .hoist(&["deploy", "-l", "web1,web4,web5,web6"])
        .assert()
        .code(2)
        .get_output()
        .clone();
    let text = printed(&out);
    assert!(text.contains("cuts across the colour \"blue\""), "{text}");
    assert!(f.untouched("web1"));
    f.hoist(&["rollback", "-l", "green"]).assert().code(2);
}

#[test]
fn colours_that_are_empty_or_overlap_are_configuration_errors() {
    let f = Fleet::ssh(0).toml(
        "[hosts.a]\n[hosts.b]\n[groups.blue]\nhosts = [\"a\", \"b\"]\n[groups.green]\nhosts = [\"b\"]\n[strategy]\nkind = \"blue-green\"\n[blue_green]\ncolors = [\"blue\", \"green\"]",
    ).write();
    let out = f.hoist(&["plan"]).assert().code(2).get_output().clone();
    assert!(
        printed(&out).contains("one colour only"),
        "{}",
        printed(&out)
    );
    let f = Fleet::ssh(0).toml(
        "[hosts.a]\n[groups.blue]\nhosts = [\"a\"]\n[groups.green]\nhosts = []\n[strategy]\nkind = \"blue-green\"\n[blue_green]\ncolors = [\"blue\", \"green\"]",
    ).write();
    let out = f.hoist(&["plan"]).assert().code(2).get_output().clone();
    assert!(printed(&out).contains("has no hosts"), "{}", printed(&out));
}

#[test]
fn blue_green_rollback_on_local_hosts_only_moves_traffic() {
    let mut f = Fleet::local(4);
    f = f
        .toml(
            "[groups.blue]\nhosts = [\"web1\", \"web2\"]\n[groups.green]\nhosts = [\"web3\", \"web4\"]\n\
             [strategy]\nkind = \"blue-green\"\n[blue_green]\ncolors = [\"blue\", \"green\"]\n\
             switch_local = [\"printf '%s' \\\"$HOIST_COLOR\\\" > lb\"]",
        )
        .write();
    f.hoist(&["deploy"]).assert().success();
    build(&f, "v2");
    f.hoist(&["deploy"]).assert().success();
    assert_eq!(lb(&f), "green");
    let before = currents(&f);
    let started = Instant::now();
    f.hoist(&["rollback"]).assert().success();
    eprintln!(
        "blue-green rollback of 4 local hosts took {:?}",
        started.elapsed()
    );
    assert_eq!(lb(&f), "blue");
    assert_eq!(currents(&f), before);
}

#[test]
fn blue_green_rollback_to_an_id_switches_the_idle_colour_to_it_then_traffic() {
    let f = Fleet::local(2)
        .toml(
            "[groups.blue]\nhosts = [\"web1\"]\n[groups.green]\nhosts = [\"web2\"]\n\
             [strategy]\nkind = \"blue-green\"\n[blue_green]\ncolors = [\"blue\", \"green\"]\n\
             switch_local = [\"printf '%s' \\\"$HOIST_COLOR\\\" > lb\"]",
        )
        .write();
    let mut ids = Vec::new();
    for version in ["v1", "v2", "v3", "v4"] {
        build(&f, version);
        f.hoist(&["deploy"]).assert().success();
        ids.push(
            f.current(if ids.len() % 2 == 0 { "web1" } else { "web2" })
                .unwrap(),
        );
    }
    assert_eq!(lb(&f), "green");
    // Blue is idle and never held v2.
    let out = f
        .hoist(&["rollback", "--to", &ids[1]])
        .assert()
        .code(3)
        .get_output()
        .clone();
    assert!(
        printed(&out).contains("it is not on web1"),
        "{}",
        printed(&out)
    );
    assert_eq!(lb(&f), "green");
    f.hoist(&["rollback", "--to", &ids[0]]).assert().success();
    assert_eq!(lb(&f), "blue");
    assert_eq!(f.current("web1").as_deref(), Some(ids[0].as_str()));
    assert_eq!(f.read_current("web1", "README"), "v1");
    assert_eq!(
        f.current("web2").as_deref(),
        Some(ids[3].as_str()),
        "green untouched"
    );
}
