//! The SSH transport, on russh: one authenticated connection per host for the
//! whole run. Commands run one at a time in a persistent shell (`shell`),
//! uploads included, so the login shell starts once per host and a run
//! holds one session per host; commands while the shell is busy each get a
//! session channel of their own (`exec`), as does a command whose output is
//! streamed (`stream`). A host that refuses that second session
//! (`MaxSessions 1`) while the shell idles gets the shell's: the shell ends
//! first.
//!
//! Order on connect: the jump hosts, if any (`jump`), each connected like a
//! host; then TCP (or a channel through the last jump host), the handshake
//! with the host key judged before anything else is sent (`host_key`), and
//! authentication (`auth`); all of it bounded by the host's `connect_timeout`.
//!
//! A dead peer ends the connection (`link`): a write that moves nothing for
//! `dead_after` fails, keepalives catch a silent peer while idle, and once
//! the connection has ended every command on it fails as `Disconnected`.

mod auth;
mod exec;
mod frame;
mod host_key;
mod jump;
mod known_hosts;
mod link;
mod shell;
mod stream;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use russh::client::{self, Handle, Msg};
use russh::keys::Algorithm;
use russh::{Channel, Disconnect, Preferred};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::auth::KeyCache;
use self::host_key::{Client, HostKeyPolicy};
use self::jump::{Bastion, Bastions};
use self::link::{CutUnlessKept, Link};
use self::shell::{Ran, Reach, Shell, Slot};
use super::{Chunk, Input, Output, Stream, Transport, TransportError};
use crate::config::SshTarget;
use crate::report::Mask;

/// OpenSSH's default `MaxSessions`: more concurrent commands than this on one
/// connection (the persistent shell counts as one) wait for a free slot
/// instead of being refused by the server.
const MAX_SESSIONS: usize = 10;

/// Our receive window per channel (stdout of a command); generous so that
/// large outputs are not throttled by round trips.
const WINDOW_SIZE: u32 = 8 * 1024 * 1024;

/// Unanswered keepalives before the server counts as gone (OpenSSH's
/// `ServerAliveCountMax` default).
const KEEPALIVE_MAX: usize = 3;

/// How long `close` waits for a live server to take the disconnect, and then
/// for the session to end once its socket is cut.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Where a run's SSH credentials come from.
#[derive(Clone, Default)]
pub struct SshContextOptions {
    /// A terminal is attached and hoist may ask for passphrases on it.
    pub interactive: bool,
    /// Passphrase for encrypted identity files (`HOIST_SSH_PASSPHRASE`).
    pub passphrase: Option<String>,
    /// The ssh-agent socket (`SSH_AUTH_SOCK`); `None`: no agent.
    pub agent_socket: Option<PathBuf>,
}

impl SshContextOptions {
    pub fn from_env(interactive: bool) -> SshContextOptions {
        let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        SshContextOptions {
            interactive,
            passphrase: var(crate::secret_env::SSH_PASSPHRASE)
                .map(|v| v.to_string_lossy().into_owned()),
            agent_socket: var("SSH_AUTH_SOCK").map(PathBuf::from),
        }
    }
}

impl std::fmt::Debug for SshContextOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshContextOptions")
            .field("interactive", &self.interactive)
            .field("passphrase", &self.passphrase.as_ref().map(|_| "<set>"))
            .field("agent_socket", &self.agent_socket)
            .finish()
    }
}

/// What all hosts of one run share: the agent, identity files read once,
/// and the connections to jump hosts.
pub struct SshContext {
    agent_socket: Option<PathBuf>,
    keys: KeyCache,
    bastions: Bastions,
}

impl SshContext {
    /// `interactive`: a TTY is attached and prompting is allowed (passphrases).
    /// Reads `HOIST_SSH_PASSPHRASE` and `SSH_AUTH_SOCK`.
    /// A passphrase typed at a prompt joins `mask`.
    pub fn new(interactive: bool, mask: Arc<Mask>) -> Arc<SshContext> {
        SshContext::build(SshContextOptions::from_env(interactive), mask)
    }

    pub fn with_options(options: SshContextOptions) -> Arc<SshContext> {
        SshContext::build(options, Arc::default())
    }

