//! One long-lived `sh` per host, so that the login shell (and an expensive
//! `~/.bashrc`) starts once per host, not once per command.
//!
//! Commands run in it one at a time, framed as `frame` says, uploads too:
//! their bytes follow the command on the shell's stdin. Commands while it
//! is busy get a channel of their own.
//! A command abandoned mid-way (timeout, cancelled run) leaves the shell in an
//! unknown state: the shell is closed, its command's process group is killed,
//! and the next command starts a new shell.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use russh::client::{Handle, Msg};
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Sig};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::exec;
use super::frame::{self, Nonce, Stream};
use super::host_key::Client;
use super::link::Link;
use crate::transport::{Input, Output};

/// A host's persistent shell, or why it has none.
#[derive(Default)]
pub enum Slot {
    /// None yet, or the last one was closed: start one when needed.
    #[default]
    Empty,
    Idle(Box<Shell>),
    /// The host cannot run one (no `setsid`, a forced command, ...):
    /// every command gets its own channel.
    Unavailable,
}

/// How a command in the shell went.
pub enum Ran {
    /// It ran to its end marker. `reusable` is false when anything unexpected
    /// came along; the shell is then closed.
    Done { output: Output, reusable: bool },
    /// The shell was gone before the command started: it can run elsewhere,
    /// with its input (untouched).
    NotStarted(Option<Input>),
    /// The command's input could not be read: the command was abandoned.
    InputFailed(std::io::Error),
    /// The shell ended mid-command. What arrived is kept; there is no status.
    Died(Output),
    /// The channel ended without the server closing it: the connection is gone.
    Lost,
}

/// What is needed to reach the host again: killing an abandoned command
/// takes a channel of its own.
#[derive(Clone)]
pub struct Reach {
    pub handle: Arc<Handle<Client>>,
    pub sessions: Arc<Semaphore>,
    /// Bounds the shell's start-up and each step of cleaning up after it.
    pub limit: Duration,
    /// The connection's socket: an input is fed only as fast as it leaves.
    pub link: Link,
}

/// Of what a starting shell prints, the last bytes kept while looking for
/// its ready line (which a chunk may split).
const LOGIN_NOISE_KEPT: usize = 64 * 1024;

/// The most of an input handed to the session and not yet taken by the
/// socket. Enough to keep the socket busy (the kernel's own send buffer
/// holds more), small enough that hundreds of uploads at once stay small:
/// russh encrypts what it is handed into one buffer per connection, which
/// keeps its largest size for the connection's life (64 KiB in flight and
/// 64 KiB pieces grew it to about 140 KB a host, 140 MB at 1,000 hosts).
const IN_FLIGHT: u64 = 16 * 1024;

/// The most of an input handed to the session at once.
const PIECE: usize = 16 * 1024;

pub struct Shell {
    tx: Arc<ChannelWriteHalf<Msg>>,
    /// Frames every command sent to the shell (see `frame::START`).
    key: Nonce,
    /// Taken only by `Drop`, which may still need to read.
    rx: Option<ChannelReadHalf>,
    reach: Reach,
    /// The shell's session counts against the host's session limit.
    session: Option<OwnedSemaphorePermit>,
    /// The command in flight, if any.
    running: Option<Running>,
}

struct Running {
    stdout: Stream,
    stderr: Stream,
}

impl Shell {
    /// Opens a channel and starts the shell in it through the login shell,
    /// waiting until it is ready for commands: as long as the caller's own
    /// deadline allows. A login shell that is slow to start (a heavy
    /// ~/.bashrc on a loaded host) is no reason to give up the shell for
    /// the rest of the run, which would pay that start-up again for every
    /// command. `None`: the shell did not come up (or the connection is gone).
    pub async fn start(reach: &Reach) -> Option<Shell> {
        let session = Arc::clone(&reach.sessions).acquire_owned().await.ok();
        let channel = reach.handle.channel_open_session().await.ok()?;
        let (rx, tx) = channel.split();
        // From here on, dropping `shell` closes the channel.
        let mut shell = Shell {
            tx: Arc::new(tx),
            key: Nonce::new(),
            rx: Some(rx),
            reach: reach.clone(),
            session,
            running: None,
        };
        let key = shell.key.clone();
        shell.tx.exec(true, frame::start(&key)).await.ok()?;
        shell.wait_ready(&key).await.then_some(shell)
    }

