//! Real applications on real OpenSSH hosts: shared dirs and files,
//! `[[files]]` (secrets), `before_switch_once`, the run-level local hooks
//! and `become`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::fleet::{Fleet, HEALTH};
use crate::support::project::{ndjson, printed};

/// The release `current` points at, via the summary of a `--json` run.
fn release_of(stdout: &[u8]) -> String {
    ndjson(stdout).last().unwrap()["release"]
        .as_str()
        .unwrap()
        .to_string()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn shared_dirs_keep_their_data_across_deploys_rollbacks_and_pruning() {
    let f = Fleet::ssh(3)
        .app("shared_dirs = [\"log\", \"storage\"]\nkeep_releases = 1")
        .artifact(&[("README", "v1"), ("storage/placeholder", "from the artifact")])
        .toml("[hooks]\nafter_switch = [\"test -e storage/x || echo \\\"written by $(cat README)\\\" > storage/x\"]\n[strategy]\ncanary = 0\nbatch = 3")
        .write();
    let plan = f.hoist(&["plan"]).assert().success().get_output().clone();
    let plan = printed(&plan);
    assert!(
        plan.contains("storage") && plan.contains("replaced by the link"),
        "plan says the artifact's storage/ is replaced: {plan}"
    );

    f.hoist(&["deploy"]).assert().success();
    let v1 = f.current("web1").unwrap();
    let build = f.path().join("build");
    std::fs::write(build.join("README"), "v2").unwrap();
    f.hoist(&["deploy"]).assert().success();
    for host in f.host_names() {
        let shared = f.deploy_path(&host).join("shared");
        assert_eq!(
            std::fs::read_to_string(shared.join("storage/x")).unwrap(),
            "written by v1\n",
            "{host}: release 2 sees what release 1 wrote"
        );
        assert_eq!(f.read_current(&host, "storage/x"), "written by v1\n");
        let link = f.deploy_path(&host).join("current/log");
        assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
        assert!(shared.join("log").is_dir(), "{host}: shared/log created");
        assert!(
            !shared.join("storage/placeholder").exists(),
            "{host}: the artifact's storage/ was replaced, not merged"
        );
    }

    f.hoist(&["rollback", "--yes"]).assert().success();
    for host in f.host_names() {
        assert_eq!(f.current(&host).as_deref(), Some(v1.as_str()));
        assert_eq!(f.read_current(&host, "storage/x"), "written by v1\n");
    }

    // keep_releases = 1: old releases go, shared/ stays.
    std::fs::write(build.join("README"), "v3").unwrap();
    f.hoist(&["deploy"]).assert().success();
    std::fs::write(build.join("README"), "v4").unwrap();
    f.hoist(&["deploy"]).assert().success();
    for host in f.host_names() {
        assert!(f.releases(&host).len() <= 2, "{host}: pruned");
        let x = f.deploy_path(&host).join("shared/storage/x");
        assert_eq!(std::fs::read_to_string(x).unwrap(), "written by v1\n");
        assert_eq!(f.read_current(&host, "README"), "v4");
    }
}

#[test]
fn a_shared_file_missing_on_one_host_fails_preflight_naming_host_and_path() {
    let f = Fleet::ssh(3)
        .app("shared_files = [\"config/.env\"]")
        .toml("[strategy]\ncanary = 0\nbatch = 3")
        .write();
    for host in ["web1", "web2"] {
        write(
            &f.deploy_path(host).join("shared/config/.env"),
            "DATABASE_URL=x\n",
        );
    }
    let out = f.hoist(&["check"]).assert().code(3).get_output().clone();
    let text = printed(&out);
    assert!(
        text.lines()
            .any(|l| l.contains("web3") && l.contains("shared file shared/config/.env is missing")),
        "check names it too: {text}"
    );
    let out = f.hoist(&["deploy"]).assert().code(3).get_output().clone();
    let text = printed(&out);
    let line = text
        .lines()
        .find(|l| l.contains("web3") && l.contains("config/.env"))
        .unwrap_or_else(|| panic!("names web3 and config/.env: {text}"));
    assert!(line.contains("missing"), "{line}");
    for host in f.host_names() {
        assert!(f.releases(&host).is_empty(), "{host}: no new release");
        assert!(f.current(&host).is_none(), "{host}");
        assert!(!f.locked(&host), "{host}");
    }
    assert!(!f.deploy_path("web3").join("releases").exists());

    write(
        &f.deploy_path("web3").join("shared/config/.env"),
        "DATABASE_URL=y\n",
    );
    f.hoist(&["deploy"]).assert().success();
    assert_eq!(f.read_current("web3", "config/.env"), "DATABASE_URL=y\n");
}

#[test]
fn secret_files_reach_each_host_with_their_mode_and_never_the_output() {
    let f = Fleet::ssh(3)
        .app("shared_files = [\"config/.env\"]")
        .toml(
            "[[files]]\nsrc = \"secrets/{host}.env\"\ndest = \"shared/config/.env\"\nsecret = true\n\n[hooks]\nbefore_switch = [\"test -s config/.env\"]\n[strategy]\ncanary = 0\nbatch = 3",
        )
        .write();
    let secret = |host: &str| format!("API_TOKEN=tok-{host}-5f1d9c7e0b2a\n");
    for host in f.host_names() {
        write(
            &f.path().join(format!("secrets/{host}.env")),
            &secret(&host),
        );
    }
    let runs = [
        f.hoist(&["deploy", "--json"])
            .assert()
            .success()
            .get_output()
            .clone(),
        f.hoist(&["deploy", "-v"])
            .assert()
            .success()
            .get_output()
            .clone(),
    ];
    for host in f.host_names() {
        let env = f.deploy_path(&host).join("shared/config/.env");
        assert_eq!(std::fs::read_to_string(&env).unwrap(), secret(&host));
        let mode = std::fs::metadata(&env).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600, "{host}");
        assert_eq!(f.read_current(&host, "config/.env"), secret(&host));
    }
    let mut seen = String::new();
    for out in &runs {
        seen.push_str(&printed(out));
    }
    for log in std::fs::read_dir(f.path().join(".hoist/logs")).unwrap() {
        seen.push_str(&std::fs::read_to_string(log.unwrap().path()).unwrap());
    }
    assert!(!seen.is_empty());
    for host in f.host_names() {
        assert!(
            !seen.contains(&format!("tok-{host}")),
            "the secret of {host} was printed"
        );
    }
    assert!(!seen.contains("5f1d9c7e0b2a"));

    // A host where the file cannot be written fails with its error tail,
    // which holds no byte of the secret either.
    let config = f.deploy_path("web3").join("shared/config");
    std::fs::remove_dir_all(&config).unwrap();
    std::fs::write(&config, "in the way").unwrap();
    std::fs::write(f.path().join("build/README"), "v2").unwrap();
    let out = f
        .hoist(&["deploy", "--json"])
        .assert()
        .code(5)
        .get_output()
        .clone();
    let failed: Vec<_> = ndjson(&out.stdout)
        .into_iter()
        .filter(|e| e["event"] == "host_failed")
        .collect();
    assert!(
        failed
            .iter()
            .any(|e| e["host"] == "web3" && e["phase"] == "link"),
        "{failed:?}"
    );
    assert!(!printed(&out).contains("5f1d9c7e0b2a"));
    std::fs::remove_file(&config).unwrap();

    // A source missing for one host: exit 2 before anything is touched.
    std::fs::remove_file(f.path().join("secrets/web2.env")).unwrap();
    let before = f.current("web1");
    let out = f.hoist(&["deploy"]).assert().code(2).get_output().clone();
    assert!(printed(&out).contains("web2"), "{}", printed(&out));
    assert_eq!(f.current("web1"), before);
    f.hoist(&["plan"]).assert().code(2);
    f.hoist(&["check"]).assert().code(2);
}

