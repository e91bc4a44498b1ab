//! Deploy freezes (`[policy] freeze`): windows of wall-clock time in the
//! policy's time zone when deploys, promotions and traffic changes refuse.
//! Whether a moment is frozen is a pure function of the windows and that
//! moment, so it is tested at its edges and across DST changes.

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime};
use chrono::{TimeZone, Timelike, Utc, Weekday};
use chrono_tz::Tz;

/// One window as written, and what it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// As the file writes it ("Fri 16:00 - Mon 08:00").
    pub text: String,
    span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Span {
    /// Every week, from one weekday and time to another (it may wrap
    /// around the week's end). Start included, end excluded.
    Weekly {
        from: (Weekday, NaiveTime),
        to: (Weekday, NaiveTime),
    },
    /// Once: from one local moment to another, start included, end excluded.
    Once {
        from: NaiveDateTime,
        to: NaiveDateTime,
    },
}

/// The windows and the time zone they are written in.
#[derive(Debug, Clone)]
pub struct Freeze {
    pub windows: Vec<Window>,
    pub timezone: Tz,
}

impl Default for Freeze {
    fn default() -> Freeze {
        Freeze {
            windows: Vec::new(),
            timezone: Tz::UTC,
        }
    }
}

/// A moment inside a window: which one, and when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frozen {
    pub window: String,
    pub until: DateTime<Tz>,
}

impl std::fmt::Display for Frozen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "deploys are frozen: policy.freeze {:?} holds until {}",
            self.window,
            self.until.format("%a %Y-%m-%d %H:%M %Z")
        )
    }
}

impl Freeze {
    /// The window `now` falls in, if any (the first in the file's order).
    pub fn at(&self, now: DateTime<Utc>) -> Option<Frozen> {
        let local = now.with_timezone(&self.timezone).naive_local();
        self.windows.iter().find_map(|w| {
            let end = w.span.end_after(local)?;
            Some(Frozen {
                window: w.text.clone(),
                until: resolve(&self.timezone, end),
            })
        })
    }
}

impl Span {
    /// When `local` is inside the window: the local moment it ends.
    fn end_after(&self, local: NaiveDateTime) -> Option<NaiveDateTime> {
        match self {
            Span::Once { from, to } => (*from <= local && local < *to).then_some(*to),
            Span::Weekly { from, to } => {
                let week = 7 * 24 * 60;
                let at = minute_of_week(local.weekday(), local.time());
                let start = minute_of_week(from.0, from.1);
                let end = minute_of_week(to.0, to.1);
                let inside = if start < end {
                    start <= at && at < end
                } else {
                    at >= start || at < end
                };
                if !inside {
                    return None;
                }
                let ahead = (end - at).rem_euclid(week);
                let this_minute = local.with_second(0)?.with_nanosecond(0)?;
                Some(this_minute + Duration::minutes(ahead))
            }
        }
    }
}

fn minute_of_week(day: Weekday, time: NaiveTime) -> i64 {
    i64::from(day.num_days_from_monday()) * 24 * 60
        + i64::from(time.hour()) * 60
        + i64::from(time.minute())
}

/// A local wall-clock moment as a real one: in a DST gap (02:30 that never
/// happened) the first moment after it, in a repeated hour the first.
fn resolve(tz: &Tz, local: NaiveDateTime) -> DateTime<Tz> {
    let mut probe = local;
    for _ in 0..4 {
        match tz.from_local_datetime(&probe) {
            LocalResult::Single(t) => return t,
            LocalResult::Ambiguous(first, _) => return first,
            LocalResult::None => probe += Duration::minutes(30),
        }
    }
    tz.from_utc_datetime(&local)
}

/// Reads one window: "Fri 16:00 - Mon 08:00" (every week), or
/// "2026-12-24 - 2026-12-27" (those days, both included), or
/// "2026-12-24 18:00 - 2026-12-27 08:00".
pub fn parse_window(text: &str) -> Result<Window, String> {
    let bad = |why: &str| {
        format!(
            "{text:?}: {why}; write a weekly window like \"Fri 16:00 - Mon 08:00\" or dates like \"2026-12-24 - 2026-12-27\" (both days included)"
        )
    };
    let (a, b) = text
        .split_once(" - ")
        .ok_or_else(|| bad("expected two ends separated by \" - \""))?;
    let (a, b) = (a.trim(), b.trim());
    let span = match (weekly(a), weekly(b)) {
        (Some(from), Some(to)) => {
            if from == to {
                return Err(bad("the window starts where it ends"));
            }
            Span::Weekly { from, to }
        }
        _ => {
            let from = moment(a, false).ok_or_else(|| bad(&format!("cannot read {a:?}")))?;
            let to = moment(b, true).ok_or_else(|| bad(&format!("cannot read {b:?}")))?;
            if to <= from {
                return Err(bad("it ends before it starts"));
            }
            Span::Once { from, to }
        }
    };
    Ok(Window {
        text: text.to_string(),
        span,
    })
}

/// "Fri 16:00"
fn weekly(s: &str) -> Option<(Weekday, NaiveTime)> {
    let (day, time) = s.split_once(' ')?;
    let day: Weekday = day.parse().ok()?;
    let time = NaiveTime::parse_from_str(time.trim(), "%H:%M").ok()?;
    Some((day, time))
}

