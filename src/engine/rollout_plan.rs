//! What a rollout will do, as a value: its waves, what the rollout waits
//! for before each, and when each wave's hosts get their release. Built
//! by one pure function from the strategy and the hosts still to deploy;
//! `hoist plan` prints it and the deploy executes it, so the two cannot
//! disagree.

mod stages;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use super::strategy::{Wave, WaveKind};
use crate::config::traffic::Traffic;
use crate::config::{Amount, Config, GroupStrategy, Host, Pause, Strategy, Throttle};
pub(crate) use stages::{Floor, zone_sizes};

/// What the rollout does between one wave and the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Straight on.
    Nothing,
    /// Waits this long.
    Wait(Duration),
    /// Probes the canary with the health check this long; a failing probe
    /// stops the rollout.
    Bake(Duration),
    /// Holds the rollout this long after a zone, probing every host of the
    /// zone that has a health check; a failing probe stops the rollout.
    ZoneBake(Duration),
    /// `wave_bake`: holds the rollout this long after a wave, probing its
    /// hosts with their health checks while the analysis gates sample; a
    /// failing probe or gate stops the rollout.
    WaveBake(Duration),
    /// Asks a person to promote the canary (`--yes` answers yes).
    Ask,
    /// `[traffic]`: `set_local` at this weight, then the step held while
    /// the health checks and gates sample it.
    Traffic(TrafficStep),
}

/// One traffic step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TrafficStep {
    /// 1-based, of `of`.
    pub index: usize,
    pub of: usize,
    /// Percent of the traffic the new release gets.
    pub weight: u8,
    /// How long the step holds.
    pub bake: Duration,
}

impl TrafficStep {
    /// What the step is called in messages and `analysis` events.
    pub(crate) fn label(self) -> String {
        format!("traffic {}%", self.weight)
    }
}

impl Step {
    /// Whether the link to the hosts is idle for a known time, so the next
    /// wave's hosts get their release meanwhile. Not while a person is
    /// asked: the terminal is held for the question.
    fn is_timed(self) -> bool {
        matches!(
            self,
            Step::Wait(_) | Step::Bake(_) | Step::WaveBake(_) | Step::Traffic(_)
        )
    }

    pub(crate) fn describe(self) -> String {
        match self {
            Step::Nothing => "none".into(),
            Step::Wait(d) => format!("wait {}", humantime::format_duration(d)),
            Step::Bake(d) => format!("bake {}", humantime::format_duration(d)),
            Step::ZoneBake(d) => format!("zone bake {}", humantime::format_duration(d)),
            Step::WaveBake(d) => format!("wave bake {}", humantime::format_duration(d)),
            Step::Ask => "ask before promoting (--yes promotes)".into(),
            Step::Traffic(t) => format!(
                "traffic {}% (step {} of {}, held {})",
                t.weight,
                t.index,
                t.of,
                humantime::format_duration(t.bake)
            ),
        }
    }

    /// Several steps in one line; "none" for none.
    pub(crate) fn describe_all(steps: &[Step]) -> String {
        match steps {
            [] => Step::Nothing.describe(),
            steps => steps
                .iter()
                .map(|s| s.describe())
                .collect::<Vec<_>>()
                .join(", then "),
        }
    }
}

/// When a wave's hosts get their release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Upload {
    /// In their own wave.
    InWave,
    /// During the wait or bake before their wave.
    DuringPause,
    /// While the wave before theirs runs, once that wave's hosts have their
    /// own.
    DuringPreviousWave,
}

impl Upload {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Upload::InWave => "in_wave",
            Upload::DuringPause => "during_pause",
            Upload::DuringPreviousWave => "during_previous_wave",
        }
    }
}

