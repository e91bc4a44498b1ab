//! The host scripts for an application's state beside its releases (shared
//! dirs and files, `[[files]]`) and for `become`. A sibling of `layout`:
//! every value quoted with [`q`].

use super::layout::{Layout, q};
use crate::release::ReleaseId;

/// `set -u`, and `D`/`H` as in every script of `layout`.
fn head(layout: &Layout) -> String {
    format!(
        "set -u; umask 022; D={}; H=\"$D/.hoist\"",
        q(&layout.deploy_to)
    )
}

/// The parent of a checked relative path (`config` for `config/.env`).
fn parent(path: &str) -> Option<&str> {
    path.rsplit_once('/').map(|(p, _)| p)
}

/// Creates `shared/<dir>` for each shared dir (and the parents of the
/// shared files), then links every shared path into `releases/<id>`:
/// whatever the release holds there is replaced by a symlink to
/// `<deploy_to>/shared/<path>`. Refuses a path that goes through a
/// symlink inside the release (an artifact could point it anywhere).
/// Idempotent: a resumed deploy links again.
pub fn link_shared(layout: &Layout, id: &ReleaseId, dirs: &[String], files: &[String]) -> String {
    let mut script = format!(
        "{head}\nR=\"$D/releases/{id}\"\n[ -d \"$R\" ] || {{ echo \"release {id} is not on this host\" >&2; exit 4; }}\n",
        head = head(layout)
    );
    for dir in dirs {
        script.push_str(&format!(
            "mkdir -p \"$D/shared/\"{p} || {{ echo \"cannot create shared/\"{p} >&2; exit 1; }}\n",
            p = q(dir)
        ));
    }
    for file in files {
        if let Some(parent) = parent(file) {
            script.push_str(&format!("mkdir -p \"$D/shared/\"{} || exit 1\n", q(parent)));
        }
    }
    for path in dirs.iter().chain(files) {
        let mut prefix = String::new();
        if let Some(parent) = parent(path) {
            for part in parent.split('/') {
                if !prefix.is_empty() {
                    prefix.push('/');
                }
                prefix.push_str(part);
                script.push_str(&format!(
                    "if [ -L \"$R/\"{p} ] || {{ [ -e \"$R/\"{p} ] && [ ! -d \"$R/\"{p} ]; }}; then printf '%s in the release is not a directory; the shared path %s cannot go through it\\n' {p} {path} >&2; exit 1; fi\n",
                    p = q(&prefix),
                    path = q(path)
                ));
            }
            script.push_str(&format!("mkdir -p \"$R/\"{} || exit 1\n", q(parent)));
        }
        script.push_str(&format!(
            "rm -rf \"$R/\"{p} && ln -s \"$D/shared/\"{p} \"$R/\"{p} || {{ echo \"cannot link \"{p} >&2; exit 1; }}\n",
            p = q(path)
        ));
    }
    script
}

/// Reads, writing nothing, whether the shared paths can be linked: each
/// shared file must exist, and no shared dir may be something else. Prints
/// `missing <path>`, `not-a-file <path>` or `not-a-dir <path>` for each
/// that cannot (see [`SharedProblem::parse`]).
pub fn check_shared(layout: &Layout, dirs: &[String], files: &[String]) -> String {
    let mut script = head(layout);
    script.push('\n');
    for dir in dirs {
        script.push_str(&format!(
            "S=\"$D/shared/\"{p}; if [ -e \"$S\" ] && [ ! -d \"$S\" ]; then printf 'not-a-dir %s\\n' {p}; fi\n",
            p = q(dir)
        ));
    }
    for file in files {
        script.push_str(&format!(
            "S=\"$D/shared/\"{p}; if [ -d \"$S\" ]; then printf 'not-a-file %s\\n' {p}; elif [ ! -e \"$S\" ]; then printf 'missing %s\\n' {p}; fi\n",
            p = q(file)
        ));
    }
    script
}

/// What [`check_shared`] found wrong with one shared path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SharedProblem {
    /// A shared file that is not on the host (and no `[[files]]` entry makes it).
    #[error("shared file shared/{0} is missing (create it on the host, or send it with [[files]])")]
    Missing(String),
    /// A shared file that is a directory on the host.
    #[error("shared/{0} is a directory, but shared_files lists it as a file")]
    NotAFile(String),
    /// A shared dir that is something else on the host.
    #[error("shared/{0} is not a directory, but shared_dirs lists it")]
    NotADir(String),
    /// The check itself failed.
    #[error("cannot check the shared paths: {0}")]
    Unchecked(String),
}

