//! Picks the renderer for this run from the flags and the terminal, and
//! tees every event into the full log when there is one.

use super::clock::{Clock, SystemClock};
use super::json::Json;
use super::plain::{Plain, PlainOptions, Stamp, Verbosity};
use super::style::Paint;
use super::tty::Tty;
use super::{Event, Level, Reporter};
use console::Term;
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::sync::Arc;

/// `--color auto|always|never`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colour on a terminal, unless NO_COLOR is set.
    #[default]
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether to colour what goes to `term`.
    pub fn paint_for(self, term: &Term) -> Paint {
        Paint::new(match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
                term.is_term() && !no_color && std::env::var("TERM").as_deref() != Ok("dumb")
            }
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct ReportOptions {
    pub json: bool,
    pub color: ColorChoice,
    pub quiet: bool,
    pub verbose: bool,
    /// Every event, at full verbosity, is appended here as a plain line.
    pub log_file: Option<PathBuf>,
    /// The command starts a run (`run_started`), which NDJSON writes first.
    pub starts_a_run: bool,
}

impl ReportOptions {
    fn verbosity(&self) -> Verbosity {
        if self.quiet {
            Verbosity::Quiet
        } else if self.verbose {
            Verbosity::Verbose
        } else {
            Verbosity::Normal
        }
    }
}

/// The reporter for this run:
/// - `--json`: NDJSON on stdout; warnings, errors, failures and the summary as plain lines on stderr;
/// - stdout and stderr both terminals, no `--verbose`: the live view, drawn on stderr;
/// - otherwise plain lines on stdout.
pub fn reporter(opts: &ReportOptions) -> Arc<dyn Reporter> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (stdout, stderr) = (Term::stdout(), Term::stderr());
    let actions = super::workflow::under_actions();
    let main: Arc<dyn Reporter> = if opts.json {
        let human = PlainOptions {
            verbosity: Verbosity::Quiet,
            paint: opts.color.paint_for(&stderr),
            stamp: Stamp::Time,
            tables: false,
        };
        let json = Json::new(Box::new(std::io::stdout()), clock.clone());
        let json = if opts.starts_a_run {
            json.run_first()
        } else {
            json
        };
        let copy = Plain::new(Box::new(std::io::stderr()), human, clock.clone());
        match actions {
            true => Arc::new(Tee {
                main: Arc::new(json.inert()),
                copy: Arc::new(copy.inert()),
            }),
            false => Arc::new(Tee {
                main: Arc::new(json),
                copy: Arc::new(copy),
            }),
        }
    } else if stdout.is_term() && stderr.is_term() && !opts.verbose {
        let paint = opts.color.paint_for(&stderr);
        // The bars' own colours (spinner, bar) follow console's switch for stderr.
        console::set_colors_enabled_stderr(paint.is_color());
        Arc::new(Tty::new(paint, opts.quiet))
    } else {
        let plain = PlainOptions {
            verbosity: opts.verbosity(),
            paint: opts.color.paint_for(&stdout),
            stamp: Stamp::Time,
            tables: true,
        };
        let out = Plain::new(Box::new(std::io::stdout()), plain, clock.clone());
        if actions {
            let summary = std::env::var_os("GITHUB_STEP_SUMMARY")
                .filter(|p| !p.is_empty())
                .and_then(|p| OpenOptions::new().create(true).append(true).open(p).ok())
                .map(|f| Box::new(f) as Box<dyn std::io::Write + Send>);
            Arc::new(out.github(summary))
        } else {
            Arc::new(out)
        }
    };

    let Some(path) = &opts.log_file else {
        return main;
    };
    // Every hook line and diagnose output: readable by this user only.
    let open = std::os::unix::fs::OpenOptionsExt::mode(
        OpenOptions::new().create(true).append(true),
        0o600,
    )
    .open(path);
    match open {
        Ok(file) => {
            let full = PlainOptions {
                verbosity: Verbosity::Verbose,
                paint: Paint::plain(),
                stamp: Stamp::Full,
                tables: true,
            };
            Arc::new(Tee {
                main,
                copy: Arc::new(Plain::new(Box::new(file), full, clock)),
            })
        }
        Err(e) => {
            main.event(&Event::Message {
                level: Level::Warn,
                host: None,
                text: format!("cannot write the log file {}: {e}", path.display()),
            });
            main
        }
    }
}

/// Sends every event to `main` and to a plain `copy` (the stderr text of
/// `--json`, or the full log). Only `main` is asked questions; the copy
/// records the question and the answer.
pub struct Tee {
    pub main: Arc<dyn Reporter>,
    pub copy: Arc<Plain>,
}

impl Reporter for Tee {
    fn event(&self, event: &Event) {
        self.copy.event(event);
        self.main.event(event);
    }

    fn confirm(&self, question: &str) -> Option<bool> {
        let answer = self.main.confirm(question);
        let said = match answer {
            Some(true) => "yes",
            Some(false) => "no",
            None => "not asked (no terminal)",
        };
        self.copy.note(&format!("{question} {said}"));
        answer
    }

    fn ask_secret(&self, prompt: &str) -> Option<String> {
        let answer = self.main.ask_secret(prompt);
        let said = match answer {
            Some(_) => "(answered; not recorded)",
            None => "not asked (no terminal)",
        };
        self.copy.note(&format!("{} {said}", prompt.trim_end()));
        answer
    }

    fn finish(&self) {
        self.main.finish();
        self.copy.finish();
    }
}
