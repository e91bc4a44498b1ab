//! Secrets from where teams keep them: a local command (`sops -d`, `age -d`,
//! `op read`, `vault kv get -field`, `aws ssm get-parameter`) run once per
//! run, before any host is touched, whose standard output is the value.
//! hoist stays store-agnostic: it only runs the command.
//!
//! Named secrets (`[secrets]`) reach hooks as environment variables: local
//! hooks get them in their environment, remote hooks read them from their
//! standard input into the environment before the hook starts, so a value
//! is never on a command line (`ps`) and never in a file on the host.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crate::local_command::{NotRun, output_within};
use std::process::Command;
use std::time::Duration;

use crate::config::{Config, Host};
use crate::report::MIN_LEN;

/// The most a secret command may take (a store may ask to unlock first).
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// The secrets of one run, read from their commands.
#[derive(Default)]
pub struct Secrets {
    named: Vec<Named>,
    become_password: Option<String>,
    /// What each `[[files]]` command printed, by its words (expanded per host).
    outputs: BTreeMap<Vec<String>, Output>,
}

struct Named {
    name: String,
    env: String,
    value: String,
}

struct Output {
    bytes: Vec<u8>,
    secret: bool,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.named.iter().map(|n| n.name.as_str()).collect();
        f.debug_struct("Secrets")
            .field("named", &names)
            .field("become_password", &self.become_password.is_some())
            .field("outputs", &self.outputs.len())
            .finish()
    }
}

impl Secrets {
    /// Runs every secret command the file has for these hosts, each once.
    /// `Err` (a usage error, exit 2) names the command and holds its
    /// stderr; nothing was touched.
    pub fn resolve(config: &Config, hosts: &[Host]) -> Result<Secrets, String> {
        let dir = &config.base_dir;
        let mut found = Secrets::default();
        for spec in &config.secrets {
            let what = format!("[secrets] {}", spec.name);
            let value = value_of(run(&spec.command, dir, &what)?, &what)?;
            found.named.push(Named {
                name: spec.name.clone(),
                env: spec.env.clone(),
                value,
            });
        }
        if let Some(argv) = &config.hooks.become_password {
            let what = "[hooks] become_password";
            found.become_password = Some(value_of(run(argv, dir, what)?, what)?);
        }
        for host in hosts {
            for spec in &config.app.files {
                let Some(argv) = spec.command_for(host) else {
                    continue;
                };
                let argv = argv.map_err(|e| format!("[[files]] {}: {e}", spec.dest))?;
                if found.outputs.contains_key(&argv) {
                    continue;
                }
                let what = format!("[[files]] {}", spec.dest);
                let bytes = run(&argv, dir, &what)?;
                if spec.secret && bytes.len() < MIN_LEN {
                    return Err(too_short(&what, bytes.len()));
                }
                let secret = spec.secret;
                found.outputs.insert(argv, Output { bytes, secret });
            }
        }
        Ok(found)
    }

    /// The variables hooks get: each named secret under its name.
    pub fn env(&self) -> Vec<(String, String)> {
        self.named
            .iter()
            .map(|n| (n.env.clone(), n.value.clone()))
            .collect()
    }

    /// Every value to mask: the named ones, the become password, and what
    /// the commands of `secret` files printed.
    pub fn values(&self) -> Vec<String> {
        let named = self.named.iter().map(|n| n.value.clone());
        let outputs = self
            .outputs
            .values()
            .filter(|o| o.secret)
            .map(|o| String::from_utf8_lossy(&o.bytes).into_owned());
        named
            .chain(self.become_password.clone())
            .chain(outputs)
            .collect()
    }

    pub fn become_password(&self) -> Option<&str> {
        self.become_password.as_deref()
    }

    /// What the command `argv` printed (read by [`Secrets::resolve`]).
    pub fn output(&self, argv: &[String]) -> Option<&[u8]> {
        self.outputs.get(argv).map(|o| o.bytes.as_slice())
    }

