//! A rollout in stages: each ordered group (`strategy.order`) deploys
//! whole before the next; inside a group each zone (`wave_by = "zone"`)
//! whole before the next, in the zones' order; waves never cross a stage.
//! Each stage gets its waves from its group's strategy (the canary only in
//! a group's first zone), no larger than `min_healthy_per_zone` allows.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Member, PlannedWave, Shape, Step, Upload, step_after};
use crate::config::{Amount, Host, Zones};
use crate::engine::strategy::{self, WaveKind};

/// What a zone must keep healthy while a wave of it is deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Floor {
    /// The zone's hosts counted healthy before the rollout.
    pub size: usize,
    /// `min_healthy_per_zone`, in hosts of this zone.
    pub min: usize,
}

impl Floor {
    /// `min_healthy_per_zone` (hosts, or percent rounded up) of a zone of
    /// `size` hosts.
    pub(crate) fn of(min: Amount, size: usize) -> Floor {
        Floor {
            size,
            min: strategy::hosts_of(min, size),
        }
    }

    /// The most hosts of the zone that may be out of service at once.
    pub(crate) fn most_down(self) -> usize {
        self.size.saturating_sub(self.min)
    }

    /// Whether deploying `wave` more hosts of the zone, with `failed` of it
    /// failed already, takes it below the floor.
    pub(crate) fn breached(self, failed: usize, wave: usize) -> bool {
        failed + wave > self.most_down()
    }
}

/// Hosts of each zone counted healthy before a rollout: the zone's hosts
/// in the whole inventory (`all`), less the selected ones that could not
/// be reached (in `selected` but not `reached`).
pub(crate) fn zone_sizes(
    all: &[Host],
    selected: &[Host],
    reached: &[&str],
) -> BTreeMap<String, usize> {
    let mut sizes: BTreeMap<String, usize> = BTreeMap::new();
    for host in all {
        if let Some(zone) = &host.role.zone {
            *sizes.entry(zone.clone()).or_default() += 1;
        }
    }
    for host in selected {
        if let Some(zone) = &host.role.zone
            && !reached.contains(&host.name.as_str())
            && let Some(n) = sizes.get_mut(zone)
        {
            *n = n.saturating_sub(1);
        }
    }
    sizes
}

/// One stage: an ordered group's pending hosts in one zone.
struct Stage<'a> {
    group: Option<&'a str>,
    zone: Option<&'a str>,
    /// The group's first zone: where its canary goes.
    first: bool,
    hosts: Vec<usize>,
}

