//! A command whose output is wanted as it comes (`hoist exec`), on a
//! session channel of its own, and stopped for real when asked.
//!
//! OpenSSH ignores signal requests on a channel without a terminal, and
//! closing the channel does not end a command that never writes (a
//! `sleep`): so the command runs in a session of its own (`setsid`), its
//! process group id is announced on stdout before it starts, and stopping
//! it is a `kill` of that group on a second channel.

use std::sync::Arc;

use russh::client::Msg;
use russh::{Channel, ChannelMsg, ChannelWriteHalf};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::exec;
use super::frame::Nonce;
use super::shell::Reach;
use crate::transport::Chunk;

pub enum Failure {
    /// The server would not run the command.
    Refused,
    /// The channel ended without the server closing it: the connection is gone.
    Lost,
    Channel(russh::Error),
}

/// Runs `script` on `channel`, sending its output to `sink`, until it ends
/// or `stop` is cancelled; then its process group is sent SIGTERM, and
/// SIGKILL if it has not ended within `reach.limit`. If this future is
/// dropped first, the group is sent SIGTERM in the background.
pub async fn run(
    channel: Channel<Msg>,
    script: &str,
    sink: UnboundedSender<Chunk>,
    stop: CancellationToken,
    reach: &Reach,
) -> Result<Option<u32>, Failure> {
    let mark = format!("{} ", Nonce::new().marker("pid"));
    let (mut rx, tx) = channel.split();
    let tx = Arc::new(tx);
    let mut guard = StopOnDrop {
        tx: Some(Arc::clone(&tx)),
        reach: reach.clone(),
        group: None,
    };
    tx.exec(true, command(&mark, script))
        .await
        .map_err(Failure::Channel)?;
    // Stdout until the group's line: whatever a login shell printed first is dropped.
    let mut head: Option<Vec<u8>> = Some(Vec::new());
    let mut code = None;
    let mut stopping: Option<Instant> = None;
    let mut signalled = false;
    loop {
        let give_up = stopping.unwrap_or_else(|| Instant::now() + reach.limit);
        let msg = tokio::select! {
            msg = rx.wait() => msg,
            _ = stop.cancelled(), if stopping.is_none() => {
                stopping = Some(Instant::now() + reach.limit);
                if let Some(group) = guard.group {
                    signal(reach, group, "TERM").await;
                    signalled = true;
                }
                continue;
            }
            _ = tokio::time::sleep_until(give_up), if stopping.is_some() => {
                if let Some(group) = guard.group {
                    signal(reach, group, "KILL").await;
                }
                guard.disarm();
                let _ = tx.close().await;
                return Ok(None);
            }
        };
        match msg {
            Some(ChannelMsg::Data { data }) => match head.as_mut() {
                None => {
                    let _ = sink.send(Chunk::Stdout(data.to_vec()));
                }
                Some(buf) => {
                    buf.extend_from_slice(&data);
                    if let Some((group, rest)) = take_group(buf, &mark) {
                        guard.group = Some(group);
                        head = None;
                        if !rest.is_empty() {
                            let _ = sink.send(Chunk::Stdout(rest));
                        }
                        if stopping.is_some() && !signalled {
                            signal(reach, group, "TERM").await;
                            signalled = true;
                        }
                    }
                }
            },
            Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                let _ = sink.send(Chunk::Stderr(data.to_vec()));
            }
            Some(ChannelMsg::ExitStatus { exit_status }) => code = Some(exit_status),
            Some(ChannelMsg::Failure) => return Err(Failure::Refused),
            Some(ChannelMsg::Close) => break,
            Some(_) => {}
            None if stopping.is_some() => break,
            None => return Err(Failure::Lost),
        }
    }
    guard.disarm();
    if let Some(buf) = head.filter(|b| !b.is_empty()) {
        // The command never started: what the host said instead is the news.
        let _ = sink.send(Chunk::Stdout(buf));
    }
    Ok(if stopping.is_some() { None } else { code })
}