    /// Reads until both streams said ready; false if the channel ends first.
    async fn wait_ready(&mut self, nonce: &Nonce) -> bool {
        let rx = self.rx.as_mut().expect("rx is only taken on drop");
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        // What the login shell prints before the ready line is not kept:
        // only enough of it to find the line.
        let seen = |stream: &mut Vec<u8>, data: &[u8]| {
            stream.extend_from_slice(data);
            let over = stream.len().saturating_sub(LOGIN_NOISE_KEPT);
            stream.drain(..over);
        };
        while !(frame::is_ready(nonce, &stdout) && frame::is_ready(nonce, &stderr)) {
            match rx.wait().await {
                Some(ChannelMsg::Data { data }) => seen(&mut stdout, &data),
                Some(ChannelMsg::ExtendedData { data, ext: 1 }) => seen(&mut stderr, &data),
                Some(ChannelMsg::Failure | ChannelMsg::Eof | ChannelMsg::Close) | None => {
                    return false;
                }
                Some(ChannelMsg::ExitStatus { .. } | ChannelMsg::ExitSignal { .. }) => {
                    return false;
                }
                Some(_) => {}
            }
        }
        true
    }

    /// Runs `quoted` (a script quoted as one sh word), its `input` sent
    /// right after it, keeping the last `keep` bytes of each output stream.
    /// If this future is dropped before the command ends, dropping the
    /// shell cleans up.
    pub async fn run(&mut self, quoted: &str, input: Option<Input>, keep: usize) -> Ran {
        let nonce = Nonce::new();
        let command = frame::run(&nonce, quoted, input.as_ref().map(|i| i.len));
        let text = frame::input(&self.key, &command);
        self.running = Some(Running {
            stdout: Stream::stdout(&nonce, keep),
            stderr: Stream::stderr(&nonce, keep),
        });
        if self.tx.data_bytes(text.into_bytes()).await.is_err() {
            self.running = None;
            return Ran::NotStarted(input);
        }
        let fed_input = input.is_some();
        let tx = Arc::clone(&self.tx);
        let link = self.reach.link.clone();
        let feeding = async move {
            let Some(input) = input else { return Ok(()) };
            let mut chunks = input.exact();
            let base = link.sent();
            let mut fed = 0u64;
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk?;
                for at in (0..chunk.len()).step_by(PIECE) {
                    let piece = chunk.slice(at..(at + PIECE).min(chunk.len()));
                    link.sent_at_least(base + fed.saturating_sub(IN_FLIGHT))
                        .await;
                    fed += piece.len() as u64;
                    // Also waits for the server's window.
                    // A channel that takes no more has ended: the reading says how.
                    if tx.data_bytes(piece).await.is_err() {
                        return Ok(());
                    }
                }
            }
            Ok(())
        };
        tokio::pin!(feeding);
        let mut fed = false;
        let rx = self.rx.as_mut().expect("rx is only taken on drop");
        let running = self.running.as_mut().expect("set above");
        let mut ended = false;
        while !(running.stdout.is_done() && running.stderr.is_done()) {
            let message = tokio::select! {
                result = &mut feeding, if !fed => {
                    fed = true;
                    if let Err(e) = result {
                        // The host waits for bytes that will never come:
                        // the shell is abandoned (see `Drop`).
                        return Ran::InputFailed(e);
                    }
                    continue;
                }
                message = rx.wait() => message,
            };
            match message {
                Some(ChannelMsg::Data { data }) => running.stdout.push(&data),
                Some(ChannelMsg::ExtendedData { data, ext: 1 }) => running.stderr.push(&data),
                Some(ChannelMsg::Close) => {
                    ended = true;
                    break;
                }
                None => {
                    self.running = None;
                    return Ran::Lost;
                }
                Some(_) => {}
            }
        }
        if !fed {
            // The last chunk went out as the end arrived.
            fed = matches!(
                futures_util::FutureExt::now_or_never(&mut feeding),
                Some(Ok(()))
            );
        }
        let Running { stdout, stderr } = self.running.take().expect("set above");
        if ended {
            if stdout.is_empty() && stderr.is_empty() && !fed_input {
                return Ran::NotStarted(None);
            }
            let (stdout, stderr) = (stdout.finish(), stderr.finish());
            return Ran::Died(Output {
                code: None,
                cut: stdout.cut + stderr.cut,
                stdout: stdout.bytes,
                stderr: stderr.bytes,
            });
        }
        let (stdout, stderr) = (stdout.finish(), stderr.finish());
        let code = stdout.status();
        // An input not sent whole when the command ended would be read by
        // the shell as its next command (and end it): the shell goes.
        let whole = fed || !fed_input;
        Ran::Done {
            reusable: whole && code.is_some() && !stdout.trailing && !stderr.trailing,
            output: Output {
                code,
                cut: stdout.cut + stderr.cut,
                stdout: stdout.bytes,
                stderr: stderr.bytes,
            },
        }
    }

    /// Ends an idle shell and waits until the server has let its session
    /// go, so that a host granting one session (`MaxSessions 1`) can open
    /// another at once. True once it has; false if the server did not
    /// close the channel within `reach.limit`.
    ///
    /// EOF ends the shell's `read` loop; sshd then sends the exit status and
    /// closes the channel, russh answers with our close, and sshd frees the
    /// session once it has both. The close must be the server's: after one
    /// of ours, russh forgets the channel, so the server's close never
    /// reaches `wait` (nor does `wait` end), and waiting for it hangs.
    pub async fn end(mut self) -> bool {
        let Some(mut rx) = self.rx.take() else {
            return false;
        };
        if self.tx.eof().await.is_err() {
            return false;
        }
        let closed = async {
            loop {
                match rx.wait().await {
                    Some(ChannelMsg::Close) => return true,
                    None => return false,
                    Some(_) => {}
                }
            }
        };
        let limit = self.reach.limit;
        if !tokio::time::timeout(limit, closed).await.unwrap_or(false) {
            return false;
        }
        // sshd frees the session when it next collects its channels, after
        // reading our close: by the time it answers what we send after it.
        let answered = tokio::time::timeout(limit, self.reach.handle.send_ping()).await;
        matches!(answered, Ok(Ok(())))
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let tx = Arc::clone(&self.tx);
        let session = self.session.take();
        let abandoned = self.running.take().zip(self.rx.take());
        let reach = self.reach.clone();
        runtime.spawn(async move {
            let Some((running, rx)) = abandoned else {
                // Idle: EOF ends `sh -s`. What earlier commands left running
                // (with their output redirected) is not touched.
                let _ = tx.eof().await;
                let _ = tx.close().await;
                return;
            };
            abandon(running, rx, &tx, session, &reach).await;
        });
    }
}