    fn build(options: SshContextOptions, mask: Arc<Mask>) -> Arc<SshContext> {
        Arc::new(SshContext {
            agent_socket: options.agent_socket,
            keys: KeyCache::new(options.passphrase, options.interactive, mask),
            bastions: Bastions::default(),
        })
    }
}

/// A connect that failed and will be tried again, told to whoever is
/// connecting (the engine reports it; the transport prints nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRetry {
    /// 1 for the first retry.
    pub attempt: u32,
    /// `connect_retries`: the most retries this host gets.
    pub retries: u32,
    /// Why the last try failed.
    pub reason: String,
    /// How long until the next try.
    pub pause: Duration,
}

/// Hears of each retry while a host is connected, and waits out its pause.
#[async_trait]
pub trait Retries: Send + Sync {
    /// Returns when the next try may start: `retry.pause` from now at the
    /// earliest. Time spent beyond it (waiting for a turn among many hosts)
    /// does not count against the connect timeout.
    async fn pause(&self, retry: &ConnectRetry);
}

/// Just waits.
struct Sleep;

#[async_trait]
impl Retries for Sleep {
    async fn pause(&self, retry: &ConnectRetry) {
        tokio::time::sleep(retry.pause).await;
    }
}

/// One authenticated connection, used for the whole run.
pub struct SshHost {
    handle: Arc<Handle<Client>>,
    /// Keeps the jump host's connection open as long as this one needs it.
    bastion: Option<Bastion>,
    label: String,
    sessions: Arc<Semaphore>,
    /// The persistent shell; locked while a command runs in it, so that a
    /// command finding it locked takes a channel of its own.
    shell: tokio::sync::Mutex<Slot>,
    connect_timeout: Duration,
    /// Why the connection ended, when the server or the network ended it.
    lost: Arc<Mutex<Option<String>>>,
    link: Link,
    closed: AtomicBool,
    /// The host key accepted for this connection (OpenSSH one-line form).
    host_key: Option<String>,
}

impl SshHost {
    pub async fn connect(
        target: &SshTarget,
        ctx: &Arc<SshContext>,
    ) -> Result<SshHost, TransportError> {
        SshHost::connect_observed(target, ctx, &Sleep).await
    }

    /// [`SshHost::connect`], with `retries` told of each retry and
    /// waiting out its pause.
    pub async fn connect_observed(
        target: &SshTarget,
        ctx: &Arc<SshContext>,
        retries_seen: &dyn Retries,
    ) -> Result<SshHost, TransportError> {
        let label = label(target);
        let mut deadline = Deadline::new(target.connect_timeout, format!("connecting to {label}"));
        let bastion = ctx.bastions.through(target, ctx, &mut deadline).await?;
        let mut retries = target.connect_retries;
        // 1 s, then 2 s (each give or take half): a server restarting
        // (or a MaxStartups drop) has time to come back within the budget.
        let mut backoff = Duration::from_secs(1);
        let session = loop {
            // Taken per try and given back for the pause: a host waiting
            // to retry must not hold up the handshakes of others (nor a
            // `parallel` turn, see `Retries`).
            let handshake = ctx.bastions.handshake_slot(target, &mut deadline).await;
            let tried =
                authenticated_session(target, &label, bastion.as_deref(), ctx, &mut deadline).await;
            drop(handshake);
            match tried {
                // Refused, reset, or dropped before the key exchange (sshd's
                // MaxStartups, a restarting server): worth another try while
                // the budget lasts. A host key or auth failure never is.
                Err(e @ TransportError::Unreachable { .. }) if retries > 0 => {
                    let pause = jittered(backoff);
                    // Another try only with time left for it: else the real
                    // reason (refused) would end up reported as a timeout.
                    if deadline.left() < pause + Duration::from_millis(500) {
                        return Err(e);
                    }
                    let retry = ConnectRetry {
                        attempt: target.connect_retries - retries + 1,
                        retries: target.connect_retries,
                        reason: e.to_string(),
                        pause,
                    };
                    retries -= 1;
                    let paused = Instant::now();
                    retries_seen.pause(&retry).await;
                    deadline.extend(paused.elapsed().saturating_sub(pause));
                    backoff *= 2;
                }
                other => break other?,
            }
        };
        Ok(SshHost {
            handle: Arc::new(session.handle),
            bastion,
            label,
            sessions: Arc::new(Semaphore::new(MAX_SESSIONS)),
            shell: tokio::sync::Mutex::new(Slot::Empty),
            connect_timeout: target.connect_timeout,
            lost: session.lost,
            link: session.link,
            host_key: session.accepted.lock().ok().and_then(|k| k.clone()),
            closed: AtomicBool::new(false),
        })
    }

