//! The local transport: the same scripts, run with `sh -c` on this machine.
//! A local host keeps its whole filesystem under its `root`, so deploy_to
//! becomes `<root>/<deploy_to>`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use super::{Chunk, Input, Output, Stream, Tail, Transport, TransportError};

/// How long a stopped command has after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

pub struct LocalHost {
    name: String,
}

impl LocalHost {
    pub fn new(name: &str) -> LocalHost {
        LocalHost {
            name: name.to_string(),
        }
    }

    /// Where a host's absolute `deploy_to` lives under its `root`.
    pub fn deploy_path(root: &Path, deploy_to: &str) -> PathBuf {
        root.join(deploy_to.trim_start_matches('/'))
    }
}

#[async_trait]
impl Transport for LocalHost {
    async fn exec_keeping(
        &self,
        script: &str,
        stdin: Option<Input>,
        timeout: Duration,
        keep: usize,
    ) -> Result<Output, TransportError> {
        let mut command = Command::new("sh");
        // A host's command never sees hoist's secrets (the become password
        // reaches sudo on stdin).
        crate::secret_env::scrub(command.as_std_mut());
        let mut child = command
            .arg("-c")
            .arg(script)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| TransportError::Other(format!("{}: cannot start sh: {e}", self.name)))?;
        let feed = {
            let pipe = child.stdin.take();
            async move {
                if let (Some(input), Some(mut pipe)) = (stdin, pipe) {
                    // A command that stops reading early is its own failure,
                    // reported by its exit status; so is a short input.
                    let mut chunks = input.exact();
                    while let Some(Ok(chunk)) = chunks.next().await {
                        if pipe.write_all(&chunk).await.is_err() {
                            break;
                        }
                    }
                    let _ = pipe.shutdown().await;
                }
            }
        };
        let mut out = child.stdout.take().expect("piped");
        let mut err = child.stderr.take().expect("piped");
        let run = async {
            let (_, r1, r2) =
                tokio::join!(feed, read_tail(&mut out, keep), read_tail(&mut err, keep));
            let error = |e| TransportError::Other(format!("{}: {e}", self.name));
            let ((stdout, out_cut), (stderr, err_cut)) = (r1.map_err(error)?, r2.map_err(error)?);
            let status = child.wait().await.map_err(error)?;
            Ok(Output {
                code: status.code().map(|c| c as u32),
                stdout,
                stderr,
                cut: out_cut + err_cut,
            })
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::Timeout {
                what: format!("command on {}", self.name),
                after: timeout,
            }),
        }
    }

    async fn stream(
        &self,
        script: &str,
        sink: UnboundedSender<Chunk>,
        stop: CancellationToken,
    ) -> Result<Option<u32>, TransportError> {
        let mut command = Command::new("sh");
        // As in `exec`: hoist's secrets stay out of the host's command.
        crate::secret_env::scrub(command.as_std_mut());
        // A process group of its own: stopping it reaches every process it started.
        let mut child = command
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| TransportError::Other(format!("{}: cannot start sh: {e}", self.name)))?;
        let group = child.id().map(|pid| pid as libc::pid_t);
        let out = child.stdout.take().expect("piped");
        let err = child.stderr.take().expect("piped");
        let pumps = async {
            tokio::join!(
                pump(out, Chunk::Stdout, sink.clone()),
                pump(err, Chunk::Stderr, sink.clone())
            )
        };
        let stopped = tokio::select! {
            _ = pumps => false,
            _ = stop.cancelled() => true,
        };
        if !stopped {
            tokio::select! {
                status = child.wait() => {
                    let status = status.map_err(|e| TransportError::Other(format!("{}: {e}", self.name)))?;
                    return Ok(status.code().map(|c| c as u32));
                }
                _ = stop.cancelled() => {}
            }
        }
        signal_group(group, libc::SIGTERM);
        if tokio::time::timeout(STOP_GRACE, child.wait())
            .await
            .is_err()
        {
            signal_group(group, libc::SIGKILL);
            let _ = child.wait().await;
        }
        Ok(None)
    }

    async fn open_tcp(&self, host: &str, port: u16) -> Result<Box<dyn Stream>, TransportError> {
        let stream = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| TransportError::Unreachable {
                host: format!("{host}:{port}"),
                reason: e.to_string(),
            })?;
        Ok(Box::new(stream))
    }

    async fn close(&self) {}
}

/// Reads `from` to its end, keeping its last `keep` bytes (see [`Tail`]).
async fn read_tail(
    from: &mut (impl AsyncRead + Unpin),
    keep: usize,
) -> std::io::Result<(Vec<u8>, u64)> {
    let mut tail = Tail::new(keep);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await? {
            0 => return Ok(tail.finish()),
            n => tail.push(&buf[..n]),
        }
    }
}

/// Sends what `from` gives to `sink` as it comes.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    wrap: fn(Vec<u8>) -> Chunk,
    sink: UnboundedSender<Chunk>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 || sink.send(wrap(buf[..n].to_vec())).is_err() {
            break;
        }
    }
}

fn signal_group(group: Option<libc::pid_t>, signal: libc::c_int) {
    if let Some(pgid) = group.filter(|&p| p > 0) {
        // SAFETY: kill(2) with a negative pid signals that process group only.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_scripts_with_stdin_and_status() {
        let host = LocalHost::new("l");
        let out = host
            .exec(
                "cat; echo err >&2; exit 3",
                Some(Input::bytes(&b"hello"[..])),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout, b"hello");
        assert_eq!(out.stderr, b"err\n");
    }

    #[tokio::test]
    async fn streams_output_as_it_comes_and_stop_kills_the_whole_group() {
        let host = LocalHost::new("l");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let script = format!(
            "echo first; (sleep 300 & echo $! > {}; wait) ; echo never",
            pid_file.display()
        );
        let run = tokio::spawn({
            let stop = stop.clone();
            async move { host.stream(&script, tx, stop).await }
        });
        assert_eq!(rx.recv().await, Some(Chunk::Stdout(b"first\n".to_vec())));
        while !pid_file.exists() || std::fs::read_to_string(&pid_file).unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let sleeper: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        stop.cancel();
        assert_eq!(run.await.unwrap().unwrap(), None);
        // Gone, or a zombie waiting to be reaped: not running either way.
        let running = || {
            std::fs::read_to_string(format!("/proc/{sleeper}/stat"))
                .is_ok_and(|stat| !stat.rsplit(") ").next().unwrap_or("").starts_with('Z'))
        };
        for _ in 0..100 {
            if !running() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!running(), "the grandchild sleep was killed too");
    }

    #[tokio::test]
    async fn times_out() {
        let host = LocalHost::new("l");
        let err = host
            .exec("sleep 5", None, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(matches!(err, TransportError::Timeout { .. }));
    }
}