/// Ends a command nobody waits for any more, as sshd's SIGTERM ends a command
/// on its own channel: the shell's process group (the shell and its `cat`s)
/// is signalled through the channel and the channel closed; the command's own
/// process group is sent SIGTERM by a `kill` on a new channel. (sshd refuses
/// signals for root logins; the `kill` works for any user.)
async fn abandon(
    mut running: Running,
    mut rx: ChannelReadHalf,
    tx: &ChannelWriteHalf<Msg>,
    session: Option<OwnedSemaphorePermit>,
    reach: &Reach,
) {
    // The pid line comes first, right after the command was sent.
    let _ = tokio::time::timeout(reach.limit, async {
        while running.stdout.pid().is_none() && !running.stdout.is_done() {
            match rx.wait().await {
                Some(ChannelMsg::Data { data }) => running.stdout.push(&data),
                Some(ChannelMsg::Close) | None => break,
                Some(_) => {}
            }
        }
    })
    .await;
    let _ = tx.signal(Sig::TERM).await;
    let _ = tx.close().await;
    drop(session);
    let Some(pid) = running.stdout.pid().filter(|_| !running.stdout.is_done()) else {
        return;
    };
    let kill = async {
        let _session = reach.sessions.acquire().await;
        let channel = reach.handle.channel_open_session().await.ok()?;
        let command = format!("sh -c 'kill -s TERM -- -{pid} 2>/dev/null'");
        exec::run(channel, command, None, 4096).await.ok()
    };
    let _ = tokio::time::timeout(reach.limit, kill).await;
}