/// The stages of `pending`, in the order they deploy.
fn stages<'a>(shape: &Shape<'a>, pending: &[Member<'a>]) -> Vec<Stage<'a>> {
    let s = shape.strategy;
    let mut groups: Vec<(Option<&'a str>, Vec<&Member<'a>>)> = Vec::new();
    if s.order.is_empty() {
        groups.push((None, pending.iter().collect()));
    } else {
        let mut taken = vec![false; pending.len()];
        for group in &s.order {
            let mut mine: Vec<&Member> = Vec::new();
            for (m, member) in pending.iter().enumerate() {
                if !taken[m] && member.groups.contains(group) {
                    taken[m] = true;
                    mine.push(member);
                }
            }
            groups.push((Some(group.as_str()), mine));
        }
    }
    let mut out = Vec::new();
    for (group, members) in groups {
        let zones: Vec<Option<&str>> = match &s.zones {
            Some(zones) => zones.order.iter().map(|z| Some(z.as_str())).collect(),
            None => vec![None],
        };
        let mut first = true;
        for zone in zones {
            let hosts: Vec<usize> = members
                .iter()
                .filter(|m| s.zones.is_none() || m.zone == zone)
                .map(|m| m.node)
                .collect();
            if hosts.is_empty() {
                continue;
            }
            out.push(Stage {
                group,
                zone,
                first,
                hosts,
            });
            first = false;
        }
    }
    out
}

/// Every wave of the rollout, stage after stage; steps and uploads are
/// the caller's.
pub(super) fn waves(shape: Shape, pending: &[Member]) -> Result<Vec<PlannedWave>, String> {
    let mut waves = Vec::new();
    for stage in stages(&shape, pending) {
        let own = stage.group.and_then(|g| shape.groups.get(g));
        let s = shape.strategy.for_group(own);
        // A promotion or blue-green plans no canary, whatever the group says.
        let canary = match shape.canary == shape.strategy.canary {
            true if stage.first => s.canary,
            true => Amount::Hosts(0),
            false if stage.first => shape.canary,
            false => Amount::Hosts(0),
        };
        let floor = match (&shape.strategy.zones, stage.zone) {
            (Some(zones), Some(zone)) => Some(floor(zones, zone, &shape, stage.hosts.len())?),
            _ => None,
        };
        let most = floor.map_or(usize::MAX, Floor::most_down);
        for wave in strategy::waves(stage.hosts.len(), canary, &s.batch) {
            for (c, chunk) in wave.hosts.chunks(most).enumerate() {
                waves.push(PlannedWave {
                    kind: if c == 0 { wave.kind } else { WaveKind::Batch },
                    hosts: chunk.iter().map(|&i| stage.hosts[i]).collect(),
                    before: Vec::new(),
                    upload: Upload::InWave,
                    once: false,
                    group: stage.group.map(str::to_string),
                    zone: stage.zone.map(str::to_string),
                    floor,
                });
            }
        }
    }
    Ok(waves)
}

fn floor(zones: &Zones, zone: &str, shape: &Shape, pending: usize) -> Result<Floor, String> {
    let size = shape.zone_sizes.get(zone).copied().unwrap_or(pending);
    let floor = Floor::of(zones.min_healthy, size);
    if floor.most_down() == 0 {
        return Err(format!(
            "zone {zone} has {size} healthy host(s) and min_healthy_per_zone keeps {} of them in service: none of it can be deployed; lower min_healthy_per_zone",
            floor.min
        ));
    }
    Ok(floor)
}

/// The steps before `wave`, after the waves `done`: within a stage, what
/// the wave before calls for; after a zone, its bake (`first_zone_bake`
/// after a group's first zone, `zone_bake` after the others) after the
/// canary's own step, and no batch pause beside a bake.
pub(super) fn steps(shape: Shape, done: &[PlannedWave], wave: &PlannedWave) -> Vec<Step> {
    let previous = done.last().expect("a wave before");
    let own = step_after(shape, previous.kind);
    let mut steps: Vec<Step> = Vec::new();
    let wave_bake = shape.strategy.wave_bake;
    // The canary's own bake stands for its wave bake.
    if !wave_bake.is_zero() && !matches!(own, Step::Bake(_)) {
        steps.push(Step::WaveBake(wave_bake));
    }
    if own != Step::Nothing {
        steps.push(own);
    }
    let Some(zones) = shape
        .strategy
        .zones
        .as_ref()
        .filter(|_| !previous.same_stage(wave))
    else {
        return steps;
    };
    let first_zone_of_group = done
        .iter()
        .find(|w| w.group == previous.group)
        .is_some_and(|w| w.zone == previous.zone);
    let bake = match first_zone_of_group {
        true => zones.first_zone_bake,
        false => zones.zone_bake,
    };
    if bake > Duration::ZERO {
        if previous.kind == WaveKind::Batch {
            steps.clear();
        }
        steps.push(Step::ZoneBake(bake));
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::super::RolloutPlan;
    use super::*;
    use crate::config::{GroupStrategy, Pause, Strategy};
    use Amount::{Hosts, Percent};

    const M: Duration = Duration::from_secs(60);

    struct Fleet {
        /// (groups, zone) of each host, by index.
        hosts: Vec<(Vec<String>, Option<String>)>,
    }

    impl Fleet {
        /// `zones` zones (z1, z2, ...) of `per` hosts each; in each zone the
        /// first half are `web`, the rest `worker`.
        fn zoned(zones: usize, per: usize) -> Fleet {
            let mut hosts = Vec::new();
            for z in 0..zones {
                for h in 0..per {
                    let role = if h < per / 2 { "web" } else { "worker" };
                    hosts.push((vec![role.to_string()], Some(format!("z{}", z + 1))));
                }
            }
            Fleet { hosts }
        }

        fn members(&self) -> Vec<Member<'_>> {
            self.hosts
                .iter()
                .enumerate()
                .map(|(node, (groups, zone))| Member {
                    node,
                    groups,
                    zone: zone.as_deref(),
                })
                .collect()
        }

        fn plan(
            &self,
            s: &Strategy,
            groups: &BTreeMap<String, GroupStrategy>,
        ) -> Result<RolloutPlan, String> {
            let sizes = BTreeMap::new();
            let shape = Shape {
                strategy: s,
                canary: s.canary,
                health: true,
                once: false,
                until_canary: false,
                groups,
                traffic: None,
                zone_sizes: &sizes,
            };
            RolloutPlan::of(shape, &self.members())
        }

        fn zone(&self, i: usize) -> &str {
            self.hosts[i].1.as_deref().unwrap()
        }
    }

    fn zoned(canary: Amount, batch: &[Amount], min: Amount) -> Strategy {
        Strategy {
            canary,
            canary_pause: Pause::Manual,
            batch: batch.to_vec(),
            zones: Some(Zones {
                order: vec!["z1".into(), "z2".into(), "z3".into()],
                from_groups: false,
                first_zone_bake: 10 * M,
                zone_bake: M,
                min_healthy: min,
            }),
            ..Strategy::default()
        }
    }

    /// (zone, kind, hosts) of each wave.
    fn table(p: &RolloutPlan) -> Vec<(String, &'static str, usize)> {
        p.waves
            .iter()
            .map(|w| {
                (
                    w.zone.clone().unwrap_or_default(),
                    w.kind.as_str(),
                    w.hosts.len(),
                )
            })
            .collect()
    }

    #[test]
    fn three_zones_of_four_with_a_canary_and_batches_never_mix_zones_in_a_wave() {
        let fleet = Fleet::zoned(3, 4);
        let s = zoned(Hosts(1), &[Percent(50)], Hosts(0));
        let p = fleet.plan(&s, &BTreeMap::new()).unwrap();
        let z = |n: &str| n.to_string();
        assert_eq!(
            table(&p),
            [
                (z("z1"), "canary", 1),
                (z("z1"), "batch", 2),
                (z("z1"), "batch", 1),
                (z("z2"), "batch", 2),
                (z("z2"), "batch", 2),
                (z("z3"), "batch", 2),
                (z("z3"), "batch", 2),
            ]
        );
        for wave in &p.waves {
            assert!(
                wave.hosts
                    .iter()
                    .all(|&i| fleet.zone(i) == wave.zone.as_deref().unwrap())
            );
        }
        let all: Vec<usize> = p.waves.iter().flat_map(|w| w.hosts.clone()).collect();
        assert_eq!(all, (0..12).collect::<Vec<_>>());
    }

    #[test]
    fn zone_bakes_come_after_each_zone_and_the_next_zone_uploads_in_its_own_wave() {
        let fleet = Fleet::zoned(3, 4);
        let s = zoned(Hosts(1), &[Percent(50)], Hosts(0));
        let p = fleet.plan(&s, &BTreeMap::new()).unwrap();
        let before: Vec<Vec<Step>> = p.waves.iter().map(|w| w.before.clone()).collect();
        assert_eq!(
            before,
            [
                vec![],
                vec![Step::Ask],
                vec![],
                vec![Step::ZoneBake(10 * M)],
                vec![],
                vec![Step::ZoneBake(M)],
                vec![],
            ]
        );
        let uploads: Vec<Upload> = p.waves.iter().map(|w| w.upload).collect();
        use Upload::{DuringPreviousWave as Prev, InWave};
        assert_eq!(uploads, [InWave, InWave, Prev, InWave, Prev, InWave, Prev]);
    }

    #[test]
    fn a_canary_that_is_a_whole_zone_is_asked_about_then_the_zone_baked() {
        let fleet = Fleet {
            hosts: vec![
                (vec![], Some("z1".into())),
                (vec![], Some("z2".into())),
                (vec![], Some("z2".into())),
            ],
        };
        let s = zoned(Hosts(1), &[Percent(100)], Hosts(0));
        let p = fleet.plan(&s, &BTreeMap::new()).unwrap();
        assert_eq!(p.waves[1].before, [Step::Ask, Step::ZoneBake(10 * M)]);
        assert_eq!(p.waves[1].zone.as_deref(), Some("z2"));
    }

    #[test]
    fn min_healthy_per_zone_in_hosts_or_percent_caps_the_waves_of_a_zone() {
        // Four hosts, at least 3 healthy: one at a time.
        assert_eq!(Floor::of(Hosts(3), 4).most_down(), 1);
        // 50% of 5 rounds up to 3 kept: 2 at a time.
        assert_eq!(Floor::of(Percent(50), 5), Floor { size: 5, min: 3 });
        assert_eq!(Floor::of(Percent(50), 5).most_down(), 2);
        assert_eq!(Floor::of(Hosts(0), 4).most_down(), 4);
        assert!(!Floor::of(Hosts(2), 4).breached(1, 1));
        assert!(Floor::of(Hosts(2), 4).breached(1, 2));
        let fleet = Fleet::zoned(3, 4);
        let s = zoned(Hosts(0), &[Percent(100)], Percent(75));
        let p = fleet.plan(&s, &BTreeMap::new()).unwrap();
        assert_eq!(p.waves.len(), 12);
        assert!(p.waves.iter().all(|w| w.hosts.len() == 1));
        assert_eq!(p.waves[0].floor, Some(Floor { size: 4, min: 3 }));
        let s = zoned(Hosts(0), &[Percent(100)], Hosts(2));
        let sizes: Vec<usize> = fleet
            .plan(&s, &BTreeMap::new())
            .unwrap()
            .waves
            .iter()
            .map(|w| w.hosts.len())
            .collect();
        assert_eq!(sizes, [2, 2, 2, 2, 2, 2]);
    }

    #[test]
    fn a_zone_that_cannot_spare_a_host_refuses_the_plan() {
        let fleet = Fleet::zoned(3, 4);
        let s = zoned(Hosts(1), &[Percent(50)], Percent(100));
        let err = fleet.plan(&s, &BTreeMap::new()).unwrap_err();
        assert!(err.contains("zone z1 has 4 healthy host(s)"), "{err}");
        assert!(err.contains("keeps 4"), "{err}");
    }

    #[test]
    fn zone_sizes_count_the_whole_inventory_less_the_unreachable_selected() {
        let host = |name: &str, zone: &str| Host {
            name: name.into(),
            groups: vec![],
            deploy_to: "/srv".into(),
            vars: Default::default(),
            command_timeout: M,
            transport: crate::config::HostTransport::Local {
                root: "/tmp".into(),
            },
            role: crate::config::Role {
                zone: Some(zone.into()),
                ..Default::default()
            },
        };
        let all = [
            host("a", "z1"),
            host("b", "z1"),
            host("c", "z1"),
            host("d", "z2"),
        ];
        // a and b selected; b unreachable; c not selected counts healthy.
        let sizes = zone_sizes(&all, &all[..2], &["a"]);
        assert_eq!(sizes.get("z1"), Some(&2));
        assert_eq!(sizes.get("z2"), Some(&1));
    }

    #[test]
    fn ordered_groups_deploy_one_after_another_each_with_its_own_strategy() {
        let fleet = Fleet::zoned(1, 6);
        let s = Strategy {
            canary: Hosts(1),
            canary_pause: Pause::For(Duration::ZERO),
            batch: vec![Percent(100)],
            order: vec!["worker".into(), "web".into()],
            ..Strategy::default()
        };
        let mut groups = BTreeMap::new();
        groups.insert(
            "worker".to_string(),
            GroupStrategy {
                canary: Some(Hosts(0)),
                batch: Some(vec![Hosts(1)]),
                parallel: None,
            },
        );
        let p = fleet.plan(&s, &groups).unwrap();
        let rows: Vec<(Option<&str>, &str, Vec<usize>)> = p
            .waves
            .iter()
            .map(|w| (w.group.as_deref(), w.kind.as_str(), w.hosts.clone()))
            .collect();
        assert_eq!(
            rows,
            [
                (Some("worker"), "batch", vec![3]),
                (Some("worker"), "batch", vec![4]),
                (Some("worker"), "batch", vec![5]),
                (Some("web"), "canary", vec![0]),
                (Some("web"), "batch", vec![1, 2]),
            ]
        );
        // The web group's first wave uploads in its own wave.
        assert_eq!(p.waves[3].upload, Upload::InWave);
        assert_eq!(p.waves[2].upload, Upload::DuringPreviousWave);
    }

    #[test]
    fn a_host_in_two_ordered_groups_deploys_with_the_first() {
        let fleet = Fleet {
            hosts: vec![
                (vec!["web".into(), "worker".into()], None),
                (vec!["web".into()], None),
            ],
        };
        let s = Strategy {
            canary: Hosts(0),
            batch: vec![Percent(100)],
            order: vec!["worker".into(), "web".into()],
            ..Strategy::default()
        };
        let p = fleet.plan(&s, &BTreeMap::new()).unwrap();
        assert_eq!(p.waves[0].hosts, [0]);
        assert_eq!(p.waves[1].hosts, [1]);
    }

    #[test]
    fn ordered_groups_in_zones_go_zone_by_zone_inside_each_group_with_a_canary_each() {
        let fleet = Fleet::zoned(2, 4);
        let mut s = zoned(Hosts(1), &[Percent(100)], Hosts(0));
        s.order = vec!["web".into(), "worker".into()];
        let p = fleet.plan(&s, &BTreeMap::new()).unwrap();
        let rows: Vec<(&str, &str, &str, usize)> = p
            .waves
            .iter()
            .map(|w| {
                (
                    w.group.as_deref().unwrap(),
                    w.zone.as_deref().unwrap(),
                    w.kind.as_str(),
                    w.hosts.len(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("web", "z1", "canary", 1),
                ("web", "z1", "batch", 1),
                ("web", "z2", "batch", 2),
                ("worker", "z1", "canary", 1),
                ("worker", "z1", "batch", 1),
                ("worker", "z2", "batch", 2),
            ]
        );
        // Each group's first zone gets the first zone's bake.
        assert_eq!(p.waves[2].before, [Step::ZoneBake(10 * M)]);
        assert_eq!(p.waves[3].before, [Step::ZoneBake(M)]);
        assert_eq!(p.waves[5].before, [Step::ZoneBake(10 * M)]);
    }
}