    /// `text` with each `{{ secrets.NAME }}` replaced by that secret.
    pub fn render(&self, text: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some((before, name, after)) = next_reference(rest)? {
            let Some(secret) = self.named.iter().find(|n| n.name == name) else {
                return Err(format!(
                    "{{{{ secrets.{name} }}}} names no secret of [secrets]"
                ));
            };
            out.push_str(before);
            out.push_str(&secret.value);
            rest = after;
        }
        out.push_str(rest);
        Ok(out)
    }

    /// For a remote hook: the sh that reads the named secrets from its
    /// standard input and exports them, and the bytes to send it; `None`
    /// without named secrets. Each value goes as its line count, then its
    /// lines (`read` takes a pipe a byte at a time, so nothing after them
    /// is consumed).
    pub fn remote(&self) -> Option<(String, Vec<u8>)> {
        if self.named.is_empty() {
            return None;
        }
        let mut script = String::from(
            "hoist_n=$(echo; echo x); hoist_n=${hoist_n%x}\n\
             hoist_read() { IFS= read -r hoist_k || exit 1; hoist_v=; \
             while [ \"$hoist_k\" -gt 0 ]; do IFS= read -r hoist_l || exit 1; hoist_v=\"$hoist_v$hoist_l\"; \
             hoist_k=$((hoist_k-1)); if [ \"$hoist_k\" -gt 0 ]; then hoist_v=\"$hoist_v$hoist_n\"; fi; done; }\n",
        );
        let mut bytes = Vec::new();
        for n in &self.named {
            script.push_str(&format!("hoist_read; export {}=\"$hoist_v\"\n", n.env));
            bytes.extend(format!("{}\n{}\n", n.value.split('\n').count(), n.value).into_bytes());
        }
        script.push_str("unset hoist_n hoist_k hoist_v hoist_l; unset -f hoist_read\n");
        Some((script, bytes))
    }
}

/// hoist's own secrets from its environment, when this run may use them
/// (`HOIST_BECOME_PASSWORD` with `become`; `HOIST_SSH_PASSPHRASE`), refused
/// when shorter than a secret may be: they could not be masked.
pub fn check_env(config: &Config) -> Result<(), String> {
    use crate::secret_env::{BECOME_PASSWORD, SSH_PASSPHRASE};
    let used = [
        (BECOME_PASSWORD, config.hooks.become_user.is_some()),
        (SSH_PASSPHRASE, true),
    ];
    for (name, used) in used {
        let len = std::env::var(name).map(|v| v.len()).unwrap_or(0);
        if used && len > 0 && len < MIN_LEN {
            return Err(format!(
                "{name} holds {len} byte(s); a secret must have at least {MIN_LEN} (a shorter one would mask ordinary text in every output)"
            ));
        }
    }
    Ok(())
}

/// The names of the `{{ secrets.NAME }}` references in `text`.
pub fn template_names(text: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some((_, name, after)) = next_reference(rest)? {
        names.push(name.to_string());
        rest = after;
    }
    Ok(names)
}

/// The first `{{ secrets.NAME }}` in `text`: what is before it, the name,
/// and what follows. Other `{{ ... }}` are left as they are.
fn next_reference(text: &str) -> Result<Option<(&str, &str, &str)>, String> {
    let mut from = 0;
    while let Some(open) = text[from..].find("{{").map(|i| i + from) {
        let inner_start = open + 2;
        let Some(close) = text[inner_start..].find("}}").map(|i| i + inner_start) else {
            return Ok(None);
        };
        let inner = text[inner_start..close].trim();
        if let Some(name) = inner.strip_prefix("secrets.") {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("{{{{ {inner} }}}} is not a secret's name"));
            }
            return Ok(Some((&text[..open], name, &text[close + 2..])));
        }
        from = inner_start;
    }
    Ok(None)
}

/// A named secret's value: the output as text, without its trailing newlines.
fn value_of(bytes: Vec<u8>, what: &str) -> Result<String, String> {
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("{what}: the command's output is not UTF-8 text"))?;
    let value = text.trim_end_matches(['\n', '\r']).to_string();
    if value.contains('\0') {
        return Err(format!("{what}: the command's output holds a NUL byte"));
    }
    if value.len() < MIN_LEN {
        return Err(too_short(what, value.len()));
    }
    Ok(value)
}

