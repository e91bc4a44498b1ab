//! Getting hoist onto a machine: the man pages, the release archive
//! `examples/package.sh` makes, `.github/install.sh` against a release served
//! on 127.0.0.1, the setup-hoist action's step, and the .deb.
//! (`cargo install --locked --path .` is checked by tests/run.sh, after the
//! suite: it must not rebuild target/debug/hoist under running tests.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

use sha2::{Digest, Sha256};

use crate::support::http::Http;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `hoist --help`'s commands, without `help`.
fn commands() -> Vec<String> {
    let out = run(Command::new(env!("CARGO_BIN_EXE_hoist")).arg("--help"));
    let help = stdout(&out);
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // A wrapped description goes on further right than the names.
        .filter(|l| l.starts_with("  ") && !l[2..].starts_with(' '))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

/// The long flags `hoist COMMAND --help` lists.
fn long_flags(command: &str) -> Vec<String> {
    let out = run(Command::new(env!("CARGO_BIN_EXE_hoist")).args([command, "--help"]));
    let flag = regex_lite::Regex::new(r"^\s+(?:-\w, )?--([a-z0-9-]+)").unwrap();
    stdout(&out)
        .lines()
        .filter_map(|l| flag.captures(l).map(|c| c[1].to_string()))
        .collect()
}

/// examples/package.sh's builds share target/<profile>/assets: one at a time.
static PACKAGE: Mutex<()> = Mutex::new(());

/// The release archive `examples/package.sh --profile dev` makes for this
/// machine, built once for every test here.
fn archive() -> &'static [u8] {
    static ARCHIVE: OnceLock<Vec<u8>> = OnceLock::new();
    ARCHIVE.get_or_init(|| {
        let _one = PACKAGE.lock().unwrap_or_else(|e| e.into_inner());
        let out = run(Command::new("sh")
            .arg(repo().join("examples/package.sh"))
            .args(["--profile", "dev"]));
        assert!(out.status.success(), "package.sh: {}", text(&out));
        let path = stdout(&out).lines().last().unwrap().to_string();
        assert!(path.ends_with(".tar.gz"), "{path}");
        std::fs::read(&path).unwrap()
    })
}

/// The asset install.sh must pick on this machine.
fn this_asset() -> String {
    format!("hoist-{}-unknown-linux-musl.tar.gz", std::env::consts::ARCH)
}

/// A release laid out as GitHub serves one: download/v<V>/<asset> and
/// SHA256SUMS beside it.
fn release(asset: &str, bytes: &[u8], sums: &str) -> Http {
    let dir = format!("/releases/download/v{VERSION}");
    Http::serve(&[
        (&format!("{dir}/{asset}"), bytes.to_vec()),
        (&format!("{dir}/SHA256SUMS"), sums.as_bytes().to_vec()),
    ])
}

fn sums_for(asset: &str, bytes: &[u8]) -> String {
    format!(
        "{}  hoist_{VERSION}-1_amd64.deb\n{}  {asset}\n",
        sha256(b"some other file"),
        sha256(bytes)
    )
}

fn install_script(http: &Http, args: &[&str]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg(repo().join(".github/install.sh"))
        .args(args)
        .env("HOIST_BASE_URL", http.url("/releases"))
        .env_remove("HOIST_REPO")
        .env_remove("HOIST_VERSION")
        .env_remove("HOIST_PREFIX")
        .env_remove("HOIST_TARGET");
    cmd
}

fn hoist_version(bin: &Path) -> String {
    let out = run(Command::new(bin).arg("--version"));
    assert!(out.status.success(), "{}: {}", bin.display(), text(&out));
    stdout(&out).trim().to_string()
}

