//! Host scripts run here as on a host: `sh -c` under dash and, when
//! installed, busybox (its shell and its tools only). For the tests of
//! every script hoist runs on hosts: the engine's and the shell's frame.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub(crate) struct Shell {
    pub name: &'static str,
    program: String,
    args: &'static [&'static str],
    path: Option<PathBuf>,
    _bin: Option<tempfile::TempDir>,
}

pub(crate) struct Ran {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

pub(crate) fn shells() -> Vec<Shell> {
    let mut all = vec![Shell {
        name: "sh",
        program: "sh".into(),
        args: &["-c"],
        path: None,
        _bin: None,
    }];
    let found = Command::new("sh")
        .args(["-c", "command -v busybox"])
        .output()
        .unwrap();
    let busybox = String::from_utf8(found.stdout).unwrap().trim().to_string();
    if busybox.is_empty() {
        return all;
    }
    let list = Command::new(&busybox).arg("--list").output().unwrap();
    let bin = tempfile::tempdir().unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        std::os::unix::fs::symlink(&busybox, bin.path().join(applet)).unwrap();
    }
    all.push(Shell {
        name: "busybox",
        program: busybox,
        args: &["sh", "-c"],
        path: Some(bin.path().to_path_buf()),
        _bin: Some(bin),
    });
    all
}

impl Shell {
    /// Runs `script` in `dir` (where an injected `touch` would land).
    pub(crate) fn run(&self, dir: &Path, script: &str, stdin: &[u8]) -> Ran {
        let mut cmd = Command::new(&self.program);
        cmd.args(self.args)
            .arg(script)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(path) = &self.path {
            cmd.env("PATH", path);
        }
        let mut child = cmd.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        let bytes = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&bytes);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Ran {
    /// Standard output as text.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}
