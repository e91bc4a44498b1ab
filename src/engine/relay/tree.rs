//! The relay tree of one wave, planned before anything is sent: a few
//! seeds that hoist feeds itself, and below them each host passing the
//! release on to at most `fanout` others, hosts of the same place (zone,
//! else group) together. Pure: what the hosts are is the caller's.

use std::collections::BTreeMap;

/// The most hosts hoist feeds itself: the bytes leaving this machine stay
/// this many times the artifact and its manifest, however large the
/// wave. Two: a seed that fails leaves half the wave to fall back on
/// hoist, and each seed's stream gets half the uplink.
pub(crate) const MAX_SEEDS: usize = 2;

/// A host that needs the whole artifact.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    /// Its index in the run's nodes.
    pub index: usize,
    /// Its zone, else its first group, else empty: hosts of one place
    /// relay to each other first.
    pub place: String,
    /// It has an SSH client, so it can pass the release on; one without
    /// is only ever a leaf.
    pub relays: bool,
    /// It can be given the release by another host (hoist knows its host
    /// key and its deploy path can be named in a forced command).
    pub receives: bool,
}

/// Who gets the release from whom.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Tree {
    /// Fed by hoist, in the order chosen.
    pub seeds: Vec<usize>,
    /// Each relaying host's children, in order.
    pub children: BTreeMap<usize, Vec<usize>>,
}

impl Tree {
    /// The host that feeds `child`, if a host does.
    pub fn parent(&self, child: usize) -> Option<usize> {
        self.children
            .iter()
            .find(|(_, c)| c.contains(&child))
            .map(|(&p, _)| p)
    }

    /// Every host in the tree: seeds, then the rest, each once.
    pub fn hosts(&self) -> Vec<usize> {
        let mut all = self.seeds.clone();
        all.extend(self.children.values().flatten().copied());
        all
    }

    /// How deep the tree goes: 1 when only seeds, 0 when empty.
    pub fn depth(&self) -> usize {
        let mut depth = 0;
        let mut level = self.seeds.clone();
        while !level.is_empty() {
            depth += 1;
            level = level
                .iter()
                .flat_map(|p| self.children.get(p).cloned().unwrap_or_default())
                .collect();
        }
        depth
    }
}

/// Plans the tree for `hosts` (each wanting the whole artifact) with at
/// most `fanout` children per host. Seeds are hosts that relay, at most
/// [`MAX_SEEDS`] and `fanout`, one per place first. Below them, level by
/// level, each parent takes hosts that relay before those that do not
/// (so that the tree always has room to grow), of its own place first.
/// Hosts left out (no host to relay to them, or none relays at all) are
/// fed by hoist as without a relay. A tree of fewer than two hosts is
/// empty: there is nothing to relay.
pub(crate) fn plan(hosts: &[Candidate], fanout: usize) -> Tree {
    let mut pool: Vec<&Candidate> = hosts.iter().collect();
    pool.sort_by(|a, b| a.place.cmp(&b.place));
    let seeds = pick_seeds(&mut pool, fanout.min(MAX_SEEDS));
    if seeds.is_empty() || !pool.iter().any(|c| c.receives) || fanout == 0 {
        return Tree::default();
    }
    let place_of = |i: usize| hosts.iter().find(|c| c.index == i).map(|c| c.place.clone());
    let mut tree = Tree {
        seeds: seeds.clone(),
        children: BTreeMap::new(),
    };
    let mut queue: std::collections::VecDeque<usize> = seeds.into();
    while let Some(parent) = queue.pop_front() {
        let place = place_of(parent).unwrap_or_default();
        let mut mine = Vec::new();
        while mine.len() < fanout {
            let pick = [(true, true), (true, false), (false, true), (false, false)]
                .iter()
                .find_map(|&(same, relays)| {
                    pool.iter().position(|c| {
                        c.receives && c.relays == relays && (c.place == place) == same
                    })
                });
            let Some(at) = pick else { break };
            let child = pool.remove(at);
            if child.relays {
                queue.push_back(child.index);
            }
            mine.push(child.index);
        }
        if !mine.is_empty() {
            tree.children.insert(parent, mine);
        }
    }
    tree
}

