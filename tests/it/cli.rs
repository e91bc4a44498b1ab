//! What a user sees at the command line: bad input, prompts, plain output
//! (pinned by snapshots), exit codes, init, completions, help.

use crate::support::project::{Project, ndjson, printed};

fn local(extra: &str) -> Project {
    Project::new()
        .local_hosts(3)
        .artifact(&[("README", "v1"), ("bin/app", "#!/bin/sh\necho v1\n")])
        .toml(extra)
        .write()
}

/// Plain output with times, ids, durations, rates and paths made stable.
fn stable(text: &str, p: &Project) -> String {
    let mut text = text.replace(&p.path().display().to_string(), "[DIR]");
    for (pattern, with) in [
        (r"\b\d{2}:\d{2}:\d{2}\b", "[TIME]"),
        (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", "[TS]"),
        (r"\d{8}T\d{6}Z-[0-9a-f]{8}", "[RELEASE]"),
        (r"\d{8}T\d{6}Z-(\w+)(\.\d+)?\.log", "[STAMP]-$1.log"),
        (r"\b[0-9a-f]{12}\b", "[HASH]"),
        (r"\d+(\.\d+)?\s?(ms|s)\b", "[DUR]"),
        (r", \d+(\.\d+)? ?[KMG]?i?B/s", ""),
        (r"\d+ B / \d+ B", "[BYTES]"),
        (r"\d+(\.\d+)? (B|KiB|MiB|GiB)\b", "[SIZE]"),
        (r"\S+@\S+", "[USER@HOST]"),
        // Column widths follow the values filtered above.
        (r" {2,}", "  "),
    ] {
        text = regex_lite::Regex::new(pattern)
            .unwrap()
            .replace_all(&text, with)
            .into_owned();
    }
    text
}

#[test]
fn bad_toml_exits_2_with_the_line() {
    let p = Project::new();
    std::fs::write(
        p.path().join("deploy.toml"),
        "[app]\nname = \"x\"\ndeploy_to = \n",
    )
    .unwrap();
    let out = p.hoist(&["plan"]).assert().code(2).get_output().clone();
    let text = printed(&out);
    assert!(text.contains("deploy.toml"), "{text}");
    assert!(text.contains("line 3"), "{text}");
}

#[test]
fn unknown_key_exits_2_and_is_named() {
    let p = local("");
    let text = std::fs::read_to_string(p.path().join("deploy.toml"))
        .unwrap()
        .replace("keep_releases", "keep_release");
    std::fs::write(p.path().join("deploy.toml"), text).unwrap();
    let out = p
        .hoist(&["deploy", "--yes"])
        .assert()
        .code(2)
        .get_output()
        .clone();
    let text = printed(&out);
    assert!(text.contains("app.keep_release"), "{text}");
    assert!(
        text.contains("keep_releases"),
        "lists the accepted keys: {text}"
    );
    for host in p.host_names() {
        assert!(p.untouched(&host));
    }
}

#[test]
fn json_mode_ends_in_a_summary_even_for_a_config_error() {
    let p = Project::new();
    std::fs::write(p.path().join("deploy.toml"), "[app\n").unwrap();
    let out = p
        .hoist(&["deploy", "--json"])
        .assert()
        .code(2)
        .get_output()
        .clone();
    let events = ndjson(&out.stdout);
    assert_eq!(events.last().unwrap()["exit_code"], 2);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("deploy.toml"),
        "human text on stderr names the file: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_manual_canary_without_a_terminal_refuses_and_names_yes() {
    let p = local("[strategy]\ncanary = 1\ncanary_pause = \"manual\"");
    let out = p.hoist(&["deploy"]).assert().code(2).get_output().clone();
    assert!(printed(&out).contains("--yes"));
    for host in p.host_names() {
        assert!(p.untouched(&host), "nothing touched on {host}");
    }
    p.hoist(&["deploy", "--yes"]).assert().success();
}

#[test]
fn plan_says_when_the_next_wave_uploads_ahead() {
    let plan = |strategy: &str| {
        let out = local(strategy).hoist(&["plan"]).assert().success();
        printed(out.get_output())
    };
    let text = plan("[strategy]\ncanary = 1\ncanary_pause = \"30s\"\nbatch = 1");
    assert!(
        text.contains("after the canary: wait 30s (the next wave uploads meanwhile)"),
        "{text}"
    );
    assert!(
        text.contains("between batches: none (the next wave uploads once this one has);"),
        "{text}"
    );
    let text = plan("[strategy]\ncanary = 1\ncanary_pause = \"manual\"\nbatch_pause = \"10s\"");
    assert!(
        text.contains(
            "after the canary: ask before promoting (--yes promotes); between batches: wait 10s (the next wave uploads meanwhile);"
        ),
        "{text}"
    );
}

#[test]
fn a_selector_that_matches_nothing_is_an_error() {
    let p = local("");
    let out = p
        .hoist(&["plan", "-l", "web*"])
        .assert()
        .code(2)
        .get_output()
        .clone();
    assert!(
        printed(&out).contains("`web*` matches no host or group"),
        "{}",
        printed(&out)
    );
    let out = p
        .hoist(&["plan", "-l", "local*,!local2", "--json"])
        .assert()
        .success()
        .get_output()
        .clone();
    let hosts: Vec<String> = ndjson(&out.stdout)
        .iter()
        .filter(|e| e["event"] == "row")
        .map(|e| e["host"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(hosts, ["local1", "local3"]);
}

/// A run never appends to another run's log, even one of the same command
/// in the same second: it takes the next free name.
#[test]
fn each_run_writes_a_log_of_its_own() {
    let p = local("");
    let logs = p.path().join(".hoist/logs");
    std::fs::create_dir_all(&logs).unwrap();
    // Every name the run could take in the coming seconds is taken already.
    let now = chrono::Utc::now();
    let taken: Vec<std::path::PathBuf> = (0..10)
        .map(|s| {
            let at = now + chrono::Duration::seconds(s);
            logs.join(format!("{}-deploy.log", at.format("%Y%m%dT%H%M%SZ")))
        })
        .collect();
    for path in &taken {
        std::fs::write(path, "an earlier run\n").unwrap();
    }
    p.hoist(&["deploy", "--yes"]).assert().success();
    for path in &taken {
        assert_eq!(std::fs::read_to_string(path).unwrap(), "an earlier run\n");
    }
    let new: Vec<std::path::PathBuf> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !taken.contains(p))
        .collect();
    assert_eq!(new.len(), 1, "{new:?}");
    assert!(
        new[0].to_string_lossy().ends_with("-deploy.2.log"),
        "{new:?}"
    );
    assert!(std::fs::read_to_string(&new[0]).unwrap().contains("deploy"));
}

#[test]
fn plain_output_has_no_carriage_returns_or_escapes() {
    let p = local("[strategy]\ncanary = 1\ncanary_pause = \"0s\"");
    let out = p.hoist(&["deploy"]).assert().success().get_output().clone();
    let text = printed(&out);
    assert!(!text.contains('\r'), "{text:?}");
    assert!(!text.contains('\x1b'), "{text:?}");
    let out = p
        .hoist(&["status", "--color", "always"])
        .assert()
        .success()
        .get_output()
        .clone();
    assert!(printed(&out).contains('\x1b'), "--color always colours");
}

#[test]
fn snapshot_plain_deploy() {
    let p = local("[strategy]\ncanary = 1\ncanary_pause = \"0s\"\nbatch = 2\nparallel = 1");
    let out = p.hoist(&["deploy"]).assert().success().get_output().clone();
    insta::assert_snapshot!(stable(&String::from_utf8_lossy(&out.stdout), &p));
}

#[test]
fn snapshot_plain_failed_canary() {
    let p = local(
        "[health]\ncommand = \"grep -q v1 README || test ! -e \\\"$HOIST_DEPLOY_TO/FAIL\\\"\"\nretries = 1\n[strategy]\ncanary = 1\ncanary_pause = \"0s\"",
    );
    p.hoist(&["deploy"]).assert().success();
    std::fs::write(p.path().join("build/README"), "v2").unwrap();
    std::fs::write(p.deploy_path("local1").join("FAIL"), "").unwrap();
    let out = p.hoist(&["deploy"]).assert().code(5).get_output().clone();
    insta::assert_snapshot!(stable(&String::from_utf8_lossy(&out.stdout), &p));
}

#[test]
fn snapshot_plain_status() {
    let p = local("[strategy]\ncanary = 0");
    p.hoist(&["deploy", "-l", "local1,local2"])
        .assert()
        .success();
    let out = p.hoist(&["status"]).assert().success().get_output().clone();
    insta::assert_snapshot!(stable(&String::from_utf8_lossy(&out.stdout), &p));
}

#[test]
fn init_writes_a_starting_file_and_never_overwrites() {
    let p = Project::new();
    p.hoist(&["init"]).assert().success();
    let text = std::fs::read_to_string(p.path().join("deploy.toml")).unwrap();
    assert!(text.contains("[app]"));
    p.hoist(&["init"]).assert().code(2);
    assert_eq!(
        std::fs::read_to_string(p.path().join("deploy.toml")).unwrap(),
        text
    );
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    let p = Project::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = p
            .hoist(&["completions", shell])
            .assert()
            .success()
            .get_output()
            .clone();
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("rollback"),
            "{shell}"
        );
    }
}