    /// Maps a failure to open or use a channel: a dead connection is `Disconnected`.
    fn channel_error(&self, error: russh::Error) -> TransportError {
        match error {
            russh::Error::ChannelOpenFailure(reason) => TransportError::Other(format!(
                "{} refused to open a channel: {} (does its sshd allow fewer sessions at once, MaxSessions, than hoist uses?)",
                self.label,
                open_failure(&reason)
            )),
            _ if self.is_gone() => self.lost_connection(),
            other => TransportError::Other(format!("SSH error on {}: {other}", self.label)),
        }
    }

    fn is_gone(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
            || self.link.is_ended()
            || self.handle.is_closed()
            || self.bastion.as_ref().is_some_and(|b| b.is_closed())
    }

    fn lost_connection(&self) -> TransportError {
        let reason = if self.closed.load(Ordering::SeqCst) {
            "closed by hoist".to_string()
        } else if self.bastion.as_ref().is_some_and(|b| b.is_closed()) {
            "the connection to the jump host was lost".to_string()
        } else {
            let lost = self.lost.lock().ok().and_then(|l| l.clone());
            lost.unwrap_or_else(|| "the connection closed unexpectedly".to_string())
        };
        TransportError::Disconnected {
            host: self.label.clone(),
            reason,
        }
    }
}

/// Where a command went: run in the persistent shell, or to run elsewhere.
enum InShell {
    Ran(Result<Output, TransportError>),
    Elsewhere(Option<Input>),
}

/// An authenticated connection, with where its end reason will be and its socket's handle.
struct Session {
    handle: Handle<Client>,
    accepted: Arc<Mutex<Option<String>>>,
    lost: Arc<Mutex<Option<String>>>,
    link: Link,
}

/// TCP (or a channel through `via`), handshake with the host key checked,
/// then authentication.
async fn authenticated_session(
    target: &SshTarget,
    label: &str,
    via: Option<&Handle<Client>>,
    ctx: &SshContext,
    deadline: &mut Deadline,
) -> Result<Session, TransportError> {
    let policy = HostKeyPolicy::new(target, label.to_string());
    let config = Arc::new(client_config(target, &policy.known_algorithms()));
    let refusal = Arc::new(Mutex::new(None));
    let lost = Arc::new(Mutex::new(None));
    let accepted = Arc::new(Mutex::new(None));
    let handler = Client {
        policy,
        refusal: Arc::clone(&refusal),
        lost: Arc::clone(&lost),
        accepted: Arc::clone(&accepted),
    };
    let unreachable = |reason: String| TransportError::Unreachable {
        host: label.to_string(),
        reason,
    };
    let link = Link::default();
    let abandoned = CutUnlessKept::new(&link);

    let socket: Box<dyn Stream> = match via {
        None => {
            let tcp = deadline
                .run(TcpStream::connect((target.address.as_str(), target.port)))
                .await?
                .map_err(|e| unreachable(e.to_string()))?;
            let _ = tcp.set_nodelay(true);
            Box::new(tcp)
        }
        Some(bastion) => {
            let open = bastion.channel_open_direct_tcpip(
                target.address.as_str(),
                u32::from(target.port),
                "127.0.0.1",
                0,
            );
            let channel = deadline
                .run(open)
                .await?
                .map_err(|e| unreachable(format!("the jump host could not connect to it: {e}")))?;
            Box::new(channel.into_stream())
        }
    };
    let socket = link.watch(socket, dead_after(target), Arc::clone(&lost));
    let mut handle = match deadline
        .run(client::connect_stream(config, socket, handler))
        .await?
    {
        Ok(handle) => handle,
        Err(e) => {
            if let Some(refused) = take(&refusal) {
                return Err(refused);
            }
            let reason = take(&lost).unwrap_or_else(|| e.to_string());
            return Err(unreachable(format!("SSH handshake failed: {reason}")));
        }
    };
    let agent = ctx.agent_socket.as_deref();
    let authenticated =
        auth::authenticate(&mut handle, target, agent, &ctx.keys, label, deadline).await;
    if let Err(e) = authenticated {
        let goodbye = handle.disconnect(Disconnect::ByApplication, "", "en");
        let _ = tokio::time::timeout(CLOSE_GRACE, goodbye).await;
        return Err(e);
    }
    abandoned.keep();
    Ok(Session {
        handle,
        lost,
        link,
        accepted,
    })
}