#[test]
fn the_once_hook_runs_once_on_the_first_host_before_any_switch() {
    let f = Fleet::ssh(9);
    let count = f.path().join("once-count");
    let hook = format!(
        "test \\\"$(readlink \\\"$HOIST_DEPLOY_TO/current\\\")\\\" != \\\"releases/$HOIST_RELEASE\\\" && test -e README && echo \\\"$HOIST_HOST $HOIST_RELEASE\\\" >> {}",
        count.display()
    );
    let f = f
        .toml(&format!(
            "[hooks]\nbefore_switch_once = [\"{hook}\"]\n[strategy]\ncanary = 1\ncanary_pause = \"0s\"\nbatch = 4"
        ))
        .write();
    let out = f
        .hoist(&["deploy", "--json"])
        .assert()
        .success()
        .get_output()
        .clone();
    let release = release_of(&out.stdout);
    let events = ndjson(&out.stdout);
    assert_eq!(
        events
            .iter()
            .filter(|e| e["event"] == "wave_started")
            .count(),
        3
    );
    assert_eq!(
        std::fs::read_to_string(&count).unwrap(),
        format!("web1 {release}\n"),
        "exactly once, on the first host of the first wave"
    );
    assert!(
        f.journal("web1")
            .iter()
            .any(|e| e["event"] == "once_done" && e["release"] == release.as_str())
    );

    // A failing once hook: no host is switched, exit 5; never resumed.
    std::fs::write(f.path().join("build/README"), "v2").unwrap();
    let toml = std::fs::read_to_string(f.path().join("deploy.toml")).unwrap();
    std::fs::write(
        f.path().join("deploy.toml"),
        toml.replace(
            "before_switch_once = [\"",
            "before_switch_once = [\"echo migration failed >&2; exit 7\", \"",
        ),
    )
    .unwrap();
    let out = f.hoist(&["deploy"]).assert().code(5).get_output().clone();
    assert!(
        printed(&out).contains("migration failed"),
        "{}",
        printed(&out)
    );
    for host in f.host_names() {
        assert_eq!(
            f.current(&host).as_deref(),
            Some(release.as_str()),
            "{host}"
        );
    }
    // Every host remembers the failure, not only the one it ran on: with
    // that host down, the release is still never resumed.
    for host in f.host_names() {
        assert!(
            f.journal(&host).iter().any(|e| e["event"] == "once_failed"),
            "{host}"
        );
    }
    let mut f = f;
    f.server_mut("web1").stop();
    let out = f
        .hoist(&["deploy", "--resume"])
        .assert()
        .code(2)
        .get_output()
        .clone();
    assert!(
        printed(&out).contains("cannot be resumed"),
        "{}",
        printed(&out)
    );
}

