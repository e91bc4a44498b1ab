//! What one command looks like inside the persistent shell (`shell`): the
//! text sent to the shell's stdin, and the parsing of what comes back.
//!
//! Every command gets a fresh random nonce. On stdout the shell sends
//! `<nonce>:pid <pid>\n`, the command's stdout, then `\n<nonce>:end <status>\n`;
//! on stderr the command's stderr, then `\n<nonce>:end\n`. The `\n` before each
//! end marker is ours, so output without a trailing newline survives as is.
//! A command cannot print the marker by chance: the nonce is 128 random bits,
//! found only in the shell's input and, until the script starts, in the argv
//! of the `sh` that starts it; never in the script's argv or environment.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};

/// Starts the persistent shell, run by the login shell like any command.
/// `@N:ready` on both streams ends whatever the login shell's rc files print,
/// and nothing is sent to the shell before both arrived, so rc files cannot
/// read our commands. `setsid` is required: see [`RUN`].
///
/// The shell reads its commands itself, with `read` (which takes a pipe one
/// byte at a time, so that a command reading stdin gets exactly what
/// follows its text, as an upload must; `sh -s` reads ahead). It runs only
/// what comes framed with the shell's nonce: a line `@N <count>`, that many
/// lines of text, then `@N:run`. Any other line where a frame line belongs
/// ends it (exit 101): should a payload's bytes ever be read as input, the
/// shell dies instead of running them, since nothing in them can know the
/// nonce. (The count keeps the nonce off every line of a command, which once
/// made up half the bytes hoist sent per host.) The text holds no backslash
/// and no newline, for fish's sake (the login shell quotes it); `n` is a
/// newline made without either.
const START: &str = "exec sh -c 'command -v setsid >/dev/null 2>&1 || exit 100; \
                     n=$(echo; echo x); n=${n%x}; c=; \
                     echo @N:ready; echo @N:ready >&2; \
                     while IFS= read -r l; do case $l in \
                     \"@N \"*) k=${l#@N }; [ \"$k\" -ge 0 ] 2>/dev/null || exit 101; c=; \
                     while [ \"$k\" -gt 0 ]; do IFS= read -r l || exit 101; c=\"$c$l$n\"; k=$((k-1)); done ;; \
                     @N:run) eval \"$c\"; c= ;; \
                     *) exit 101 ;; esac; done'";

/// One command. `sh -c @SCRIPT` runs in a session of its own (`setsid`), so
/// killing its process group on a timeout kills it and its children, as sshd's
/// signal does for a command on its own channel, and nothing that an earlier
/// command left running. The middle `sh` announces that group's id, then
/// becomes the script's `sh -c`, so the script starts exactly as with
/// `sh -c <script>`. Its stdout and stderr go through pipes to two `cat`s
/// (fd 3 and 2 are the channel), so the end markers come only after every
/// process holding them has closed them (a background job that keeps its
/// output open delays the end, as sshd delays the channel's close), and
/// nothing a command leaves behind can write into the next command's output.
/// The status comes back through fd 5, the command substitution.
///
/// Its stdin is `/dev/null`, or with an input of N bytes (`@HEAD`) a pipe
/// from `head -c N`, which takes exactly the N bytes that follow the
/// command's text in the shell's own input: whatever the script does with
/// them (reads them all, stops early, dies), the `cat` after it drains that
/// pipe (`@DRAIN`), so the end markers come only once all N bytes are read
/// and the shell's next read starts at the next command. (hoist sends
/// nothing after the N bytes until the end markers arrived, so even a
/// `head` that reads ahead, as busybox's does, finds no more.)
const RUN: &str = r#"@HEAD{ rc=$({ { { setsid sh -c 'printf "%s %d\n" @N:pid "$$"; exec sh -c "$1"' sh @SCRIPT @STDIN2>&7 3>&- 5>&- 7>&-; echo $? >&5;@DRAIN } | cat >&3 5>&- 7>&-; } 7>&1 | cat >&2 3>&- 5>&-; } 5>&1); printf '\n%s %s\n' @N:end "$rc"; printf '\n%s\n' @N:end >&2; } 3>&1
"#;

/// Per-command random marker; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nonce(String);