impl SshHost {
    /// Runs a command in the persistent shell, starting it if needed (and
    /// `start`); `Elsewhere` when the command should get a channel of its
    /// own instead (the shell is busy, this host cannot have one, or it
    /// died before the command began), with its input.
    async fn exec_in_shell(
        &self,
        quoted: &str,
        input: Option<Input>,
        keep: usize,
        start: bool,
    ) -> InShell {
        let Ok(mut slot) = self.shell.try_lock() else {
            return InShell::Elsewhere(input);
        };
        let mut shell = match std::mem::take(&mut *slot) {
            Slot::Idle(shell) => *shell,
            Slot::Empty if !start => return InShell::Elsewhere(input),
            Slot::Empty => match Shell::start(&self.reach()).await {
                Some(shell) => shell,
                None if self.is_gone() => return InShell::Ran(Err(self.lost_connection())),
                None => {
                    *slot = Slot::Unavailable;
                    return InShell::Elsewhere(input);
                }
            },
            Slot::Unavailable => {
                *slot = Slot::Unavailable;
                return InShell::Elsewhere(input);
            }
        };
        InShell::Ran(match shell.run(quoted, input, keep).await {
            Ran::Done { output, reusable } => {
                if reusable {
                    *slot = Slot::Idle(Box::new(shell));
                }
                Ok(output)
            }
            Ran::NotStarted(input) => return InShell::Elsewhere(input),
            Ran::InputFailed(e) => Err(TransportError::Other(format!(
                "reading the command's input: {e}"
            ))),
            Ran::Lost => Err(self.lost_connection()),
            Ran::Died(_) if self.is_gone() => Err(self.lost_connection()),
            Ran::Died(output) => Ok(output),
        })
    }

