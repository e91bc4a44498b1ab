//! Pure decisions over host lists: wave sizes and failure limits.
//! No I/O here; everything is tested without a network.

use crate::config::Amount;
use crate::release::ReleaseId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaveKind {
    Canary,
    Batch,
}

impl WaveKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WaveKind::Canary => "canary",
            WaveKind::Batch => "batch",
        }
    }
}

/// One wave of a rollout: indices into the selected hosts, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wave {
    pub kind: WaveKind,
    pub hosts: Vec<usize>,
}

/// An amount of hosts out of `total`: percentages round up, so "10%" of
/// 3 hosts is 1 host, never 0.
pub fn hosts_of(amount: Amount, total: usize) -> usize {
    amount.of(total)
}

/// Splits `total` hosts into waves: the canary alone first (if any), then
/// batches sized by `batch` (a ramp; its last entry repeats), all relative to
/// the whole rollout and capped by what is left.
pub fn waves(total: usize, canary: Amount, batch: &[Amount]) -> Vec<Wave> {
    let mut waves = Vec::new();
    let mut next = 0;
    let canary = hosts_of(canary, total).min(total);
    if canary > 0 {
        waves.push(Wave {
            kind: WaveKind::Canary,
            hosts: (0..canary).collect(),
        });
        next = canary;
    }
    let mut step = 0;
    while next < total {
        let amount = batch
            .get(step)
            .or(batch.last())
            .copied()
            .unwrap_or(Amount::Percent(100));
        let size = hosts_of(amount, total).max(1).min(total - next);
        waves.push(Wave {
            kind: WaveKind::Batch,
            hosts: (next..next + size).collect(),
        });
        next += size;
        step += 1;
    }
    waves
}

/// How many hosts may fail before the rollout stops. Percentages round
/// down: "10%" of 9 hosts allows none, the safe reading.
pub fn failures_allowed(max_failures: Amount, total: usize) -> usize {
    match max_failures {
        Amount::Hosts(n) => n,
        Amount::Percent(p) => total * p as usize / 100,
    }
}

/// The releases to delete so that `keep` remain: the oldest first go, and
/// never one in `protect` (current, the rollback target).
pub fn prune(releases: &[ReleaseId], keep: usize, protect: &[&ReleaseId]) -> Vec<ReleaseId> {
    let mut sorted: Vec<&ReleaseId> = releases.iter().collect();
    sorted.sort();
    sorted.dedup();
    let excess = sorted.len().saturating_sub(keep.max(1));
    sorted
        .into_iter()
        .filter(|r| !protect.contains(r))
        .take(excess)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<ReleaseId> {
        (0..n)
            .map(|i| ReleaseId::parse(&format!("2026010{}T000000Z-0000000{i}", i + 1)).unwrap())
            .collect()
    }

    #[test]
    fn prune_keeps_the_newest() {
        let r = ids(6);
        assert_eq!(prune(&r, 5, &[&r[5]]), vec![r[0].clone()]);
        assert_eq!(prune(&r, 2, &[&r[5], &r[4]]), r[..4].to_vec());
        assert!(prune(&r, 10, &[]).is_empty());
    }

    #[test]
    fn prune_never_removes_current_or_rollback_target() {
        let r = ids(6);
        // current is old (after a rollback), the target even older.
        let out = prune(&r, 1, &[&r[1], &r[0]]);
        assert!(!out.contains(&r[0]) && !out.contains(&r[1]));
        assert_eq!(out.len(), 4);
    }
    use Amount::{Hosts, Percent};

    fn sizes(total: usize, canary: Amount, batch: &[Amount]) -> Vec<usize> {
        waves(total, canary, batch)
            .iter()
            .map(|w| w.hosts.len())
            .collect()
    }

    #[test]
    fn canary_then_quarters() {
        assert_eq!(sizes(9, Hosts(1), &[Percent(25)]), vec![1, 3, 3, 2]);
        let w = waves(9, Hosts(1), &[Percent(25)]);
        assert_eq!(w[0].kind, WaveKind::Canary);
        assert!(w[1..].iter().all(|w| w.kind == WaveKind::Batch));
        let all: Vec<usize> = w.iter().flat_map(|w| w.hosts.clone()).collect();
        assert_eq!(all, (0..9).collect::<Vec<_>>());
    }

    #[test]
    fn percent_of_three_hosts_rounds_up() {
        assert_eq!(sizes(3, Hosts(0), &[Percent(10)]), vec![1, 1, 1]);
        assert_eq!(sizes(3, Percent(10), &[Percent(50)]), vec![1, 2]);
    }

    #[test]
    fn ramp_longer_than_the_fleet_stops_when_hosts_run_out() {
        let ramp = [Hosts(1), Percent(10), Percent(50), Percent(100)];
        assert_eq!(sizes(2, Hosts(0), &ramp), vec![1, 1]);
        assert_eq!(sizes(20, Hosts(1), &ramp), vec![1, 1, 2, 10, 6]);
    }

    #[test]
    fn ramp_last_step_repeats() {
        assert_eq!(sizes(10, Hosts(0), &[Hosts(1), Hosts(3)]), vec![1, 3, 3, 3]);
    }

    #[test]
    fn canary_larger_than_the_fleet_is_the_whole_fleet() {
        assert_eq!(sizes(3, Hosts(5), &[Percent(25)]), vec![3]);
    }

    #[test]
    fn limit_leaving_one_host() {
        assert_eq!(sizes(1, Hosts(1), &[Percent(25)]), vec![1]);
        assert_eq!(sizes(1, Hosts(0), &[Hosts(5)]), vec![1]);
    }

    #[test]
    fn no_hosts_no_waves() {
        assert!(waves(0, Hosts(1), &[Percent(25)]).is_empty());
    }

    #[test]
    fn zero_size_batch_still_progresses() {
        assert_eq!(sizes(2, Hosts(0), &[Hosts(0)]), vec![1, 1]);
    }

    #[test]
    fn failure_limits() {
        assert_eq!(failures_allowed(Hosts(1), 9), 1);
        assert_eq!(failures_allowed(Percent(10), 9), 0);
        assert_eq!(failures_allowed(Percent(10), 10), 1);
        assert_eq!(failures_allowed(Percent(100), 4), 4);
    }
}