impl Nonce {
    /// 128 bits from std's randomly keyed SipHash: unpredictable without
    /// hoist's memory, which is all a marker needs.
    pub fn new() -> Nonce {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let word = || RandomState::new().hash_one(COUNTER.fetch_add(1, Ordering::Relaxed));
        Nonce(format!("hoist{:016x}{:016x}", word(), word()))
    }

    pub fn marker(&self, what: &str) -> String {
        format!("{}:{what}", self.0)
    }
}

/// The command that starts the persistent shell.
pub fn start(nonce: &Nonce) -> String {
    START.replace("@N", &nonce.0)
}

/// The command that runs `quoted` (a script quoted as one sh word), with an
/// input of `input` bytes or none.
pub fn run(nonce: &Nonce, quoted: &str, input: Option<u64>) -> String {
    let (head, stdin, drain) = match input {
        Some(len) => (
            format!("head -c {len} 2>/dev/null | "),
            "",
            " cat >/dev/null;",
        ),
        None => (String::new(), "</dev/null ", ""),
    };
    // The script goes in last, so nothing in it is ever replaced.
    RUN.replace("@HEAD", &head)
        .replace("@STDIN", stdin)
        .replace("@DRAIN", drain)
        .replace("@N", &nonce.0)
        .replace("@SCRIPT", quoted)
}

/// What the shell started with `key` ([`start`]) is sent to run `command`:
/// the key and how many lines follow, the lines, then the line that runs them.
pub fn input(key: &Nonce, command: &str) -> String {
    let body = command.strip_suffix('\n').unwrap_or(command);
    let lines = body.split('\n').count();
    format!("{} {lines}\n{body}\n{}\n", key.0, key.marker("run"))
}

/// The `ready` line on one stream of a starting shell: true once it arrived,
/// whatever the login shell printed before it.
pub fn is_ready(nonce: &Nonce, stream: &[u8]) -> bool {
    let line = format!("{}\n", nonce.marker("ready"));
    find(stream, line.as_bytes(), 0).is_some()
}

/// One output stream of a command, read up to its end marker.
pub struct Stream {
    buf: Vec<u8>,
    /// `\n<nonce>:end`.
    end: Vec<u8>,
    /// `<nonce>:pid `, while the first line may still be the pid line.
    pid_line: Option<Vec<u8>>,
    pid: Option<u32>,
    /// Where the command's own bytes start (after the pid line on stdout).
    start: usize,
    /// No end marker starts before this.
    searched: usize,
    /// The end marker's position, and the end of its line.
    found: Option<(usize, usize)>,
    /// The most of the command's bytes kept: the last ones.
    keep: usize,
    /// The command's bytes dropped before those kept.
    cut: u64,
}

/// The pid line is short: a first line longer than this without its
/// newline is not one.
const PID_LINE_MAX: usize = 4096;

impl Stream {
    /// Stdout, which starts with the pid line; the last `keep` bytes of
    /// the command's own are kept.
    pub fn stdout(nonce: &Nonce, keep: usize) -> Stream {
        let mut stream = Stream::stderr(nonce, keep);
        stream.pid_line = Some(format!("{} ", nonce.marker("pid")).into_bytes());
        stream
    }