    /// Runs `script` on a session channel of its own, never in the
    /// persistent shell: what every command got before there was one (tests
    /// compare the two).
    pub async fn exec_alone(
        &self,
        script: &str,
        stdin: Option<Input>,
        timeout: Duration,
    ) -> Result<Output, TransportError> {
        let quoted = shlex::try_quote(script).map_err(|_| {
            TransportError::Other("a remote command cannot contain a NUL byte".into())
        })?;
        let run = self.exec_on_channel(format!("sh -c {quoted}"), stdin, super::KEEP);
        tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| TransportError::Timeout {
                what: "command".into(),
                after: timeout,
            })?
    }

    /// Runs `command` on a session channel of its own.
    async fn exec_on_channel(
        &self,
        command: String,
        stdin: Option<Input>,
        keep: usize,
    ) -> Result<Output, TransportError> {
        let _slot = self.sessions.acquire().await;
        let channel = self.open_channel().await?;
        exec::run(channel, command, stdin, keep)
            .await
            .map_err(|failure| self.exec_failure(failure))
    }

    fn exec_failure(&self, failure: exec::Failure) -> TransportError {
        match failure {
            exec::Failure::Refused => {
                TransportError::Other(format!("{} refused to run the command", self.label))
            }
            exec::Failure::Lost => self.lost_connection(),
            exec::Failure::Stdin(e) => {
                TransportError::Other(format!("reading the command's input: {e}"))
            }
            exec::Failure::Channel(e) => self.channel_error(e),
        }
    }

    /// See [`Transport::exec_beside`]: a session of its own or none (the
    /// persistent shell is never ended for it), and a slot among hoist's
    /// own sessions only when one is free.
    async fn beside(&self, quoted: &str) -> Result<Output, TransportError> {
        let too_few = |reason: String| TransportError::TooFewSessions {
            host: self.label.clone(),
            granted: 1,
            needed: 2,
            reason,
        };
        let Ok(_slot) = self.sessions.try_acquire() else {
            return Err(too_few("hoist's own sessions are all busy".into()));
        };
        let channel = match self.handle.channel_open_session().await {
            Ok(channel) => channel,
            Err(russh::Error::ChannelOpenFailure(reason)) => {
                return Err(too_few(open_failure(&reason)));
            }
            Err(e) => return Err(self.channel_error(e)),
        };
        exec::run(channel, format!("sh -c {quoted}"), None, super::KEEP)
            .await
            .map_err(|failure| self.exec_failure(failure))
    }

    /// Opens a session channel. A host that refuses one more session
    /// (`MaxSessions`) while the persistent shell idles gets the shell's:
    /// the shell is ended, and the next command starts another.
    async fn open_channel(&self) -> Result<Channel<Msg>, TransportError> {
        let refused = match self.handle.channel_open_session().await {
            Ok(channel) => return Ok(channel),
            Err(russh::Error::ChannelOpenFailure(reason)) => reason,
            Err(e) => return Err(self.channel_error(e)),
        };
        if !self.end_idle_shell().await {
            return Err(self.channel_error(russh::Error::ChannelOpenFailure(refused)));
        }
        (self.handle.channel_open_session().await).map_err(|e| self.channel_error(e))
    }

    /// Ends the persistent shell if it is idle: true once its session is free.
    async fn end_idle_shell(&self) -> bool {
        let Ok(mut slot) = self.shell.try_lock() else {
            return false;
        };
        match std::mem::take(&mut *slot) {
            Slot::Idle(shell) => shell.end().await,
            other => {
                *slot = other;
                false
            }
        }
    }

    /// After a command timed out: is the connection still usable? A server
    /// that does not answer a keepalive within the connect timeout (a cut
    /// link, or a session wedged behind a stalled stream) is given up, so
    /// that what comes next on this host (freeing its lock, a rollback)
    /// fails at once instead of waiting out its own timeout. In the
    /// background: the timeout is reported when it happens.
    fn check_alive(&self) {
        let handle = Arc::clone(&self.handle);
        let link = self.link.clone();
        let lost = Arc::clone(&self.lost);
        let limit = self.connect_timeout;
        tokio::spawn(async move {
            let answered = tokio::time::timeout(limit, handle.send_ping()).await;
            if !matches!(answered, Ok(Ok(()))) {
                if let Ok(mut lost) = lost.lock() {
                    lost.get_or_insert_with(|| {
                        format!(
                            "no answer to a keepalive within {} after a command timed out",
                            humantime::format_duration(limit)
                        )
                    });
                }
                link.cut();
            }
        });
    }

    fn reach(&self) -> Reach {
        Reach {
            handle: Arc::clone(&self.handle),
            sessions: Arc::clone(&self.sessions),
            limit: self.connect_timeout,
            link: self.link.clone(),
        }
    }
}

#[async_trait]
impl Transport for SshHost {
    async fn exec_keeping(
        &self,
        script: &str,
        stdin: Option<Input>,
        timeout: Duration,
        keep: usize,
    ) -> Result<Output, TransportError> {
        let quoted = shlex::try_quote(script).map_err(|_| {
            TransportError::Other("a remote command cannot contain a NUL byte".into())
        })?;
        if self.is_gone() {
            return Err(self.lost_connection());
        }
        let deadline = Instant::now() + timeout;
        let timed_out = |_| TransportError::Timeout {
            what: "command".into(),
            after: timeout,
        };
        let in_shell =
            tokio::time::timeout_at(deadline, self.exec_in_shell(&quoted, stdin, keep, true));
        let stdin = match in_shell.await {
            Ok(InShell::Ran(result)) => return result,
            Ok(InShell::Elsewhere(stdin)) => stdin,
            Err(elapsed) => {
                self.check_alive();
                return Err(timed_out(elapsed));
            }
        };
        let command = format!("sh -c {quoted}");
        let result =
            tokio::time::timeout_at(deadline, self.exec_on_channel(command, stdin, keep)).await;
        result.map_err(|elapsed| {
            self.check_alive();
            timed_out(elapsed)
        })?
    }

    async fn exec_beside(&self, script: &str, timeout: Duration) -> Result<Output, TransportError> {
        let quoted = shlex::try_quote(script).map_err(|_| {
            TransportError::Other("a remote command cannot contain a NUL byte".into())
        })?;
        if self.is_gone() {
            return Err(self.lost_connection());
        }
        // An idle shell answers at once, with no session of its own (whose
        // login would run the host's rc files again); a busy one is left
        // alone.
        let beside = async {
            match self.exec_in_shell(&quoted, None, super::KEEP, false).await {
                InShell::Ran(result) => result,
                InShell::Elsewhere(_) => self.beside(&quoted).await,
            }
        };
        tokio::time::timeout(timeout, beside).await.map_err(|_| {
            self.check_alive();
            TransportError::Timeout {
                what: "command".into(),
                after: timeout,
            }
        })?
    }

