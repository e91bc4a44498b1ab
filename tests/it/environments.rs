//! Staging and production in one file (issue 28): `[env.NAME]` overlays and
//! `-e`, `hoist config`, promotion of the exact bytes staging runs
//! (`deploy -e production --from staging`), and `[policy]`: freezes and
//! reasons, recorded in every journal line of a run.

use crate::support::fleet::Fleet;
use crate::support::project::{Project, ndjson, printed};

/// Moves each host's table of deploy.toml under its environment:
/// `[hosts.web1]` becomes `[env.staging.hosts.web1]`; appends `extra`.
fn split(f: &Fleet, staging: &[&str], production: &[&str], extra: &str) {
    let path = f.path().join("deploy.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    for (env, hosts) in [("staging", staging), ("production", production)] {
        for host in hosts {
            text = text.replace(
                &format!("[hosts.{host}]"),
                &format!("[env.{env}.hosts.{host}]"),
            );
        }
    }
    text.push_str(extra);
    std::fs::write(path, text).unwrap();
}

/// Two SSH fleets in one file: web1 and web2 are staging, web3 and web4
/// production.
fn two_fleets(extra: &str) -> Fleet {
    let f = Fleet::ssh(4).toml("[strategy]\ncanary = 0").write();
    split(&f, &["web1", "web2"], &["web3", "web4"], extra);
    f
}

/// The journal lines of one run on a host.
fn lines_of_run(f: &Fleet, host: &str, run: &str) -> Vec<serde_json::Value> {
    f.journal(host)
        .into_iter()
        .filter(|e| e["run"] == run)
        .collect()
}

/// The host's last `deploy` journal line.
fn last_deploy(f: &Fleet, host: &str) -> serde_json::Value {
    f.journal(host)
        .into_iter()
        .rfind(|e| e["event"] == "deploy")
        .unwrap_or_else(|| panic!("{host} has no deploy line"))
}

/// Dates every line of the host's journal `hours` earlier: the record of a
/// release that has been live that long.
fn age_journal(f: &Fleet, host: &str, hours: i64) {
    let path = f.deploy_path(host).join(".hoist/journal");
    let text: String = f
        .journal(host)
        .into_iter()
        .map(|mut e| {
            let ts = chrono::DateTime::parse_from_rfc3339(e["ts"].as_str().unwrap()).unwrap();
            let older = ts - chrono::Duration::hours(hours);
            e["ts"] = older
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                .into();
            format!("{e}\n")
        })
        .collect();
    std::fs::write(path, text).unwrap();
}