    pub fn stderr(nonce: &Nonce, keep: usize) -> Stream {
        Stream {
            buf: Vec::new(),
            end: format!("\n{}", nonce.marker("end")).into_bytes(),
            pid_line: None,
            pid: None,
            start: 0,
            searched: 0,
            found: None,
            keep,
            cut: 0,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        if self.found.is_some() || !self.take_pid_line() {
            return;
        }
        let from = self.searched.max(self.start);
        match find(&self.buf, &self.end, from) {
            Some(at) => {
                self.searched = at;
                let tail = at + self.end.len();
                if let Some(nl) = self.buf[tail..].iter().position(|&b| b == b'\n') {
                    self.found = Some((at, tail + nl + 1));
                }
            }
            None => self.searched = self.buf.len().saturating_sub(self.end.len() - 1),
        }
        if self.found.is_none() {
            self.forget_oldest();
        }
    }

    /// Drops the oldest of the command's bytes once half as many again as
    /// `keep` are held before where an end marker may start (all of them
    /// the command's): `keep` of them stay.
    fn forget_oldest(&mut self) {
        let certain = self.searched.saturating_sub(self.start);
        if certain <= self.keep + self.keep / 2 {
            return;
        }
        let over = certain - self.keep;
        self.buf.drain(self.start..self.start + over);
        self.searched -= over;
        self.cut += over as u64;
    }

    /// Takes the pid line off the front once the first line is complete.
    /// False while it is not: nothing after it can be judged yet.
    fn take_pid_line(&mut self) -> bool {
        let Some(prefix) = &self.pid_line else {
            return true;
        };
        let Some(nl) = self.buf.iter().position(|&b| b == b'\n') else {
            if self.buf.len() > PID_LINE_MAX {
                self.pid_line = None;
                return true;
            }
            return false;
        };
        let pid = self.buf[..nl]
            .strip_prefix(prefix.as_slice())
            .and_then(|pid| std::str::from_utf8(pid).ok())
            .and_then(|pid| pid.parse().ok());
        if pid.is_some() {
            self.pid = pid;
            self.start = nl + 1;
        }
        self.pid_line = None;
        true
    }

    /// The process group the command runs in, once its pid line arrived.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    pub fn is_done(&self) -> bool {
        self.found.is_some()
    }

    /// True when nothing at all arrived: the command cannot have started.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The command's bytes, what followed the end marker on its line (the
    /// status, on stdout), and whether anything came after that line.
    pub fn finish(self) -> Finished {
        let (mut bytes, tail, trailing) = match self.found {
            None => {
                // Cut short: everything the command wrote.
                let mut bytes = self.buf;
                bytes.drain(..self.start);
                (bytes, Vec::new(), false)
            }
            Some((at, line_end)) => {
                let tail = self.buf[at + self.end.len()..line_end - 1].to_vec();
                let trailing = line_end < self.buf.len();
                let mut bytes = self.buf;
                bytes.truncate(at);
                bytes.drain(..self.start);
                (bytes, tail, trailing)
            }
        };
        let over = bytes.len().saturating_sub(self.keep);
        bytes.drain(..over);
        Finished {
            bytes,
            tail,
            trailing,
            cut: self.cut + over as u64,
        }
    }
}

pub struct Finished {
    pub bytes: Vec<u8>,
    pub tail: Vec<u8>,
    pub trailing: bool,
    /// The command's bytes dropped before those kept.
    pub cut: u64,
}

impl Finished {
    /// The exit status from stdout's end line ` <status>`.
    pub fn status(&self) -> Option<u32> {
        let text = std::str::from_utf8(&self.tail).ok()?;
        text.strip_prefix(' ')?.parse().ok()
    }
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|at| at + from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host_shells::shells;

    fn nonce() -> Nonce {
        Nonce("hoistN".into())
    }

    /// Feeds `data` in chunks of `size`, as the channel might deliver it.
    fn stream(data: &[u8], size: usize) -> (Stream, Option<u32>) {
        let mut s = Stream::stdout(&nonce(), 1 << 20);
        for chunk in data.chunks(size) {
            s.push(chunk);
        }
        let pid = s.pid();
        (s, pid)
    }

    #[test]
    fn nonces_differ() {
        let (a, b) = (Nonce::new(), Nonce::new());
        assert_ne!(a, b);
        assert_eq!(a.0.len(), "hoist".len() + 32);
    }

    #[test]
    fn stdout_frame_is_split_exactly_at_every_chunk_size() {
        for body in [&b"line\nno newline at end"[..], b"", b"\n"] {
            let mut wire = b"hoistN:pid 4242\n".to_vec();
            wire.extend_from_slice(body);
            wire.extend_from_slice(b"\nhoistN:end 3\n");
            for size in 1..wire.len() {
                let (s, pid) = stream(&wire, size);
                assert!(s.is_done(), "chunk size {size}");
                assert_eq!(pid, Some(4242));
                let done = s.finish();
                assert_eq!(done.bytes, body, "chunk size {size}");
                assert_eq!(done.status(), Some(3));
                assert!(!done.trailing);
            }
        }
    }

    #[test]
    fn empty_output_and_trailing_newlines_are_kept() {
        for body in [&b""[..], b"\n", b"\n\n", b"x\n\n"] {
            let mut wire = body.to_vec();
            wire.extend_from_slice(b"\nhoistN:end\n");
            let (s, _) = stream(&wire, 3);
            assert_eq!(s.finish().bytes, body);
        }
    }