/// "2026-12-24" (its start, or with `end` the start of the next day) or
/// "2026-12-24 18:00".
fn moment(s: &str, end: bool) -> Option<NaiveDateTime> {
    if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M") {
        return Some(t);
    }
    let day = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    let day = if end { day.succ_opt()? } else { day };
    day.and_hms_opt(0, 0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn freeze(windows: &[&str], tz: &str) -> Freeze {
        Freeze {
            windows: windows.iter().map(|w| parse_window(w).unwrap()).collect(),
            timezone: tz.parse().unwrap(),
        }
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// (moment in UTC, the end it reports in RFC 3339, or None: not frozen)
    fn check(f: &Freeze, table: &[(&str, Option<&str>)]) {
        for (now, until) in table {
            let got = f.at(utc(now)).map(|z| z.until.to_rfc3339());
            assert_eq!(got.as_deref(), *until, "at {now}");
        }
    }

    #[test]
    fn a_weekly_window_holds_from_its_start_to_its_end_in_local_time() {
        // 2026-12-04 is a Friday; Berlin is UTC+1 in winter.
        let f = freeze(&["Fri 16:00 - Mon 08:00"], "Europe/Berlin");
        let ends = Some("2026-12-07T08:00:00+01:00");
        check(
            &f,
            &[
                ("2026-12-04T14:59:59Z", None), // Fri 15:59:59
                ("2026-12-04T15:00:00Z", ends), // Fri 16:00: the start is inside
                ("2026-12-05T12:00:00Z", ends), // Sat
                ("2026-12-07T06:59:59Z", ends), // Mon 07:59:59
                ("2026-12-07T07:00:00Z", None), // Mon 08:00: the end is outside
                ("2026-12-09T12:00:00Z", None), // Wed
            ],
        );
    }

    #[test]
    fn a_weekly_window_follows_the_wall_clock_across_dst_changes() {
        // Summer time starts in Berlin on Sunday 2026-03-29 (02:00 -> 03:00):
        // Monday 08:00 is then 06:00 UTC, not 07:00.
        let f = freeze(&["Fri 16:00 - Mon 08:00"], "Europe/Berlin");
        check(
            &f,
            &[
                ("2026-03-27T15:00:00Z", Some("2026-03-30T08:00:00+02:00")), // Fri 16:00 CET
                ("2026-03-30T05:59:00Z", Some("2026-03-30T08:00:00+02:00")), // Mon 07:59 CEST
                ("2026-03-30T06:00:00Z", None), // Mon 08:00 CEST (07:00 CET would still be frozen)
            ],
        );
        // And back on 2026-10-25 (03:00 -> 02:00).
        check(
            &f,
            &[
                ("2026-10-23T13:59:00Z", None), // Fri 15:59 CEST
                ("2026-10-23T14:00:00Z", Some("2026-10-26T08:00:00+01:00")), // Fri 16:00 CEST
                ("2026-10-26T06:59:00Z", Some("2026-10-26T08:00:00+01:00")), // Mon 07:59 CET
                ("2026-10-26T07:00:00Z", None),
            ],
        );
    }

    #[test]
    fn a_window_inside_one_week_day_range_does_not_wrap() {
        let f = freeze(&["Mon 12:00 - Mon 13:00"], "UTC");
        check(
            &f,
            &[
                ("2026-12-07T12:30:00Z", Some("2026-12-07T13:00:00+00:00")),
                ("2026-12-07T13:00:00Z", None),
                ("2026-12-08T12:30:00Z", None),
            ],
        );
    }

    #[test]
    fn dates_include_both_days() {
        let f = freeze(&["2026-12-24 - 2026-12-27"], "Europe/Berlin");
        let ends = Some("2026-12-28T00:00:00+01:00");
        check(
            &f,
            &[
                ("2026-12-23T22:59:59Z", None), // Dec 23 23:59:59 Berlin
                ("2026-12-23T23:00:00Z", ends), // Dec 24 00:00 Berlin
                ("2026-12-27T22:59:59Z", ends), // Dec 27 23:59:59 Berlin
                ("2026-12-27T23:00:00Z", None),
            ],
        );
        let f = freeze(&["2026-12-24 18:00 - 2026-12-27 08:00"], "UTC");
        check(
            &f,
            &[
                ("2026-12-24T17:59:00Z", None),
                ("2026-12-24T18:00:00Z", Some("2026-12-27T08:00:00+00:00")),
                ("2026-12-27T08:00:00Z", None),
            ],
        );
    }

    #[test]
    fn the_first_window_that_holds_is_named() {
        let f = freeze(&["2026-12-24 - 2026-12-27", "Fri 16:00 - Mon 08:00"], "UTC");
        let z = f.at(utc("2026-12-25T17:00:00Z")).unwrap(); // a Friday
        assert_eq!(z.window, "2026-12-24 - 2026-12-27");
        assert_eq!(
            z.to_string(),
            "deploys are frozen: policy.freeze \"2026-12-24 - 2026-12-27\" holds until Mon 2026-12-28 00:00 UTC"
        );
    }

    #[test]
    fn windows_that_cannot_be_read_say_how_to_write_them() {
        for bad in [
            "Fri 16:00 to Mon 08:00",
            "Fry 16:00 - Mon 08:00",
            "Fri 25:00 - Mon 08:00",
            "2026-12-27 - 2026-12-24",
            "Mon 08:00 - Mon 08:00",
            "2026-13-01 - 2026-12-24",
        ] {
            let e = parse_window(bad).unwrap_err();
            assert!(e.contains("write a weekly window like"), "{bad}: {e}");
        }
    }
}
