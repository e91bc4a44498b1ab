//! What hoist writes on a host and on this machine besides releases:
//! `[[files]]` (modes, and no way for another local user to redirect them)
//! and the run's records (logs, diagnostics), which hold every hook line.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::fleet::{Fleet, HEALTH};
use crate::support::project::{ndjson, printed};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// The app's own user must reach `shared/log`: `shared/` stays 0755 when
/// hoist writes a secret into it, and only the secret's own directory is
/// private.
#[test]
fn a_secret_file_leaves_shared_open_and_only_its_own_directory_private_over_ssh() {
    let f = Fleet::ssh(1)
        .app("shared_dirs = [\"log\"]\nshared_files = [\".env\", \"config/keys/db.key\"]")
        .toml(
            "[[files]]\nsrc = \"secrets/env\"\ndest = \"shared/.env\"\nsecret = true\n\n\
             [[files]]\nsrc = \"secrets/db.key\"\ndest = \"shared/config/keys/db.key\"\nsecret = true\n\n\
             [[files]]\nsrc = \"public/robots.txt\"\ndest = \"shared/public/robots.txt\"\n",
        )
        .write();
    write(&f.path().join("secrets/env"), "API_TOKEN=x\n");
    write(&f.path().join("secrets/db.key"), "key\n");
    write(&f.path().join("public/robots.txt"), "User-agent: *\n");
    let out = f.hoist(&["deploy"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", printed(&out));
    let shared = f.deploy_path("web1").join("shared");
    assert_eq!(mode(&shared), 0o755, "shared/");
    assert_eq!(mode(&shared.join("log")), 0o755, "shared/log");
    assert_eq!(mode(&shared.join(".env")), 0o600);
    assert_eq!(mode(&shared.join("config")), 0o755);
    assert_eq!(
        mode(&shared.join("config/keys")),
        0o700,
        "a secret's own directory"
    );
    assert_eq!(mode(&shared.join("config/keys/db.key")), 0o600);
    assert_eq!(mode(&shared.join("public")), 0o755);
    assert_eq!(mode(&shared.join("public/robots.txt")), 0o644);
}

/// A local user who can write where a `[[files]]` destination lives must
/// not be able to make hoist write the secret elsewhere: a destination
/// that is a symlink, or in a directory anyone may write in, fails that
/// host (exit 1) before anything is written, and what the link points at
/// is untouched.
#[test]
fn a_files_destination_that_is_a_link_or_in_a_world_writable_directory_fails_the_host_over_ssh() {
    let f = Fleet::ssh(2)
        .app("shared_files = [\"config/.env\"]")
        .toml(
            "[[files]]\nsrc = \"secrets/env\"\ndest = \"shared/config/.env\"\nsecret = true\n\
             [strategy]\ncanary = 0\nbatch = 2\non_failure = \"stop\"",
        )
        .write();
    write(&f.path().join("secrets/env"), "API_TOKEN=tok-5f1d9c7e\n");
    // web1: the destination is a link to a file its attacker wants.
    let config1 = f.deploy_path("web1").join("shared/config");
    std::fs::create_dir_all(&config1).unwrap();
    let victim = f.path().join("victim");
    std::fs::write(&victim, "untouched").unwrap();
    std::os::unix::fs::symlink(&victim, config1.join(".env")).unwrap();
    // web2: the destination's directory is world-writable (sticky or not).
    let config2 = f.deploy_path("web2").join("shared/config");
    std::fs::create_dir_all(&config2).unwrap();
    std::fs::set_permissions(&config2, std::fs::Permissions::from_mode(0o1777)).unwrap();

    let out = f.hoist(&["deploy", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", printed(&out));
    let text = printed(&out);
    assert!(text.contains("shared/config/.env is a symlink"), "{text}");
    assert!(text.contains("writable by any user"), "{text}");
    assert!(!text.contains("tok-5f1d9c7e"), "{text}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
    assert!(
        std::fs::read_dir(&config2).unwrap().next().is_none(),
        "nothing written in the open directory"
    );
    let events = ndjson(&out.stdout);
    for host in ["web1", "web2"] {
        assert!(f.current(host).is_none(), "{host} never switched");
        assert!(
            events
                .iter()
                .any(|e| e["event"] == "host_failed" && e["host"] == host),
            "{host}"
        );
    }
}

/// Run logs and host diagnostics hold every hook line and diagnose output
/// (environment dumps, journalctl): readable by their owner only.
#[test]
fn run_logs_and_host_diagnostics_are_private_over_ssh() {
    let f = Fleet::ssh(1)
        .toml(&format!(
            "{HEALTH}\n[strategy]\ncanary = 1\ncanary_pause = \"0s\"\n\
             [diagnose]\ncommands = [\"env\"]"
        ))
        .write();
    f.on_v1_then_v2();
    f.mark("web1", "FAIL");
    let out = f.hoist(&["deploy", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", printed(&out));
    let events = ndjson(&out.stdout);
    let summary = events.last().unwrap();
    let v2 = summary["release"].as_str().unwrap();
    let log = f.path().join(summary["log_file"].as_str().unwrap());
    assert_eq!(mode(&log), 0o600, "{}", log.display());
    assert_eq!(mode(log.parent().unwrap()), 0o700, "the logs directory");
    let kept = f.deploy_path("web1").join(".hoist/diagnostics");
    assert_eq!(mode(&kept), 0o700, "the diagnostics directory");
    assert_eq!(mode(&kept.join(v2)), 0o600, "the diagnostics record");

    // --log-file: a file of the user's choosing is made private too.
    let chosen = f.path().join("audit/deploy.log");
    let chosen_arg = chosen.to_string_lossy().into_owned();
    f.hoist(&["deploy", "--log-file", &chosen_arg])
        .assert()
        .code(5);
    assert_eq!(mode(&chosen), 0o600);
    assert_eq!(mode(chosen.parent().unwrap()), 0o700);
}