/// Three hosts, one a wave, whose once hook writes down where it ran: a
/// first deploy runs it on web1, then stops at web2 (its before_switch
/// fails) and rolls nothing back. `strategy` is added to `[strategy]`.
/// Returns the fleet and the hook's file.
fn once_ran_then_stopped(strategy: &str) -> (Fleet, std::path::PathBuf) {
    let f = Fleet::ssh(3).ssh_settings("connect_retries = 0");
    let count = f.path().join("once-count");
    let f = f
        .toml(&format!(
            "[hooks]\nbefore_switch_once = [\"echo $HOIST_HOST >> {}\"]\nbefore_switch = [\"test ! -e \\\"$HOIST_DEPLOY_TO/BAD\\\"\"]\n[strategy]\ncanary = 0\nbatch = 1\non_failure = \"stop\"\n{strategy}",
            count.display()
        ))
        .write();
    let bad = f.mark("web2", "BAD");
    f.hoist(&["deploy"]).assert().code(1);
    assert_eq!(std::fs::read_to_string(&count).unwrap(), "web1\n");
    std::fs::remove_file(bad).unwrap();
    (f, count)
}

#[test]
fn a_resumed_deploy_does_not_run_the_once_hook_again() {
    let (f, count) = once_ran_then_stopped("");
    f.hoist(&["deploy", "--resume"]).assert().success();
    assert_eq!(
        std::fs::read_to_string(&count).unwrap(),
        "web1\n",
        "not run again for the same release"
    );
}