impl SharedProblem {
    pub fn parse(output: &str) -> Vec<SharedProblem> {
        output
            .lines()
            .filter_map(|line| {
                let (kind, path) = line.split_once(' ')?;
                let path = path.to_string();
                match kind {
                    "missing" => Some(SharedProblem::Missing(path)),
                    "not-a-file" => Some(SharedProblem::NotAFile(path)),
                    "not-a-dir" => Some(SharedProblem::NotADir(path)),
                    _ => None,
                }
            })
            .collect()
    }
}

/// Writes stdin to `<deploy_to>/<dest>` atomically with `mode`: a
/// temporary file beside it, made by `mktemp` (a name nobody can predict,
/// created only if it did not exist, unreadable to others), then a rename.
/// Refuses a destination that is a symlink or a directory, or whose
/// directory anyone may write in (another user could swap the temporary
/// file for a link between its creation and the write). Directories it
/// makes get 0755, except a secret's own directory below `shared/`: 0700.
/// Prints nothing: the content (a secret, maybe) only travels on stdin.
pub fn write_file(layout: &Layout, dest: &str, mode: u32, secret: bool) -> String {
    let mkdir = match parent(dest) {
        Some(p) => match parent(p) {
            Some(above) if secret => format!(
                "mkdir -p \"$D/\"{above} && (umask 077 && mkdir -p \"$D/\"{p}) || exit 1\n",
                above = q(above),
                p = q(p)
            ),
            _ => format!("mkdir -p \"$D/\"{} || exit 1\n", q(p)),
        },
        None => String::new(),
    };
    format!(
        r#"{head}
F="$D/"{dest}
{mkdir}if [ -L "$F" ]; then printf '%s is a symlink; refusing to write through it\n' {dest} >&2; exit 1; fi
if [ -d "$F" ]; then printf '%s is a directory\n' {dest} >&2; exit 1; fi
case $(ls -ld "${{F%/*}}/." 2>/dev/null) in
  ????????w*) printf 'the directory of %s is writable by any user; refusing to write there (chmod o-w it)\n' {dest} >&2; exit 1 ;;
  '') printf 'cannot read the directory of %s\n' {dest} >&2; exit 1 ;;
esac
umask 077
T=$(mktemp "$F.hoist-tmp.XXXXXXXX") || {{ printf 'cannot create a temporary file beside %s\n' {dest} >&2; exit 1; }}
trap 'rm -f "$T"' EXIT
trap 'exit 130' HUP INT TERM
cat > "$T" && chmod {mode:o} "$T" && mv -f "$T" "$F" || {{ printf 'cannot write %s\n' {dest} >&2; exit 1; }}
"#,
        head = head(layout),
        dest = q(dest),
    )
}

/// Whether sudo lets the SSH user run commands as `user`: prints `no-sudo`,
/// `ok` (no password needed), or `password` and what sudo said. Cached
/// credentials are ignored (`-k`), so the answer holds for the whole run.
pub fn become_probe(user: &str) -> String {
    format!(
        r#"command -v sudo >/dev/null 2>&1 || {{ echo no-sudo; exit 0; }}
if out=$(sudo -k -n -u {user} -- true 2>&1 </dev/null); then echo ok; else echo password; printf '%s\n' "$out"; fi
"#,
        user = q(user)
    )
}

/// Checks the password on stdin: prints `ok`, or `refused` and what sudo
/// said. The password is read by sudo from stdin (`-S`), never an argument.
pub fn become_verify(user: &str) -> String {
    format!(
        r#"if out=$(sudo -k -S -p '' -u {user} -- true 2>&1); then echo ok; else echo refused; printf '%s\n' "$out"; fi
"#,
        user = q(user)
    )
}

/// What [`become_probe`] or [`become_verify`] answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BecomeAnswer {
    Ok,
    NoSudo,
    /// sudo wants a password (probe), or refused the one given (verify);
    /// with what sudo said.
    Refused(String),
}

