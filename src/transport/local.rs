//! The local transport: the same scripts, run with `sh -c` on this machine.
//! A local host keeps its whole filesystem under its `root`, so deploy_to
//! becomes `<root>/<deploy_to>`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::{Input, Output, Stream, Transport, TransportError};

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
    async fn exec(
        &self,
        script: &str,
        stdin: Option<Input>,
        timeout: Duration,
    ) -> Result<Output, TransportError> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A remote process never sees the become password (it reaches sudo on stdin).
            .env_remove("HOIST_BECOME_PASSWORD")
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
            let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
            let (_, r1, r2) = tokio::join!(
                feed,
                out.read_to_end(&mut stdout),
                err.read_to_end(&mut stderr)
            );
            r1.and(r2)
                .map_err(|e| TransportError::Other(format!("{}: {e}", self.name)))?;
            let status = child
                .wait()
                .await
                .map_err(|e| TransportError::Other(format!("{}: {e}", self.name)))?;
            Ok(Output {
                code: status.code().map(|c| c as u32),
                stdout,
                stderr,
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
    async fn times_out() {
        let host = LocalHost::new("l");
        let err = host
            .exec("sleep 5", None, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(matches!(err, TransportError::Timeout { .. }));
    }
}
