//! Blue-green: which colour is live, judged from the hosts' traffic
//! records (never by timestamp alone), which hosts make up each colour, and
//! where traffic goes back to.

use chrono::{DateTime, Utc};

use crate::config::Color;
use crate::release::ReleaseId;

/// One host's last `traffic` journal line: the colour it names and when
/// it was written (`None` for a host that has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TrafficRecord<'a> {
    pub host: &'a str,
    pub said: Option<(&'a str, &'a str)>,
}

impl TrafficRecord<'_> {
    /// Written after `now` (by more than a minute of clock skew): a clock
    /// ahead, or a forged line.
    pub fn is_ahead(&self, now: DateTime<Utc>) -> bool {
        self.said.is_some_and(|(_, ts)| {
            DateTime::parse_from_rfc3339(ts)
                .is_ok_and(|t| t.with_timezone(&Utc) > now + chrono::Duration::minutes(1))
        })
    }

    /// "web1 says blue (2026-01-01T00:00:00Z)", or "web1 says nothing".
    pub fn describe(&self, now: DateTime<Utc>) -> String {
        match self.said {
            None => format!("{} says nothing", self.host),
            Some((color, ts)) if self.is_ahead(now) => {
                format!("{} says {color} ({ts}, dated after now)", self.host)
            }
            Some((color, ts)) => format!("{} says {color} ({ts})", self.host),
        }
    }
}

/// Which colour is live by the hosts' journals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Live {
    /// No journal names one (a first deploy).
    Unknown,
    /// Every journal names this colour.
    Agreed(String),
    /// The journals name different colours, or some name none: no record
    /// wins by its date (one host's clock or forged line would decide for
    /// the fleet); the user says which is live.
    Disagree,
}

pub(crate) fn live_color(records: &[TrafficRecord]) -> Live {
    let Some(first) = records.iter().find_map(|r| r.said) else {
        return Live::Unknown;
    };
    if records.iter().all(|r| r.said.map(|s| s.0) == Some(first.0)) {
        Live::Agreed(first.0.to_string())
    } else {
        Live::Disagree
    }
}

/// The live colour this run goes by: what every journal says, or what the
/// user said (`--live`), which must be one of `colors`. Journals that
/// disagree with nobody to settle it stop the run (the message names each
/// host's record).
pub(crate) fn live_by(
    records: &[TrafficRecord],
    said: Option<&str>,
    colors: &[Color; 2],
    now: DateTime<Utc>,
) -> Result<Option<String>, String> {
    if let Some(said) = said {
        if !colors.iter().any(|c| c.name == said) {
            return Err(format!(
                "--live {said:?} is not one of blue_green.colors ({}, {})",
                colors[0].name, colors[1].name
            ));
        }
        return Ok(Some(said.to_string()));
    }
    match live_color(records) {
        Live::Unknown => Ok(None),
        Live::Agreed(color) => Ok(Some(color)),
        Live::Disagree => {
            let said: Vec<String> = records.iter().map(|r| r.describe(now)).collect();
            Err(format!(
                "the hosts' journals disagree on the live colour: {}; nothing was changed. Look at the load balancer, then say which colour is live with --live {} or --live {}",
                said.join(", "),
                colors[0].name,
                colors[1].name
            ))
        }
    }
}

/// The live and idle colour by index into `colors`. With no colour live
/// yet, the first colour is the idle one (a first deploy makes it live).
pub(crate) fn sides(
    live: Option<&str>,
    colors: &[Color; 2],
) -> Result<(Option<usize>, usize), String> {
    match live {
        None => Ok((None, 0)),
        Some(name) => match colors.iter().position(|c| c.name == name) {
            Some(i) => Ok((Some(i), 1 - i)),
            None => Err(format!(
                "the hosts' journals say {name:?} is live, which is not one of blue_green.colors ({}, {}); set colors back, or send traffic by hand and fix the file",
                colors[0].name, colors[1].name
            )),
        },
    }
}

/// A blue-green deploy or rollback works on both colours whole: `--limit`
/// may leave out hosts of neither colour, never part of one.
pub(crate) fn whole_colors(selected: &[&str], colors: &[Color; 2]) -> Result<(), String> {
    if let Some(stray) = selected
        .iter()
        .find(|h| !colors.iter().any(|c| c.hosts.iter().any(|x| x == *h)))
    {
        return Err(format!(
            "{stray} is in neither colour ({} or {}); leave it out with --limit",
            colors[0].name, colors[1].name
        ));
    }
    for color in colors {
        let missing: Vec<&str> = color
            .hosts
            .iter()
            .map(String::as_str)
            .filter(|h| !selected.contains(h))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "--limit cuts across the colour {:?}: it leaves out {}; a blue-green deploy or rollback works on both colours whole",
                color.name,
                missing.join(", ")
            ));
        }
    }
    Ok(())
}

/// A blue-green rollback sends traffic back to the colour that is not live;
/// every host of it must still run a release. Returns that colour's index.
pub(crate) fn traffic_back(
    live: Option<usize>,
    colors: &[Color; 2],
    other_currents: &[(&str, Option<&ReleaseId>)],
) -> Result<usize, String> {
    let Some(live) = live else {
        return Err(
            "no colour is live yet (no hoist deploy switched traffic), so there is nothing to go back to".into(),
        );
    };
    let other = 1 - live;
    let bare: Vec<&str> = other_currents
        .iter()
        .filter(|(_, c)| c.is_none())
        .map(|(h, _)| *h)
        .collect();
    if !bare.is_empty() {
        return Err(format!(
            "{} cannot take traffic back: {} run(s) no release",
            colors[other].name,
            bare.join(", ")
        ));
    }
    Ok(other)
}
