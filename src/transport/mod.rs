//! How hoist reaches a host: one small trait, an SSH and a local implementation.
//! The engine only ever sends shell scripts (built in `remote`) and byte streams.

pub mod local;
pub mod ssh;

use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::stream::{self, BoxStream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

/// What a finished remote command left behind.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// `None` when the command ended without an exit status (killed by a signal).
    pub code: Option<u32>,
    /// The last bytes of each stream, at most what the command was run
    /// keeping ([`KEEP`] unless said otherwise).
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Bytes that came before those kept, on both streams: not held.
    pub cut: u64,
}

/// The most of each output stream of one host command kept in memory (the
/// last bytes: a hook's last lines say why it failed). A host sends what
/// it likes; this is what it can cost.
pub const KEEP: usize = 32 * 1024 * 1024;

/// One output stream as it arrives, kept to its last `keep` bytes. While
/// reading it may hold half as much again, so that dropping the oldest
/// bytes is not done for every chunk.
#[derive(Debug)]
pub struct Tail {
    bytes: Vec<u8>,
    keep: usize,
    cut: u64,
}

impl Tail {
    pub fn new(keep: usize) -> Tail {
        Tail {
            bytes: Vec::new(),
            keep,
            cut: 0,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        if self.bytes.len() > self.keep + self.keep / 2 {
            self.trim();
        }
    }

    fn trim(&mut self) {
        let over = self.bytes.len().saturating_sub(self.keep);
        self.bytes.drain(..over);
        self.cut += over as u64;
    }

    /// The bytes kept, and how many came before them.
    pub fn finish(mut self) -> (Vec<u8>, u64) {
        self.trim();
        (self.bytes, self.cut)
    }
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

/// A reader of bytes (an artifact file, a test's data).
pub type Stdin = Box<dyn AsyncRead + Send + Unpin>;

/// Output of a streamed command, as it arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

/// Size of the chunks an [`Input`] read from a reader comes in: a few big
/// channel writes per window, and little memory per host.
const CHUNK: usize = 64 * 1024;

/// What a remote command reads on its standard input: exactly `len` bytes,
/// in chunks as they become available. The length is known up front so
/// that the host can read exactly that many from a stream that carries
/// commands too (see `ssh::shell`); a source that ends early or runs long
/// fails the command instead of shifting what follows.
pub struct Input {
    pub chunks: BoxStream<'static, std::io::Result<Bytes>>,
    pub len: u64,
}

impl Input {
    /// Bytes held in memory; every host may share the same ones (a `Bytes`
    /// clone is a reference, and chunks are slices of it, never copies).
    pub fn bytes(data: impl Into<Bytes>) -> Input {
        let data: Bytes = data.into();
        let len = data.len() as u64;
        let chunks = (0..data.len())
            .step_by(CHUNK)
            .map(move |at| Ok(data.slice(at..(at + CHUNK).min(data.len()))));
        Input {
            chunks: Box::pin(stream::iter(chunks)),
            len,
        }
    }

    /// `len` bytes read from `reader` a chunk at a time (a file streamed to
    /// each host without holding it in memory).
    pub fn reader(reader: impl AsyncRead + Send + Unpin + 'static, len: u64) -> Input {
        let chunks = stream::try_unfold(reader, |mut reader| async move {
            let mut chunk = BytesMut::with_capacity(CHUNK);
            while chunk.len() < CHUNK {
                if reader.read_buf(&mut chunk).await? == 0 {
                    break;
                }
            }
            Ok((!chunk.is_empty()).then(|| (chunk.freeze(), reader)))
        });
        Input {
            chunks: Box::pin(chunks),
            len,
        }
    }

    /// The chunks, cut at `len` bytes; a source that ends before is an error.
    pub fn exact(self) -> BoxStream<'static, std::io::Result<Bytes>> {
        use futures_util::StreamExt;
        let len = self.len;
        let state = (self.chunks, 0u64);
        Box::pin(stream::try_unfold(
            state,
            move |(mut chunks, sent)| async move {
                if sent == len {
                    return Ok(None);
                }
                match chunks.next().await {
                    Some(chunk) => {
                        let mut chunk = chunk?;
                        chunk.truncate((len - sent).min(chunk.len() as u64) as usize);
                        let sent = sent + chunk.len() as u64;
                        Ok(Some((chunk, (chunks, sent))))
                    }
                    None => Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("the input ended after {sent} of its {len} bytes"),
                    )),
                }
            },
        ))
    }

    /// `head`'s bytes, then these: one stream (a relayed release's
    /// manifest before its archive).
    pub fn after(self, head: Bytes) -> Input {
        use futures_util::StreamExt;
        let head = Input::bytes(head);
        Input {
            len: head.len + self.len,
            chunks: Box::pin(head.chunks.chain(self.chunks)),
        }
    }

    /// The chunks, each passed to `seen` on its way (progress, counting).
    pub fn inspect(self, mut seen: impl FnMut(&Bytes) + Send + 'static) -> Input {
        use futures_util::StreamExt;
        Input {
            chunks: Box::pin(self.chunks.inspect(move |chunk| {
                if let Ok(chunk) = chunk {
                    seen(chunk);
                }
            })),
            len: self.len,
        }
    }
}

