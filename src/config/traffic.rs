//! `[traffic]`: traffic steps. After the canary wave (or, blue-green,
//! between the colours) `set_local` runs for each weight in turn, each
//! step held while the health checks and gates sample it.

use std::time::Duration;

use super::doc::Doc;
use super::file::RawTraffic;
use super::{ConfigError, Pause, Strategy, StrategyKind};

/// A step's bake when neither `step_bake`, a timed canary pause nor
/// `wave_bake` gives one.
pub const DEFAULT_STEP_BAKE: Duration = Duration::from_secs(30);

/// `[traffic]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traffic {
    /// Percent of the traffic the new release gets, strictly increasing,
    /// each 1..=100.
    pub steps: Vec<u8>,
    /// Local commands that set the weight (`HOIST_WEIGHT`).
    pub set_local: Vec<String>,
    /// How long each step holds: `step_bake`, else the canary's timed
    /// pause, else `wave_bake`, else [`DEFAULT_STEP_BAKE`].
    pub step_bake: Duration,
}

impl Traffic {
    /// The weights as said: `10%, 50%, 100%`.
    pub fn describe(&self) -> String {
        let weights: Vec<String> = self.steps.iter().map(|w| format!("{w}%")).collect();
        weights.join(", ")
    }
}

/// The `[traffic]` table, checked against the strategy: steps 1..=100 and
/// strictly increasing, a command to set them, and a canary to send the
/// traffic to (a rolling deploy).
pub(super) fn traffic(
    raw: Option<RawTraffic>,
    strategy: &Strategy,
    doc: &Doc,
) -> Result<Option<Traffic>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let at = |key: &str, e: String| doc.error(&["traffic", key], e);
    let steps = steps(&raw.steps).map_err(|e| at("steps", e))?;
    let set_local = raw.set_local.0;
    if set_local.is_empty() {
        return Err(at(
            "set_local",
            "no command; e.g. set_local = [\"./lb weight $HOIST_WEIGHT\"]".into(),
        ));
    }
    if strategy.kind == StrategyKind::Rolling && strategy.canary == super::Amount::Hosts(0) {
        return Err(at(
            "steps",
            "traffic steps move traffic to the canary, and strategy.canary = 0 plans none; set a canary (e.g. canary = 1) or remove [traffic]".into(),
        ));
    }
    let canary_bake = match strategy.canary_pause {
        Pause::For(d) if !d.is_zero() => Some(d),
        _ => None,
    };
    let wave_bake = Some(strategy.wave_bake).filter(|d| !d.is_zero());
    let step_bake = raw
        .step_bake
        .map(|d| d.0)
        .or(canary_bake)
        .or(wave_bake)
        .unwrap_or(DEFAULT_STEP_BAKE);
    Ok(Some(Traffic {
        steps,
        set_local,
        step_bake,
    }))
}

/// `steps`: at least one, each 1..=100, strictly increasing.
fn steps(raw: &[i64]) -> Result<Vec<u8>, String> {
    if raw.is_empty() {
        return Err("no step; e.g. steps = [1, 10, 50, 100]".into());
    }
    let mut out: Vec<u8> = Vec::new();
    for &step in raw {
        let weight = u8::try_from(step)
            .ok()
            .filter(|w| (1..=100).contains(w))
            .ok_or_else(|| {
                format!("{step} is not a weight: each step is a percentage, 1 to 100")
            })?;
        if let Some(&before) = out.last()
            && weight <= before
        {
            return Err(format!(
                "{weight} after {before}: steps go strictly up, e.g. [1, 10, 50, 100]"
            ));
        }
        out.push(weight);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::steps;

    #[test]
    fn steps_are_percentages_going_strictly_up() {
        assert_eq!(steps(&[1, 10, 50, 100]).unwrap(), [1, 10, 50, 100]);
        assert_eq!(steps(&[100]).unwrap(), [100]);
        assert!(steps(&[]).unwrap_err().contains("no step"));
        assert!(steps(&[0, 10]).unwrap_err().contains("0 is not a weight"));
        assert!(
            steps(&[10, 101])
                .unwrap_err()
                .contains("101 is not a weight")
        );
        assert!(steps(&[-5]).unwrap_err().contains("-5 is not a weight"));
        assert!(steps(&[10, 10]).unwrap_err().contains("10 after 10"));
        assert!(steps(&[50, 10]).unwrap_err().contains("strictly up"));
    }
}