#[test]
fn help_teaches_with_examples() {
    let p = Project::new();
    let out = p.hoist(&["--help"]).assert().success().get_output().clone();
    assert!(printed(&out).contains("Examples:"));
    let out = p
        .hoist(&["rollback", "--help"])
        .assert()
        .success()
        .get_output()
        .clone();
    let text = printed(&out);
    assert!(text.contains("How the target is chosen"), "{text}");
    assert!(text.contains("--to"));
}

#[test]
fn unlock_force_frees_anyones_lock_and_records_it() {
    let p = local("");
    p.hoist(&["lock", "-m", "db migration"])
        .env("USER", "alice")
        .assert()
        .success();
    let out = p
        .hoist(&["deploy", "--yes"])
        .assert()
        .code(4)
        .get_output()
        .clone();
    let text = printed(&out);
    assert!(text.contains("alice@"), "names the owner: {text}");
    assert!(text.contains("db migration"), "{text}");
    p.hoist(&["unlock"]).assert().code(4);
    p.hoist(&["unlock", "--force"]).assert().success();
    assert!(
        p.journal("local1")
            .iter()
            .any(|e| e["event"] == "force_unlock")
    );
    p.hoist(&["deploy", "--yes"]).assert().success();
}

#[test]
fn a_product_of_host_ranges_too_large_to_hold_exits_2_quickly_naming_it() {
    // 10^10 names: once an allocation failure (exit 134), 10^7 took plan past 10 s.
    let p = local("[groups.huge]\nhosts = [\"h[1:100000].r[1:100000]\"]");
    let started = std::time::Instant::now();
    let out = p.hoist(&["plan"]).assert().code(2).get_output().clone();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let text = printed(&out);
    assert!(text.contains("`groups.huge.hosts`"), "{text}");
    assert!(text.contains("\"h[1:100000].r[1:100000]\""), "{text}");
    assert!(text.contains("10000000000 hosts"), "{text}");
    assert!(text.contains("at most 100000"), "{text}");
}