#[test]
fn a_resumed_deploy_without_the_host_the_once_hook_ran_on_does_not_run_it_again() {
    let (mut f, count) = once_ran_then_stopped("max_unreachable = 1");
    // The host the hook ran on is down; the others remember that it ran.
    f.server_mut("web1").stop();
    let out = f.hoist(&["deploy", "--resume", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", printed(&out));
    let summary = ndjson(&out.stdout).pop().unwrap();
    assert_eq!(summary["ok"], 2, "{summary}");
    assert_eq!(
        std::fs::read_to_string(&count).unwrap(),
        "web1\n",
        "not run again on another host"
    );
    assert!(printed(&out).contains("already ran"), "{}", printed(&out));
}

/// Run-level hooks that record what they were told, and keep the summary file.
const RECORDING_HOOKS: &str = r#"[hooks]
after_switch = ["sleep 0.3"]
on_success_local = ["echo \"success $HOIST_COMMAND $HOIST_RESULT $HOIST_EXIT_CODE\" >> run-hooks.log; cp \"$HOIST_SUMMARY\" summary.json"]
on_failure_local = ["echo \"failure $HOIST_COMMAND $HOIST_RESULT $HOIST_EXIT_CODE\" >> run-hooks.log; cp \"$HOIST_SUMMARY\" summary.json"]
[strategy]
canary = 1
canary_pause = "0s"
batch = 1"#;

/// The last line the run-level hooks wrote, and the summary they were given.
fn last_run_hook(f: &Fleet) -> (String, serde_json::Value) {
    let log = std::fs::read_to_string(f.path().join("run-hooks.log")).unwrap_or_default();
    let line = log.lines().last().unwrap_or_default().to_string();
    let summary = std::fs::read_to_string(f.path().join("summary.json")).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&summary)
        .unwrap_or_else(|e| panic!("HOIST_SUMMARY is not JSON ({e}): {summary}"));
    assert_eq!(summary["event"], "summary");
    (line, summary)
}

#[test]
fn run_level_hooks_hear_how_each_run_ended() {
    let f = Fleet::ssh(3)
        .toml(&format!("{HEALTH}\n{RECORDING_HOOKS}"))
        .write();

    // Success: the summary file is the NDJSON summary line.
    let out = f
        .hoist(&["deploy", "--json"])
        .assert()
        .success()
        .get_output()
        .clone();
    let (line, summary) = last_run_hook(&f);
    assert_eq!(line, "success deploy done 0");
    let ndjson_summary = ndjson(&out.stdout).last().unwrap().clone();
    assert_eq!(summary["exit_code"], 0);
    for key in ["command", "release", "ok", "failed", "hosts"] {
        assert_eq!(summary[key], ndjson_summary[key], "{key}");
    }

    // A rollback runs them too.
    std::fs::write(f.path().join("build/README"), "v2").unwrap();
    f.hoist(&["deploy"]).assert().success();
    f.hoist(&["rollback", "--yes"]).assert().success();
    let (line, summary) = last_run_hook(&f);
    assert_eq!(line, "success rollback done 0");
    assert_eq!(summary["command"], "rollback");

    // A failed canary, rolled back: exit 5.
    std::fs::write(f.path().join("build/README"), "v3").unwrap();
    let fail = f.mark("web1", "FAIL");
    f.hoist(&["deploy"]).assert().code(5);
    let (line, summary) = last_run_hook(&f);
    assert_eq!(line, "failure deploy rolled_back 5");
    assert_eq!(summary["exit_code"], 5);
    std::fs::remove_file(fail).unwrap();

    // Someone else holds the lock: exit 4.
    f.hoist(&["lock", "-m", "db maintenance"])
        .assert()
        .success();
    f.hoist(&["deploy"]).assert().code(4);
    let (line, summary) = last_run_hook(&f);
    assert_eq!(line, "failure deploy locked 4");
    assert_eq!(summary["exit_code"], 4);
    f.hoist(&["unlock"]).assert().success();

    // Ctrl-C in the second wave: exit 130.
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("hoist"))
        .current_dir(f.path())
        .args(["deploy", "--json"])
        .env("HOME", f.path().join("home"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = Vec::new();
    let mut sent = false;
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        let line = line.unwrap();
        if !sent && line.contains("\"wave_started\"") && line.contains("\"wave\":2") {
            std::process::Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status()
                .unwrap();
            sent = true;
        }
        lines.push(line);
    }
    assert_eq!(child.wait().unwrap().code(), Some(130));
    ndjson((lines.join("\n") + "\n").as_bytes());
    let (line, summary) = last_run_hook(&f);
    assert_eq!(line, "failure deploy interrupted 130");
    assert_eq!(summary["exit_code"], 130);
}

#[test]
fn a_failing_on_start_hook_stops_the_deploy_before_any_host_is_touched() {
    let f = Fleet::ssh(2)
        .toml("[hooks]\non_start_local = [\"echo deploys are frozen until Monday >&2; exit 1\"]\non_failure_local = [\"echo \\\"$HOIST_RESULT $HOIST_EXIT_CODE\\\" > failed.txt\"]")
        .write();
    let out = f
        .hoist(&["deploy", "--yes"])
        .assert()
        .code(3)
        .get_output()
        .clone();
    assert!(
        printed(&out).contains("deploys are frozen until Monday"),
        "{}",
        printed(&out)
    );
    for host in f.host_names() {
        assert!(f.untouched(&host), "{host}");
    }
    assert_eq!(
        std::fs::read_to_string(f.path().join("failed.txt")).unwrap(),
        "preflight_failed 3\n"
    );
}

/// `n` SSH hosts that hoist reaches as [`BECOME_USER`] (who owns their
/// `deploy_to`), with `toml` added to the project.
pub(crate) fn become_fleet(n: usize, toml: &str) -> Fleet {
    let f = Fleet::ssh(n);
    for server in f.servers() {
        // The user's sshd reads authorized_keys as that user; deploy_to is theirs.
        std::fs::set_permissions(server.dir.path(), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::fs::set_permissions(
            server.dir.path().join("authorized_keys"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let srv = server.root.join("srv");
        std::fs::create_dir_all(&srv).unwrap();
        let chown = std::process::Command::new("chown")
            .args([
                &format!("{BECOME_USER}:{BECOME_USER}"),
                srv.to_str().unwrap(),
            ])
            .status()
            .unwrap();
        assert!(chown.success());
    }
    let f = f.toml(toml).write();
    let config = f.path().join("deploy.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let as_root = format!("user = \"{}\"", crate::support::project::whoami());
    assert!(text.contains(&as_root));
    std::fs::write(
        &config,
        text.replace(&as_root, &format!("user = \"{BECOME_USER}\"")),
    )
    .unwrap();
    f
}

#[test]
fn a_blue_green_rollback_to_an_older_release_checks_become_before_touching_anything() {
    let Some((_user, password)) = take_become_user() else {
        return;
    };
    let f = become_fleet(
        2,
        "[groups.blue]\nhosts = [\"web1\"]\n[groups.green]\nhosts = [\"web2\"]\n\
         [strategy]\nkind = \"blue-green\"\n\
         [blue_green]\ncolors = [\"blue\", \"green\"]\nswitch_local = [\"printf '%s' \\\"$HOIST_COLOR\\\" > lb\"]\n\
         [hooks]\nbecome = \"root\"\nafter_rollback = [\"id -u > \\\"$HOIST_DEPLOY_TO/rollback-uid\\\"\"]\n\
         [health]\ncommand = \"test \\\"$(id -u)\\\" = 0\"\nretries = 1",
    );
    let lb = || std::fs::read_to_string(f.path().join("lb")).unwrap();
    // v1 and v3 on blue, v2 and v4 on green; green is live.
    let mut on_blue = Vec::new();
    for v in 1..=4 {
        std::fs::write(f.path().join("build/README"), format!("v{v}")).unwrap();
        f.hoist(&["deploy", "--yes"])
            .env("HOIST_BECOME_PASSWORD", &password)
            .assert()
            .success();
        if v % 2 == 1 {
            on_blue.push(f.current("web1").unwrap());
        }
    }
    assert_eq!(lb(), "green");
    let (v1, v3) = (&on_blue[0], &on_blue[1]);

    // Moving blue back to v1 runs after_rollback and the health check as
    // root: without the password, exit 2 before anything changes.
    refused_without_the_password(&f, &["rollback", "--to", v1]);
    assert_eq!(f.current("web1").as_ref(), Some(v3));
    assert_eq!(lb(), "green");
    assert!(!f.locked("web1") && !f.locked("web2"));

    f.hoist(&["rollback", "--to", v1])
        .env("HOIST_BECOME_PASSWORD", &password)
        .assert()
        .success();
    assert_eq!(f.current("web1").as_ref(), Some(v1));
    assert_eq!(lb(), "blue");
    let uid = std::fs::read_to_string(f.deploy_path("web1").join("rollback-uid")).unwrap();
    assert_eq!(uid.trim(), "0");
}

/// `hoist ARGS` with `become` and no password (and no terminal to ask):
/// exit 2, naming the variable that would give it.
fn refused_without_the_password(f: &Fleet, args: &[&str]) {
    let out = f
        .hoist(args)
        .env_remove("HOIST_BECOME_PASSWORD")
        .assert()
        .code(2)
        .get_output()
        .clone();
    assert!(
        printed(&out).contains("HOIST_BECOME_PASSWORD"),
        "{}",
        printed(&out)
    );
}

/// [`BECOME_USER`] with a fresh password, held until the guard drops;
/// `None` (saying why) where this machine cannot make that user.
pub(crate) fn take_become_user() -> Option<(std::sync::MutexGuard<'static, ()>, String)> {
    let taken = BECOME_USER_TAKEN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let password = format!("pw-{}-{}", std::process::id(), chrono_free_nanos());
    match sudo_user(&password) {
        Ok(()) => Some((taken, password)),
        Err(why) => {
            eprintln!("skipped: {why}");
            None
        }
    }
}

/// Held by each test that sets [`BECOME_USER`]'s password: they run one
/// at a time.
static BECOME_USER_TAKEN: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The SSH user of the become test: not root, owns deploy_to, and has sudo
/// with a password (no NOPASSWD).
const BECOME_USER: &str = "hoistbecome";

/// Creates (or refreshes) that user with `password`; `Err` says why this
/// machine cannot (not root, no useradd or sudo).
fn sudo_user(password: &str) -> Result<(), String> {
    if !crate::support::sshd::is_root() {
        return Err("creating a user with password sudo needs root".into());
    }
    for tool in ["useradd", "chpasswd", "sudo"] {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !found {
            return Err(format!(
                "{tool} is not installed (tests/run.sh installs sudo)"
            ));
        }
    }
    let _ = std::process::Command::new("useradd")
        .args(["-m", "-s", "/bin/sh", BECOME_USER])
        .output();
    let mut chpasswd = std::process::Command::new("chpasswd")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    use std::io::Write;
    writeln!(chpasswd.stdin.take().unwrap(), "{BECOME_USER}:{password}").unwrap();
    if !chpasswd.wait().map_err(|e| e.to_string())?.success() {
        return Err("chpasswd failed".into());
    }
    let dropin = Path::new("/etc/sudoers.d/hoist-become-test");
    std::fs::write(dropin, format!("{BECOME_USER} ALL=(ALL:ALL) ALL\n"))
        .map_err(|e| e.to_string())?;
    std::fs::set_permissions(dropin, std::fs::Permissions::from_mode(0o440))
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Every command line and environment on this machine (the host) that
/// holds `needle`, except those of `except` (hoist itself).
fn processes_holding(needle: &str, except: u32) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == except || pid == std::process::id() {
            continue;
        }
        for what in ["cmdline", "environ"] {
            let bytes = std::fs::read(entry.path().join(what)).unwrap_or_default();
            if String::from_utf8_lossy(&bytes).contains(needle) {
                let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                found.push(format!("{pid} {what}: {}", String::from_utf8_lossy(&cmd)));
            }
        }
    }
    found
}

#[test]
fn become_runs_hooks_as_root_through_password_sudo_without_showing_the_password() {
    let Some((_user, password)) = take_become_user() else {
        return;
    };
    let f = become_fleet(
        2,
        "[hooks]\nbecome = \"root\"\nbefore_switch_once = [\"id -u > \\\"$HOIST_DEPLOY_TO/once-uid\\\"\"]\nafter_switch = [\"sleep 1; id -u > \\\"$HOIST_DEPLOY_TO/hook-uid\\\"\"]\n[health]\ncommand = \"test \\\"$(id -u)\\\" = 0\"\nretries = 1\n[strategy]\ncanary = 0\nbatch = 2",
    );

    // No password and no terminal: exit 2, naming the variable.
    refused_without_the_password(&f, &["deploy"]);
    // A wrong one: exit 3 before anything is written.
    let out = f
        .hoist(&["deploy"])
        .env("HOIST_BECOME_PASSWORD", "not-the-password")
        .assert()
        .code(3)
        .get_output()
        .clone();
    assert!(
        printed(&out).contains("refused the password"),
        "{}",
        printed(&out)
    );
    for host in f.host_names() {
        assert!(f.untouched(&host), "{host}: nothing written");
    }
    // check says whether become works.
    let out = f
        .hoist(&["check", "--json"])
        .env("HOIST_BECOME_PASSWORD", &password)
        .assert()
        .success()
        .get_output()
        .clone();
    let rows: Vec<_> = ndjson(&out.stdout)
        .into_iter()
        .filter(|e| e["table"] == "check")
        .collect();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r["become"] == "ok"), "{rows:?}");

    // The deploy, watched from outside.
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("hoist"))
        .current_dir(f.path())
        .args(["deploy", "-v"])
        .env("HOME", f.path().join("home"))
        .env("HOIST_BECOME_PASSWORD", &password)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut leaks = Vec::new();
    let mut watched = 0;
    while child.try_wait().unwrap().is_none() {
        leaks.extend(processes_holding(&password, pid));
        watched += 1;
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", printed(&out));
    assert!(watched > 10, "the run was watched");
    assert!(leaks.is_empty(), "the password was visible: {leaks:?}");
    let mut seen = printed(&out);

    // On a terminal, without the variable: asked once for the whole run.
    std::fs::write(f.path().join("build/README"), "v2").unwrap();
    let (code, screen) = deploy_on_a_terminal(&f, &password);
    assert_eq!(code, Some(0), "{screen}");
    assert_eq!(
        screen.matches("password to become root").count(),
        1,
        "asked once: {screen}"
    );
    seen.push_str(&screen);

    // A rollback preflights become too, and its hooks run as root.
    for host in f.host_names() {
        std::fs::remove_file(f.deploy_path(&host).join("hook-uid")).unwrap();
    }
    refused_without_the_password(&f, &["rollback", "--yes"]);
    let out = f
        .hoist(&["rollback", "--yes"])
        .env("HOIST_BECOME_PASSWORD", &password)
        .assert()
        .success()
        .get_output()
        .clone();
    seen.push_str(&printed(&out));
    for host in f.host_names() {
        let uid = std::fs::read_to_string(f.deploy_path(&host).join("hook-uid")).unwrap();
        assert_eq!(uid, "0\n", "{host}: after_rollback ran as root");
    }
    for log in std::fs::read_dir(f.path().join(".hoist/logs")).unwrap() {
        seen.push_str(&std::fs::read_to_string(log.unwrap().path()).unwrap());
    }
    assert!(!seen.contains(&password), "the password was printed");
    for host in f.host_names() {
        let uid = |name: &str| {
            std::fs::read_to_string(f.deploy_path(&host).join(name)).unwrap_or_default()
        };
        assert_eq!(uid("hook-uid"), "0\n", "{host}: after_switch ran as root");
        if host == "web1" {
            assert_eq!(uid("once-uid"), "0\n", "the once hook ran as root");
        }
    }
}

/// Some digits that differ between runs.
fn chrono_free_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_007
}