/// One wave as planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlannedWave {
    pub kind: WaveKind,
    /// Indices into the nodes, in order.
    pub hosts: Vec<usize>,
    /// What the rollout does after the wave before this one, in order
    /// (none: straight on).
    pub before: Vec<Step>,
    pub upload: Upload,
    /// `before_switch_once` runs on this wave's first host.
    pub once: bool,
    /// The ordered group (`strategy.order`) this wave deploys.
    pub group: Option<String>,
    /// The zone its hosts are in (`wave_by = "zone"`).
    pub zone: Option<String>,
    /// `min_healthy_per_zone`: what its zone must keep healthy.
    pub floor: Option<Floor>,
}

impl PlannedWave {
    /// The first step before it, or `Nothing`.
    #[cfg(test)]
    pub(crate) fn step(&self) -> Step {
        self.before.first().copied().unwrap_or(Step::Nothing)
    }

    /// Whether it deploys the same ordered group and zone as `other`.
    fn same_stage(&self, other: &PlannedWave) -> bool {
        self.group == other.group && self.zone == other.zone
    }
}

/// A whole rollout as planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RolloutPlan {
    pub waves: Vec<PlannedWave>,
    /// After the last wave, in order: the canary's bake of `deploy --until
    /// canary`, the last wave's bake, traffic steps after a lone canary.
    pub then: Vec<Step>,
    /// The fleet-wide throttles, shown with the plan.
    pub throttle: Throttle,
}

/// What shapes a rollout beyond the strategy table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape<'a> {
    pub strategy: &'a Strategy,
    /// The canary (none for blue-green, nor for a promotion).
    pub canary: Amount,
    /// The rollout has a health check or analysis gates (a timed canary
    /// pause is then a bake).
    pub health: bool,
    /// `before_switch_once` is still to run for this release.
    pub once: bool,
    /// `deploy --until canary`: stop after the canary wave and its bake.
    pub until_canary: bool,
    /// `[groups.<g>.strategy]` of the ordered groups.
    pub groups: &'a BTreeMap<String, GroupStrategy>,
    /// `[traffic]`: its steps follow the canary wave.
    pub traffic: Option<&'a Traffic>,
    /// Hosts of each zone counted healthy before the rollout (see
    /// [`stages::zone_sizes`]); a zone missing here counts its pending hosts.
    pub zone_sizes: &'a BTreeMap<String, usize>,
}

/// A host still to deploy, as the plan sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Member<'a> {
    /// Its index among the nodes.
    pub node: usize,
    pub groups: &'a [String],
    pub zone: Option<&'a str>,
}

impl RolloutPlan {
    /// The plan for the hosts `pending` (node indices, in order), none of
    /// them in a group or zone.
    #[cfg(test)]
    pub(crate) fn new(shape: Shape, pending: &[usize]) -> RolloutPlan {
        let members: Vec<Member> = pending
            .iter()
            .map(|&node| Member {
                node,
                groups: &[],
                zone: None,
            })
            .collect();
        RolloutPlan::of(shape, &members).expect("no zone to refuse")
    }

    /// The plan for `pending`, in order: each ordered group after the one
    /// before it, each zone after the one before it, waves inside one
    /// zone. `Err`: a zone cannot keep `min_healthy_per_zone`.
    pub(crate) fn of(shape: Shape, pending: &[Member]) -> Result<RolloutPlan, String> {
        let mut waves = stages::waves(shape, pending)?;
        if let Some(first) = waves.first_mut() {
            first.once = shape.once;
        }
        let mut then = Vec::new();
        if shape.until_canary && waves.first().is_some_and(|w| w.kind == WaveKind::Canary) {
            // Only the canary's bake: a plain wait or a question would
            // hold the run for nothing.
            if waves.len() > 1
                && let bake @ Step::Bake(_) = step_after(shape, WaveKind::Canary)
            {
                then.push(bake);
            }
            waves.truncate(1);
        } else if !shape.strategy.wave_bake.is_zero() && !waves.is_empty() {
            // The last wave bakes too before the deploy is done.
            then.push(Step::WaveBake(shape.strategy.wave_bake));
        }
        for w in 1..waves.len() {
            let (previous, wave) = (&waves[w - 1], &waves[w]);
            let before = stages::steps(shape, &waves[..w], wave);
            // After a batch wave with no pause, the next wave's hosts upload
            // while it runs. Never during the canary's wave (its verdict
            // comes before anything else is sent), nor during the wave that
            // runs the once hook (its result then goes to every host: a
            // host busy with its upload would take it on a second session),
            // nor into another zone or group before this one proved itself.
            let upload = if !previous.same_stage(wave) {
                Upload::InWave
            } else if before.first().is_some_and(|s| s.is_timed()) && !before.contains(&Step::Ask) {
                Upload::DuringPause
            } else if previous.kind == WaveKind::Batch && before.is_empty() && !previous.once {
                Upload::DuringPreviousWave
            } else {
                Upload::InWave
            };
            waves[w].before = before;
            waves[w].upload = upload;
        }
        traffic_steps(shape, &mut waves, &mut then);
        Ok(RolloutPlan {
            waves,
            then,
            throttle: Throttle::default(),
        })
    }

