//! The arithmetic of an analysis gate, with no I/O: a `pass` condition on
//! a metric, how a gate's samples add up to a verdict (`failure_limit`,
//! `consecutive_errors`, an inconclusive answer) and what the rollout then
//! does (`on_inconclusive`, `dry_run`).

use std::fmt;

/// A `pass` condition: `"< 0.01"` on the query's value, or a comparison
/// of the canary with the baseline such as `"canary <= baseline * 1.2"`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// Compares the canary's value with the baseline's (the query runs
    /// once for each); else the query's one value with `rhs`.
    pub compares: bool,
    pub op: Op,
    /// The number on the right, or (comparing) the factor/term applied to
    /// the baseline.
    pub rhs: f64,
    /// Comparing: how `rhs` applies to the baseline.
    pub with: Arith,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arith {
    Times,
    Plus,
    Minus,
}

impl Op {
    fn parse(s: &str) -> Option<(Op, &str)> {
        let ops = [
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<", Op::Lt),
            (">", Op::Gt),
        ];
        ops.into_iter()
            .find_map(|(text, op)| s.strip_prefix(text).map(|rest| (op, rest)))
    }

    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
            Op::Eq => a == b,
            Op::Ne => a != b,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }
}

const EXAMPLES: &str = "e.g. \"< 0.01\" or \"canary <= baseline * 1.2\"";

impl Condition {
    pub fn parse(text: &str) -> Result<Condition, String> {
        let bad = |why: &str| format!("{text:?}: {why}; {EXAMPLES}");
        let s = text.trim();
        let (compares, s) = match s.strip_prefix("canary") {
            Some(rest) => (true, rest.trim_start()),
            None => (false, s),
        };
        let (op, rest) = Op::parse(s).ok_or_else(|| bad("expected a comparison"))?;
        let rest = rest.trim();
        if !compares {
            let rhs = number(rest).ok_or_else(|| bad("expected a number after the comparison"))?;
            return Ok(Condition {
                compares,
                op,
                rhs,
                with: Arith::Plus,
            });
        }
        let rest = rest
            .strip_prefix("baseline")
            .ok_or_else(|| bad("\"canary\" compares with \"baseline\""))?
            .trim();
        if rest.is_empty() {
            return Ok(Condition {
                compares,
                op,
                rhs: 0.0,
                with: Arith::Plus,
            });
        }
        let (with, n) = match rest.split_at(1) {
            ("*", n) => (Arith::Times, n),
            ("+", n) => (Arith::Plus, n),
            ("-", n) => (Arith::Minus, n),
            _ => return Err(bad("expected *, + or - after \"baseline\"")),
        };
        let rhs = number(n.trim()).ok_or_else(|| bad("expected a number after the operator"))?;
        Ok(Condition {
            compares,
            op,
            rhs,
            with,
        })
    }

    /// Whether `canary` passes (its only value when not comparing; `None`
    /// for the baseline then). `None`: no verdict (a value missing or not
    /// a number).
    pub fn passes(&self, canary: Option<f64>, baseline: Option<f64>) -> Option<bool> {
        let a = canary.filter(|v| !v.is_nan())?;
        let b = match self.compares {
            false => self.rhs,
            true => {
                let base = baseline.filter(|v| !v.is_nan())?;
                match self.with {
                    Arith::Times => base * self.rhs,
                    Arith::Plus => base + self.rhs,
                    Arith::Minus => base - self.rhs,
                }
            }
        };
        Some(self.op.holds(a, b))
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if !self.compares {
            return write!(f, "{} {}", self.op.as_str(), self.rhs);
        }
        let with = match self.with {
            Arith::Times => "*",
            Arith::Plus => "+",
            Arith::Minus => "-",
        };
        write!(f, "canary {} baseline", self.op.as_str())?;
        match (self.with, self.rhs) {
            (Arith::Plus, 0.0) => Ok(()),
            (_, n) => write!(f, " {with} {n}"),
        }
    }
}

fn number(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// What one sample of a gate said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    Pass,
    Fail,
    /// The provider answered without a verdict (an exit code other than
    /// 0 or 1, an empty result).
    Inconclusive,
    /// The provider could not answer (unreachable, could not start).
    Error,
}

impl Reading {
    pub fn as_str(self) -> &'static str {
        match self {
            Reading::Pass => "pass",
            Reading::Fail => "fail",
            Reading::Inconclusive => "inconclusive",
            Reading::Error => "error",
        }
    }
}