#[test]
fn man_pages_one_per_command_say_what_help_says() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(cargo()
        .current_dir(repo())
        .args(["run", "--locked", "--quiet", "--example", "man", "--"])
        .arg(dir.path()));
    assert!(out.status.success(), "examples/man: {}", text(&out));

    let commands = commands();
    assert!(commands.len() > 10, "{commands:?}");
    assert!(dir.path().join("hoist.1").is_file());
    for command in &commands {
        let page = dir.path().join(format!("hoist-{command}.1"));
        let roff = std::fs::read_to_string(&page)
            .unwrap_or_else(|e| panic!("no man page for `hoist {command}`: {e}"));
        // roff writes every '-' as '\-' and every ' as '\*(Aq'.
        let page_text = roff.replace("\\-", "-").replace("\\*(Aq", "'");
        for flag in long_flags(command) {
            assert!(
                page_text.contains(&format!("--{flag}")),
                "`hoist {command} --help` lists --{flag}; hoist-{command}.1 does not"
            );
        }
        let help = stdout(&run(
            Command::new(env!("CARGO_BIN_EXE_hoist")).args([command.as_str(), "--help"])
        ));
        // The first paragraph, as one line (help wraps it to the terminal).
        let about = help
            .lines()
            .take_while(|l| !l.trim().is_empty())
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            page_text
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .contains(&about),
            "hoist-{command}.1 lacks `{about}`"
        );
    }
    if Command::new("man").arg("--version").output().is_ok() {
        let out = run(Command::new("man")
            .arg("-l")
            .arg(dir.path().join("hoist-deploy.1"))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "200"));
        assert!(out.status.success(), "man -l: {}", text(&out));
        let shown = stdout(&out);
        assert!(shown.contains("hoist-deploy"), "{shown}");
        assert!(shown.contains("--lock-wait"), "{shown}");
    }
}

#[test]
fn install_script_installs_a_verified_release_from_a_loopback_server() {
    let asset = this_asset();
    let bytes = archive();
    let http = release(&asset, bytes, &sums_for(&asset, bytes));
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("prefix");

    let out = run(install_script(&http, &["--version", VERSION, "--prefix"]).arg(&prefix));

    assert!(out.status.success(), "install.sh: {}", text(&out));
    assert_eq!(
        hoist_version(&prefix.join("bin/hoist")),
        format!("hoist {VERSION}")
    );
    assert!(prefix.join("share/man/man1/hoist-deploy.1").is_file());
    assert!(
        http.requests()
            .contains(&format!("GET /releases/download/v{VERSION}/{asset}")),
        "{:?}",
        http.requests()
    );
}

#[test]
fn install_script_refuses_a_wrong_checksum_and_installs_nothing() {
    let asset = this_asset();
    let bytes = archive();
    let wrong = format!("{}  {asset}\n", sha256(b"not the archive"));
    let http = release(&asset, bytes, &wrong);
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("prefix");
    let downloads = tmp.path().join("tmp");
    std::fs::create_dir(&downloads).unwrap();

    let out = run(install_script(&http, &["--version", VERSION, "--prefix"])
        .arg(&prefix)
        .env("TMPDIR", &downloads));

    assert!(!out.status.success(), "installed despite a wrong sum");
    let said = text(&out);
    assert!(said.contains("refusing to install"), "{said}");
    assert!(said.contains(&sha256(bytes)), "says what it got: {said}");
    assert!(!prefix.exists(), "the prefix was touched");
    assert_eq!(
        std::fs::read_dir(&downloads).unwrap().count(),
        0,
        "the download was left behind"
    );
}

#[test]
fn install_script_refuses_an_asset_sha256sums_does_not_list_and_keeps_the_old_hoist() {
    let asset = this_asset();
    let bytes = archive();
    let sums = format!("{}  hoist-other.tar.gz\n", sha256(bytes));
    let http = release(&asset, bytes, &sums);
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("prefix");
    std::fs::create_dir_all(prefix.join("bin")).unwrap();
    std::fs::write(prefix.join("bin/hoist"), "the hoist already there").unwrap();

    let out = run(install_script(&http, &["--version", VERSION, "--prefix"]).arg(&prefix));

    assert!(!out.status.success(), "installed an unlisted asset");
    assert!(
        text(&out).contains(&format!("SHA256SUMS has no line for {asset}")),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read_to_string(prefix.join("bin/hoist")).unwrap(),
        "the hoist already there"
    );
    assert_eq!(std::fs::read_dir(prefix.join("bin")).unwrap().count(), 1);
    assert!(!prefix.join("share").exists());
}

/// A directory holding `uname` that answers as `os` on `cpu` would.
fn fake_uname(os: &str, cpu: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        "#!/bin/sh\ncase \"$1\" in -s) echo {os} ;; -m) echo {cpu} ;; *) echo {os} ;; esac\n"
    );
    let path = dir.path().join("uname");
    std::fs::write(&path, script).unwrap();
    set_executable(&path);
    dir
}

