//! Issue 9, items 1 and 2, over real OpenSSH: a run holds one session per
//! host (counted from sshd's own log), the upload travels in it, and an
//! artifact whose bytes are shell commands never runs, whatever fails while
//! it streams.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::fleet::{FirstOnPath, Fleet};
use crate::support::project::{ndjson, noise, printed};

/// Sessions each server started while `run` ran.
fn sessions_during(f: &Fleet, run: impl FnOnce()) -> Vec<usize> {
    let before: Vec<usize> = f.servers().iter().map(|s| s.sessions_started()).collect();
    run();
    f.servers()
        .iter()
        .zip(before)
        .map(|(s, b)| s.sessions_started() - b)
        .collect()
}

#[test]
fn deploy_rollback_and_status_each_hold_one_session_per_host() {
    // The dead-man switch, off here, adds to a deploy a session beside the
    // run's shell (arming, heartbeats) and a login to confirm each host.
    let f = Fleet::ssh(3)
        .toml("[strategy]\ncanary = 1\ncanary_pause = \"0s\"\ndeadman_timeout = \"0s\"")
        .write();
    let one = vec![1; 3];
    let deploy = || {
        f.hoist(&["deploy", "--yes"]).assert().success();
    };
    assert_eq!(sessions_during(&f, deploy), one, "first deploy");
    let f = f.artifact(&[("README", "v2")]).write();
    let deploy = || {
        f.hoist(&["deploy", "--yes"]).assert().success();
    };
    assert_eq!(sessions_during(&f, deploy), one, "second deploy");
    let rollback = || {
        f.hoist(&["rollback", "--yes"]).assert().success();
    };
    assert_eq!(sessions_during(&f, rollback), one, "rollback");
    let status = || {
        f.hoist(&["status"]).assert().success();
    };
    assert_eq!(sessions_during(&f, status), one, "status");
    let check = || {
        f.hoist(&["check"]).assert().success();
    };
    assert_eq!(sessions_during(&f, check), one, "check");
}

#[test]
fn a_rollout_in_waves_with_uploads_ahead_holds_one_session_per_host() {
    // Waves of one host, each uploading while the one before finishes, and
    // a once hook whose result goes to every host after the first wave.
    // The dead-man switch is off: it adds a session and a login per host.
    let f = Fleet::ssh(3)
        .toml("[hooks]\nbefore_switch_once = [\"true\"]\n[strategy]\ncanary = 0\nbatch = 1\ndeadman_timeout = \"0s\"")
        .write();
    f.hoist(&["deploy", "--yes"]).assert().success();
    // 30 MB that take a while to send, so that the next wave is still
    // uploading when the first one ends and records the once hook's result.
    std::fs::write(f.path().join("build/big.bin"), noise(1, 30 << 20)).unwrap();
    let deploy = || {
        f.hoist(&["deploy", "--yes"]).assert().success();
    };
    assert_eq!(sessions_during(&f, deploy), vec![1; 3]);
}

/// A .tar.gz whose deflate blocks are stored, not compressed: the bytes on
/// the wire are the file's, `touch <owned>;` line after line (about 1 MB),
/// behind a few bytes of gzip and tar header.
fn hostile_artifact(path: &Path, owned: &Path) -> Vec<u8> {
    let line = format!("touch {};\n", owned.display());
    let body = line.repeat(1_000_000 / line.len()).into_bytes();
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::none(),
    );
    let mut tar = tar::Builder::new(gz);
    let mut header = tar::Header::new_gnu();
    header.set_size(body.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "run.sh", &body[..]).unwrap();
    tar.into_inner().unwrap().finish().unwrap();
    let wire = std::fs::read(path).unwrap();
    assert!(
        wire.windows(line.len())
            .filter(|w| *w == line.as_bytes())
            .count()
            > 10_000,
        "the commands travel as they are"
    );
    body
}

/// A `tar` the host finds first on its PATH: it fails as `fail` (a file)
/// says, after taking some of the stream, else it is the real one.
const FAKE_TAR: &str = r#"#!/bin/sh
case $(cat "$(dirname "$0")/fail" 2>/dev/null) in
  kill) head -c 300000 >/dev/null; kill -9 $$ ;;
  full) head -c 300000 >/dev/null; echo "tar: run.sh: Cannot write: No space left on device" >&2; exit 2 ;;
  hang) head -c 300000 >/dev/null; sleep 60 ;;
esac
exec /usr/bin/tar "$@"
"#;

struct Hostile {
    f: Fleet,
    owned: PathBuf,
    body: Vec<u8>,
    fail: PathBuf,
    _bin: FirstOnPath,
}