/// Where a gate stands in one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Still sampling.
    Going,
    /// Took its `count` samples within its limits.
    Passed,
    /// More failed samples than `failure_limit`.
    Failed,
    /// An inconclusive sample, or more errors in a row than
    /// `consecutive_errors`.
    Inconclusive,
}

/// A gate's limits in one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Samples in the step.
    pub count: u32,
    /// Failed samples tolerated.
    pub failure_limit: u32,
    /// Errors in a row tolerated.
    pub consecutive_errors: u32,
}

/// A gate's samples so far in one step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub taken: u32,
    pub failed: u32,
    pub errors_in_a_row: u32,
}

impl Tally {
    /// Adds `reading` and says where the gate stands.
    pub fn add(&mut self, reading: Reading, limits: Limits) -> Standing {
        self.taken += 1;
        match reading {
            Reading::Error => self.errors_in_a_row += 1,
            _ => self.errors_in_a_row = 0,
        }
        if reading == Reading::Fail {
            self.failed += 1;
        }
        if self.failed > limits.failure_limit {
            Standing::Failed
        } else if reading == Reading::Inconclusive
            || self.errors_in_a_row > limits.consecutive_errors
        {
            Standing::Inconclusive
        } else if self.taken >= limits.count {
            Standing::Passed
        } else {
            Standing::Going
        }
    }
}

/// `on_inconclusive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnInconclusive {
    /// Ask on a terminal; fail without one.
    #[default]
    Pause,
    Fail,
    Pass,
}

impl OnInconclusive {
    pub fn as_str(self) -> &'static str {
        match self {
            OnInconclusive::Pause => "pause",
            OnInconclusive::Fail => "fail",
            OnInconclusive::Pass => "pass",
        }
    }
}

/// What the rollout does about a gate that ended its step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// The gate passed.
    GoOn,
    /// The gate stops the rollout.
    Stop,
    /// Asks a person whether to go on (no terminal: stop).
    Ask,
    /// Goes on although the gate did not pass: `on_inconclusive = "pass"`.
    GoOnInconclusive,
    /// A dry-run gate that would have done `Act` (never `GoOn`).
    WouldHave(WouldHave),
}

/// What a dry-run gate would have done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WouldHave {
    Stopped,
    Asked,
}

