//! Under GitHub Actions the runner reads everything hoist prints for
//! workflow commands: `::name::` at the start of a line, and the legacy
//! `##[name]` anywhere in one. Text from hosts (hook output, diagnostics,
//! error tails) must never become one: a host could set step outputs, or
//! stop command processing and so hide hoist's own `::error::` and
//! `::endgroup::`. Every line hoist did not make a command of itself goes
//! through here, so no host line is read as a command, and reads the same.

/// Between the characters of a would-be command: invisible in the log.
const BREAK: char = '\u{200B}';

/// `GITHUB_ACTIONS=true`: the runner reads the output for commands.
pub fn under_actions() -> bool {
    std::env::var("GITHUB_ACTIONS").as_deref() == Ok("true")
}

/// A line of text for the runner's log that it will not take for a command.
pub fn inert_line(line: &str) -> String {
    let line = inert_text(line);
    let blanks = line.len() - line.trim_start().len();
    if line[blanks..].starts_with("::") {
        return format!("{}:{BREAK}{}", &line[..blanks], &line[blanks + 1..]);
    }
    line
}

/// Text inside a line (a command's message): only the legacy form can
/// start there.
pub fn inert_text(text: &str) -> String {
    text.replace("##[", &format!("##{BREAK}["))
}

/// An NDJSON line the runner will not take for a command. `##` appears in
/// a line of JSON only inside a string, where `[` may as well be written
/// `\u005b`: the JSON means the same, to any parser.
pub fn inert_json(line: &str) -> String {
    line.replace("##[", "##\\u005b")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_form_of_a_command_survives_and_json_still_means_the_same() {
        for hostile in [
            "##[set-output name=x;]y",
            "say ##[stop-commands]token",
            "::stop-commands::token",
            "   ::set-output name=x::y",
            "::error::forged",
        ] {
            let line = inert_line(hostile);
            assert!(!line.contains("##["), "{line}");
            assert!(!line.trim_start().starts_with("::"), "{line}");
            assert_eq!(line.replace(BREAK, ""), hostile, "reads the same");
        }
        let json = serde_json::json!({"line": "a ##[set-output name=x;]y"}).to_string();
        let inert = inert_json(&json);
        assert!(!inert.contains("##["), "{inert}");
        let back: serde_json::Value = serde_json::from_str(&inert).unwrap();
        assert_eq!(back["line"], "a ##[set-output name=x;]y");
    }
}