#[test]
fn a_shared_path_that_leaves_the_release_is_exit_2_before_anything_is_touched() {
    for bad in ["\"../etc\"", "\"/var/log\"", "\"log/../../x\""] {
        let f = Fleet::local(1)
            .app(&format!("shared_dirs = [{bad}]"))
            .write();
        let out = f
            .hoist(&["deploy", "--yes"])
            .assert()
            .code(2)
            .get_output()
            .clone();
        assert!(
            printed(&out).contains("app.shared_dirs"),
            "{}",
            printed(&out)
        );
        assert!(f.untouched("web1"), "{bad}");
    }
}

/// Runs `hoist deploy` on a pseudo-terminal of its own (its controlling
/// terminal, so the prompt reads /dev/tty) and types `password` when asked.
/// Returns the exit code and everything the terminal showed.
fn deploy_on_a_terminal(f: &Fleet, password: &str) -> (Option<i32>, String) {
    use std::io::{Read, Write};
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    use std::sync::{Arc, Mutex};

    let (mut master, mut slave) = (0, 0);
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty");
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("hoist"));
    command
        .current_dir(f.path())
        .arg("deploy")
        .env("HOME", f.path().join("home"))
        .env("TERM", "xterm")
        .env_remove("HOIST_BECOME_PASSWORD")
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave.try_clone().unwrap());
    unsafe {
        command.pre_exec(|| {
            // A session of its own, with the pty as its controlling terminal.
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    // Only the child may hold the terminal's other end, or reading never ends.
    drop(command);
    drop(slave);
    let screen = Arc::new(Mutex::new(String::new()));
    let mut reader = std::fs::File::from(master.try_clone().unwrap());
    let seen = Arc::clone(&screen);
    let pump = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        // EIO once the child and its terminal are gone.
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let mut writer = std::fs::File::from(master);
    let started = std::time::Instant::now();
    let mut typed = false;
    while child.try_wait().unwrap().is_none() {
        if !typed && screen.lock().unwrap().contains("password to become root") {
            writer
                .write_all(format!("{password}\n").as_bytes())
                .unwrap();
            typed = true;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "hoist did not finish: {}",
            screen.lock().unwrap()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let code = child.wait().unwrap().code();
    drop(writer);
    let _ = pump.join();
    let text = screen.lock().unwrap().clone();
    (code, text)
}

#[test]
fn hooks_and_local_hosts_never_inherit_hoists_secrets() {
    // Every kind of process hoist starts on this machine writes its
    // environment down: a run-level hook, a wave hook, a local host's hook.
    let f = Fleet::local(1)
        .toml(
            "[hooks]\n\
             on_start_local = [\"env > start.env\"]\n\
             before_batch_local = [\"env > batch.env\"]\n\
             after_switch = [\"env > \\\"$HOIST_DEPLOY_TO/host.env\\\"\"]",
        )
        .write();
    f.hoist(&["deploy", "--yes"])
        .env("HOIST_BECOME_PASSWORD", "become-secret-1")
        .env("HOIST_SSH_PASSPHRASE", "passphrase-secret-2")
        .assert()
        .success();
    let host_env = f.deploy_path(&f.host_names()[0]).join("host.env");
    for file in [
        f.path().join("start.env"),
        f.path().join("batch.env"),
        host_env,
    ] {
        let env =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(env.contains("HOIST_"), "{}: {env}", file.display());
        for secret in ["become-secret-1", "passphrase-secret-2"] {
            assert!(!env.contains(secret), "{} holds {secret}", file.display());
        }
    }
}