/// What a gate standing at `standing` makes the rollout do. `Going` is
/// treated as passed (a step that ended before the gate's last sample).
pub fn act(standing: Standing, on_inconclusive: OnInconclusive, dry_run: bool) -> Act {
    let acted = match (standing, on_inconclusive) {
        (Standing::Going | Standing::Passed, _) => return Act::GoOn,
        (Standing::Failed, _) | (Standing::Inconclusive, OnInconclusive::Fail) => Act::Stop,
        (Standing::Inconclusive, OnInconclusive::Pass) => return Act::GoOnInconclusive,
        (Standing::Inconclusive, OnInconclusive::Pause) => Act::Ask,
    };
    match (dry_run, acted) {
        (false, acted) => acted,
        (true, Act::Ask) => Act::WouldHave(WouldHave::Asked),
        (true, _) => Act::WouldHave(WouldHave::Stopped),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Reading::{Error, Fail, Inconclusive, Pass};

    /// (condition, canary, baseline, verdict).
    type Row = (&'static str, Option<f64>, Option<f64>, Option<bool>);

    #[test]
    fn conditions_parse_and_judge() {
        let table: &[Row] = &[
            ("< 0.01", Some(0.005), None, Some(true)),
            ("< 0.01", Some(0.01), None, Some(false)),
            ("<=0.01", Some(0.01), None, Some(true)),
            (">= 5", Some(4.0), None, Some(false)),
            ("== 0", Some(0.0), None, Some(true)),
            ("!= 0", Some(0.0), None, Some(false)),
            ("> 1e3", Some(1001.0), None, Some(true)),
            ("< 0.01", None, None, None),
            ("< 0.01", Some(f64::NAN), None, None),
            ("canary <= baseline * 1.2", Some(1.2), Some(1.0), Some(true)),
            (
                "canary <= baseline * 1.2",
                Some(1.3),
                Some(1.0),
                Some(false),
            ),
            ("canary <= baseline * 1.2", Some(0.0), Some(0.0), Some(true)),
            (
                "canary <= baseline * 1.2",
                Some(0.1),
                Some(0.0),
                Some(false),
            ),
            ("canary <= baseline * 1.2", Some(0.1), None, None),
            ("canary < baseline + 0.5", Some(1.4), Some(1.0), Some(true)),
            ("canary > baseline - 1", Some(0.5), Some(1.0), Some(true)),
            ("canary >= baseline", Some(1.0), Some(1.0), Some(true)),
        ];
        for &(text, canary, baseline, expected) in table {
            let c = Condition::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(
                c.passes(canary, baseline),
                expected,
                "{text} {canary:?} {baseline:?}"
            );
        }
    }

    #[test]
    fn bad_conditions_say_what_was_expected() {
        for (text, says) in [
            ("0.01", "expected a comparison"),
            ("< lots", "expected a number"),
            ("canary <= 1.2", "compares with \"baseline\""),
            ("canary <= baseline / 2", "expected *, + or -"),
            (
                "canary <= baseline * x",
                "expected a number after the operator",
            ),
            ("< inf", "expected a number"),
        ] {
            let e = Condition::parse(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
            assert!(e.contains("canary <= baseline * 1.2"), "{e}");
        }
    }

    #[test]
    fn conditions_display_as_written() {
        for text in ["< 0.01", "canary <= baseline * 1.2", "canary >= baseline"] {
            assert_eq!(Condition::parse(text).unwrap().to_string(), text);
        }
    }

    /// The standing after each reading in turn.
    fn standings(readings: &[Reading], limits: Limits) -> Vec<Standing> {
        let mut tally = Tally::default();
        readings.iter().map(|&r| tally.add(r, limits)).collect()
    }

    const fn limits(count: u32, failure_limit: u32, consecutive_errors: u32) -> Limits {
        Limits {
            count,
            failure_limit,
            consecutive_errors,
        }
    }

    #[test]
    fn samples_add_up_to_a_standing() {
        use Standing::{Failed, Going, Inconclusive as Inc, Passed};
        let table: &[(&[Reading], Limits, &[Standing])] = &[
            (
                &[Pass, Pass, Pass],
                limits(3, 0, 0),
                &[Going, Going, Passed],
            ),
            // The first failure fails a gate that tolerates none.
            (&[Pass, Fail], limits(3, 0, 0), &[Going, Failed]),
            // failure_limit = 1: the second failure fails it.
            (
                &[Fail, Pass, Fail],
                limits(5, 1, 0),
                &[Going, Going, Failed],
            ),
            (
                &[Fail, Pass, Pass],
                limits(3, 1, 0),
                &[Going, Going, Passed],
            ),
            // An inconclusive answer ends the gate inconclusive at once.
            (&[Pass, Inconclusive], limits(3, 0, 0), &[Going, Inc]),
            // Errors in a row beyond consecutive_errors.
            (
                &[Error, Error, Error],
                limits(5, 0, 2),
                &[Going, Going, Inc],
            ),
            // An answer in between resets the count.
            (
                &[Error, Error, Pass, Error, Error, Pass],
                limits(6, 0, 2),
                &[Going, Going, Going, Going, Going, Passed],
            ),
            (&[Error], limits(3, 0, 0), &[Inc]),
            // A failure beyond the limit wins over the count reached.
            (&[Pass, Fail], limits(2, 0, 0), &[Going, Failed]),
        ];
        for (readings, l, expected) in table {
            assert_eq!(&standings(readings, *l), expected, "{readings:?} {l:?}");
        }
    }

    #[test]
    fn what_the_rollout_does_about_a_gate() {
        use OnInconclusive as On;
        use Standing::{Failed, Going, Inconclusive as Inc, Passed};
        let table: &[(Standing, On, bool, Act)] = &[
            (Passed, On::Pause, false, Act::GoOn),
            (Going, On::Fail, false, Act::GoOn),
            (Passed, On::Fail, true, Act::GoOn),
            (Failed, On::Pass, false, Act::Stop),
            (Failed, On::Pass, true, Act::WouldHave(WouldHave::Stopped)),
            (Inc, On::Fail, false, Act::Stop),
            (Inc, On::Fail, true, Act::WouldHave(WouldHave::Stopped)),
            (Inc, On::Pass, false, Act::GoOnInconclusive),
            (Inc, On::Pass, true, Act::GoOnInconclusive),
            (Inc, On::Pause, false, Act::Ask),
            (Inc, On::Pause, true, Act::WouldHave(WouldHave::Asked)),
        ];
        for &(standing, on, dry_run, expected) in table {
            assert_eq!(
                act(standing, on, dry_run),
                expected,
                "{standing:?} {on:?} {dry_run}"
            );
        }
    }
}