fn set_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn path_with(dir: &Path) -> std::ffi::OsString {
    let mut dirs = vec![dir.to_path_buf()];
    dirs.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap()));
    std::env::join_paths(dirs).unwrap()
}

#[test]
fn install_script_asks_for_the_asset_of_the_os_and_cpu() {
    for (os, cpu, version, wanted) in [
        ("Linux", "x86_64", VERSION, "x86_64-unknown-linux-musl"),
        ("Linux", "aarch64", VERSION, "aarch64-unknown-linux-musl"),
        ("Darwin", "arm64", VERSION, "aarch64-apple-darwin"),
        ("Darwin", "x86_64", VERSION, "x86_64-apple-darwin"),
        ("Linux", "amd64", "latest", "x86_64-unknown-linux-musl"),
    ] {
        let dir = if version == "latest" {
            "/releases/latest/download".to_string()
        } else {
            format!("/releases/download/v{VERSION}")
        };
        // SHA256SUMS is there, the asset is not: the script asks, then stops.
        let http = Http::serve(&[(&format!("{dir}/SHA256SUMS"), b"".to_vec())]);
        let uname = fake_uname(os, cpu);
        let tmp = tempfile::tempdir().unwrap();
        let mut args = vec!["--prefix", tmp.path().to_str().unwrap()];
        if version != "latest" {
            args.extend(["--version", version]);
        }
        let out = run(install_script(&http, &args).env("PATH", path_with(uname.path())));
        assert!(!out.status.success());
        let asked = format!("GET {dir}/hoist-{wanted}.tar.gz");
        assert!(
            http.requests().contains(&asked),
            "{os} {cpu}: wanted `{asked}`, got {:?}; {}",
            http.requests(),
            text(&out)
        );
    }

    let http = Http::serve(&[]);
    let uname = fake_uname("Linux", "riscv64");
    let tmp = tempfile::tempdir().unwrap();
    let out = run(
        install_script(&http, &["--prefix", tmp.path().to_str().unwrap()])
            .env("PATH", path_with(uname.path())),
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no hoist release for CPU riscv64")
            && text(&out).contains("cargo install"),
        "{}",
        text(&out)
    );
    assert!(http.requests().is_empty(), "{:?}", http.requests());
}

/// The shell of the setup-hoist action's one step, as the runner runs it
/// (every input reaches it through `env:`, never spliced into the text).
fn action_step() -> String {
    let yml =
        std::fs::read_to_string(repo().join(".github/actions/setup-hoist/action.yml")).unwrap();
    let mut lines = yml.lines().skip_while(|l| l.trim() != "run: |").skip(1);
    let mut script = String::new();
    for line in lines.by_ref() {
        if !line.is_empty() && !line.starts_with("        ") {
            break;
        }
        script.push_str(line.strip_prefix("        ").unwrap_or(""));
        script.push('\n');
    }
    assert!(!script.trim().is_empty(), "no run: block in action.yml");
    script
}

/// A runner's environment for the action's step, with `action_path` as
/// where the runner put the action.
fn runner(action_path: &Path, tmp: &Path) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(action_step())
        .env("GITHUB_ACTION_PATH", action_path)
        .env("RUNNER_TEMP", tmp)
        .env("GITHUB_PATH", tmp.join("github_path"))
        .env("GITHUB_OUTPUT", tmp.join("github_output"))
        .env("HOIST_VERSION", VERSION)
        .env("HOIST_REPO", "")
        .env("HOIST_BASE_URL", "")
        .env("ACTION_REPOSITORY", "")
        .env_remove("GITHUB_WORKSPACE")
        .env_remove("GITHUB_REPOSITORY");
    cmd
}

#[test]
fn setup_hoist_action_installs_the_pinned_version_and_puts_it_on_path() {
    let asset = this_asset();
    let bytes = archive();
    let http = release(&asset, bytes, &sums_for(&asset, bytes));
    let tmp = tempfile::tempdir().unwrap();

    let out = run(
        runner(&repo().join(".github/actions/setup-hoist"), tmp.path())
            .env("HOIST_BASE_URL", http.url("/releases")),
    );

    assert!(out.status.success(), "setup-hoist: {}", text(&out));
    let added = std::fs::read_to_string(tmp.path().join("github_path")).unwrap();
    let bin = PathBuf::from(added.trim());
    assert_eq!(
        hoist_version(&bin.join("hoist")),
        format!("hoist {VERSION}")
    );
    let outputs = std::fs::read_to_string(tmp.path().join("github_output")).unwrap();
    assert_eq!(
        outputs.trim(),
        format!("path={}", bin.join("hoist").display())
    );
}

