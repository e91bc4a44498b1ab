//! Secrets never appear (issue 23, items 14 and 15): hoist's own secrets
//! stay out of what hosts run, and every secret value hoist knows is
//! masked as `***` wherever a host's text goes: `-v` lines, NDJSON, the
//! log file, diagnostics (the event and the record kept on the host),
//! GitHub Actions lines and the step summary.

use std::path::Path;

use crate::support::fleet::Fleet;
use crate::support::project::printed;

const BECOME_PASSWORD: &str = "become-pw-7731";
const PASSPHRASE: &str = "key-passphrase-9142";
const DB_PASSWORD: &str = "hunter2-db-secret";
const API_TOKEN: &str = "tok-5f9c1e-api";

/// Every file under `dir`, as text.
fn files_under(dir: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
            found.push((path.display().to_string(), text));
        }
    }
    found
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [BECOME_PASSWORD, PASSPHRASE, DB_PASSWORD, API_TOKEN] {
        assert!(!text.contains(secret), "{what} shows {secret}:\n{text}");
    }
}

#[test]
fn exec_on_a_local_host_never_passes_hoists_secrets_on() {
    let f = Fleet::local(1).write();
    for args in [
        &["exec", "--", "env"][..],
        &["exec", "--group-output", "--", "env"][..],
    ] {
        let out = f
            .hoist(args)
            .env("HOIST_BECOME_PASSWORD", BECOME_PASSWORD)
            .env("HOIST_SSH_PASSPHRASE", PASSPHRASE)
            .assert()
            .success()
            .get_output()
            .clone();
        let text = printed(&out);
        assert!(text.contains("HOIST_") || text.contains("PATH="), "{text}");
        for name in ["HOIST_BECOME_PASSWORD", "HOIST_SSH_PASSPHRASE"] {
            assert!(!text.contains(name), "{args:?} passed {name} on:\n{text}");
        }
    }
}

/// A hook, the health command and the diagnose commands that print a
/// secret file's lines and values, the become password and the key's
/// passphrase (planted in the release: a host may hold any of them).
#[test]
fn secret_values_a_host_prints_are_masked_in_every_output() {
    let f = Fleet::ssh(1);
    std::fs::create_dir_all(f.path().join("secrets")).unwrap();
    std::fs::write(
        f.path().join("secrets/web1.env"),
        format!("DB_PASSWORD={DB_PASSWORD}\nAPI_TOKEN=\"{API_TOKEN}\"\n"),
    )
    .unwrap();
    let leak = format!("{BECOME_PASSWORD}\nthe passphrase is {PASSPHRASE}\n");
    let print = r#"cat "$HOIST_DEPLOY_TO/shared/config/.env"; cat leak; echo "db is $(sed -n s/^DB_PASSWORD=//p "$HOIST_DEPLOY_TO/shared/config/.env")""#;
    let f = f
        .artifact(&[("README", "v1"), ("leak", &leak)])
        .app("shared_files = [\"config/.env\"]")
        .toml(&format!(
            r#"[[files]]
src = "secrets/{{host}}.env"
dest = "shared/config/.env"
secret = true

[strategy]
canary = 0

[hooks]
after_switch = ['{print}']

[diagnose]
commands = ['{print}']
"#
        ))
        .write();
    let run = |f: &Fleet, args: &[&str]| {
        f.hoist(args)
            .env("HOIST_BECOME_PASSWORD", BECOME_PASSWORD)
            .env("HOIST_SSH_PASSPHRASE", PASSPHRASE)
            .output()
            .unwrap()
    };
    let out = run(&f, &["deploy", "--yes", "-v"]);
    assert_eq!(out.status.code(), Some(0), "{}", printed(&out));
    let shown = printed(&out);
    assert!(shown.contains("db is ***"), "the hook ran: {shown}");
    assert_no_secret("deploy -v", &shown);
    let env_file = f.deploy_path("web1").join("shared/config/.env");
    let written = std::fs::read_to_string(env_file).unwrap();
    assert!(
        written.contains(DB_PASSWORD),
        "the host got the secret itself"
    );

    // v2 fails its health check, which prints them too: diagnostics, the
    // failure's tail, the rollback.
    let f = f
        .artifact(&[("README", "v2"), ("leak", &leak)])
        .toml(&format!(
            "[health]\ncommand = '{print}; exit 1'\nretries = 1\ninterval = \"100ms\""
        ))
        .write();
    let out = run(&f, &["deploy", "--yes", "--json", "-v"]);
    assert_eq!(out.status.code(), Some(1), "{}", printed(&out));
    let shown = printed(&out);
    assert!(shown.contains("host_diagnostics"), "{shown}");
    assert!(shown.contains("db is ***"), "{shown}");
    assert_no_secret("deploy --json -v", &shown);

    let summary = f.path().join("step-summary.md");
    let out = f
        .hoist(&["deploy", "--yes", "-v"])
        .env("HOIST_BECOME_PASSWORD", BECOME_PASSWORD)
        .env("HOIST_SSH_PASSPHRASE", PASSPHRASE)
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", printed(&out));
    assert!(printed(&out).contains("::error"), "{}", printed(&out));
    assert_no_secret("deploy under GitHub Actions", &printed(&out));
    assert_no_secret(
        "the step summary",
        &std::fs::read_to_string(summary).unwrap(),
    );

    let out = run(&f, &["status", "--last-failure"]);
    assert!(printed(&out).contains("db is ***"), "{}", printed(&out));
    assert_no_secret("status --last-failure", &printed(&out));

    let logs = files_under(&f.path().join(".hoist/logs"));
    assert!(!logs.is_empty());
    assert!(logs.iter().any(|(_, text)| text.contains("db is ***")));
    for (path, text) in logs {
        assert_no_secret(&path, &text);
    }
    let kept = files_under(&f.deploy_path("web1").join(".hoist/diagnostics"));
    assert!(!kept.is_empty(), "diagnostics are kept on the host");
    for (path, text) in kept {
        assert_no_secret(&path, &text);
    }
}