    /// The plan as JSON, hosts by name.
    pub(crate) fn to_json(&self, name: impl Fn(usize) -> String) -> serde_json::Value {
        let waves: Vec<serde_json::Value> = self
            .waves
            .iter()
            .enumerate()
            .map(|(w, wave)| {
                json!({
                    "wave": w + 1,
                    "kind": wave.kind.as_str(),
                    "hosts": wave.hosts.iter().map(|&i| name(i)).collect::<Vec<_>>(),
                    "before": Step::describe_all(&wave.before),
                    "upload": wave.upload.as_str(),
                    "once": wave.once,
                    "group": wave.group,
                    "zone": wave.zone,
                    "min_healthy": wave.floor.map(|f| f.min),
                })
            })
            .collect();
        let throttle: serde_json::Map<String, serde_json::Value> = self
            .throttle
            .limits()
            .into_iter()
            .map(|(hook, n)| (hook.to_string(), json!(n)))
            .collect();
        json!({ "waves": waves, "then": Step::describe_all(&self.then), "throttle": throttle })
    }
}

/// Hosts `indices` of `hosts` as the plan sees them.
pub(crate) fn members<'a>(hosts: &'a [Host], indices: &[usize]) -> Vec<Member<'a>> {
    indices
        .iter()
        .map(|&i| Member {
            node: i,
            groups: &hosts[i].groups,
            zone: hosts[i].role.zone.as_deref(),
        })
        .collect()
}

/// The waves (kind and hosts, by index into `hosts`) a deploy of every
/// selected host would run, judged before any is reached (`--until canary`).
pub(crate) fn selection_waves(config: &Config, hosts: &[Host]) -> Result<Vec<Wave>, String> {
    let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
    let sizes = zone_sizes(&config.hosts, hosts, &names);
    let shape = Shape {
        strategy: &config.strategy,
        canary: config.strategy.canary,
        health: false,
        once: false,
        until_canary: false,
        groups: &config.group_strategies,
        traffic: None,
        zone_sizes: &sizes,
    };
    let all: Vec<usize> = (0..hosts.len()).collect();
    let plan = RolloutPlan::of(shape, &members(hosts, &all))?;
    Ok(plan
        .waves
        .into_iter()
        .map(|w| Wave {
            kind: w.kind,
            hosts: w.hosts,
        })
        .collect())
}

/// `[traffic]`: its steps come right after the canary wave's own steps
/// (its bake, wave bake or question), before the next wave (a zone bake
/// after them); after a canary that is the last wave planned, last.
fn traffic_steps(shape: Shape, waves: &mut [PlannedWave], then: &mut Vec<Step>) {
    let Some(traffic) = shape.traffic else {
        return;
    };
    if waves.first().is_none_or(|w| w.kind != WaveKind::Canary) {
        return;
    }
    let steps = traffic.steps.iter().enumerate().map(|(i, &weight)| {
        Step::Traffic(TrafficStep {
            index: i + 1,
            of: traffic.steps.len(),
            weight,
            bake: traffic.step_bake,
        })
    });
    let into = match waves.get_mut(1) {
        Some(next) => &mut next.before,
        None => then,
    };
    let at = into
        .iter()
        .position(|s| matches!(s, Step::ZoneBake(_)))
        .unwrap_or(into.len());
    into.splice(at..at, steps);
}