impl BecomeAnswer {
    pub fn parse(output: &str) -> BecomeAnswer {
        let mut lines = output.lines();
        match lines.next() {
            Some("ok") => BecomeAnswer::Ok,
            Some("no-sudo") => BecomeAnswer::NoSudo,
            _ => BecomeAnswer::Refused(
                lines
                    .filter(|l| !l.trim().is_empty())
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        }
    }
}

/// `script` run as `user` through sudo. With a password, sudo reads it from
/// stdin (`-S`, no prompt); without, sudo must not ask (`-n`). The command
/// itself never sees that stdin: its first act is to read /dev/null
/// instead, so a password sudo did not need is dropped unread.
pub fn as_user(user: &str, with_password: bool, script: &str) -> String {
    as_user_reading(user, with_password, "", script)
}

/// [`as_user`], with `reading` run as the user before its stdin is closed:
/// it takes what follows the password on stdin (the named secrets).
pub fn as_user_reading(user: &str, with_password: bool, reading: &str, script: &str) -> String {
    let flags = if with_password { "-S -p ''" } else { "-n" };
    format!(
        "exec sudo {flags} -u {user} -- sh -c {inner}\n",
        user = q(user),
        inner = q(&format!("{reading}exec </dev/null\n{script}"))
    )
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::process::{Command, Stdio};

    use super::*;

    const ID: &str = "20260101T000000Z-aaaaaaaa";

    /// Runs `script` in `dir` with `stdin` on its standard input, under
    /// the system's sh and, when there is one, under busybox alone (its
    /// applets first on PATH); the exit code and output of each must agree.
    fn sh(dir: &Path, script: &str, stdin: &[u8]) -> (i32, String) {
        let system = run_with(dir, script, stdin, None);
        if let Some(bin) = busybox_bin() {
            let busybox = run_with(dir, script, stdin, Some(bin.path()));
            assert_eq!(system.0, busybox.0, "busybox: {}", busybox.1);
        }
        system
    }

    fn busybox_bin() -> Option<tempfile::TempDir> {
        let found = Command::new("sh")
            .args(["-c", "command -v busybox"])
            .output()
            .ok()?;
        let busybox = String::from_utf8(found.stdout).ok()?.trim().to_string();
        if busybox.is_empty() {
            return None;
        }
        let bin = tempfile::tempdir().unwrap();
        for tool in [
            "sh", "mkdir", "rm", "ln", "chmod", "mv", "cat", "ls", "mktemp",
        ] {
            std::os::unix::fs::symlink(&busybox, bin.path().join(tool)).unwrap();
        }
        Some(bin)
    }

    fn run_with(dir: &Path, script: &str, stdin: &[u8], path: Option<&Path>) -> (i32, String) {
        // Each run starts from the same state: scripts here are idempotent
        // or refuse, so a second run must answer as the first did.
        let mut cmd = Command::new(path.map_or("sh".into(), |p| p.join("sh")));
        cmd.args(["-c", script])
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(p) = path {
            cmd.env("PATH", p);
        }
        let mut child = cmd.spawn().unwrap();
        use std::io::Write;
        // A script that refuses may exit before it reads its input.
        match child.stdin.take().unwrap().write_all(stdin) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            written => written.unwrap(),
        }
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code().unwrap_or(-1), text)
    }

    fn release(deploy_to: &Path) -> std::path::PathBuf {
        let r = deploy_to.join("releases").join(ID);
        fs::create_dir_all(&r).unwrap();
        r
    }

    fn id() -> ReleaseId {
        ReleaseId::parse(ID).unwrap()
    }

    const AWKWARD: &str = "it's $(touch pwned) `x`";

    #[test]
    fn shared_paths_replace_what_the_artifact_holds_with_links() {
        let base = tempfile::tempdir().unwrap();
        let deploy_to = base.path().join("app");
        let r = release(&deploy_to);
        fs::create_dir_all(r.join("storage")).unwrap();
        fs::write(r.join("storage/placeholder"), "artifact").unwrap();
        // A hostile artifact: its own `log` points elsewhere.
        fs::create_dir_all(base.path().join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(base.path().join("elsewhere"), r.join("log")).unwrap();
        fs::create_dir_all(deploy_to.join("shared/config")).unwrap();
        fs::write(deploy_to.join("shared/config/.env"), "A=1").unwrap();
        let dirs = ["log".to_string(), "storage".into(), format!("{AWKWARD}/d")];
        let files = ["config/.env".to_string()];
        let layout = Layout::new(deploy_to.to_str().unwrap());
        let script = link_shared(&layout, &id(), &dirs, &files);
        for _ in 0..2 {
            let (code, out) = sh(base.path(), &script, b"");
            assert_eq!(code, 0, "{out}");
        }
        for path in dirs.iter().chain(&files) {
            let link = fs::read_link(r.join(path)).unwrap();
            assert_eq!(link, deploy_to.join("shared").join(path), "{path}");
        }
        assert!(deploy_to.join("shared/storage").is_dir());
        assert!(deploy_to.join("shared").join(AWKWARD).join("d").is_dir());
        assert!(!deploy_to.join("shared/storage/placeholder").exists());
        assert_eq!(fs::read_to_string(r.join("config/.env")).unwrap(), "A=1");
        assert!(
            base.path().join("elsewhere").is_dir(),
            "a symlink is removed, never followed"
        );
        assert!(!base.path().join("pwned").exists());
    }

    #[test]
    fn a_shared_path_never_goes_through_a_symlink_in_the_release() {
        let base = tempfile::tempdir().unwrap();
        let deploy_to = base.path().join("app");
        let r = release(&deploy_to);
        let outside = base.path().join("outside");
        fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, r.join("config")).unwrap();
        let layout = Layout::new(deploy_to.to_str().unwrap());
        let script = link_shared(&layout, &id(), &[], &["config/.env".to_string()]);
        let (code, out) = sh(base.path(), &script, b"");
        assert_eq!(code, 1);
        assert!(out.contains("is not a directory"), "{out}");
        assert!(
            fs::read_dir(&outside).unwrap().next().is_none(),
            "nothing written outside"
        );
    }

    #[test]
    fn files_are_written_whole_with_their_mode_from_stdin() {
        let base = tempfile::tempdir().unwrap();
        let deploy_to = base.path().join("app");
        let layout = Layout::new(deploy_to.to_str().unwrap());
        let dest = format!("shared/{AWKWARD}/.env");
        let script = write_file(&layout, &dest, 0o600, true);
        assert!(!script.contains("SECRET"));
        let (code, out) = sh(base.path(), &script, b"SECRET=1\n");
        assert_eq!((code, out.as_str()), (0, ""));
        let written = deploy_to.join(&dest);
        assert_eq!(fs::read_to_string(&written).unwrap(), "SECRET=1\n");
        let mode = fs::metadata(&written).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
        let left: Vec<_> = fs::read_dir(written.parent().unwrap()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file left");
        assert!(!base.path().join("pwned").exists());

        // A directory in the way is refused, never written into.
        fs::create_dir_all(deploy_to.join("shared/dir/.env")).unwrap();
        let script = write_file(&layout, "shared/dir/.env", 0o600, true);
        let (code, out) = sh(base.path(), &script, b"SECRET=1\n");
        assert_eq!(code, 1);
        assert!(
            out.contains("is a directory") && !out.contains("SECRET"),
            "{out}"
        );
        assert!(
            fs::read_dir(deploy_to.join("shared/dir/.env"))
                .unwrap()
                .next()
                .is_none()
        );
    }

    #[test]
    fn shared_stays_open_and_only_a_secrets_own_directory_is_private() {
        let base = tempfile::tempdir().unwrap();
        let deploy_to = base.path().join("app");
        let layout = Layout::new(deploy_to.to_str().unwrap());
        let mode = |p: &str| {
            fs::metadata(deploy_to.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        let (code, out) = sh(
            base.path(),
            &write_file(&layout, "shared/.env", 0o600, true),
            b"A=1",
        );
        assert_eq!(code, 0, "{out}");
        assert_eq!(mode("shared"), 0o755);
        assert_eq!(mode("shared/.env"), 0o600);
        let (code, out) = sh(
            base.path(),
            &write_file(&layout, "shared/config/keys/db.key", 0o600, true),
            b"k",
        );
        assert_eq!(code, 0, "{out}");
        assert_eq!(mode("shared/config"), 0o755);
        assert_eq!(mode("shared/config/keys"), 0o700);
        assert_eq!(mode("shared/config/keys/db.key"), 0o600);
        let (code, out) = sh(
            base.path(),
            &write_file(&layout, "shared/public/robots.txt", 0o644, false),
            b"r",
        );
        assert_eq!(code, 0, "{out}");
        assert_eq!(mode("shared/public"), 0o755);
        assert_eq!(mode("shared/public/robots.txt"), 0o644);
    }

    /// The temporary name a local user could guess (`<dest>.hoist-tmp.<pid>`
    /// of the shell that writes): planted as a link before the script
    /// starts, it must neither receive the content nor become the file.
    #[test]
    fn a_planted_temporary_name_neither_gets_the_secret_nor_becomes_the_file() {
        use std::io::{BufRead, Write};
        let base = tempfile::tempdir().unwrap();
        let deploy_to = base.path().join("app");
        fs::create_dir_all(deploy_to.join("shared")).unwrap();
        let victim = base.path().join("victim");
        fs::write(&victim, "untouched").unwrap();
        let layout = Layout::new(deploy_to.to_str().unwrap());
        let script = write_file(&layout, "shared/.env", 0o600, true);
        // The shell announces its pid and waits; the link is planted under
        // that pid; then it becomes the script (same pid) and reads the content.
        let mut child = Command::new("sh")
            .args(["-c", "echo $$; read go; exec sh -c \"$1\"", "sh", &script])
            .current_dir(base.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut pid = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut pid)
            .unwrap();
        let planted = deploy_to.join(format!("shared/.env.hoist-tmp.{}", pid.trim()));
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"go\nSECRET=1\n").unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
        let written = deploy_to.join("shared/.env");
        assert!(!fs::symlink_metadata(&written).unwrap().is_symlink());
        assert_eq!(fs::read_to_string(&written).unwrap(), "SECRET=1\n");
    }

    #[test]
    fn a_destination_that_is_a_link_or_in_a_directory_anyone_may_write_is_refused() {
        let base = tempfile::tempdir().unwrap();
        let deploy_to = base.path().join("app");
        fs::create_dir_all(deploy_to.join("shared/open")).unwrap();
        let victim = base.path().join("victim");
        fs::write(&victim, "untouched").unwrap();
        std::os::unix::fs::symlink(&victim, deploy_to.join("shared/.env")).unwrap();
        let layout = Layout::new(deploy_to.to_str().unwrap());
        let (code, out) = sh(
            base.path(),
            &write_file(&layout, "shared/.env", 0o600, true),
            b"S",
        );
        assert_eq!(code, 1);
        assert!(out.contains("shared/.env is a symlink"), "{out}");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");

        fs::set_permissions(
            deploy_to.join("shared/open"),
            fs::Permissions::from_mode(0o1777),
        )
        .unwrap();
        let (code, out) = sh(
            base.path(),
            &write_file(&layout, "shared/open/.env", 0o600, true),
            b"S",
        );
        assert_eq!(code, 1);
        assert!(out.contains("writable by any user"), "{out}");
        assert!(
            fs::read_dir(deploy_to.join("shared/open"))
                .unwrap()
                .next()
                .is_none()
        );
    }

    #[test]
    fn the_shared_check_names_what_cannot_be_linked() {
        let base = tempfile::tempdir().unwrap();
        let deploy_to = base.path().join("app");
        fs::create_dir_all(deploy_to.join("shared/dir-as-file")).unwrap();
        fs::write(deploy_to.join("shared/log"), "").unwrap();
        fs::write(deploy_to.join("shared/present"), "").unwrap();
        let layout = Layout::new(deploy_to.to_str().unwrap());
        let files = [
            "present".to_string(),
            "dir-as-file".into(),
            "gone/.env".into(),
        ];
        let script = check_shared(&layout, &["log".into(), "new".into()], &files);
        let (code, out) = sh(base.path(), &script, b"");
        assert_eq!(code, 0, "{out}");
        assert_eq!(
            SharedProblem::parse(&out),
            [
                SharedProblem::NotADir("log".into()),
                SharedProblem::NotAFile("dir-as-file".into()),
                SharedProblem::Missing("gone/.env".into()),
            ]
        );
        assert!(
            !deploy_to.join("shared/new").exists(),
            "the check writes nothing"
        );
    }

    #[test]
    fn become_answers_parse_and_the_password_is_never_an_argument() {
        assert_eq!(BecomeAnswer::parse("ok\n"), BecomeAnswer::Ok);
        assert_eq!(BecomeAnswer::parse("no-sudo\n"), BecomeAnswer::NoSudo);
        assert_eq!(
            BecomeAnswer::parse(
                "refused\nSorry, try again.\n\nsudo: 1 incorrect password attempt\n"
            ),
            BecomeAnswer::Refused("Sorry, try again.; sudo: 1 incorrect password attempt".into())
        );
        let wrapped = as_user("root", true, "echo hi");
        assert!(
            wrapped.starts_with("exec sudo -S -p '' -u root -- sh -c "),
            "{wrapped}"
        );
        assert!(wrapped.contains("exec </dev/null"));
        assert!(as_user("root", false, "x").contains("sudo -n -u root"));
    }
}