impl Hostile {
    fn new(ssh: &str) -> Hostile {
        let bin = FirstOnPath::new("tar", FAKE_TAR);
        let f = Fleet::ssh_with(1, bin.setup()).ssh_settings(ssh).write();
        let owned = std::env::temp_dir().join(format!(
            "owned-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let body = hostile_artifact(&f.path().join("payload.tar.gz"), &owned);
        let toml = f.path().join("deploy.toml");
        let text = std::fs::read_to_string(&toml).unwrap();
        let text = text.replace("path = \"build\"", "path = \"payload.tar.gz\"");
        std::fs::write(&toml, text).unwrap();
        Hostile {
            fail: bin.dir().join("fail"),
            f,
            owned,
            body,
            _bin: bin,
        }
    }

    fn tmp_is_empty(&self) -> bool {
        let tmp = self.f.deploy_path("web1").join(".hoist/tmp");
        std::fs::read_dir(tmp).map_or(true, |mut d| d.next().is_none())
    }
}

/// The upload's receiving end fails mid-stream in three ways (tar killed,
/// tar out of space, tar stuck past the command timeout); none of the
/// payload's commands runs, no release appears, and once tar works again
/// the same artifact deploys exactly.
#[test]
fn a_payload_of_shell_commands_never_runs_whatever_fails_mid_upload() {
    let h = Hostile::new("command_timeout = \"10s\"");
    for (fail, phase, sessions) in [
        ("kill", "unpack", 1),
        ("full", "unpack", 1),
        ("hang", "upload", 3),
    ] {
        std::fs::write(&h.fail, fail).unwrap();
        let mut out = None;
        let took = sessions_during(&h.f, || {
            out = Some(
                h.f.hoist(&["deploy", "--yes", "--json"])
                    .assert()
                    .failure()
                    .get_output()
                    .clone(),
            );
        });
        let out = out.unwrap();
        assert!(!h.owned.exists(), "{fail}: the payload ran");
        let failed = ndjson(&out.stdout)
            .into_iter()
            .find(|e| e["event"] == "host_failed" && e["host"] == "web1")
            .unwrap_or_else(|| panic!("{fail}: {}", printed(&out)));
        assert_eq!(failed["phase"], phase, "{fail}: {failed}");
        assert!(
            h.f.releases("web1").is_empty(),
            "{fail}: a release appeared"
        );
        assert!(!h.f.locked("web1"), "{fail}: the lock was freed");
        // Killed or out of space, the rest of the stream was drained and
        // the session went on (freeing the lock); a command stuck past its
        // timeout costs the shell: killing it takes a channel, and freeing
        // the lock a new shell.
        assert_eq!(took, vec![sessions], "{fail}: sessions");
        if fail != "hang" {
            assert!(h.tmp_is_empty(), "{fail}: left in .hoist/tmp");
        }
    }
    std::fs::remove_file(&h.fail).unwrap();
    h.f.hoist(&["deploy", "--yes"]).assert().success();
    assert_eq!(h.f.read_current("web1", "run.sh").into_bytes(), h.body);
    assert!(h.tmp_is_empty());
    assert!(!h.owned.exists(), "the payload ran");
}

/// A real full disk (a tiny tmpfs, filled by a local hook once preflight
/// has found room): the unpack fails mid-stream, nothing runs.
#[test]
fn a_payload_of_shell_commands_never_runs_when_the_disk_fills_mid_upload() {
    let h = Hostile::new("");
    let deploy_to = h.f.deploy_path("web1");
    std::fs::create_dir_all(&deploy_to).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(&deploy_to)
        .output();
    if !mounted.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(deploy_to.clone());
    let toml = h.f.path().join("deploy.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    text.push_str(&format!(
        "\n[hooks]\nbefore_batch_local = [\"head -c 2400000 /dev/zero > '{}/filler'\"]\n",
        deploy_to.display()
    ));
    std::fs::write(&toml, text).unwrap();
    let out =
        h.f.hoist(&["deploy", "--yes", "--json"])
            .assert()
            .failure()
            .get_output()
            .clone();
    assert!(!h.owned.exists(), "the payload ran");
    let failed = ndjson(&out.stdout)
        .into_iter()
        .find(|e| e["event"] == "host_failed" && e["host"] == "web1")
        .unwrap_or_else(|| panic!("{}", printed(&out)));
    assert_eq!(failed["phase"], "unpack", "{failed}");
    assert!(h.f.releases("web1").is_empty());
    assert!(h.tmp_is_empty());
    assert!(!h.f.locked("web1"));
}