/// The channel's command: `sh` runs `script` in a session of its own (so
/// its process group holds everything it starts), after printing `mark`
/// and that group's id. `exit $?` keeps `sh` from replacing itself with
/// `setsid`, which would then be a group leader and fork (losing the exit
/// status). That `sh` stays outside the group, so its own stderr goes to
/// /dev/null (the script gets the channel's back through fd 3): a stopped
/// command is not followed by its "Terminated". Without `setsid` on the
/// host, the group is `sh`'s own and only the command itself can be stopped.
fn command(mark: &str, script: &str) -> String {
    let inner = r#"exec 2>&3 3>&-; printf '%s%d\n' "$1" "$$"; exec sh -c "$2""#;
    let args = format!("{} sh {} {}", q(inner), q(mark), q(script));
    let outer = format!(
        "exec 3>&2 2>/dev/null; if command -v setsid >/dev/null; then setsid sh -c {args} </dev/null; else sh -c {args} </dev/null; fi; exit $?"
    );
    format!("sh -c {}", q(&outer))
}

fn q(word: &str) -> String {
    shlex::try_quote(word)
        .map(|w| w.into_owned())
        .unwrap_or_else(|_| "''".into())
}

/// Finds `<mark><group>\n` in `buf`: the group, and the bytes after the line.
fn take_group(buf: &[u8], mark: &str) -> Option<(u32, Vec<u8>)> {
    let at = buf.windows(mark.len()).position(|w| w == mark.as_bytes())?;
    let from = at + mark.len();
    let nl = buf[from..].iter().position(|&b| b == b'\n')? + from;
    let group = std::str::from_utf8(&buf[from..nl])
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some((group, buf[nl + 1..].to_vec()))
}

/// Sends `sig` to the process group `group` (or, without one, the process)
/// through a channel of its own; bounded by `reach.limit`.
async fn signal(reach: &Reach, group: u32, sig: &str) {
    let send = async {
        let _session = reach.sessions.acquire().await;
        let channel = reach.handle.channel_open_session().await.ok()?;
        let command = format!(
            "sh -c 'kill -s {sig} -- -{group} 2>/dev/null || kill -s {sig} {group} 2>/dev/null'"
        );
        exec::run(channel, command, None, 4096).await.ok()
    };
    let _ = tokio::time::timeout(reach.limit, send).await;
}

/// Stops the command unless disarmed: covers a dropped future.
struct StopOnDrop {
    tx: Option<Arc<ChannelWriteHalf<Msg>>>,
    reach: Reach,
    group: Option<u32>,
}

impl StopOnDrop {
    fn disarm(&mut self) {
        self.tx = None;
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let Some(tx) = self.tx.take() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (reach, group) = (self.reach.clone(), self.group);
        runtime.spawn(async move {
            if let Some(group) = group {
                signal(&reach, group, "TERM").await;
            }
            let _ = tx.close().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_group_line_is_found_after_login_noise_and_taken_off() {
        let mark = "hoistabc:pid ";
        let buf = b"Welcome!\nhoistabc:pid 4242\nfirst line\n";
        assert_eq!(
            take_group(buf, mark),
            Some((4242, b"first line\n".to_vec()))
        );
        assert_eq!(
            take_group(b"hoistabc:pid 42", mark),
            None,
            "line not complete"
        );
    }

    #[test]
    fn the_command_runs_the_script_in_its_own_session() {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(command(
                "M:pid ",
                "echo \"it's $((1+1))\"; ps -o sid= -p $$ >&2; exit 7",
            ))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(7));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let (group, rest) = take_group(stdout.as_bytes(), "M:pid ").unwrap();
        assert_eq!(String::from_utf8_lossy(&rest), "it's 2\n");
        let sid: u32 = String::from_utf8_lossy(&out.stderr).trim().parse().unwrap();
        assert_eq!(sid, group, "the script leads its own session");
    }
}