    #[test]
    fn lookalike_markers_are_output() {
        let body = b"hoistN:end 0\n\nhoistN:en\nhoistM:end 1\n";
        let mut wire = body.to_vec();
        wire.extend_from_slice(b"\nhoistN:end 0\n");
        let (s, _) = stream(&wire, 5);
        assert_eq!(s.finish().bytes, body);
    }

    #[test]
    fn an_end_line_is_complete_only_with_its_newline() {
        let (s, _) = stream(b"out\nhoistN:end 12", 4);
        assert!(!s.is_done());
    }

    #[test]
    fn no_pid_line_means_all_bytes_are_the_commands() {
        let (s, pid) = stream(b"setsid: failed\n\nhoistN:end 127\n", 2);
        assert_eq!(pid, None);
        let done = s.finish();
        assert_eq!(done.bytes, b"setsid: failed\n");
        assert_eq!(done.status(), Some(127));
    }

    #[test]
    fn bytes_after_the_end_line_are_reported() {
        let (s, _) = stream(b"a\nhoistN:end 0\nstray", 64);
        let done = s.finish();
        assert_eq!(done.bytes, b"a");
        assert!(done.trailing);
    }

    #[test]
    fn a_stream_cut_short_keeps_what_arrived() {
        let (s, pid) = stream(b"hoistN:pid 7\npartial", 4);
        assert_eq!(pid, Some(7));
        assert!(!s.is_done());
        assert_eq!(s.finish().bytes, b"partial");
    }

    #[test]
    fn a_long_answer_keeps_its_last_bytes_and_still_finds_its_end() {
        let mut wire = b"hoistN:pid 9\n".to_vec();
        wire.extend(std::iter::repeat_n(b'x', 10_000));
        wire.extend_from_slice(b"last line\nhoistN:end 0\n");
        for size in [1, 7, 64, 4096] {
            let mut s = Stream::stdout(&nonce(), 100);
            for chunk in wire.chunks(size) {
                s.push(chunk);
                assert!(s.buf.len() <= 200 + size, "held {} bytes", s.buf.len());
            }
            assert!(s.is_done(), "chunk size {size}");
            assert_eq!(s.pid(), Some(9));
            let done = s.finish();
            assert_eq!(done.bytes.len(), 100);
            assert!(done.bytes.ends_with(b"xxlast line"), "chunk size {size}");
            assert_eq!(done.cut, 10_000 + 9 - 100);
            assert_eq!(done.status(), Some(0));
        }
        // A first line that never ends is no pid line, and is not held whole.
        let mut s = Stream::stdout(&nonce(), 100);
        for _ in 0..1000 {
            s.push(&[b'y'; 64]);
        }
        assert!(s.buf.len() <= PID_LINE_MAX + 64, "held {}", s.buf.len());
        assert_eq!(s.pid(), None);
    }

    #[test]
    fn ready_may_follow_login_noise() {
        assert!(is_ready(&nonce(), b"Welcome!\nhoistN:ready\n"));
        assert!(!is_ready(&nonce(), b"hoistN:ready"));
    }

    #[test]
    fn the_script_is_inserted_verbatim_and_last() {
        let text = run(&nonce(), "'@N @SCRIPT'", None);
        assert!(text.contains(" sh '@N @SCRIPT' </dev/null"), "{text}");
        assert!(text.ends_with("} 3>&1\n"));
        assert!(!text.contains("@N:"));
        let text = run(&nonce(), "'@HEAD'", Some(42));
        assert!(text.starts_with("head -c 42 2>/dev/null | {"), "{text}");
        assert!(text.contains(" sh '@HEAD' 2>&7"), "{text}");
        assert!(text.contains("echo $? >&5; cat >/dev/null; }"), "{text}");
    }

    #[test]
    fn a_command_is_framed_with_the_key_and_its_line_count() {
        let framed = input(&nonce(), "a\n'b\n\nc'\n");
        assert_eq!(framed, "hoistN 4\na\n'b\n\nc'\nhoistN:run\n");
        assert_eq!(input(&nonce(), "x"), "hoistN 1\nx\nhoistN:run\n");
    }

