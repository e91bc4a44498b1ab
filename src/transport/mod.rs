//! How hoist reaches a host: one small trait, an SSH and a local implementation.
//! The engine only ever sends shell scripts (built in `remote`) and byte streams.

pub mod local;
pub mod ssh;

use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

/// What a finished remote command left behind.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// `None` when the command ended without an exit status (killed by a signal).
    pub code: Option<u32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Bytes fed to a remote command's standard input.
pub type Stdin = Box<dyn AsyncRead + Send + Unpin>;

/// Output of a streamed command, as it arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

/// A bidirectional byte stream (e.g. a direct-tcpip channel).
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

#[async_trait]
pub trait Transport: Send + Sync {
    /// Runs `script` with `sh -c` on the host. `stdin`, when given, is streamed
    /// to the command and then closed. The whole command is bounded by `timeout`.
    async fn exec(
        &self,
        script: &str,
        stdin: Option<Stdin>,
        timeout: Duration,
    ) -> Result<Output, TransportError>;

    /// Runs `script` with `sh -c` (no stdin), sending its output to `sink`
    /// as it arrives, until it ends or `stop` is cancelled. Then every
    /// process it started on the host (its own process group) is killed
    /// before this returns: nothing is left running. No timeout, so that a
    /// `tail -F` runs until stopped; a dead host ends it through the
    /// connection's keepalives. Returns the exit code (`None` when killed).
    async fn stream(
        &self,
        script: &str,
        sink: UnboundedSender<Chunk>,
        stop: CancellationToken,
    ) -> Result<Option<u32>, TransportError>;

    /// Opens a TCP connection to `host:port` as seen from the host
    /// (a direct-tcpip channel over SSH; a plain socket for local hosts).
    async fn open_tcp(&self, host: &str, port: u16) -> Result<Box<dyn Stream>, TransportError>;

    /// Closes the connection; every channel is closed first. Idempotent,
    /// and bounded: a dead link is dropped, not waited for.
    async fn close(&self);

    /// Checks that the host grants `needed` sessions at once on this
    /// connection (a deploy holds [`DEPLOY_SESSIONS`]), so that a low
    /// `MaxSessions` fails preflight instead of the upload. Call it while
    /// nothing else runs on the host. Bounded by the caller (it may start
    /// the persistent shell, whose login can be slow on a loaded host).
    async fn check_sessions(&self, needed: usize) -> Result<(), TransportError> {
        let _ = needed;
        Ok(())
    }
}

/// Sessions a deploy holds on one host at once: the persistent shell and
/// the upload's channel.
pub const DEPLOY_SESSIONS: usize = 2;

/// Failures of the connection itself, typed because the engine acts on them.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(
        "host key for {host} does not match: the server offered {key_type} {fingerprint}, but {expected}; refusing to connect (possible man-in-the-middle)"
    )]
    HostKeyMismatch {
        host: String,
        key_type: String,
        fingerprint: String,
        /// Where the expected key came from, e.g. "~/.ssh/known_hosts:12 has another key" or "the pin is SHA256:...".
        expected: String,
    },
    #[error(
        "host key for {host} is unknown ({key_type} {fingerprint}) and host_key_checking is strict; add it to known_hosts, pin it with host_key, or use host_key_checking = \"accept-new\""
    )]
    HostKeyUnknown {
        host: String,
        key_type: String,
        fingerprint: String,
    },
    #[error("cannot reach {host}: {reason}")]
    Unreachable { host: String, reason: String },
    #[error("authentication as {user}@{host} failed (tried: {tried})")]
    Auth {
        host: String,
        user: String,
        tried: String,
    },
    #[error("{what} timed out after {}", humantime::format_duration(*after))]
    Timeout { what: String, after: Duration },
    #[error("connection to {host} lost: {reason}")]
    Disconnected { host: String, reason: String },
    #[error(
        "{host} refused session {} of the {needed} hoist needs at once on one connection ({reason}); raise MaxSessions in its sshd_config (OpenSSH's default is 10)",
        granted + 1
    )]
    TooFewSessions {
        host: String,
        /// Sessions open when the next one was refused.
        granted: usize,
        needed: usize,
        reason: String,
    },
    #[error("{0}")]
    Other(String),
}

impl TransportError {
    /// Key-related failures: nothing must be sent to such a host.
    pub fn is_host_key(&self) -> bool {
        matches!(
            self,
            TransportError::HostKeyMismatch { .. } | TransportError::HostKeyUnknown { .. }
        )
    }
}