/// Takes up to `most` relaying hosts out of `pool` as seeds, one of each
/// place in turn.
fn pick_seeds(pool: &mut Vec<&Candidate>, most: usize) -> Vec<usize> {
    let mut seeds = Vec::new();
    while seeds.len() < most {
        let mut taken_any = false;
        let mut places_done: Vec<String> = Vec::new();
        let mut at = 0;
        while at < pool.len() && seeds.len() < most {
            let c = pool[at];
            if c.relays && !places_done.contains(&c.place) {
                places_done.push(c.place.clone());
                seeds.push(c.index);
                pool.remove(at);
                taken_any = true;
            } else {
                at += 1;
            }
        }
        if !taken_any {
            break;
        }
    }
    seeds
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(index: usize, place: &str, relays: bool) -> Candidate {
        Candidate {
            index,
            place: place.to_string(),
            relays,
            receives: true,
        }
    }

    fn every_host_once(tree: &Tree, n: usize) {
        let mut all = tree.hosts();
        all.sort();
        assert_eq!(all, (0..n).collect::<Vec<_>>());
    }

    #[test]
    fn seven_hosts_with_fanout_two() {
        let hosts: Vec<Candidate> = (0..7).map(|i| host(i, "", true)).collect();
        let tree = plan(&hosts, 2);
        assert_eq!(tree.seeds, vec![0, 1]);
        assert_eq!(tree.children[&0], vec![2, 3]);
        assert_eq!(tree.children[&1], vec![4, 5]);
        assert_eq!(tree.children[&2], vec![6]);
        assert_eq!(tree.parent(6), Some(2));
        assert_eq!(tree.parent(0), None);
        assert_eq!(tree.depth(), 3);
        every_host_once(&tree, 7);
    }

    #[test]
    fn no_host_has_more_children_than_the_fanout_and_seeds_stay_few() {
        for n in [2, 3, 10, 50, 250, 1000] {
            for fanout in 1..=6 {
                let hosts: Vec<Candidate> = (0..n)
                    .map(|i| host(i, ["a", "b", "c"][i % 3], i % 5 != 4))
                    .collect();
                let tree = plan(&hosts, fanout);
                assert!(tree.seeds.len() <= fanout.min(MAX_SEEDS), "{n} {fanout}");
                assert!(tree.children.values().all(|c| c.len() <= fanout));
                // Only hosts that relay have children.
                assert!(tree.children.keys().all(|&p| hosts[p].relays));
                let mut all = tree.hosts();
                all.sort();
                all.dedup();
                assert_eq!(all.len(), tree.hosts().len(), "each host once");
                // Enough hosts for more than the seeds: every one placed.
                if fanout >= 2 && n > fanout.min(MAX_SEEDS) {
                    every_host_once(&tree, n);
                }
            }
        }
    }

    #[test]
    fn hosts_of_one_zone_relay_to_each_other() {
        let hosts: Vec<Candidate> = (0..12)
            .map(|i| host(i, if i % 2 == 0 { "east" } else { "west" }, true))
            .collect();
        let tree = plan(&hosts, 3);
        let place = |i: usize| hosts[i].place.as_str();
        // One seed per zone first.
        assert_eq!(place(tree.seeds[0]), "east");
        assert_eq!(place(tree.seeds[1]), "west");
        let mixed = tree
            .children
            .iter()
            .flat_map(|(p, c)| c.iter().map(move |c| (*p, *c)))
            .filter(|&(p, c)| place(p) != place(c))
            .count();
        // Two seeds for two zones: each zone's tree stays in it but for
        // a few hops.
        assert!(mixed <= 3, "{mixed} hops across zones: {tree:?}");
        every_host_once(&tree, 12);
    }

    #[test]
    fn a_host_without_an_ssh_client_is_only_a_leaf() {
        let hosts = vec![
            host(0, "", false),
            host(1, "", true),
            host(2, "", false),
            host(3, "", false),
        ];
        let tree = plan(&hosts, 4);
        assert_eq!(tree.seeds, vec![1]);
        assert_eq!(tree.children[&1], vec![0, 2, 3]);
        assert_eq!(tree.children.len(), 1);
    }

    #[test]
    fn nothing_to_relay() {
        // No host can relay, one host alone, a host that cannot receive.
        let none: Vec<Candidate> = (0..4).map(|i| host(i, "", false)).collect();
        assert_eq!(plan(&none, 2), Tree::default());
        assert_eq!(plan(&[host(0, "", true)], 2), Tree::default());
        let mut closed = host(1, "", true);
        closed.receives = false;
        assert_eq!(plan(&[host(0, "", true), closed], 2), Tree::default());
    }
}
