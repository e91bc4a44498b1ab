//! `[[analysis]]`: gates the rollout samples during its bakes (a timed
//! canary_pause, `wave_bake`, a zone bake), each with one provider.

use std::time::Duration;

use super::ConfigError;
use super::doc::Doc;
use super::file::{RawGate, RawPrometheus};
pub use crate::engine::analysis::gate::{Condition, OnInconclusive};

/// `interval` when the gate leaves it out.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// `consecutive_errors` when the gate leaves it out.
pub const DEFAULT_CONSECUTIVE_ERRORS: u32 = 4;

/// One gate, checked.
#[derive(Debug, Clone)]
pub struct Gate {
    pub name: String,
    pub provider: Provider,
    /// Between two samples (the first comes one interval into the bake).
    pub interval: Duration,
    /// Samples per step; `None`: as many as the bake holds (at least one).
    pub count: Option<u32>,
    /// Failed samples tolerated in a step.
    pub failure_limit: u32,
    /// Samples in a row the provider may fail to answer.
    pub consecutive_errors: u32,
    pub on_inconclusive: OnInconclusive,
    /// Records and reports, never stops the rollout.
    pub dry_run: bool,
}

/// Where a gate's samples come from.
#[derive(Debug, Clone)]
pub enum Provider {
    /// An instant query on Prometheus's HTTP API.
    Prometheus {
        /// `http://host:port`, without `/api/v1/query`.
        url: String,
        query: String,
        pass: Condition,
    },
    /// A command on this machine: exit 0 pass, 1 fail, else inconclusive.
    Command(Vec<String>),
    /// A command on each host of the step, exit codes as `Command`.
    HostCommand(Vec<String>),
}

impl Provider {
    pub fn kind(&self) -> &'static str {
        match self {
            Provider::Prometheus { .. } => "prometheus",
            Provider::Command(_) => "command",
            Provider::HostCommand(_) => "host_command",
        }
    }

    /// One line: what it asks.
    pub fn describe(&self) -> String {
        match self {
            Provider::Prometheus { url, query, pass } => {
                format!("prometheus {url}: {query} passes {pass}")
            }
            Provider::Command(argv) => format!(
                "command {}",
                shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_default()
            ),
            Provider::HostCommand(argv) => format!(
                "host_command {}",
                shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_default()
            ),
        }
    }
}

/// The gates of the file, checked: names unique, exactly one provider
/// each, a usable condition and URL.
pub(super) fn gates(raw: Option<Vec<RawGate>>, doc: &Doc) -> Result<Vec<Gate>, ConfigError> {
    let mut out: Vec<Gate> = Vec::new();
    for (i, raw) in raw.unwrap_or_default().into_iter().enumerate() {
        let at = |e: String| doc.error(&["analysis"], format!("[{i}]: {e}"));
        let name = raw.name.0;
        if out.iter().any(|g| g.name == name) {
            return Err(at(format!(
                "a second gate named {name:?}; names are unique"
            )));
        }
        let provider = provider(raw.prometheus, raw.command, raw.host_command).map_err(&at)?;
        let on_inconclusive = match raw.on_inconclusive.as_deref() {
            None | Some("pause") => OnInconclusive::Pause,
            Some("fail") => OnInconclusive::Fail,
            Some("pass") => OnInconclusive::Pass,
            Some(other) => {
                return Err(at(format!(
                    "on_inconclusive = {other:?}: expected \"pause\", \"fail\" or \"pass\""
                )));
            }
        };
        out.push(Gate {
            name,
            provider,
            interval: raw.interval.map_or(DEFAULT_INTERVAL, |d| d.0),
            count: raw.count.map(|c| u32::try_from(c.0).unwrap_or(u32::MAX)),
            failure_limit: raw.failure_limit.unwrap_or(0),
            consecutive_errors: raw.consecutive_errors.unwrap_or(DEFAULT_CONSECUTIVE_ERRORS),
            on_inconclusive,
            dry_run: raw.dry_run.unwrap_or(false),
        });
    }
    Ok(out)
}

fn provider(
    prometheus: Option<RawPrometheus>,
    command: Option<Vec<String>>,
    host_command: Option<Vec<String>>,
) -> Result<Provider, String> {
    const ONE: &str = "a gate has exactly one of prometheus = { url, query, pass }, command = [...] or host_command = [...]";
    let argv = |key: &str, argv: Vec<String>| match argv.first() {
        Some(first) if !first.is_empty() => Ok(argv),
        _ => Err(format!(
            "{key} is empty; e.g. {key} = [\"./check-errors\", \"--since\", \"1m\"]"
        )),
    };
    match (prometheus, command, host_command) {
        (Some(p), None, None) => {
            let pass = Condition::parse(&p.pass).map_err(|e| format!("prometheus.pass = {e}"))?;
            let rest = p.url.strip_prefix("http://").ok_or_else(|| {
                format!(
                    "prometheus.url = {:?}: expected http://host:port (https is not supported)",
                    p.url
                )
            })?;
            if rest.split(['/', '?']).next().is_none_or(str::is_empty) {
                return Err(format!("prometheus.url = {:?}: no host", p.url));
            }
            if p.query.trim().is_empty() {
                return Err("prometheus.query is empty".into());
            }
            Ok(Provider::Prometheus {
                url: p.url.trim_end_matches('/').to_string(),
                query: p.query,
                pass,
            })
        }
        (None, Some(c), None) => Ok(Provider::Command(argv("command", c)?)),
        (None, None, Some(c)) => Ok(Provider::HostCommand(argv("host_command", c)?)),
        _ => Err(ONE.into()),
    }
}

/// A warning when `gates` exist but no bake of `strategy` samples them.
pub(super) fn unsampled(gates: &[Gate], strategy: &super::Strategy) -> Option<String> {
    let canary_bakes = matches!(strategy.canary_pause, super::Pause::For(d) if !d.is_zero());
    let zone_bakes = strategy
        .zones
        .as_ref()
        .is_some_and(|z| !z.first_zone_bake.is_zero() || !z.zone_bake.is_zero());
    let sampled = canary_bakes || !strategy.wave_bake.is_zero() || zone_bakes;
    (!gates.is_empty() && !sampled).then(|| {
        "[[analysis]] gates are sampled only during bakes, and this strategy has none: set a timed canary_pause, wave_bake or a zone bake".to_string()
    })
}
