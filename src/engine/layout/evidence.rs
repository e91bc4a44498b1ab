//! The scripts of the 3 am tools: diagnostics on a failed host, kept in
//! `<deploy_to>/.hoist/diagnostics/<release>` for `status --last-failure`.

use super::{Layout, q};
use crate::release::ReleaseId;

impl Layout {
    /// Runs one `[diagnose]` command like a hook (in `dir`, with the hook
    /// variables), its stderr merged into its stdout so the lines keep
    /// their order.
    pub fn diagnose(&self, dir: &str, env: &[(String, String)], command: &str) -> String {
        let mut script = format!("cd {} 2>/dev/null || cd {}\n", q(dir), q(&self.deploy_to));
        for (name, value) in env {
            script.push_str(&format!("export {}={}\n", name, q(value)));
        }
        script.push_str(&format!("exec sh -c {} 2>&1\n", q(command)));
        script
    }

    /// Keeps a failure's record (JSON, on stdin) as `.hoist/diagnostics/<id>`,
    /// written to a temporary name first so a reader never sees half of it.
    /// The record (environment dumps, journal lines) is 0600 in a 0700
    /// directory.
    pub fn save_diagnostics(&self, id: &ReleaseId) -> String {
        format!(
            r#"{head}
umask 077
mkdir -p "$H/diagnostics" && chmod 700 "$H/diagnostics" && cat > "$H/diagnostics/.{id}.$$" && mv -f "$H/diagnostics/.{id}.$$" "$H/diagnostics/{id}" || {{ rm -f "$H/diagnostics/.{id}.$$"; exit 1; }}
"#,
            head = self.head()
        )
    }

    /// Prints the newest failure record on the host (release ids sort by
    /// time), or nothing.
    pub fn last_diagnostics(&self) -> String {
        format!(
            r#"{head}
last=
for f in "$H"/diagnostics/*; do [ -f "$f" ] && last=$f; done
if [ -n "$last" ]; then cat "$last"; fi
"#,
            head = self.head()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, stdin: &str) -> (i32, String) {
        let dir = tempfile::tempdir().unwrap();
        let ran = crate::host_shells::shells()[0].run(dir.path(), script, stdin.as_bytes());
        (ran.code, ran.text())
    }

    #[test]
    fn records_are_kept_per_release_and_the_newest_is_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path().join("app it's").to_string_lossy());
        assert_eq!(sh(&layout.last_diagnostics(), ""), (0, String::new()));
        let old = ReleaseId::parse("20260101T000000Z-aaaaaaaa").unwrap();
        let new = ReleaseId::parse("20260102T000000Z-bbbbbbbb").unwrap();
        assert_eq!(sh(&layout.save_diagnostics(&new), "{\"n\":2}").0, 0);
        assert_eq!(sh(&layout.save_diagnostics(&old), "{\"n\":1}").0, 0);
        assert_eq!(sh(&layout.last_diagnostics(), ""), (0, "{\"n\":2}".into()));
    }

    #[test]
    fn a_diagnose_command_gets_the_variables_and_merged_output() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path().to_string_lossy());
        let env = vec![("HOIST_HOST".to_string(), "web1; rm -rf /".to_string())];
        let script = layout.diagnose(
            "/nonexistent",
            &env,
            "echo out; echo err >&2; echo \"$HOIST_HOST\"; pwd; exit 3",
        );
        let (code, out) = sh(&script, "");
        assert_eq!(code, 3);
        assert_eq!(
            out,
            format!("out\nerr\nweb1; rm -rf /\n{}\n", dir.path().display())
        );
    }
}
