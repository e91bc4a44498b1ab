//! One remote command on its own session channel: stdin streamed in, stdout,
//! stderr and the exit status collected, the channel closed however it ends.

use std::sync::Arc;

use futures_util::StreamExt;
use russh::client::Msg;
use russh::{Channel, ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Sig};

use crate::transport::{Input, Output, Tail};

pub enum Failure {
    /// The server would not run the command.
    Refused,
    /// The channel ended without the server closing it: the connection is gone.
    Lost,
    /// Reading our own stdin failed.
    Stdin(std::io::Error),
    Channel(russh::Error),
}

/// Runs `command` on `channel`, keeping the last `keep` bytes of each
/// output stream. If this future is dropped before the command
/// ends (a timeout, an error, a cancelled run), the command is sent SIGTERM
/// and the channel is closed.
pub async fn run(
    channel: Channel<Msg>,
    command: String,
    stdin: Option<Input>,
    keep: usize,
) -> Result<Output, Failure> {
    let (mut rx, tx) = channel.split();
    let tx = Arc::new(tx);
    let mut guard = CloseOnDrop(Some(Arc::clone(&tx)));
    tx.exec(true, command).await.map_err(Failure::Channel)?;

    let feeding = feed(&tx, stdin);
    let collecting = collect(&mut rx, keep);
    tokio::pin!(feeding, collecting);
    let mut fed = false;
    let output = loop {
        tokio::select! {
            result = &mut feeding, if !fed => {
                fed = true;
                result?;
            }
            output = &mut collecting => break output?,
        }
    };
    guard.disarm();
    Ok(output)
}

/// Streams stdin to the channel, then sends EOF. A command that exits without
/// reading all of its input is not an error here: its exit status says what happened.
async fn feed(tx: &ChannelWriteHalf<Msg>, stdin: Option<Input>) -> Result<(), Failure> {
    if let Some(stdin) = stdin {
        let mut chunks = stdin.exact();
        while let Some(chunk) = chunks.next().await {
            // Waits for the server's window: this is the backpressure.
            if tx.data_bytes(chunk.map_err(Failure::Stdin)?).await.is_err() {
                return Ok(());
            }
        }
    }
    let _ = tx.eof().await;
    Ok(())
}

async fn collect(rx: &mut ChannelReadHalf, keep: usize) -> Result<Output, Failure> {
    let (mut stdout, mut stderr) = (Tail::new(keep), Tail::new(keep));
    let mut code = None;
    loop {
        match rx.wait().await {
            Some(ChannelMsg::Data { data }) => stdout.push(&data),
            Some(ChannelMsg::ExtendedData { data, ext: 1 }) => stderr.push(&data),
            Some(ChannelMsg::ExitStatus { exit_status }) => code = Some(exit_status),
            Some(ChannelMsg::Failure) => return Err(Failure::Refused),
            Some(ChannelMsg::Close) => break,
            Some(_) => {}
            None => return Err(Failure::Lost),
        }
    }
    let ((stdout, out_cut), (stderr, err_cut)) = (stdout.finish(), stderr.finish());
    Ok(Output {
        code,
        stdout,
        stderr,
        cut: out_cut + err_cut,
    })
}

/// Closes the channel unless disarmed: covers timeouts and cancellation,
/// where the future is dropped mid-await and cannot clean up itself.
struct CloseOnDrop(Option<Arc<ChannelWriteHalf<Msg>>>);

impl CloseOnDrop {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        let Some(tx) = self.0.take() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let _ = tx.signal(Sig::TERM).await;
            let _ = tx.close().await;
        });
    }
}