fn too_short(what: &str, len: usize) -> String {
    format!(
        "{what}: the command printed {len} byte(s); a secret must have at least {MIN_LEN} (a shorter one would mask ordinary text in every output)"
    )
}

/// Runs `argv` in `dir` (no shell), with none of hoist's own secrets in
/// its environment; its standard output, or why not with its stderr.
fn run(argv: &[String], dir: &Path, what: &str) -> Result<Vec<u8>, String> {
    let shown = argv.join(" ");
    let fail = |why: String| format!("{what}: `{shown}` {why}");
    // A relative program path is the file's, like every path in it.
    let program = if argv[0].contains('/') {
        dir.join(&argv[0])
    } else {
        argv[0].clone().into()
    };
    let ran = output_within(
        Command::new(&program).args(&argv[1..]).current_dir(dir),
        TIMEOUT,
    )
    .map_err(|e| match e {
        NotRun::Start(e) => fail(format!(
            "could not start: {e} (is it installed and on PATH?)"
        )),
        NotRun::TimedOut => fail(format!(
            "did not finish within {}",
            humantime::format_duration(TIMEOUT)
        )),
        NotRun::Wait(e) => fail(format!("could not be waited for: {e}")),
    })?;
    if ran.status.success() {
        return Ok(ran.stdout);
    }
    let (how, stderr) = (ran.how(), &ran.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = match lines.len() {
        0 => " and printed nothing on stderr".to_string(),
        n => format!(
            "; its stderr:\n  {}",
            lines[n.saturating_sub(20)..].join("\n  ")
        ),
    };
    Err(fail(format!("{how}{tail}; nothing was touched")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    fn with(named: &[(&str, &str)]) -> Secrets {
        Secrets {
            named: named
                .iter()
                .map(|(name, value)| Named {
                    name: name.to_string(),
                    env: format!("HOIST_SECRET_{}", name.to_uppercase()),
                    value: value.to_string(),
                })
                .collect(),
            ..Secrets::default()
        }
    }

    #[test]
    fn templates_take_named_secrets_and_leave_other_braces() {
        let s = with(&[("db_password", "pw-1234"), ("api", "tok-99")]);
        assert_eq!(
            s.render("DB={{ secrets.db_password }}\nAPI={{secrets.api}} {{ other }}\n")
                .unwrap(),
            "DB=pw-1234\nAPI=tok-99 {{ other }}\n"
        );
        assert!(s.render("{{ secrets.nope }}").unwrap_err().contains("nope"));
        assert_eq!(
            template_names("a {{ secrets.x }} b {{ y }} {{ secrets.z_2 }}").unwrap(),
            ["x", "z_2"]
        );
        assert!(template_names("{{ secrets.a-b }}").is_err());
    }

    #[test]
    fn a_short_or_failing_command_is_refused_with_its_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let argv = |s: &str| vec!["sh".to_string(), "-c".to_string(), s.to_string()];
        assert_eq!(
            value_of(
                run(&argv("printf 'abcd\\n'"), dir.path(), "x").unwrap(),
                "x"
            )
            .unwrap(),
            "abcd"
        );
        let short = value_of(run(&argv("echo abc"), dir.path(), "x").unwrap(), "x");
        assert!(short.unwrap_err().contains("at least 4"));
        let failed = run(
            &argv("echo 'no key found' >&2; exit 3"),
            dir.path(),
            "[secrets] db",
        )
        .unwrap_err();
        assert!(failed.contains("[secrets] db"), "{failed}");
        assert!(failed.contains("exited with code 3"), "{failed}");
        assert!(failed.contains("no key found"), "{failed}");
    }

    #[test]
    fn remote_hooks_read_multiline_values_from_stdin_into_their_environment() {
        let s = with(&[
            ("one", "line-one"),
            ("pem", "-----BEGIN\nab$(c)`d`\n-----END"),
        ]);
        let (read, bytes) = s.remote().unwrap();
        let script = format!(
            "{read}exec </dev/null\nprintf '%s|%s|' \"$HOIST_SECRET_ONE\" \"$HOIST_SECRET_PEM\"; printf '%s' \"${{hoist_v-unset}}\""
        );
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&bytes).unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "line-one|-----BEGIN\nab$(c)`d`\n-----END|unset"
        );
    }
}
