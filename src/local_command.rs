//! Running a local command that answers hoist (an inventory command, a
//! secret store's) to its end within a time: none of hoist's own secrets in
//! its environment, no stdin, both outputs read whole while it runs.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How the command ended.
pub(crate) struct Ran {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Ran {
    /// "exited with code N" or "was killed by a signal".
    pub(crate) fn how(&self) -> String {
        match self.status.code() {
            Some(code) => format!("exited with code {code}"),
            None => "was killed by a signal".to_string(),
        }
    }
}

/// Why it did not end.
pub(crate) enum NotRun {
    Start(std::io::Error),
    /// Still running after the time given; it was killed.
    TimedOut,
    Wait(std::io::Error),
}

/// Runs `command` to its end, killing it after `timeout`.
pub(crate) fn output_within(command: &mut Command, timeout: Duration) -> Result<Ran, NotRun> {
    let mut child = crate::secret_env::scrub(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NotRun::Start)?;
    let reader = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = reader(Box::new(child.stdout.take().expect("piped")));
    let stderr = reader(Box::new(child.stderr.take().expect("piped")));
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(NotRun::TimedOut);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(NotRun::Wait(e)),
        }
    };
    Ok(Ran {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned(),
    })
}
