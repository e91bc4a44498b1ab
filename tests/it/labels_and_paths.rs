//! What CI and a first blue-green deploy need: a version label from a flag
//! or the environment, the run's log beside the file, the colour that is
//! live before hoist ever switched, and what a tarball becomes.

use crate::support::fleet::Fleet;
use crate::support::project::printed;

/// The version the last deploy line of `host`'s journal records.
fn journal_version(f: &Fleet, host: &str) -> String {
    f.journal(host)
        .into_iter()
        .rev()
        .find(|e| e["event"] == "deploy")
        .map(|e| e["version"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

#[test]
fn version_label_from_the_flag_or_the_environment_beats_artifact_version() {
    let f = Fleet::local(1)
        .artifact_table("path = \"build\"\nversion = \"1.0\"")
        .toml("[strategy]\ncanary = 0\n[hooks]\nafter_switch = [\"printf '%s' \\\"$HOIST_VERSION\\\" > \\\"$HOIST_DEPLOY_TO/version\\\"\"]")
        .write();
    let events = f.events(&["deploy", "--json", "--version-label", "1.0-ci.41"], 0);
    assert_eq!(events[0]["version"], "1.0-ci.41", "{}", events[0]);
    assert_eq!(journal_version(&f, "web1"), "1.0-ci.41");
    let hook_saw = std::fs::read_to_string(f.deploy_path("web1").join("version")).unwrap();
    assert_eq!(hook_saw, "1.0-ci.41");

    std::fs::write(f.path().join("build/README"), "v2").unwrap();
    f.hoist(&["deploy"])
        .env("HOIST_VERSION_LABEL", "1.0-ci.42")
        .assert()
        .success();
    assert_eq!(journal_version(&f, "web1"), "1.0-ci.42");

    // Without either, the file's label.
    std::fs::write(f.path().join("build/README"), "v3").unwrap();
    f.hoist(&["deploy"]).assert().success();
    assert_eq!(journal_version(&f, "web1"), "1.0");

    // A label that could not go into a journal or a file name is refused.
    std::fs::write(f.path().join("build/README"), "v4").unwrap();
    let before = f.current("web1");
    let out = f
        .hoist(&["deploy", "--version-label", "../x"])
        .assert()
        .code(2)
        .get_output()
        .clone();
    assert!(
        printed(&out).contains("--version-label"),
        "{}",
        printed(&out)
    );
    assert_eq!(f.current("web1"), before);
}

#[test]
fn the_log_of_a_run_goes_beside_the_file_not_into_the_working_directory() {
    let f = Fleet::local(1).toml("[strategy]\ncanary = 0").write();
    let elsewhere = f.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    f.hoist(&["deploy", "-c", "../deploy.toml"])
        .current_dir(&elsewhere)
        .assert()
        .success();
    assert!(
        !elsewhere.join(".hoist").exists(),
        "nothing in the working directory"
    );
    let logs: Vec<_> = std::fs::read_dir(f.path().join(".hoist/logs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert!(logs[0].ends_with("-deploy.log"), "{logs:?}");
}

fn blue_green(live: &str) -> Fleet {
    Fleet::local(4)
        .toml(&format!(
            "[groups.blue]\nhosts = [\"web1\", \"web2\"]\n[groups.green]\nhosts = [\"web3\", \"web4\"]\n\
             [strategy]\nkind = \"blue-green\"\n[blue_green]\ncolors = [\"blue\", \"green\"]\n{live}\n\
             switch_local = [\"printf '%s from %s\\\\n' \\\"$HOIST_COLOR\\\" \\\"$HOIST_PREVIOUS_COLOR\\\" >> lb\"]"
        ))
        .write()
}

#[test]
fn blue_green_live_names_the_colour_that_takes_traffic_before_the_first_switch() {
    // Traffic already goes to blue, by other means than hoist.
    let f = blue_green("live = \"blue\"");
    let status = printed(&f.hoist(&["status"]).assert().success().get_output().clone());
    assert!(
        status.contains("live colour: blue by blue_green.live"),
        "{status}"
    );
    let plan = printed(&f.hoist(&["plan"]).assert().success().get_output().clone());
    assert!(plan.contains("blue counts as live"), "{plan}");
    f.hoist(&["deploy"]).assert().success();
    assert_eq!(
        std::fs::read_to_string(f.path().join("lb")).unwrap(),
        "green from blue\n"
    );
    for host in ["web1", "web2"] {
        assert!(
            f.current(host).is_none(),
            "{host}: the live colour is never switched"
        );
        assert!(f.releases(host).is_empty(), "{host}: nor sent anything");
    }
    for host in ["web3", "web4"] {
        assert!(f.current(host).is_some(), "{host}");
    }
    let status = printed(&f.hoist(&["status"]).assert().success().get_output().clone());
    assert!(
        status.contains("live colour: green (blue is idle)"),
        "{status}"
    );

    // Once a switch is recorded, the journals say which colour is live.
    std::fs::write(f.path().join("build/README"), "v2").unwrap();
    f.hoist(&["deploy"]).assert().success();
    assert!(
        std::fs::read_to_string(f.path().join("lb"))
            .unwrap()
            .ends_with("blue from green\n")
    );
}

#[test]
fn blue_green_live_must_be_one_of_the_colours() {
    let f = blue_green("live = \"red\"");
    let out = f.hoist(&["plan"]).assert().code(2).get_output().clone();
    let text = printed(&out);
    assert!(text.contains("`blue_green.live`"), "{text}");
    assert!(text.contains("\"red\" is not one of colors"), "{text}");
}

#[test]
fn a_tarball_with_a_top_level_directory_keeps_it_in_the_release() {
    let f = Fleet::local(1)
        .artifact_table("path = \"shop-api-1.4.2.tar.gz\"")
        .toml("[strategy]\ncanary = 0")
        .write();
    let dist = f.path().join("dist/shop-api-1.4.2");
    std::fs::create_dir_all(&dist).unwrap();
    std::fs::write(dist.join("README"), "inside").unwrap();
    let tar = std::process::Command::new("tar")
        .current_dir(f.path().join("dist"))
        .args(["-czf", "../shop-api-1.4.2.tar.gz", "shop-api-1.4.2"])
        .status()
        .unwrap();
    assert!(tar.success());
    f.hoist(&["deploy"]).assert().success();
    assert_eq!(f.read_current("web1", "shop-api-1.4.2/README"), "inside");
    assert!(!f.deploy_path("web1").join("current/README").exists());
}
