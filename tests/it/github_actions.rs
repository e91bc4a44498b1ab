//! Under GitHub Actions, text from a host never reaches the runner as a
//! workflow command (issue 23, item 16): not `::name::` at the start of a
//! line, not the legacy `##[name]` anywhere in one; hoist's own groups and
//! annotations still do.

use crate::support::fleet::Fleet;
use crate::support::project::{ndjson, printed};

/// What a compromised host prints: set a step output, stop command
/// processing (so hoist's `::endgroup::` and `::error::` would be ignored).
const HOSTILE: &[&str] = &[
    "##[set-output name=x;]forged",
    "::set-output name=y::forged",
    "::stop-commands::tok123",
    "text then ##[stop-commands]tok456",
];

fn fleet() -> Fleet {
    let print: String = HOSTILE
        .iter()
        .map(|l| format!("echo '{l}'; echo '{l}' >&2"))
        .collect::<Vec<_>>()
        .join("; ");
    let f = Fleet::ssh(1).toml("[strategy]\ncanary = 0").write();
    f.hoist(&["deploy", "--yes"]).assert().success();
    f.artifact(&[("README", "v2")])
        .toml(&format!(
            "[hooks]\nafter_switch = [\"{print}\"]\n\n[health]\ncommand = \"{print}; exit 1\"\nretries = 1\ninterval = \"100ms\"\n\n[diagnose]\ncommands = [\"{print}\"]"
        ))
        .write()
}

/// Whether the runner would take `line` for a command.
fn is_command(line: &str) -> bool {
    line.contains("##[") || line.trim_start().starts_with("::")
}

#[test]
fn host_text_never_becomes_a_workflow_command() {
    let f = fleet();
    let summary = f.path().join("step-summary.md");
    let out = f
        .hoist(&["deploy", "--yes", "-v"])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", printed(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ours: Vec<&str> = stdout.lines().filter(|l| is_command(l)).collect();
    for line in &ours {
        let own = line.starts_with("::group::")
            || *line == "::endgroup::"
            || line.starts_with("::error title=web1::");
        assert!(own, "a command hoist did not write: {line:?}\n{stdout}");
        assert!(!line.contains("##["), "{line:?}");
    }
    assert!(ours.contains(&"::endgroup::"), "{stdout}");
    assert!(ours.iter().any(|l| l.starts_with("::error")), "{stdout}");
    // The host's lines are still there to read.
    let visible = stdout.replace('\u{200B}', "");
    for line in HOSTILE {
        assert!(visible.contains(line), "{line} shown:\n{stdout}");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.lines().any(is_command), "{stderr}");
}

#[test]
fn ndjson_under_github_actions_carries_host_text_intact_but_inert() {
    let f = fleet();
    let out = f
        .hoist(&["deploy", "--yes", "--json", "-v"])
        .env("GITHUB_ACTIONS", "true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", printed(&out));
    for (name, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let text = String::from_utf8_lossy(text);
        assert!(!text.lines().any(is_command), "{name}:\n{text}");
    }
    let lines: Vec<String> = ndjson(&out.stdout)
        .iter()
        .filter(|e| e["event"] == "host_output")
        .map(|e| e["line"].as_str().unwrap().to_string())
        .collect();
    for line in HOSTILE {
        assert!(lines.iter().any(|l| l == line), "{line} in {lines:?}");
    }
}