    async fn stream(
        &self,
        script: &str,
        sink: UnboundedSender<Chunk>,
        stop: CancellationToken,
    ) -> Result<Option<u32>, TransportError> {
        if self.is_gone() {
            return Err(self.lost_connection());
        }
        let _slot = self.sessions.acquire().await;
        let channel = self.open_channel().await?;
        stream::run(channel, script, sink, stop, &self.reach())
            .await
            .map_err(|failure| match failure {
                stream::Failure::Refused => {
                    TransportError::Other(format!("{} refused to run the command", self.label))
                }
                stream::Failure::Lost => self.lost_connection(),
                stream::Failure::Channel(e) => self.channel_error(e),
            })
    }

    async fn open_tcp(&self, host: &str, port: u16) -> Result<Box<dyn Stream>, TransportError> {
        if self.is_gone() {
            return Err(self.lost_connection());
        }
        let open = self
            .handle
            .channel_open_direct_tcpip(host, u32::from(port), "127.0.0.1", 0);
        let channel = tokio::time::timeout(self.connect_timeout, open)
            .await
            .map_err(|_| TransportError::Timeout {
                what: format!("opening {host}:{port} through {}", self.label),
                after: self.connect_timeout,
            })?
            .map_err(|e| match e {
                russh::Error::ChannelOpenFailure(reason) => TransportError::Other(format!(
                    "{} could not connect to {host}:{port}: {}",
                    self.label,
                    open_failure(&reason)
                )),
                other => self.channel_error(other),
            })?;
        Ok(Box::new(channel.into_stream()))
    }

    fn host_key(&self) -> Option<String> {
        self.host_key.clone()
    }

    async fn close(&self) {
        if let Ok(mut slot) = self.shell.try_lock() {
            *slot = Slot::Unavailable;
        }
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        // A live session sends the disconnect and ends within a round trip.
        // One on a dead link may never take the message (russh takes none
        // while a channel's data waits for window), so its socket is cut.
        let goodbye = async {
            let _ = (self.handle)
                .disconnect(Disconnect::ByApplication, "", "en")
                .await;
            self.link.ended().await;
        };
        let _ = tokio::time::timeout(CLOSE_GRACE, goodbye).await;
        self.link.cut();
        let _ = tokio::time::timeout(CLOSE_GRACE, self.link.ended()).await;
    }

    async fn check_sessions(&self, needed: usize) -> Result<(), TransportError> {
        if self.is_gone() {
            return Err(self.lost_connection());
        }
        if needed > MAX_SESSIONS {
            return Err(TransportError::Other(format!(
                "hoist opens at most {MAX_SESSIONS} sessions on one connection, not {needed}"
            )));
        }
        self.open_sessions(needed).await
    }
}

impl SshHost {
    /// Holds `needed` sessions at once, the persistent shell counted, then
    /// lets the ones it opened go.
    async fn open_sessions(&self, needed: usize) -> Result<(), TransportError> {
        let held = match self.shell.try_lock() {
            // Busy running a command: it exists.
            Err(_) => 1,
            Ok(mut slot) => {
                if matches!(*slot, Slot::Empty) {
                    *slot = match Shell::start(&self.reach()).await {
                        Some(shell) => Slot::Idle(Box::new(shell)),
                        None if self.is_gone() => return Err(self.lost_connection()),
                        None => Slot::Unavailable,
                    };
                }
                usize::from(matches!(*slot, Slot::Idle(_)))
            }
        };
        let mut opened = Vec::new();
        for granted in held..needed {
            let permit = self.sessions.acquire().await;
            match self.handle.channel_open_session().await {
                Ok(channel) => opened.push((channel, permit)),
                Err(russh::Error::ChannelOpenFailure(reason)) => {
                    return Err(TransportError::TooFewSessions {
                        host: self.label.clone(),
                        granted,
                        needed,
                        reason: open_failure(&reason),
                    });
                }
                Err(e) => return Err(self.channel_error(e)),
            }
        }
        for (channel, _permit) in &opened {
            let _ = channel.close().await;
        }
        // The server has read the closes once it answers what follows them,
        // so the sessions are free when the caller goes on. (russh hands no
        // `Close` back for a channel we closed ourselves.)
        let _ = self.handle.send_ping().await;
        Ok(())
    }
}