/// A bidirectional byte stream (e.g. a direct-tcpip channel).
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

#[async_trait]
pub trait Transport: Send + Sync {
    /// Runs `script` with `sh -c` on the host. `stdin`, when given, is streamed
    /// to the command and then closed. The whole command is bounded by `timeout`.
    /// The last [`KEEP`] bytes of each output stream are kept.
    async fn exec(
        &self,
        script: &str,
        stdin: Option<Input>,
        timeout: Duration,
    ) -> Result<Output, TransportError> {
        self.exec_keeping(script, stdin, timeout, KEEP).await
    }

    /// [`Transport::exec`], keeping the last `keep` bytes of each stream.
    async fn exec_keeping(
        &self,
        script: &str,
        stdin: Option<Input>,
        timeout: Duration,
        keep: usize,
    ) -> Result<Output, TransportError>;

    /// Runs `script` (no stdin) beside whatever else runs on the
    /// connection, never waiting for it: over SSH in the persistent shell
    /// when that is idle (no new session), else on a session of its own. A
    /// host that grants no more sessions (`MaxSessions`) answers
    /// [`TransportError::TooFewSessions`]. For the dead-man switch's
    /// heartbeats, which must never hold the run up.
    async fn exec_beside(&self, script: &str, timeout: Duration) -> Result<Output, TransportError> {
        self.exec(script, None, timeout).await
    }

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

    /// The host key this connection accepted, as one OpenSSH line
    /// (`ssh-ed25519 AAAA...`); `None` where there is none (local hosts).
    fn host_key(&self) -> Option<String> {
        None
    }

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

/// Sessions a deploy holds on one host at once: the persistent shell, which
/// carries the upload too.
pub const DEPLOY_SESSIONS: usize = 1;

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

#[cfg(test)]
mod tests {
    use super::Tail;

    #[test]
    fn a_tail_keeps_the_last_bytes_and_counts_the_rest() {
        let mut tail = Tail::new(10);
        for chunk in [&b"0123456"[..], b"789abcdef", b"ghij"] {
            tail.push(chunk);
            assert!(tail.bytes.len() <= 15, "never more than half again");
        }
        assert_eq!(tail.finish(), (b"abcdefghij".to_vec(), 10));
        let mut short = Tail::new(10);
        short.push(b"ok\n");
        assert_eq!(short.finish(), (b"ok\n".to_vec(), 0));
        let mut huge = Tail::new(4);
        huge.push(&[b'x'; 1000]);
        assert_eq!(huge.finish(), (b"xxxx".to_vec(), 996));
    }
}
