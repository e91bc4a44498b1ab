//! A command whose output is wanted as it comes (`hoist exec`), on a
//! session channel of its own, and stopped for real when asked.
//!
//! OpenSSH ignores signal requests on a channel without a terminal, and
//! closing the channel does not end a command that never writes (a
//! `sleep`): so the command runs in a session of its own (`setsid`), its
//! process group id is announced on stdout before it starts, and stopping
//! it is a `kill` of that group on a second channel. A host that grants no
//! second session (`MaxSessions 1`) is told by the end of the channel's
//! stdin instead (our EOF or close), which a watcher next to the command
//! answers with the same signals.

use std::sync::Arc;
use std::time::Duration;

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
    tx.exec(true, command(&mark, script, reach.limit))
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
                    terminate(reach, &tx, group).await;
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
                            terminate(reach, &tx, group).await;
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
/// and that group's id, and exits with its status. Started in the
/// background, `setsid` is no group leader, so it does not fork (which
/// would lose the status): `$!` is the group. That `sh` stays outside the
/// group, so its own stderr goes to /dev/null (the script gets the
/// channel's back through fd 3): a stopped command is not followed by its
/// "Terminated". Without `setsid` on the host, the group is `sh`'s own and
/// only the command itself can be stopped.
///
/// Beside it, a watcher holds the channel's stdin (nothing else reads it)
/// and, once it ends, sends the group SIGTERM, then SIGKILL `grace` later;
/// the command ending first ends the watcher, which never signals a group
/// that is gone.
fn command(mark: &str, script: &str, grace: Duration) -> String {
    let inner = r#"exec 2>&3 3>&-; printf '%s%d\n' "$1" "$$"; exec sh -c "$2""#;
    let args = format!("{} sh {} {}", q(inner), q(mark), q(script));
    let grace = grace.as_secs().max(1);
    let outer = format!(
        "exec 3>&2 2>/dev/null 4<&0 </dev/null; \
         if command -v setsid >/dev/null; then setsid sh -c {args} </dev/null 4<&- & else sh -c {args} </dev/null 4<&- & fi; \
         p=$!; \
         {{ cat >/dev/null; kill -s TERM -- -$p || kill -s TERM $p; sleep {grace}; kill -s KILL -- -$p || kill -s KILL $p; }} <&4 >/dev/null 3>&- 4<&- & \
         w=$!; exec 4<&-; wait $p; rc=$?; kill $w; exit $rc"
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

/// SIGTERM to the command's group; on a host that grants no channel for
/// the `kill`, through the watcher (see `command`): its stdin ends.
async fn terminate(reach: &Reach, tx: &ChannelWriteHalf<Msg>, group: u32) {
    if !signal(reach, group, "TERM").await {
        let _ = tx.eof().await;
    }
}

/// Sends `sig` to the process group `group` (or, without one, the process)
/// through a channel of its own; bounded by `reach.limit`. False if that
/// channel could not be had.
async fn signal(reach: &Reach, group: u32, sig: &str) -> bool {
    let send = async {
        let _session = reach.sessions.acquire().await;
        let channel = reach.handle.channel_open_session().await.ok()?;
        let command = format!(
            "sh -c 'kill -s {sig} -- -{group} 2>/dev/null || kill -s {sig} {group} 2>/dev/null'"
        );
        exec::run(channel, command, None, 4096).await.ok()
    };
    matches!(tokio::time::timeout(reach.limit, send).await, Ok(Some(_)))
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
    use std::io::Read;
    use std::process::{Command, Stdio};

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
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(command(
                "M:pid ",
                "echo \"it's $((1+1))\"; ps -o sid= -p $$ >&2; exit 7",
                Duration::from_secs(5),
            ))
            // An open stdin, as a channel's: its end would stop the script.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let out = child.wait_with_output().unwrap();
        drop(stdin);
        assert_eq!(out.status.code(), Some(7));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let (group, rest) = take_group(stdout.as_bytes(), "M:pid ").unwrap();
        assert_eq!(String::from_utf8_lossy(&rest), "it's 2\n");
        let sid: u32 = String::from_utf8_lossy(&out.stderr).trim().parse().unwrap();
        assert_eq!(sid, group, "the script leads its own session");
    }

    /// What a host that grants no session for a `kill` relies on: the end
    /// of the command's stdin stops it, the process it started included.
    #[test]
    fn the_end_of_stdin_stops_the_command_and_its_children() {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(command(
                "M:pid ",
                "sleep 30 & echo started; wait",
                Duration::from_secs(5),
            ))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut seen = Vec::new();
        let mut byte = [0u8; 1];
        while !String::from_utf8_lossy(&seen).contains("started\n") {
            assert_eq!(stdout.read(&mut byte).unwrap(), 1, "output ended early");
            seen.push(byte[0]);
        }
        let (group, _) = take_group(&seen, "M:pid ").unwrap();
        drop(child.stdin.take());
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(128 + 15), "stopped by SIGTERM");
        // SIGTERM is sent to the group at once; its members end as they are scheduled.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !living_in(group).is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(living_in(group), Vec::<u32>::new(), "group {group}");
    }

    /// Processes of process group `group` that are not zombies.
    fn living_in(group: u32) -> Vec<u32> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // After the command name: state, ppid, pgrp.
            let fields: Vec<&str> = stat.rsplit(") ").next().unwrap_or("").split(' ').collect();
            if fields.len() > 2 && fields[0] != "Z" && fields[2] == group.to_string() {
                found.push(pid);
            }
        }
        found
    }
}