/// How a host is named in messages: its inventory name, and where it is when that differs.
fn label(target: &SshTarget) -> String {
    let place = if target.port == 22 {
        target.address.clone()
    } else {
        format!("{}:{}", target.address, target.port)
    };
    if target.name == place {
        place
    } else {
        format!("{} ({place})", target.name)
    }
}

/// How long a write may move nothing before the peer counts as dead: as
/// long as keepalives would go unanswered (what OpenSSH allows an idle
/// server, ServerAliveInterval × ServerAliveCountMax), since a peer that
/// acknowledges nothing is as silent as one that does not answer; never
/// less than connect_timeout, the time a host gets to answer at all, so
/// that TCP's retransmission backoff after a brief loss is not taken for a
/// dead link.
fn dead_after(target: &SshTarget) -> Duration {
    (target.keepalive * KEEPALIVE_MAX as u32).max(target.connect_timeout)
}

fn client_config(target: &SshTarget, known: &[Algorithm]) -> client::Config {
    let keepalive = Some(target.keepalive).filter(|k| !k.is_zero());
    client::Config {
        window_size: WINDOW_SIZE,
        // An idle server that answers none of KEEPALIVE_MAX keepalives is
        // gone; writes are bounded by `link`. No inactivity_timeout: russh
        // runs it during authentication too, where hoist may be waiting on
        // a person typing a passphrase, and keepalives already cover a
        // silent server once logged in.
        keepalive_interval: keepalive,
        keepalive_max: KEEPALIVE_MAX,
        inactivity_timeout: None,
        nodelay: true,
        preferred: prefer_known_key_types(known),
        ..Default::default()
    }
}

/// Asks for host key types already in known_hosts first, as OpenSSH does, so
/// a host known by its RSA key is not reported unknown for offering ed25519.
fn prefer_known_key_types(known: &[Algorithm]) -> Preferred {
    let mut preferred = Preferred::default();
    let is_known = |a: &Algorithm| {
        known.iter().any(|k| match (k, a) {
            (Algorithm::Rsa { .. }, Algorithm::Rsa { .. }) => true,
            (k, a) => k == a,
        })
    };
    let (mut keys, rest): (Vec<Algorithm>, Vec<Algorithm>) =
        preferred.key.iter().cloned().partition(is_known);
    keys.extend(rest);
    preferred.key = keys.into();
    preferred
}

fn open_failure(reason: &russh::ChannelOpenFailure) -> String {
    use russh::ChannelOpenFailure as F;
    match reason {
        F::ConnectFailed => "connection refused or failed".into(),
        F::AdministrativelyProhibited => {
            "not allowed by the server (e.g. AllowTcpForwarding no)".into()
        }
        F::ResourceShortage => "the server is out of resources (too many channels?)".into(),
        F::UnknownChannelType => "channel type not supported by the server".into(),
        F::Other { reason, .. } => reason.clone(),
    }
}

fn take<T>(slot: &Mutex<Option<T>>) -> Option<T> {
    slot.lock().ok().and_then(|mut s| s.take())
}

/// `base`, give or take half, so that hosts dropped together do not all
/// come back at the same instant.
fn jittered(base: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let spread = (nanos % 1000) as f64 / 1000.0; // 0..1
    base.mul_f64(0.5 + spread)
}

/// The connect timeout, as one budget across TCP, handshake and authentication.
struct Deadline {
    at: Instant,
    limit: Duration,
    what: String,
}

impl Deadline {
    fn new(limit: Duration, what: String) -> Deadline {
        Deadline {
            at: Instant::now() + limit,
            limit,
            what,
        }
    }

    /// Time spent waiting on a person (a passphrase prompt) is not the network's.
    fn extend(&mut self, by: Duration) {
        self.at += by;
    }

    fn left(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    async fn run<F: Future>(&self, work: F) -> Result<F::Output, TransportError> {
        tokio::time::timeout_at(self.at, work)
            .await
            .map_err(|_| TransportError::Timeout {
                what: self.what.clone(),
                after: self.limit,
            })
    }
}