    /// A frame line whose count is not a number ends the shell; so does
    /// input that ends inside a command's lines.
    #[test]
    fn a_bad_count_or_a_short_command_ends_the_shell_unrun() {
        let key = Nonce::new();
        let echo = |text: &str| input(&key, &run(&Nonce::new(), text, None));
        let dir = tempfile::tempdir().unwrap();
        for (wire, ran) in [
            (format!("{} x1\n{}", key.0, echo("'echo first'")), "first"),
            (
                format!("{}{} 3\necho second\n", echo("'echo first'"), key.0),
                "second",
            ),
        ] {
            for shell in shells() {
                let out = shell.run(dir.path(), &start(&key), wire.as_bytes());
                let stdout = out.text();
                assert_eq!(out.code, 101, "{}: {wire}: {stdout}", shell.name);
                let lines: Vec<&str> = stdout.lines().collect();
                assert!(!lines.contains(&ran), "{}: {wire}: {stdout}", shell.name);
            }
        }
    }

    /// The shell `START` runs, fed by hand as the channel would feed it
    /// (dash, and busybox's shell with this machine's tools: the input is
    /// written all at once here, which busybox's `head`, reading ahead,
    /// would take more of than hoist, waiting for each command's end, ever
    /// lets it): a command's input is read
    /// exactly, whatever the command does with it, and input that is not
    /// framed with the key ends the shell instead of running.
    #[test]
    fn the_shell_reads_inputs_exactly_and_runs_only_framed_commands() {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let key = Nonce::new();
        let mut shells = vec![vec!["sh"]];
        if Command::new("busybox")
            .arg("true")
            .status()
            .is_ok_and(|s| s.success())
        {
            shells.push(vec!["busybox", "sh"]);
        }
        for shell in shells {
            let dir = tempfile::tempdir().unwrap();
            let owned = dir.path().join("owned");
            let hostile = format!("touch '{}';\n", owned.display()).repeat(2000);
            let mut wire = String::new();
            // Stops reading at once; then reads half and dies; then reads all.
            for script in [
                "exit 3",
                "head -c 100 >/dev/null; kill -9 $$",
                "cat >/dev/null",
            ] {
                let command = run(
                    &Nonce::new(),
                    &shlex::try_quote(script).unwrap(),
                    Some(hostile.len() as u64),
                );
                wire += &input(&key, &command);
                wire += &hostile;
            }
            // Frame lines inside a command's text are only text.
            let echo = format!(
                "printf '%s\\n' '{}' '{} 9' 'still framed'",
                key.marker("run"),
                key.0
            );
            let echo = shlex::try_quote(&echo).unwrap().into_owned();
            wire += &input(&key, &run(&Nonce::new(), &echo, None));
            // Unframed: the shell ends here.
            wire += &hostile;
            wire += &input(&key, &run(&Nonce::new(), "'echo too late'", None));
            let mut child = Command::new(shell[0])
                .args(&shell[1..])
                .arg("-c")
                .arg(start(&key))
                .current_dir(dir.path())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            let writer = std::thread::spawn(move || {
                let _ = stdin.write_all(wire.as_bytes());
            });
            let out = child.wait_with_output().unwrap();
            writer.join().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(!owned.exists(), "{shell:?}: the payload ran: {stdout}");
            assert_eq!(out.status.code(), Some(101), "{shell:?}: {stdout}");
            assert!(stdout.contains("still framed"), "{shell:?}: {stdout}");
            let run_line = format!("{}\n{} 9\n", key.marker("run"), key.0);
            assert!(stdout.contains(&run_line), "{shell:?}: {stdout}");
            assert!(!stdout.contains("too late"), "{shell:?}: {stdout}");
            let statuses: Vec<&str> = stdout.lines().filter(|l| l.contains(":end ")).collect();
            assert_eq!(statuses.len(), 4, "{shell:?}: {stdout}");
            assert!(statuses[0].ends_with(":end 3"), "{shell:?}: {stdout}");
            assert!(statuses[1].ends_with(":end 137"), "{shell:?}: {stdout}");
            assert!(statuses[2].ends_with(":end 0"), "{shell:?}: {stdout}");
        }
    }
}