#[test]
fn setup_hoist_action_downloads_from_the_repository_it_was_used_from() {
    // `uses: acme/hoist/.github/actions/setup-hoist@v9` puts the action here.
    let tmp = tempfile::tempdir().unwrap();
    let checkout = tmp.path().join("_actions/acme/hoist/v9");
    let action = checkout.join(".github/actions/setup-hoist");
    std::fs::create_dir_all(&action).unwrap();
    std::fs::copy(
        repo().join(".github/install.sh"),
        checkout.join(".github/install.sh"),
    )
    .unwrap();
    // A curl that records what it was asked for and fails: nothing leaves
    // this machine.
    let bin = tempfile::tempdir().unwrap();
    let asked = tmp.path().join("curl-asked");
    std::fs::write(
        bin.path().join("curl"),
        format!(
            "#!/bin/sh\nfor a; do last=\"$a\"; done\necho \"$last\" >> '{}'\nexit 22\n",
            asked.display()
        ),
    )
    .unwrap();
    set_executable(&bin.path().join("curl"));

    let out = run(runner(&action, tmp.path()).env("PATH", path_with(bin.path())));

    assert!(!out.status.success());
    let urls = std::fs::read_to_string(&asked).unwrap_or_default();
    assert_eq!(
        urls.lines().next(),
        Some(
            format!("https://github.com/acme/hoist/releases/download/v{VERSION}/SHA256SUMS")
                .as_str()
        ),
        "{}",
        text(&out)
    );
}

#[test]
fn install_scripts_are_posix_sh_and_shellcheck_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let step = tmp.path().join("setup-hoist-step.sh");
    std::fs::write(&step, action_step()).unwrap();
    let scripts = [
        repo().join(".github/install.sh"),
        repo().join("examples/package.sh"),
        step,
    ];
    for script in &scripts {
        let out = run(Command::new("dash").arg("-n").arg(script));
        assert!(out.status.success(), "{}: {}", script.display(), text(&out));
    }
    if Command::new("shellcheck")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped shellcheck: not installed (tests/run.sh installs it)");
        return;
    }
    let out = run(Command::new("shellcheck").args(["-s", "sh"]).args(&scripts));
    assert!(out.status.success(), "shellcheck: {}", text(&out));
}

/// Runs where cargo-deb is installed (it takes minutes to build, so
/// tests/run.sh does not install it). This unpacks the .deb;
/// `examples/package.sh --install` is the full check (dpkg -i, then
/// `man hoist-deploy`), run by the release workflow for every .deb.
#[test]
fn deb_holds_hoist_its_man_pages_and_completions() {
    if Command::new("cargo-deb").arg("--version").output().is_err() {
        eprintln!("skipped: cargo-deb is not installed (cargo install cargo-deb --locked)");
        return;
    }
    let deb = {
        let _one = PACKAGE.lock().unwrap_or_else(|e| e.into_inner());
        let out = run(Command::new("sh")
            .arg(repo().join("examples/package.sh"))
            .args(["--profile", "dev", "--deb"]));
        assert!(out.status.success(), "package.sh --deb: {}", text(&out));
        PathBuf::from(stdout(&out).lines().last().unwrap())
    };
    assert!(deb.to_string_lossy().ends_with(".deb"), "{}", deb.display());

    let root = tempfile::tempdir().unwrap();
    let out = run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(root.path()));
    assert!(out.status.success(), "dpkg-deb -x: {}", text(&out));
    assert_eq!(
        hoist_version(&root.path().join("usr/bin/hoist")),
        format!("hoist {VERSION}")
    );
    let man1 = root.path().join("usr/share/man/man1");
    for command in commands() {
        assert!(
            man1.join(format!("hoist-{command}.1.gz")).is_file(),
            "the .deb lacks hoist-{command}.1.gz"
        );
    }
    assert!(
        root.path()
            .join("usr/share/bash-completion/completions/hoist")
            .is_file()
    );
    let out = run(Command::new("man")
        .arg("-l")
        .arg(man1.join("hoist-deploy.1.gz"))
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "200"));
    assert!(text(&out).contains("--resume"), "{}", text(&out));
}
