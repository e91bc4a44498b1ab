//! Dynamic inventory: `inventory = "exec:./list-hosts"` (or `-i exec:CMD`).
//! hoist runs the command and reads JSON shaped like an inventory file:
//! `{"ssh": {...}, "hosts": {"web1": {...}}, "groups": {"web": {...}}}`.
//! The JSON becomes TOML text and goes through the same strict parsing as a
//! file, so an unknown key or a bad value is refused the same way.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::ConfigError;
use super::doc::Doc;
use crate::local_command::{NotRun, output_within};

/// The most an inventory command may take.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `command` with `sh -c` in `dir`; its standard output is the inventory.
pub fn run(command: &str, dir: &Path, label: &str) -> Result<Doc, ConfigError> {
    run_with_timeout(command, dir, label, TIMEOUT)
}

pub fn run_with_timeout(
    command: &str,
    dir: &Path,
    label: &str,
    timeout: Duration,
) -> Result<Doc, ConfigError> {
    let fail = |what: String| ConfigError(format!("{label}: {what}"));
    let ran = output_within(
        Command::new("sh").arg("-c").arg(command).current_dir(dir),
        timeout,
    )
    .map_err(|e| match e {
        NotRun::Start(e) => fail(format!("cannot run the inventory command: {e}")),
        NotRun::TimedOut => fail(format!(
            "the inventory command did not finish within {}",
            humantime::format_duration(timeout)
        )),
        NotRun::Wait(e) => fail(format!("waiting for the inventory command: {e}")),
    })?;
    let (status, stdout, stderr) = (ran.status, &ran.stdout, &ran.stderr);
    let stderr_tail = tail(stderr);
    if !status.success() {
        let how = ran.how();
        return Err(fail(format!("the inventory command {how}{stderr_tail}")));
    }
    let table: toml::Table = serde_json::from_slice(stdout).map_err(|e| {
        let e = e.to_string().replace("unit value", "null");
        fail(format!(
            "the inventory command's output is not an inventory in JSON ({e}); expected {{\"hosts\": {{...}}, \"groups\": {{...}}}}{stderr_tail}"
        ))
    })?;
    let text = toml::to_string(&table).map_err(|e| fail(format!("{e}")))?;
    Ok(Doc::generated(label, text))
}

/// The last lines of stderr, to show with an error.
fn tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    let shown = &lines[lines.len().saturating_sub(10)..];
    format!("; its stderr:\n  {}", shown.join("\n  "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::InventoryFile;
    use std::time::Instant;

    fn run_here(script: &str) -> Result<Doc, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        run_with_timeout(script, dir.path(), "exec:test", Duration::from_secs(5))
    }

    #[test]
    fn json_output_becomes_a_strict_inventory() {
        let doc = run_here(
            r#"echo '{"hosts": {"web1": {"address": "10.0.0.1", "port": 2222, "groups": ["web"], "vars": {"region": "eu"}}}, "groups": {"web": {"user": "deploy"}}}'"#,
        )
        .unwrap();
        let inv: InventoryFile = doc.parse().unwrap();
        assert_eq!(inv.hosts.unwrap().len(), 1);

        let doc = run_here(r#"echo '{"hosts": {"web1": {"adress": "x"}}}'"#).unwrap();
        let err = doc.parse::<InventoryFile>().unwrap_err().0;
        assert!(
            err.starts_with("exec:test: unknown key `hosts.web1.adress`"),
            "{err}"
        );
        assert!(!err.contains("line "), "no lines of text hoist made: {err}");
    }

    #[test]
    fn a_failing_command_is_reported_with_its_stderr() {
        let err = run_here("echo 'no credentials for the cloud API' >&2; exit 3")
            .err()
            .unwrap()
            .0;
        assert!(err.contains("exited with code 3"), "{err}");
        assert!(err.contains("no credentials for the cloud API"), "{err}");
    }

    #[test]
    fn bad_json_is_refused() {
        for (script, needle) in [
            ("echo 'hosts: [web1]'", "not an inventory in JSON"),
            ("echo '[1, 2]'", "not an inventory in JSON"),
            (r#"echo '{"hosts": {"a": {"port": null}}}'"#, "null"),
        ] {
            let err = run_here(script).err().unwrap().0;
            assert!(err.contains(needle), "{script}: {err}");
        }
    }

    #[test]
    fn a_command_that_hangs_is_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let err = run_with_timeout(
            "exec sleep 30",
            dir.path(),
            "exec:x",
            Duration::from_millis(300),
        )
        .err()
        .unwrap()
        .0;
        assert!(err.contains("did not finish within"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
