//! Secrets from where teams keep them (issue 30): a local command's output
//! (here real `age`) becomes a `[[files]]` entry or a named secret that
//! hooks get in their environment, never on a command line; every value is
//! masked as `***` in each output; a failing command stops the run before
//! any host is touched; `hoist files push` rotates the files without a
//! release, with the deploy's waves, health check and failure policy.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::fleet::Fleet;
use crate::support::project::{ndjson, printed, tree, whoami};

const DB_PASSWORD: &str = "pg-pass-8d41c7e2";
const API_TOKEN: &str = "api-tok-63b90f";

/// A new age identity in `dir/name`; its public key.
fn age_key(dir: &Path, name: &str) -> String {
    let out = Command::new("age-keygen")
        .args(["-o", name])
        .current_dir(dir)
        .output()
        .expect("age-keygen (Debian's package age; tests/run.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("age-keygen")
        .args(["-y", name])
        .current_dir(dir)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `text` encrypted to `recipient` with age, as `dir/path`.
fn encrypt(dir: &Path, recipient: &str, path: &str, text: &str) {
    std::fs::create_dir_all(dir.join(path).parent().unwrap()).unwrap();
    let mut child = Command::new("age")
        .args(["-r", recipient, "-o", path])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [DB_PASSWORD, API_TOKEN] {
        assert!(!text.contains(secret), "{what} shows {secret}:\n{text}");
    }
}

/// Every file under `dir`, as text.
fn files_under(dir: &Path) -> Vec<(String, String)> {
    tree(dir)
        .into_iter()
        .map(|(path, bytes)| (path, String::from_utf8_lossy(&bytes).into_owned()))
        .collect()
}

/// hoist as a person runs it on a terminal: stdin, stdout and stderr a
/// pty (util-linux `script`); what the terminal showed.
fn on_a_terminal(f: &Fleet, args: &str) -> (Option<i32>, String) {
    let bin = assert_cmd::cargo::cargo_bin("hoist");
    let out = Command::new("script")
        .args(["-qec", &format!("{} {args}", bin.display()), "/dev/null"])
        .current_dir(f.path())
        .env("HOME", f.path().join("home"))
        .env("USER", whoami())
        .env("TERM", "xterm")
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("HOIST_CONFIG")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (out.status.code(), printed(&out))
}

const HOOK_WAITS: &str = r#"echo "token is $HOIST_SECRET_API_TOKEN"; . "$HOIST_DEPLOY_TO/shared/config/.env"; echo "db is $DB_PASSWORD"; touch "$HOIST_DEPLOY_TO/hook-started"; [ ! -e "$HOIST_DEPLOY_TO/fail" ] || exit 1; while [ ! -e "$HOIST_DEPLOY_TO/go" ]; do sleep 0.05; done"#;

fn age_fleet(n: usize) -> Fleet {
    let f = Fleet::ssh(n);
    let key = age_key(f.path(), "age-key.txt");
    encrypt(
        f.path(),
        &key,
        "secrets/prod.env.age",
        &format!("DB_PASSWORD={DB_PASSWORD}\n"),
    );
    encrypt(f.path(), &key, "secrets/api-token.age", API_TOKEN);
    f
}

#[test]
fn an_age_encrypted_env_file_reaches_every_host_and_its_values_are_masked_everywhere() {
    let f = age_fleet(2)
        .app("shared_files = [\"config/.env\"]")
        .toml(&format!(
            r#"[secrets]
api_token = {{ command = ["age", "-d", "-i", "age-key.txt", "secrets/api-token.age"] }}

[[files]]
command = ["age", "-d", "-i", "age-key.txt", "secrets/prod.env.age"]
dest = "shared/config/.env"

[strategy]
canary = 0
batch = "100%"

[hooks]
after_switch = ['{HOOK_WAITS}']
after_rollback = []
on_failure_local = ['cp "$HOIST_SUMMARY" summary-for-hooks.json; echo "local hook has $HOIST_SECRET_API_TOKEN" > local-hook.txt']

[diagnose]
commands = ['cat "$HOIST_DEPLOY_TO/shared/config/.env"']
"#
        ))
        .write();
    let hosts = f.host_names();

    // The deploy, with its hooks held while `ps` looks at the hosts.
    let bin = assert_cmd::cargo::cargo_bin("hoist");
    let mut child = Command::new(bin)
        .args(["deploy", "--yes", "--json"])
        .current_dir(f.path())
        .env("HOME", f.path().join("home"))
        .env("USER", whoami())
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("HOIST_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while !hosts
        .iter()
        .all(|h| f.deploy_path(h).join("hook-started").exists())
    {
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("the hooks never started: {}", printed(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let ps = Command::new("ps")
        .args(["-eww", "-o", "args"])
        .output()
        .unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout).into_owned();
    for h in &hosts {
        std::fs::write(f.deploy_path(h).join("go"), "").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        ps.contains("HOIST_SECRET_API_TOKEN"),
        "ps saw the hooks running: {ps}"
    );
    assert_no_secret("ps on the hosts while the hooks ran", &ps);
    assert_eq!(out.status.code(), Some(0), "{}", printed(&out));
    let json = printed(&out);
    assert!(json.contains("token is ***"), "{json}");
    assert!(json.contains("db is ***"), "{json}");
    assert_no_secret("deploy --json", &json);
    assert!(!ndjson(&out.stdout).is_empty());

    for h in &hosts {
        let env_file = f.deploy_path(h).join("shared/config/.env");
        assert_eq!(
            std::fs::read_to_string(&env_file).unwrap(),
            format!("DB_PASSWORD={DB_PASSWORD}\n"),
            "{h} got the decrypted file"
        );
        let mode = std::fs::metadata(&env_file).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "{h}: a command's output is secret: 0600"
        );
    }

    // Plain lines.
    let out = f.hoist(&["deploy", "--yes", "-v"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", printed(&out));
    assert!(printed(&out).contains("token is ***"), "{}", printed(&out));
    assert_no_secret("deploy -v", &printed(&out));

    // A failing hook: its last lines in the live view, the annotations and
    // the step summary.
    for h in &hosts {
        std::fs::write(f.deploy_path(h).join("fail"), "").unwrap();
    }
    let f = f.artifact(&[("README", "v2")]).write();
    let (code, shown) = on_a_terminal(&f, "deploy --yes");
    assert_eq!(code, Some(5), "{shown}");
    assert!(shown.contains("token is ***"), "the live view: {shown}");
    assert_no_secret("the live view", &shown);

    let summary = f.path().join("step-summary.md");
    let out = f
        .hoist(&["deploy", "--yes"])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", printed(&out));
    assert!(printed(&out).contains("::error"), "{}", printed(&out));
    assert_no_secret("deploy under GitHub Actions", &printed(&out));
    let summary = std::fs::read_to_string(summary).unwrap();
    assert!(summary.contains("token is ***"), "{summary}");
    assert_no_secret("the step summary", &summary);
    let for_hooks = std::fs::read_to_string(f.path().join("summary-for-hooks.json")).unwrap();
    assert!(for_hooks.contains("token is ***"), "{for_hooks}");
    assert_no_secret("the summary run-level hooks get", &for_hooks);
    assert_eq!(
        std::fs::read_to_string(f.path().join("local-hook.txt")).unwrap(),
        format!("local hook has {API_TOKEN}\n"),
        "local hooks get the named secrets in their environment"
    );

    let logs = files_under(&f.path().join(".hoist/logs"));
    assert!(logs.iter().any(|(_, text)| text.contains("token is ***")));
    for (path, text) in logs {
        assert_no_secret(&path, &text);
    }
    for h in &hosts {
        let kept = files_under(&f.deploy_path(h).join(".hoist"));
        assert!(kept.iter().any(|(p, _)| p.contains("journal")));
        assert!(kept.iter().any(|(p, _)| p.contains("diagnostics")));
        for (path, text) in kept {
            assert_no_secret(&format!("{h}: {path}"), &text);
        }
    }
}

#[test]
fn a_failing_secret_command_exits_2_shows_its_stderr_and_touches_no_host() {
    let f = age_fleet(2);
    // Encrypted to a key this project does not have.
    age_key(f.path(), "other-key.txt");
    let f = f
        .toml(
            r#"[secrets]
db_password = { command = ["age", "-d", "-i", "other-key.txt", "secrets/prod.env.age"] }

[strategy]
canary = 0
"#,
        )
        .write();
    for args in [&["deploy", "--yes"][..], &["rollback", "--yes"][..]] {
        let out = f.hoist(args).output().unwrap();
        let shown = printed(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {shown}");
        assert!(shown.contains("[secrets] db_password"), "{shown}");
        assert!(
            shown.contains("no identity matched"),
            "age's stderr: {shown}"
        );
        for h in f.host_names() {
            assert!(f.untouched(&h), "{args:?} touched {h}");
        }
    }

    let f = Fleet::local(1)
        .toml("[secrets]\npin = { command = [\"printf\", \"abc\"] }\n")
        .write();
    let out = f.hoist(&["deploy", "--yes"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", printed(&out));
    assert!(printed(&out).contains("at least 4"), "{}", printed(&out));

    // hoist's own, too: a become password it could not mask.
    let f = Fleet::local(1).toml("[hooks]\nbecome = \"root\"\n").write();
    let out = f
        .hoist(&["deploy", "--yes"])
        .env("HOIST_BECOME_PASSWORD", "pw1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", printed(&out));
    assert!(
        printed(&out).contains("HOIST_BECOME_PASSWORD holds 3 byte(s)"),
        "{}",
        printed(&out)
    );
    assert!(f.untouched("web1"));
}

/// Each host's deploy_to outside shared/ and .hoist/ (the releases and
/// `current`): each file's bytes, each link's target, not followed.
fn outside_shared(f: &Fleet, host: &str) -> Vec<(String, Vec<u8>)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(base)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel == "shared" || rel == ".hoist" {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.push((rel, target.to_string_lossy().into_owned().into_bytes()));
            } else if meta.is_dir() {
                walk(base, &path, out);
            } else {
                out.push((rel, std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    let base = f.deploy_path(host);
    walk(&base, &base, &mut out);
    out.sort();
    out
}

fn env_of(f: &Fleet, host: &str) -> String {
    std::fs::read_to_string(f.deploy_path(host).join("shared/config/.env")).unwrap()
}

fn after_files_runs(f: &Fleet, host: &str) -> usize {
    std::fs::read_to_string(f.deploy_path(host).join("shared/after_files.log"))
        .unwrap_or_default()
        .lines()
        .count()
}

#[test]
fn files_push_rotates_a_secret_on_four_hosts_without_a_release_and_puts_it_back_on_failure() {
    let f = Fleet::ssh(4);
    std::fs::create_dir_all(f.path().join("secrets")).unwrap();
    let file = f.path().join("secrets/db-password");
    let password = |pw: &str| std::fs::write(&file, pw).unwrap();
    password("first-pw-1234\n");
    let f = f
        .app("shared_files = [\"config/.env\"]")
        .toml(
            r#"[secrets]
db_password = { command = ["cat", "secrets/db-password"] }

[[files]]
content = "DATABASE_URL=postgres://app:{{ secrets.db_password }}@db/app\n"
dest = "shared/config/.env"
secret = true

[strategy]
canary = 1
canary_pause = "0s"
batch = "50%"

[hooks]
after_files = ['echo "$HOIST_HOST $HOIST_SECRET_DB_PASSWORD" >> "$HOIST_DEPLOY_TO/shared/after_files.log"']

[health]
command = '! grep -q broken "$HOIST_DEPLOY_TO/shared/config/.env"'
retries = 1
interval = "100ms"
"#,
        )
        .write();
    let out = f.hoist(&["deploy", "--yes"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", printed(&out));
    let hosts = f.host_names();
    let before: Vec<_> = hosts.iter().map(|h| outside_shared(&f, h)).collect();
    for h in &hosts {
        assert!(env_of(&f, h).contains("app:first-pw-1234@db"), "{h}");
        assert_eq!(after_files_runs(&f, h), 0, "a deploy runs no after_files");
    }

    password("second-pw-5678\n");
    let out = f
        .hoist(&["files", "push", "--yes", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", printed(&out));
    assert!(
        !printed(&out).contains("second-pw-5678"),
        "{}",
        printed(&out)
    );
    for (h, before) in hosts.iter().zip(&before) {
        assert_eq!(
            &outside_shared(&f, h),
            before,
            "{h}: only shared files change"
        );
        assert_eq!(
            env_of(&f, h),
            "DATABASE_URL=postgres://app:second-pw-5678@db/app\n"
        );
        let mode = std::fs::metadata(f.deploy_path(h).join("shared/config/.env"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(after_files_runs(&f, h), 1, "{h}: after_files ran once");
        let journal = f.journal(h);
        let files = journal.iter().filter(|e| e["event"] == "files").count();
        assert_eq!(files, 1, "{h}: the journal records the push: {journal:?}");
    }
    let rows = ndjson(
        &f.hoist(&["status", "--json"])
            .assert()
            .success()
            .get_output()
            .stdout,
    );
    let changed: Vec<_> = rows
        .iter()
        .filter(|e| e["event"] == "row")
        .map(|e| e["files_changed"].clone())
        .collect();
    assert_eq!(changed.len(), 4);
    assert!(changed.iter().all(|c| c.is_string()), "{changed:?}");

    // A broken value fails the canary's health check: its previous file
    // comes back, after_files runs again, and no other host is touched.
    password("broken-pw-0000\n");
    let out = f
        .hoist(&["files", "push", "--yes", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", printed(&out));
    let events = ndjson(&out.stdout);
    let canary = events
        .iter()
        .find(|e| e["event"] == "wave_started")
        .map(|e| e["hosts"][0].as_str().unwrap().to_string())
        .unwrap();
    for h in &hosts {
        assert_eq!(
            env_of(&f, h),
            "DATABASE_URL=postgres://app:second-pw-5678@db/app\n",
            "{h} has the previous contents"
        );
        let runs = if *h == canary { 3 } else { 1 };
        assert_eq!(after_files_runs(&f, h), runs, "{h}");
    }
    let summary = events.last().unwrap();
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["rolled_back"], 1, "{summary}");
}

#[test]
fn the_become_password_from_a_command_and_named_secrets_reach_hooks_run_through_password_sudo() {
    let Some((_user, password)) = crate::real_apps::take_become_user() else {
        return;
    };
    let f = crate::real_apps::become_fleet(
        2,
        r#"[secrets]
api_token = { command = ["cat", "api-token.txt"] }

[hooks]
become = "root"
become_password = { command = ["cat", "sudo-password.txt"] }
after_switch = ['printf "%s %s" "$(id -u)" "$HOIST_SECRET_API_TOKEN" > "$HOIST_DEPLOY_TO/seen"; echo "token is $HOIST_SECRET_API_TOKEN"']

[strategy]
canary = 0
batch = 2
"#,
    );
    std::fs::write(f.path().join("api-token.txt"), format!("{API_TOKEN}\n")).unwrap();
    std::fs::write(f.path().join("sudo-password.txt"), format!("{password}\n")).unwrap();
    let out = f.hoist(&["check", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", printed(&out));
    let rows: Vec<_> = ndjson(&out.stdout)
        .into_iter()
        .filter(|e| e["table"] == "check")
        .collect();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r["become"] == "ok"), "check: {rows:?}");
    let out = f.hoist(&["deploy", "-v"]).output().unwrap();
    let shown = printed(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(shown.contains("token is ***"), "{shown}");
    assert_no_secret("deploy -v", &shown);
    assert!(!shown.contains(&password), "{shown}");
    for h in f.host_names() {
        let seen = std::fs::read_to_string(f.deploy_path(&h).join("seen")).unwrap();
        assert_eq!(
            seen,
            format!("0 {API_TOKEN}"),
            "{h}: as root, with the secret"
        );
    }
}