#[test]
fn fuzzed_bad_input_exits_2_with_the_file_the_key_and_what_was_written() {
    let p = local("");
    let good = std::fs::read(p.path().join("deploy.toml")).unwrap();
    let write = |bytes: &[u8]| std::fs::write(p.path().join("deploy.toml"), bytes).unwrap();
    let plan = || printed(&p.hoist(&["plan"]).assert().code(2).get_output().clone());

    // Not UTF-8: the file, the line and column of the first bad byte.
    write(&[b"[app]\nname = \"caf".as_slice(), &[0xE9], b"\"\n"].concat());
    let text = plan();
    assert!(text.contains("deploy.toml"), "{text}");
    assert!(text.contains("not valid UTF-8"), "{text}");
    assert!(text.contains("line 2, column 12"), "{text}");

    // An integer beyond 64 bits: the key, the value and the range.
    let text = String::from_utf8(good.clone()).unwrap();
    write(
        text.replace("keep_releases = 3", "keep_releases = 99999999999999999999")
            .as_bytes(),
    );
    let text = plan();
    assert!(text.contains("`app.keep_releases`"), "{text}");
    assert!(text.contains("99999999999999999999"), "{text}");
    assert!(text.contains(">= 1"), "{text}");
    assert!(!text.contains("i128"), "{text}");

    // A group written as an array: what shape it should have.
    let text = String::from_utf8(good.clone()).unwrap();
    write(format!("{text}\n[groups]\nweb = [\"local1\"]\n").as_bytes());
    let text = plan();
    assert!(text.contains("`groups.web`"), "{text}");
    assert!(text.contains("[groups.web] with hosts = ["), "{text}");

    // Backticks the user wrote stay in the message.
    let text = String::from_utf8(good).unwrap();
    write(text.replace("shop-api", "shop`x`y").as_bytes());
    let text = plan();
    assert!(text.contains("\"shop`x`y\""), "{text}");
}