/// What the rollout does after a wave of `kind`.
fn step_after(shape: Shape, kind: WaveKind) -> Step {
    let s = shape.strategy;
    match (kind, &s.canary_pause) {
        (WaveKind::Canary, Pause::Manual) => Step::Ask,
        (WaveKind::Canary, Pause::For(d)) if d.is_zero() => Step::Nothing,
        (WaveKind::Canary, Pause::For(d)) if shape.health => Step::Bake(*d),
        (WaveKind::Canary, Pause::For(d)) => Step::Wait(*d),
        (WaveKind::Batch, _) if s.batch_pause.is_zero() => Step::Nothing,
        (WaveKind::Batch, _) => Step::Wait(s.batch_pause),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Amount::{Hosts, Percent};
    use Step::{Ask, Bake, Nothing, Wait};
    use Upload::{DuringPause, DuringPreviousWave, InWave};

    fn strategy(canary: Amount, canary_pause: Pause, batch: &[Amount], pause: u64) -> Strategy {
        Strategy {
            canary,
            canary_pause,
            batch: batch.to_vec(),
            batch_pause: Duration::from_secs(pause),
            ..Strategy::default()
        }
    }

    const NONE: &BTreeMap<String, GroupStrategy> = &BTreeMap::new();
    const NO_ZONES: &BTreeMap<String, usize> = &BTreeMap::new();

    fn plan(s: &Strategy, n: usize, health: bool, once: bool, until: bool) -> RolloutPlan {
        let shape = Shape {
            strategy: s,
            canary: s.canary,
            health,
            once,
            until_canary: until,
            groups: NONE,
            traffic: None,
            zone_sizes: NO_ZONES,
        };
        RolloutPlan::new(shape, &(0..n).collect::<Vec<_>>())
    }

    /// (hosts, before, upload) of each wave.
    fn table(p: &RolloutPlan) -> Vec<(usize, Step, Upload)> {
        p.waves
            .iter()
            .map(|w| (w.hosts.len(), w.step(), w.upload))
            .collect()
    }

    const S30: Duration = Duration::from_secs(30);

    #[test]
    fn a_manual_canary_then_batches_that_upload_during_the_wave_before() {
        let s = strategy(Hosts(1), Pause::Manual, &[Percent(25)], 0);
        let p = plan(&s, 9, true, false, false);
        assert_eq!(
            table(&p),
            [
                (1, Nothing, InWave),
                // Nothing goes out while a person is asked.
                (3, Ask, InWave),
                (3, Nothing, DuringPreviousWave),
                (2, Nothing, DuringPreviousWave),
            ]
        );
        assert_eq!(p.waves[0].kind, WaveKind::Canary);
        assert_eq!(p.then, []);
    }

    #[test]
    fn a_timed_canary_pause_is_a_bake_with_a_health_check_and_a_wait_without() {
        let s = strategy(Hosts(1), Pause::For(S30), &[Percent(50)], 0);
        let with = plan(&s, 5, true, false, false);
        assert_eq!(with.waves[1].before, [Bake(S30)]);
        assert_eq!(with.waves[1].upload, DuringPause);
        let without = plan(&s, 5, false, false, false);
        assert_eq!(without.waves[1].before, [Wait(S30)]);
        assert_eq!(without.waves[1].upload, DuringPause);
        assert_eq!(without.waves[2].upload, DuringPreviousWave);
    }

    #[test]
    fn a_zero_canary_pause_goes_straight_on_and_the_canary_never_uploads_for_the_next() {
        let s = strategy(Hosts(1), Pause::For(Duration::ZERO), &[Percent(50)], 0);
        let p = plan(&s, 3, true, false, false);
        assert_eq!(table(&p)[1], (2, Nothing, InWave));
    }

    #[test]
    fn a_batch_pause_is_when_the_next_batch_uploads() {
        let s = strategy(Hosts(0), Pause::Manual, &[Hosts(2)], 10);
        let p = plan(&s, 6, true, false, false);
        let ten = Duration::from_secs(10);
        assert_eq!(
            table(&p),
            [
                (2, Nothing, InWave),
                (2, Wait(ten), DuringPause),
                (2, Wait(ten), DuringPause)
            ]
        );
        assert!(p.waves.iter().all(|w| w.kind == WaveKind::Batch));
    }

    #[test]
    fn a_ramp_takes_its_sizes_from_the_whole_rollout() {
        let s = strategy(
            Hosts(1),
            Pause::For(Duration::ZERO),
            &[Hosts(1), Percent(50)],
            0,
        );
        let p = plan(&s, 10, false, false, false);
        let sizes: Vec<usize> = p.waves.iter().map(|w| w.hosts.len()).collect();
        assert_eq!(sizes, [1, 1, 5, 3]);
        assert_eq!(p.waves[2].upload, DuringPreviousWave);
    }

    #[test]
    fn no_upload_during_the_wave_that_runs_the_once_hook() {
        // No canary: the first batch runs the once hook.
        let s = strategy(Hosts(0), Pause::Manual, &[Hosts(2)], 0);
        let p = plan(&s, 6, true, true, false);
        assert!(p.waves[0].once && !p.waves[1].once && !p.waves[2].once);
        assert_eq!(p.waves[1].upload, InWave);
        assert_eq!(p.waves[2].upload, DuringPreviousWave);
        let without = plan(&s, 6, true, false, false);
        assert_eq!(without.waves[1].upload, DuringPreviousWave);
    }

    #[test]
    fn until_canary_stops_after_the_canary_and_keeps_only_its_bake() {
        let s = strategy(Hosts(1), Pause::For(S30), &[Percent(50)], 0);
        let p = plan(&s, 5, true, false, true);
        assert_eq!(table(&p), [(1, Nothing, InWave)]);
        assert_eq!(p.then, [Bake(S30)]);
        // Without a health check there is nothing to bake: it stops at once.
        assert_eq!(plan(&s, 5, false, false, true).then, []);
        let manual = strategy(Hosts(1), Pause::Manual, &[Percent(50)], 0);
        assert_eq!(plan(&manual, 5, true, false, true).then, []);
        // A canary that is the whole fleet has nothing to wait for.
        assert_eq!(plan(&s, 1, true, false, true).then, []);
    }

    #[test]
    fn a_wave_bake_follows_every_wave_the_canary_bake_stands_for_it() {
        let mut s = strategy(Hosts(1), Pause::For(S30), &[Hosts(2)], 5);
        s.wave_bake = Duration::from_secs(20);
        let p = plan(&s, 5, true, false, false);
        let bake = Step::WaveBake(Duration::from_secs(20));
        let five = Duration::from_secs(5);
        assert_eq!(p.waves[1].before, [Bake(S30)]);
        assert_eq!(p.waves[2].before, [bake, Wait(five)]);
        assert_eq!(p.waves[2].upload, DuringPause);
        assert_eq!(p.then, [bake]);
        // A manual canary bakes before the question.
        s.canary_pause = Pause::Manual;
        let p = plan(&s, 5, true, false, false);
        assert_eq!(p.waves[1].before, [bake, Ask]);
        // Nothing goes out while a person may be asked.
        assert_eq!(p.waves[1].upload, InWave);
        // --until canary keeps only the canary's bake.
        s.canary_pause = Pause::For(S30);
        assert_eq!(plan(&s, 5, true, false, true).then, [Bake(S30)]);
    }

    #[test]
    fn until_canary_without_a_canary_runs_every_wave() {
        let s = strategy(Hosts(0), Pause::Manual, &[Hosts(2)], 0);
        assert_eq!(plan(&s, 4, true, false, true).waves.len(), 2);
    }

    #[test]
    fn pending_hosts_keep_their_node_indices() {
        let s = strategy(Hosts(1), Pause::Manual, &[Percent(100)], 0);
        let shape = Shape {
            strategy: &s,
            canary: s.canary,
            health: true,
            once: false,
            until_canary: false,
            groups: NONE,
            traffic: None,
            zone_sizes: NO_ZONES,
        };
        let p = RolloutPlan::new(shape, &[2, 5, 7]);
        assert_eq!(p.waves[0].hosts, [2]);
        assert_eq!(p.waves[1].hosts, [5, 7]);
        assert!(RolloutPlan::new(shape, &[]).waves.is_empty());
    }

    fn with_traffic(s: &Strategy, n: usize, until: bool, traffic: &Traffic) -> RolloutPlan {
        let shape = Shape {
            strategy: s,
            canary: s.canary,
            health: true,
            once: false,
            until_canary: until,
            groups: NONE,
            traffic: Some(traffic),
            zone_sizes: NO_ZONES,
        };
        RolloutPlan::new(shape, &(0..n).collect::<Vec<_>>())
    }

    fn traffic(steps: &[u8]) -> Traffic {
        Traffic {
            steps: steps.to_vec(),
            set_local: vec!["./lb $HOIST_WEIGHT".into()],
            step_bake: Duration::from_secs(5),
        }
    }

    fn step(index: usize, of: usize, weight: u8) -> Step {
        Step::Traffic(TrafficStep {
            index,
            of,
            weight,
            bake: Duration::from_secs(5),
        })
    }

    #[test]
    fn traffic_steps_follow_the_canary_bake_before_the_next_wave_only() {
        let s = strategy(Hosts(1), Pause::For(S30), &[Hosts(2)], 0);
        let t = traffic(&[1, 10, 100]);
        let p = with_traffic(&s, 5, false, &t);
        assert_eq!(
            p.waves[1].before,
            [Bake(S30), step(1, 3, 1), step(2, 3, 10), step(3, 3, 100)]
        );
        assert_eq!(p.waves[1].upload, DuringPause);
        assert_eq!(p.waves[2].before, []);
        assert_eq!(p.then, []);
        assert_eq!(
            Step::describe_all(&p.waves[1].before[1..2]),
            "traffic 1% (step 1 of 3, held 5s)"
        );
        // A manual canary is promoted first, then its traffic goes up.
        let manual = strategy(Hosts(1), Pause::Manual, &[Hosts(2)], 0);
        let p = with_traffic(&manual, 5, false, &t);
        assert_eq!(p.waves[1].before[0], Ask);
        assert_eq!(p.waves[1].before.len(), 4);
        assert_eq!(p.waves[1].upload, InWave);
    }

    #[test]
    fn until_canary_runs_the_steps_after_the_bake_and_a_lone_canary_runs_them_last() {
        let s = strategy(Hosts(1), Pause::For(S30), &[Hosts(2)], 0);
        let t = traffic(&[50, 100]);
        let p = with_traffic(&s, 5, true, &t);
        assert_eq!(p.waves.len(), 1);
        assert_eq!(p.then, [Bake(S30), step(1, 2, 50), step(2, 2, 100)]);
        let one = with_traffic(&s, 1, false, &t);
        assert_eq!(one.then, [step(1, 2, 50), step(2, 2, 100)]);
    }

    #[test]
    fn no_canary_wave_no_traffic_steps() {
        let s = strategy(Hosts(0), Pause::For(S30), &[Hosts(2)], 0);
        let p = with_traffic(&s, 4, false, &traffic(&[10, 100]));
        assert!(p.waves.iter().all(|w| w.before.is_empty()));
        assert_eq!(p.then, []);
    }
}
