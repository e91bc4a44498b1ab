//! `hooks.throttle`: the most hosts that run a remote hook at once, one
//! named limit per throttled hook fleet-wide and per group that sets its
//! own, apart from `strategy.parallel` (which bounds connections and
//! uploads). A host running a hook holds a slot of the fleet's limit and of
//! each of its groups' limits for that hook.

use std::collections::BTreeMap;

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::config::{Config, Host, Throttle};
use crate::report::Phase;

/// The run's hook limits.
#[derive(Debug, Default)]
pub(crate) struct Throttles {
    /// Hook name -> its fleet-wide limit.
    fleet: BTreeMap<&'static str, Semaphore>,
    /// (group, hook name) -> the group's own limit.
    groups: BTreeMap<(String, &'static str), Semaphore>,
}

/// The name `throttle` knows a hook phase by.
fn hook(phase: Phase) -> Option<&'static str> {
    match phase {
        Phase::BeforeSwitch => Some("before_switch"),
        Phase::AfterSwitch => Some("after_switch"),
        Phase::AfterRollback => Some("after_rollback"),
        _ => None,
    }
}

fn limits(throttle: &Throttle) -> impl Iterator<Item = (&'static str, Semaphore)> {
    throttle
        .limits()
        .into_iter()
        .map(|(hook, n)| (hook, Semaphore::new(n)))
}

impl Throttles {
    pub(crate) fn new(config: &Config) -> Throttles {
        Throttles {
            fleet: limits(&config.hooks.throttle).collect(),
            groups: config
                .group_throttles
                .iter()
                .flat_map(|(group, t)| limits(t).map(|(hook, s)| ((group.clone(), hook), s)))
                .collect(),
        }
    }

    /// Waits for `host`'s slots to run the hook of `phase`: the fleet's,
    /// then its groups' in name order (one order everywhere: no two hosts
    /// each hold a slot the other waits for). Held until dropped.
    pub(crate) async fn enter(&self, host: &Host, phase: Phase) -> Vec<SemaphorePermit<'_>> {
        let Some(hook) = hook(phase) else {
            return Vec::new();
        };
        let mut held = Vec::new();
        if let Some(limit) = self.fleet.get(hook) {
            held.push(limit.acquire().await.expect("never closed"));
        }
        let mut groups: Vec<&String> = host.groups.iter().collect();
        groups.sort();
        for group in groups {
            if let Some(limit) = self.groups.get(&(group.clone(), hook)) {
                held.push(limit.acquire().await.expect("never closed"));
            }
        }
        held
    }
}
