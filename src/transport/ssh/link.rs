//! The socket under a russh session, watched.
//!
//! russh's session loop awaits each write to its socket with no bound but
//! `inactivity_timeout`, and polls nothing else meanwhile: with a dead peer
//! and a full send buffer it waits for good, its keepalive timer unpolled,
//! and every channel and `disconnect` on that connection waits with it.
//! Here a write that gets no byte out for `stall` fails, which ends the
//! session; `Link::cut` fails the socket on demand, so that closing never
//! depends on the loop taking one more message.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Sleep;
use tokio_util::sync::{CancellationToken, DropGuard, WaitForCancellationFutureOwned};

/// Our handle on a session's socket.
#[derive(Clone, Default)]
pub struct Link {
    cut: CancellationToken,
    /// Cancelled when the session let go of the socket: the loop has ended.
    ended: CancellationToken,
    /// Bytes the socket has taken so far.
    sent: Arc<Sent>,
}

#[derive(Default)]
struct Sent {
    bytes: AtomicU64,
    more: Notify,
}

impl Link {
    /// Fails the socket: the session loop ends at its next read or write.
    pub fn cut(&self) {
        self.cut.cancel();
    }

    pub fn is_ended(&self) -> bool {
        self.ended.is_cancelled()
    }

    pub async fn ended(&self) {
        self.ended.cancelled().await
    }

    /// Bytes the socket has taken so far (everything the session sent).
    pub fn sent(&self) -> u64 {
        self.sent.bytes.load(Ordering::Acquire)
    }

    /// Returns once the socket has taken `bytes` in all, or the session
    /// has ended. Lets a sender keep only a little in the session's own
    /// buffers: russh encrypts all it is handed, up to the server's window
    /// (2 MB for OpenSSH), into one buffer per connection that never shrinks.
    pub async fn sent_at_least(&self, bytes: u64) {
        loop {
            let more = self.sent.more.notified();
            if self.sent() >= bytes || self.is_ended() {
                return;
            }
            tokio::select! {
                () = more => {}
                () = self.ended() => return,
            }
        }
    }

    /// Wraps the session's socket; a write stalled for `stall` fails and
    /// leaves its reason in `lost`.
    pub fn watch<S>(
        &self,
        inner: S,
        stall: Duration,
        lost: Arc<Mutex<Option<String>>>,
    ) -> Watched<S> {
        Watched {
            inner,
            stall,
            give_up: None,
            cut: self.cut.clone(),
            cut_read: Box::pin(self.cut.clone().cancelled_owned()),
            cut_write: Box::pin(self.cut.clone().cancelled_owned()),
            lost,
            sent: Arc::clone(&self.sent),
            _ended: self.ended.clone().drop_guard(),
        }
    }
}

/// Cuts the link when dropped, unless kept: a connect that failed or was
/// abandoned half-way leaves no session task behind.
pub struct CutUnlessKept(Option<Link>);

impl CutUnlessKept {
    pub fn new(link: &Link) -> CutUnlessKept {
        CutUnlessKept(Some(link.clone()))
    }

    pub fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for CutUnlessKept {
    fn drop(&mut self) {
        if let Some(link) = self.0.take() {
            link.cut();
        }
    }
}

pub struct Watched<S> {
    inner: S,
    stall: Duration,
    /// When the write waiting now gives up; `None` while bytes move.
    give_up: Option<Pin<Box<Sleep>>>,
    cut: CancellationToken,
    // One each: the read and the write side may be polled with different wakers.
    cut_read: Pin<Box<WaitForCancellationFutureOwned>>,
    cut_write: Pin<Box<WaitForCancellationFutureOwned>>,
    lost: Arc<Mutex<Option<String>>>,
    sent: Arc<Sent>,
    _ended: DropGuard,
}

fn cut_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection closed by hoist",
    )
}

impl<S> Watched<S> {
    /// Passes `poll` on, failing it once the socket has taken nothing for `stall`.
    fn bounded<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
        moved: impl Fn(&T) -> bool,
    ) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(Ok(value)) => {
                if moved(&value) {
                    self.give_up = None;
                }
                Poll::Ready(Ok(value))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let stall = self.stall;
                let give_up = self
                    .give_up
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
                if give_up.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let why = format!(
                    "nothing could be sent for {}: the network or the host is down",
                    humantime::format_duration(stall)
                );
                if let Ok(mut lost) = self.lost.lock() {
                    lost.get_or_insert_with(|| why.clone());
                }
                // The loop may be reading next: fail that too.
                self.cut.cancel();
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why)))
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.cut_read.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.cut_write.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(cut_error()));
        }
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            this.sent.bytes.fetch_add(n as u64, Ordering::AcqRel);
            this.sent.more.notify_waiters();
        }
        this.bounded(cx, poll, |n| *n > 0)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.cut_write.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(cut_error()));
        }
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.bounded(cx, poll, |_| true)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Nothing more goes out on a failed link; dropping the socket closes it.
        if this.cut.is_cancelled() {
            return Poll::Ready(Ok(()));
        }
        let poll = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.bounded(cx, poll, |_| true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn watched(
        stall: Duration,
    ) -> (
        Link,
        Watched<tokio::io::DuplexStream>,
        tokio::io::DuplexStream,
    ) {
        let (ours, theirs) = tokio::io::duplex(1024);
        let link = Link::default();
        let lost = Arc::new(Mutex::new(None));
        (link.clone(), link.watch(ours, stall, lost), theirs)
    }

    #[tokio::test]
    async fn a_write_that_moves_nothing_fails_after_the_stall() {
        let (link, mut socket, _peer) = watched(Duration::from_millis(200));
        let started = std::time::Instant::now();
        let err = socket.write_all(&[0; 4096]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(socket);
        assert!(link.is_ended());
    }

    #[tokio::test]
    async fn a_slow_reader_is_not_a_stall() {
        let (_link, mut socket, mut peer) = watched(Duration::from_millis(300));
        let reader = tokio::spawn(async move {
            let mut buf = [0; 512];
            let mut total = 0;
            while total < 8192 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                total += tokio::io::AsyncReadExt::read(&mut peer, &mut buf)
                    .await
                    .unwrap();
            }
        });
        socket.write_all(&[0; 8192]).await.unwrap();
        reader.await.unwrap();
    }

    #[tokio::test]
    async fn a_cut_fails_a_waiting_read() {
        let (link, mut socket, _peer) = watched(Duration::from_secs(60));
        let read = tokio::spawn(async move {
            let mut buf = [0; 16];
            tokio::io::AsyncReadExt::read(&mut socket, &mut buf).await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        link.cut();
        let err = read.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);
    }
}
