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
    /// `drain_local` and `undrain_local` run one at a time, fleet-wide: a
    /// load balancer's script is rarely safe to run twice at once (two
    /// hosts of a wave draining together would race on its configuration
    /// and reload).
    load_balancer: tokio::sync::Mutex<()>,
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
            load_balancer: tokio::sync::Mutex::new(()),
        }
    }

    /// The turn to run a drain or undrain hook: one host at a time.
    pub(crate) async fn load_balancer(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.load_balancer.lock().await
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

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;
    use crate::config::HostTransport;

    fn host(name: &str, groups: &[&str]) -> Host {
        Host {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            deploy_to: "/srv".into(),
            vars: Default::default(),
            command_timeout: std::time::Duration::from_secs(1),
            transport: HostTransport::Local {
                root: "/tmp".into(),
            },
            role: Default::default(),
        }
    }

    fn throttles(fleet: Throttle, groups: &[(&str, Throttle)]) -> Throttles {
        Throttles {
            fleet: limits(&fleet).collect(),
            groups: groups
                .iter()
                .flat_map(|(g, t)| limits(t).map(move |(hook, s)| ((g.to_string(), hook), s)))
                .collect(),
            ..Throttles::default()
        }
    }

    #[test]
    fn a_fleet_limit_of_two_holds_the_third_host_until_one_is_done() {
        let t = throttles(
            Throttle {
                after_switch: Some(2),
                ..Throttle::default()
            },
            &[],
        );
        let (a, b, c) = (host("a", &[]), host("b", &[]), host("c", &[]));
        let first = t.enter(&a, Phase::AfterSwitch).now_or_never().unwrap();
        let _second = t.enter(&b, Phase::AfterSwitch).now_or_never().unwrap();
        assert!(t.enter(&c, Phase::AfterSwitch).now_or_never().is_none());
        // Another hook, or no hook, is not held.
        assert!(t.enter(&c, Phase::BeforeSwitch).now_or_never().is_some());
        assert!(
            t.enter(&c, Phase::Upload)
                .now_or_never()
                .unwrap()
                .is_empty()
        );
        drop(first);
        assert!(t.enter(&c, Phase::AfterSwitch).now_or_never().is_some());
    }

    #[test]
    fn a_group_limit_holds_only_that_groups_hosts() {
        let one = Throttle {
            after_rollback: Some(1),
            ..Throttle::default()
        };
        let t = throttles(Throttle::default(), &[("worker", one)]);
        let (w1, w2, web) = (
            host("w1", &["worker"]),
            host("w2", &["worker"]),
            host("web", &["web"]),
        );
        let _held = t.enter(&w1, Phase::AfterRollback).now_or_never().unwrap();
        assert!(t.enter(&w2, Phase::AfterRollback).now_or_never().is_none());
        assert!(t.enter(&web, Phase::AfterRollback).now_or_never().is_some());
    }
}