#[test]
fn promotion_deploys_the_bytes_staging_runs_once_it_has_soaked() {
    let f = two_fleets("\n[env.production]\nmin_soak = \"1h\"\n");
    f.hoist(&["deploy", "-e", "staging", "--yes", "-m", "ticket 7"])
        .assert()
        .success();
    let staged = f.current("web1").unwrap();
    assert_eq!(f.current("web2").as_deref(), Some(staged.as_str()));
    assert!(f.untouched("web3") && f.untouched("web4"), "staging only");
    let staged_line = last_deploy(&f, "web1");
    assert_eq!(staged_line["env"], "staging");
    assert_eq!(staged_line["reason"], "ticket 7");

    // Just deployed: younger than production's min_soak.
    let out = f
        .hoist(&["deploy", "-e", "production", "--from", "staging", "--yes"])
        .output()
        .unwrap();
    let text = printed(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains(&format!("{staged} has been live on staging for")),
        "{text}"
    );
    assert!(text.contains("min_soak is 1h"), "{text}");
    assert!(f.untouched("web3") && f.untouched("web4"), "{text}");

    for host in ["web1", "web2"] {
        age_journal(&f, host, 2);
    }
    let out = f
        .hoist(&[
            "deploy",
            "-e",
            "production",
            "--from",
            "staging",
            "--yes",
            "-m",
            "go",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", printed(&out));
    let promoted = f.current("web3").unwrap();
    assert_eq!(f.current("web4").as_deref(), Some(promoted.as_str()));
    assert_ne!(promoted, staged, "a release of its own");
    assert_eq!(promoted[17..], staged[17..], "the same artifact hash");
    let line = last_deploy(&f, "web3");
    assert_eq!(line["sha256"], staged_line["sha256"]);
    assert_eq!(line["promoted_from"], staged.as_str());
    assert_eq!(line["env"], "production");
    // Every line of the run (lock, deploy, unlock) says where it came from.
    let run = line["run"].as_str().unwrap();
    let lines = lines_of_run(&f, "web4", run);
    assert!(lines.len() >= 3, "{lines:?}");
    for l in &lines {
        assert_eq!(l["env"], "production", "{l}");
        assert_eq!(l["promoted_from"], staged.as_str(), "{l}");
        assert_eq!(l["reason"], "go", "{l}");
    }
    // Staging is read, never written to.
    assert_eq!(f.current("web1").as_deref(), Some(staged.as_str()));
    assert!(lines_of_run(&f, "web1", run).is_empty());

    // status and releases tell the environments apart.
    let rows = f.events(&["status", "-e", "production", "--json"], 0);
    let rows: Vec<_> = rows.iter().filter(|e| e["event"] == "row").collect();
    assert_eq!(rows.len(), 2);
    for row in rows {
        assert_eq!(row["env"], "production", "{row}");
        assert_eq!(row["promoted_from"], staged.as_str(), "{row}");
        assert_eq!(row["reason"], "go", "{row}");
    }
    let rows = f.events(&["releases", "-e", "staging", "--json"], 0);
    let row = rows.iter().find(|e| e["event"] == "row").unwrap();
    assert_eq!(row["env"], "staging", "{row}");
    assert_eq!(row["reason"], "ticket 7", "{row}");
}

#[test]
fn promotion_refuses_an_artifact_that_is_not_the_bytes_staging_runs() {
    let f = two_fleets("");
    f.hoist(&["deploy", "-e", "staging", "--yes"])
        .assert()
        .success();
    let staged = last_deploy(&f, "web1")["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(f.path().join("build/README"), "v2, never on staging").unwrap();
    let out = f
        .hoist(&["deploy", "-e", "production", "--from", "staging", "--yes"])
        .output()
        .unwrap();
    let text = printed(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    let sums: Vec<&str> = text
        .split(|c: char| !c.is_ascii_hexdigit())
        .filter(|w| w.len() == 64)
        .collect();
    assert!(sums.contains(&staged.as_str()), "staging's sum: {text}");
    assert!(
        sums.iter().any(|s| *s != staged),
        "and the artifact's: {text}"
    );
    assert!(
        text.contains("the artifact is not the bytes staging runs"),
        "{text}"
    );
    assert!(f.untouched("web3") && f.untouched("web4"), "{text}");
}

#[test]
fn promotion_refuses_a_release_staging_rolled_back_or_sick() {
    let f = two_fleets(
        "\n[health]\ncommand = \"test ! -e \\\"$HOIST_DEPLOY_TO/SICK\\\"\"\nretries = 1\n",
    );
    f.hoist(&["deploy", "-e", "staging", "--yes"])
        .assert()
        .success();
    // Live everywhere, but failing its health check on one host now.
    let sick = f.mark("web2", "SICK");
    let out = f
        .hoist(&["deploy", "-e", "production", "--from", "staging", "--yes"])
        .output()
        .unwrap();
    let text = printed(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("fails its health check there (web2: "),
        "{text}"
    );
    assert!(f.untouched("web3") && f.untouched("web4"), "{text}");
    std::fs::remove_file(sick).unwrap();
    std::fs::write(f.path().join("build/README"), "v2").unwrap();
    f.hoist(&["deploy", "-e", "staging", "--yes"])
        .assert()
        .success();
    let v2 = f.current("web1").unwrap();
    f.hoist(&[
        "rollback",
        "-e",
        "staging",
        "--yes",
        "-m",
        "v2 broke checkout",
    ])
    .assert()
    .success();
    // Someone puts v2 back by hand: it is live, but it failed on staging.
    f.hoist(&["rollback", "-e", "staging", "--yes", "--to", &v2])
        .assert()
        .success();
    assert_eq!(f.current("web2").as_deref(), Some(v2.as_str()));
    let out = f
        .hoist(&["deploy", "-e", "production", "--from", "staging", "--yes"])
        .output()
        .unwrap();
    let text = printed(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains(&format!("{v2} was rolled back on staging")),
        "{text}"
    );
    assert!(f.untouched("web3") && f.untouched("web4"), "{text}");
    let rollback = f
        .journal("web1")
        .into_iter()
        .find(|e| e["event"] == "rollback")
        .unwrap();
    assert_eq!(rollback["reason"], "v2 broke checkout");
    assert_eq!(rollback["env"], "staging");
}

#[test]
fn promotion_from_a_blue_green_staging_takes_the_live_colours_release() {
    let f = Fleet::local(3).write();
    split(
        &f,
        &["web1", "web2"],
        &["web3"],
        "\n[env.staging.groups.blue]\nhosts = [\"web1\"]\n[env.staging.groups.green]\nhosts = [\"web2\"]\n\
         [env.staging.strategy]\nkind = \"blue-green\"\n\
         [env.staging.blue_green]\ncolors = [\"blue\", \"green\"]\nswitch_local = [\"true\"]\n\
         [env.production.strategy]\ncanary = 0\n",
    );
    // The first deploy goes to blue and makes it live; green holds nothing.
    f.hoist(&["deploy", "-e", "staging"]).assert().success();
    let live = f.current("web1").unwrap();
    assert_eq!(f.current("web2"), None);
    let out = f
        .hoist(&["deploy", "-e", "production", "--from", "staging"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", printed(&out));
    assert_eq!(last_deploy(&f, "web3")["promoted_from"], live.as_str());
}

#[test]
fn an_environment_names_the_lock_the_log_and_the_hooks() {
    let f = Fleet::local(2)
        .toml(
            "[strategy]\ncanary = 0\n\n[hooks]\non_start_local = [\"echo \\\"$HOIST_ENV|$HOIST_REASON\\\" > started\"]",
        )
        .write();
    split(&f, &["web1"], &["web2"], "");
    f.hoist(&["deploy", "-e", "staging", "-m", "first one"])
        .assert()
        .success();
    assert_eq!(
        std::fs::read_to_string(f.path().join("started")).unwrap(),
        "staging|first one\n"
    );
    let logs: Vec<String> = std::fs::read_dir(f.path().join(".hoist/logs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        logs.iter().any(|l| l.ends_with("-staging-deploy.log")),
        "{logs:?}"
    );
    f.hoist(&["lock", "-e", "staging", "-m", "db work"])
        .assert()
        .success();
    // HOIST_ENV picks the environment as -e does; the lock's owner says it.
    let out = f
        .hoist(&["status", "--json"])
        .env("HOIST_ENV", "staging")
        .assert()
        .success()
        .get_output()
        .clone();
    let rows = ndjson(&out.stdout);
    let row = rows.iter().find(|e| e["event"] == "row").unwrap();
    assert_eq!(row["host"], "web1");
    let lock = row["lock"].as_str().unwrap();
    assert!(
        lock.contains("environment staging") && lock.ends_with(": db work"),
        "{lock}"
    );
    assert_eq!(row["env"], "staging");
    assert!(f.untouched("web2"));
}

#[test]
fn require_env_and_an_unknown_environment_stop_before_anything() {
    let f = Fleet::local(2).toml("[strategy]\ncanary = 0").write();
    split(&f, &["web1"], &["web2"], "");
    let path = f.path().join("deploy.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("require_env = true\n{text}")).unwrap();
    let out = f.hoist(&["deploy"]).output().unwrap();
    let said = printed(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("require_env = true"), "{said}");
    assert!(said.contains("staging, production"), "{said}");
    let out = f.hoist(&["deploy", "-e", "prod"]).output().unwrap();
    let said = printed(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("there is no environment \"prod\"; the file defines: staging, production"),
        "{said}"
    );
    // A typo in an environment's table is refused with its path.
    std::fs::write(
        &path,
        format!("require_env = true\n{text}\n[env.production.strategy]\nbatchh = 1\n"),
    )
    .unwrap();
    let out = f.hoist(&["deploy", "-e", "staging"]).output().unwrap();
    let said = printed(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("unknown key `env.production.strategy.batchh`"),
        "{said}"
    );
    assert!(f.untouched("web1") && f.untouched("web2"));
}

#[test]
fn a_freeze_refuses_deploys_until_overridden_with_a_reason_and_never_rollbacks() {
    let frozen = "2026-01-01 - 2099-12-31";
    let f = Fleet::local(1)
        .toml(&format!(
            "[strategy]\ncanary = 0\n\n[policy]\nfreeze = [\"2020-01-01 - 2020-01-02\", \"{frozen}\"]\ntimezone = \"Europe/Berlin\""
        ))
        .write();
    let out = f.hoist(&["deploy"]).output().unwrap();
    let text = printed(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains(&format!(
            "policy.freeze {frozen:?} holds until Fri 2100-01-01 00:00 CET"
        )),
        "{text}"
    );
    assert!(f.untouched("web1"), "{text}");
    let out = f.hoist(&["deploy", "--override-freeze"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(printed(&out).contains("--override-freeze needs -m/--reason"));

    f.hoist(&["deploy", "--override-freeze", "-m", "hotfix 1"])
        .assert()
        .success();
    std::fs::write(f.path().join("build/README"), "v2").unwrap();
    let out = f
        .hoist(&["deploy", "--override-freeze", "-m", "hotfix 2"])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_SERVER_URL", "https://github.example")
        .env("GITHUB_REPOSITORY", "acme/shop")
        .env("GITHUB_RUN_ID", "4242")
        .env_remove("GITHUB_STEP_SUMMARY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", printed(&out));
    let line = last_deploy(&f, "web1");
    let run = line["run"].as_str().unwrap();
    let url = "https://github.example/acme/shop/actions/runs/4242";
    for l in lines_of_run(&f, "web1", run) {
        assert_eq!(l["override_freeze"], frozen, "{l}");
        assert_eq!(l["reason"], "hotfix 2", "{l}");
        assert_eq!(l["ci_url"], url, "{l}");
    }
    let status = f.events(&["status", "--json"], 0);
    let row = status.iter().find(|e| e["event"] == "row").unwrap();
    assert_eq!(row["ci_url"], url, "{row}");
    assert_eq!(row["reason"], "hotfix 2", "{row}");

    // Going back is never frozen.
    f.hoist(&["rollback", "--yes"]).assert().success();
    assert_eq!(f.read_current("web1", "README"), "v1");
}

#[test]
fn a_frozen_canary_is_not_promoted_but_may_be_aborted() {
    let f = Fleet::local(2)
        .toml(
            "[strategy]\ncanary = 1\ncanary_pause = \"0s\"\n\n[policy]\nfreeze = [\"2026-01-01 - 2099-12-31\"]",
        )
        .write();
    f.hoist(&[
        "deploy",
        "--until",
        "canary",
        "--override-freeze",
        "-m",
        "canary only",
    ])
    .assert()
    .success();
    let out = f.hoist(&["promote", "--yes"]).output().unwrap();
    let text = printed(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("deploys are frozen"), "{text}");
    assert_eq!(f.current("web2"), None, "{text}");
    f.hoist(&["abort", "-m", "frozen, try on monday"])
        .assert()
        .success();
    assert_eq!(f.current("web1"), None, "the canary went back to nothing");
    let abort = f
        .journal("web1")
        .into_iter()
        .rfind(|e| e["event"] == "aborted");
    assert_eq!(abort.unwrap()["reason"], "frozen, try on monday");
}

#[test]
fn status_says_when_a_host_was_switched_by_another_environment() {
    let f = Fleet::local(2).toml("[strategy]\ncanary = 0").write();
    split(&f, &["web1"], &["web2"], "");
    f.hoist(&["deploy", "-e", "staging"]).assert().success();
    // web1 moved to production in the file, but still runs staging's release.
    let path = f.path().join("deploy.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("[env.staging.hosts.web1]", "[env.production.hosts.web1]"),
    )
    .unwrap();
    let out = f
        .hoist(&["status", "-e", "production", "-l", "web1"])
        .output()
        .unwrap();
    let text = printed(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("switched to by a run for environment staging, not production"),
        "{text}"
    );
}

#[test]
fn require_reason_makes_deploy_say_why() {
    let f = Fleet::local(1)
        .toml("[strategy]\ncanary = 0\n\n[policy]\nrequire_reason = true")
        .write();
    let out = f.hoist(&["deploy"]).output().unwrap();
    let text = printed(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("policy.require_reason = true: say why with -m/--reason TEXT"),
        "{text}"
    );
    assert!(f.untouched("web1"));
    f.hoist(&["deploy", "--reason", "weekly release"])
        .assert()
        .success();
    assert_eq!(last_deploy(&f, "web1")["reason"], "weekly release");
}

/// A file with two environments whose output does not depend on where the
/// test runs.
const TWO_ENVS: &str = r#"[app]
name = "shop-api"
deploy_to = "/srv/shop-api"
keep_releases = 5

[artifact]
path = "build"

[ssh]
user = "deploy"

[strategy]
canary = 1
batch = [1, "50%"]   # ramp

[hooks]
after_switch = ["sudo systemctl restart shop-api"]

[env.staging.hosts.stage1]
address = "10.1.0.1"

[env.production]
min_soak = "1h"

[env.production.app]
keep_releases = 10

[env.production.hosts.web1]
address = "10.0.0.11"
[env.production.hosts.web2]
address = "10.0.0.12"

[env.production.policy]
freeze = ["Fri 16:00 - Mon 08:00", "2026-12-24 - 2026-12-27"]
timezone = "Europe/Berlin"
require_reason = true
"#;

#[test]
fn snapshot_config_shows_every_key_and_where_it_came_from() {
    let p = Project::new();
    std::fs::write(p.path().join("deploy.toml"), TWO_ENVS).unwrap();
    let out = p
        .hoist(&["config", "-e", "production"])
        .assert()
        .success()
        .get_output()
        .clone();
    let text = String::from_utf8_lossy(&out.stdout);
    let time = regex_lite::Regex::new(r"\b\d{2}:\d{2}:\d{2}\b").unwrap();
    insta::assert_snapshot!(time.replace_all(&text, "[TIME]"));

    let events = ndjson(
        &p.hoist(&["config", "-e", "staging", "--json"])
            .assert()
            .success()
            .get_output()
            .stdout,
    );
    let source = |key: &str| {
        events
            .iter()
            .find(|e| e["event"] == "row" && e["key"] == key)
            .map(|e| {
                (
                    e["value"].as_str().unwrap().to_string(),
                    e["source"].as_str().unwrap().to_string(),
                )
            })
            .unwrap_or_else(|| panic!("no row {key}"))
    };
    assert_eq!(
        source("app.keep_releases"),
        ("5".into(), "deploy.toml:4".into())
    );
    assert_eq!(
        source("hosts.stage1.address"),
        ("\"10.1.0.1\"".into(), "deploy.toml:20 [env.staging]".into())
    );
    assert_eq!(source("min_soak"), ("\"0s\"".into(), "default".into()));
    assert!(!events.iter().any(|e| e["key"] == "hosts.web1.address"));
}
