//! The rollout's decisions, as pure functions over what the hosts reported:
//! when to halt, how a run ends (exit code and which hosts go back), whether
//! the fleet agrees on a rollback target, what `--resume` carries on, and
//! which exit a failed preflight means. No I/O; tested without a network.

mod colours;
mod targets;

pub(crate) use colours::*;
pub(crate) use targets::*;

use std::time::Duration;

use super::Failure;
use super::preflight::Problem;
use crate::config::OnFailure;
use crate::exit::Exit;
use crate::transport::TransportError;

/// More hosts failed than `max_failures` allows: start no new host.
pub(crate) fn halts(failures: usize, allowed: usize) -> bool {
    failures > allowed
}

/// What the rollout knows of one host when it decides how the run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct HostState {
    pub failed: bool,
    /// `current` was pointed at the new release by this run.
    pub switched: bool,
}

/// How a rollout ends, before any rollback ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub exit: Exit,
    /// Indices of the hosts that go back to the release they had.
    pub roll_back: Vec<usize>,
    /// Old releases may be pruned (only after a clean rollout).
    pub prune: bool,
}

/// The end of a rollout from the hosts' states, the halt flag (failure limit,
/// a failed local hook, a canary not promoted), the interrupt flag and
/// `on_failure`. An interrupt wins over everything: hosts stay where they are.
pub(crate) fn verdict(
    hosts: &[HostState],
    halted: bool,
    interrupted: bool,
    on_failure: OnFailure,
) -> Verdict {
    let end = |exit| Verdict {
        exit,
        roll_back: Vec::new(),
        prune: false,
    };
    if interrupted {
        return end(Exit::Interrupted);
    }
    if halted {
        return match on_failure {
            OnFailure::Stop => end(Exit::Failed),
            OnFailure::Rollback => Verdict {
                exit: Exit::RolledBack,
                roll_back: (0..hosts.len()).filter(|&i| hosts[i].switched).collect(),
                prune: false,
            },
        };
    }
    if hosts.iter().any(|h| h.failed) {
        return end(Exit::Failed);
    }
    Verdict {
        exit: Exit::Ok,
        roll_back: Vec::new(),
        prune: true,
    }
}

/// Why hosts go back, which decides how they end and when going back in
/// waves stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BackFor {
    /// Undoing a run that failed or was interrupted (a rollout that
    /// stopped, a blue-green idle colour, `abort`): hosts end `rolled_back`.
    Undo,
    /// `hoist rollback`: the user sends hosts to a target; they end `ok`.
    Rollback,
}

/// Whether going back in waves stops after a wave whose `after_batch_local`
/// failed (`hook_failed`) or where a host could not go back (`not_back`).
/// An undo goes on: the waves after it are still on the failed release and
/// must go back. `hoist rollback` stops: the target may be what is broken,
/// and the hosts not yet moved are on a release that worked. (A failing
/// `before_batch_local` stops both: that wave never went.)
pub(crate) fn rollback_stops(why: BackFor, hook_failed: bool, not_back: bool) -> bool {
    why == BackFor::Rollback && (hook_failed || not_back)
}

/// Whether going back in waves starts no further wave: `hoist rollback`
/// after an interrupt. An undo always finishes.
pub(crate) fn rollback_stops_before(why: BackFor, interrupted: bool) -> bool {
    why == BackFor::Rollback && interrupted
}

/// The exit of `hoist rollback`: 130 when an interrupt left hosts where
/// they were, 0 when every host reached the target, else 1.
pub(crate) fn rollback_exit(interrupted: bool, left: bool, stopped: bool, all_ok: bool) -> Exit {
    if interrupted && left {
        Exit::Interrupted
    } else if !stopped && all_ok {
        Exit::Ok
    } else {
        Exit::Failed
    }
}

/// Blue-green, interrupted before the traffic switch: 130 once the idle
/// colour is back on what it had (`back`), else 1.
pub(crate) fn after_interrupted_colour(back: bool) -> Exit {
    if back {
        Exit::Interrupted
    } else {
        Exit::Failed
    }
}

/// Blue-green, after the traffic switch and a probe that passed: 1 when the
/// live colour could not be recorded on every host, else 130 for an
/// interrupt (the switch completed), else 0.
pub(crate) fn after_switch(recorded: bool, interrupted: bool) -> Exit {
    match (recorded, interrupted) {
        (false, _) => Exit::Failed,
        (true, true) => Exit::Interrupted,
        (true, false) => Exit::Ok,
    }
}

/// Blue-green, after a failed probe: 5 when traffic and the idle colour
/// both went back (`back`), else 1.
pub(crate) fn after_traffic_back(back: bool) -> Exit {
    if back { Exit::RolledBack } else { Exit::Failed }
}

/// A command that moves hosts without a failure policy (`abort`, a
/// blue-green `rollback`): 0 when everything went as asked, else 1.
pub(crate) fn done_or_failed(ok: bool) -> Exit {
    if ok { Exit::Ok } else { Exit::Failed }
}

/// The exit of a rollout: as [`after_rollback`] says, unless the once hook
/// failed (`once_failed`, not for an interrupt), when only a host switched
/// makes it a failure.
pub(crate) fn rollout_exit(
    verdict: &Verdict,
    all_back: bool,
    once_failed: bool,
    hosts: &[HostState],
) -> Exit {
    if once_failed {
        after_once_failure(hosts)
    } else {
        after_rollback(verdict, all_back)
    }
}

/// The exit once the rollback of `verdict` ran: a host that could not go
/// back means hosts are not where they should be.
pub(crate) fn after_rollback(verdict: &Verdict, all_back: bool) -> Exit {
    if verdict.exit == Exit::RolledBack && !all_back {
        Exit::Failed
    } else {
        verdict.exit
    }
}

/// The exit of a run that was alive when one of its hosts' dead-man
/// switches went back by itself, or that could not confirm a host after
/// its switch (`unconfirmed`): never 0 (nor 130, which says hosts are
/// where they should be); 5 when every host the run touched is back on
/// the release it had (`all_touched_back`), else 1.
pub(crate) fn after_self_reverts(exit: Exit, unconfirmed: bool, all_touched_back: bool) -> Exit {
    match (unconfirmed, all_touched_back) {
        (false, _) => exit,
        (true, true) => Exit::RolledBack,
        (true, false) => Exit::Failed,
    }
}

/// The exit of a deploy whose `before_switch_once` failed: the gate kept
/// every host from switching, so each is on the release it had (exit 5);
/// should one have switched anyway, hosts are not where they should be.
pub(crate) fn after_once_failure(hosts: &[HostState]) -> Exit {
    if hosts.iter().any(|h| h.switched) {
        Exit::Failed
    } else {
        Exit::RolledBack
    }
}

/// Whether a host that could not be reached or read at preflight was lost
/// to the network (refused, reset, timed out, dropped): only such a host
/// may be skipped under `max_unreachable`. A host key, authentication or
/// session-limit failure never is: a person must fix those.
pub(crate) fn is_unreachable(failure: &Failure) -> bool {
    matches!(
        failure,
        Failure::Transport(
            TransportError::Unreachable { .. }
                | TransportError::Timeout { .. }
                | TransportError::Disconnected { .. }
        )
    )
}

/// The hosts that failed to be reached or read at preflight, as the
/// preflight judges them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Unreached {
    /// Lost to the network ([`is_unreachable`]).
    pub unreachable: usize,
    /// `max_unreachable`, in hosts.
    pub allowed: usize,
    /// Refused for another reason (host key, auth, sessions).
    pub other: usize,
}

impl Unreached {
    /// No host failed at all.
    pub(crate) const NONE: Unreached = Unreached {
        unreachable: 0,
        allowed: 0,
        other: 0,
    };

    /// The unreachable hosts are skipped, and the rest go on.
    pub(crate) fn skipped(&self) -> bool {
        self.unreachable > 0 && self.unreachable <= self.allowed
    }
}

/// The exit of a preflight that found problems; `None` when the run goes
/// on (skipping unreachable hosts within `max_unreachable`). A lock held
/// elsewhere, and nothing else wrong, is exit 4; anything else exit 3.
pub(crate) fn preflight_exit(unreached: Unreached, problems: &[Problem]) -> Option<Exit> {
    let problems: Vec<&Problem> = problems.iter().filter(|p| !p.is_warning()).collect();
    let too_many = unreached.unreachable > unreached.allowed;
    if unreached.other > 0 || too_many || problems.iter().any(|p| !p.is_lock()) {
        Some(Exit::Preflight)
    } else if !problems.is_empty() {
        Some(Exit::Locked)
    } else {
        None
    }
}

/// A deploy that skipped unreachable hosts did not put every selected host
/// on the new release: a clean rollout of the rest exits 1, not 0.
pub(crate) fn with_skipped(exit: Exit, skipped: usize) -> Exit {
    if exit == Exit::Ok && skipped > 0 {
        Exit::Failed
    } else {
        exit
    }
}

/// Whether `[diagnose]` runs on a host that failed with `failure`: only
/// one that failed after its switch (an after_switch hook, the health
/// check), where the new release ran and left evidence; not one stopped by
/// the halt or an interrupt (nothing of its own went wrong), and not after
/// Ctrl-C (the person wants out).
pub(crate) fn diagnoses(switched: bool, failure: &Failure, interrupted: bool) -> bool {
    switched && !interrupted && !matches!(failure, Failure::Halted | Failure::Interrupted)
}

/// A bake fails a canary host once `retries` probes in a row failed, as the
/// health check after a switch counts them.
pub(crate) fn bake_failed(failed_in_a_row: u32, retries: u32) -> bool {
    failed_in_a_row >= retries.max(1)
}

// --- waiting for a held lock -------------------------------------------------

/// The next look at a held lock: about every second (±50%, `jitter` in
/// 0..1, so that waiting runs do not poll in step), never past the end of
/// the wait; `None` once the wait is over.
pub(crate) fn next_lock_poll(waited: Duration, wait: Duration, jitter: f64) -> Option<Duration> {
    let left = wait.checked_sub(waited).filter(|d| !d.is_zero())?;
    let every = Duration::from_millis(500 + (jitter.clamp(0.0, 1.0) * 1000.0) as u64);
    Some(every.min(left))
}

// --- deploy --until canary, promote, abort -----------------------------------

#[cfg(test)]
mod tests {
    #[test]
    fn a_host_that_went_back_by_itself_never_lets_the_run_exit_0() {
        use super::after_self_reverts;
        use crate::exit::Exit::*;
        // (exit before, a host unconfirmed, every touched host back) -> exit
        let table = [
            (Ok, false, false, Ok),
            (Interrupted, false, true, Interrupted),
            (Ok, true, true, RolledBack),
            (Ok, true, false, Failed),
            (Interrupted, true, true, RolledBack),
            (Interrupted, true, false, Failed),
            (RolledBack, true, true, RolledBack),
            (RolledBack, true, false, Failed),
            (Failed, true, true, RolledBack),
            (Failed, true, false, Failed),
        ];
        for (exit, unconfirmed, back, expected) in table {
            assert_eq!(
                after_self_reverts(exit, unconfirmed, back),
                expected,
                "{exit:?} {unconfirmed} {back}"
            );
        }
    }

    use super::*;
    use crate::config::Color;
    use crate::journal::{Entry, Journal, Kind};
    use crate::release::ReleaseId;
    use chrono::TimeZone;
    use chrono::Utc;

    fn id(s: &str) -> ReleaseId {
        ReleaseId::parse(s).unwrap()
    }
    const R1: &str = "20260101T000000Z-aaaaaaaa";
    const R2: &str = "20260102T000000Z-bbbbbbbb";
    const R3: &str = "20260103T000000Z-cccccccc";

    fn states(list: &[(bool, bool)]) -> Vec<HostState> {
        list.iter()
            .map(|&(failed, switched)| HostState { failed, switched })
            .collect()
    }

    #[test]
    fn a_failed_once_hook_is_exit_5_because_no_host_switched() {
        let none = states(&[(true, false), (false, false), (false, false)]);
        assert_eq!(after_once_failure(&none), Exit::RolledBack);
        let one = states(&[(true, false), (false, true)]);
        assert_eq!(after_once_failure(&one), Exit::Failed);
        // Blue-green and the commands without a failure policy.
        assert_eq!(after_interrupted_colour(true), Exit::Interrupted);
        assert_eq!(after_interrupted_colour(false), Exit::Failed);
        assert_eq!(after_switch(false, true), Exit::Failed);
        assert_eq!(after_switch(true, true), Exit::Interrupted);
        assert_eq!(after_switch(true, false), Exit::Ok);
        assert_eq!(after_traffic_back(true), Exit::RolledBack);
        assert_eq!(after_traffic_back(false), Exit::Failed);
        assert_eq!(done_or_failed(true), Exit::Ok);
        assert_eq!(done_or_failed(false), Exit::Failed);
        // Going back in waves: an undo goes on, `hoist rollback` stops.
        assert!(!rollback_stops(BackFor::Undo, true, true));
        assert!(rollback_stops(BackFor::Rollback, true, false));
        assert!(rollback_stops(BackFor::Rollback, false, true));
        assert!(!rollback_stops(BackFor::Rollback, false, false));
        assert!(rollback_stops_before(BackFor::Rollback, true));
        assert!(!rollback_stops_before(BackFor::Undo, true));
        assert_eq!(rollback_exit(true, true, true, false), Exit::Interrupted);
        assert_eq!(rollback_exit(true, false, false, true), Exit::Ok);
        assert_eq!(rollback_exit(false, false, true, true), Exit::Failed);
        assert_eq!(rollback_exit(false, false, false, false), Exit::Failed);
        // The once hook's failure decides over the verdict.
        let v = verdict(&one, true, false, OnFailure::Rollback);
        assert_eq!(rollout_exit(&v, true, true, &none), Exit::RolledBack);
        assert_eq!(rollout_exit(&v, true, true, &one), Exit::Failed);
        assert_eq!(
            rollout_exit(&v, true, false, &one),
            after_rollback(&v, true)
        );
    }

    #[test]
    fn a_failed_canary_rolls_back_only_the_canary_and_exits_5() {
        // The canary failed its health check after its switch; the halt
        // stopped every other host before it started.
        let hosts = states(&[(true, true), (false, false), (false, false)]);
        let v = verdict(&hosts, true, false, OnFailure::Rollback);
        assert_eq!(v.exit, Exit::RolledBack);
        assert_eq!(v.roll_back, vec![0]);
        assert!(!v.prune);
        assert_eq!(after_rollback(&v, true), Exit::RolledBack);
    }

    #[test]
    fn max_failures_1_with_two_failures_halts_after_that_wave() {
        assert!(!halts(1, 1));
        assert!(halts(2, 1));
        // Wave 2 of 3 had two failures: hosts of wave 1 and 2 that switched go back.
        let hosts = states(&[
            (false, true),
            (false, true),
            (false, true),
            (true, true),
            (true, false),
            (false, true),
            (false, false),
            (false, false),
            (false, false),
        ]);
        let v = verdict(&hosts, halts(2, 1), false, OnFailure::Rollback);
        assert_eq!(v.exit, Exit::RolledBack);
        assert_eq!(v.roll_back, vec![0, 1, 2, 3, 5]);
    }

    #[test]
    fn stop_leaves_hosts_where_they_are_and_exits_1() {
        let hosts = states(&[(true, true), (false, true)]);
        let v = verdict(&hosts, true, false, OnFailure::Stop);
        assert_eq!(v.exit, Exit::Failed);
        assert!(v.roll_back.is_empty());
    }

    #[test]
    fn a_rollback_that_itself_fails_exits_1() {
        let hosts = states(&[(true, true), (false, true)]);
        let v = verdict(&hosts, true, false, OnFailure::Rollback);
        assert_eq!(after_rollback(&v, false), Exit::Failed);
    }

    #[test]
    fn an_interrupt_exits_130_whatever_else_happened() {
        for halted in [false, true] {
            for on_failure in [OnFailure::Stop, OnFailure::Rollback] {
                let hosts = states(&[(true, true), (false, true), (false, false)]);
                let v = verdict(&hosts, halted, true, on_failure);
                assert_eq!(v.exit, Exit::Interrupted);
                assert!(v.roll_back.is_empty(), "an interrupt switches nothing back");
                assert_eq!(after_rollback(&v, false), Exit::Interrupted);
            }
        }
    }

    #[test]
    fn failures_within_the_limit_exit_1_and_prune_nothing() {
        let hosts = states(&[(false, true), (true, false)]);
        let v = verdict(&hosts, false, false, OnFailure::Rollback);
        assert_eq!(v.exit, Exit::Failed);
        assert!(v.roll_back.is_empty() && !v.prune);
    }

    #[test]
    fn a_clean_rollout_exits_0_and_prunes() {
        let v = verdict(
            &states(&[(false, true); 3]),
            false,
            false,
            OnFailure::Rollback,
        );
        assert_eq!(v.exit, Exit::Ok);
        assert!(v.prune);
    }

    #[test]
    fn a_halt_with_nothing_switched_is_still_a_clean_rollback() {
        let v = verdict(&states(&[(true, false)]), true, false, OnFailure::Rollback);
        assert!(v.roll_back.is_empty());
        assert_eq!(after_rollback(&v, true), Exit::RolledBack);
    }

    #[test]
    fn hosts_that_disagree_on_a_rollback_target_switch_nothing() {
        let targets = vec![Ok(id(R1)), Ok(id(R2)), Ok(id(R1))];
        let currents = vec![Some(id(R2)), Some(id(R3)), Some(id(R2))];
        let refusals = fleet_target(&targets, &currents, false).unwrap_err();
        assert_eq!(refusals.len(), 3, "every host says what it would do");
        assert_eq!(
            refusals[1].1,
            Refusal::Disagree {
                would: id(R2),
                current: Some(id(R3))
            }
        );
    }

    #[test]
    fn hosts_that_agree_give_the_target() {
        let targets = vec![Ok(id(R1)), Ok(id(R1))];
        let currents = vec![Some(id(R2)), Some(id(R2))];
        assert_eq!(fleet_target(&targets, &currents, false), Ok(Some(id(R1))));
        assert_eq!(fleet_target(&[], &[], false), Ok(None));
    }

    #[test]
    fn one_host_without_a_target_refuses_the_whole_rollback() {
        let targets = vec![Ok(id(R1)), Err(Refusal::NothingEarlier(id(R1)))];
        let currents = vec![Some(id(R2)), Some(id(R1))];
        let refusals = fleet_target(&targets, &currents, false).unwrap_err();
        assert_eq!(refusals, vec![(1, Refusal::NothingEarlier(id(R1)))]);
    }

    #[test]
    fn a_chosen_target_must_be_held_everywhere() {
        let holds = |r: &ReleaseId| r.as_str() == R1;
        assert_eq!(host_target(Some(&id(R1)), holds, None, None), Ok(id(R1)));
        assert_eq!(
            host_target(Some(&id(R2)), holds, Some(id(R1)), None),
            Err(Refusal::Lacks(id(R2)))
        );
        assert_eq!(
            host_target(None, holds, None, None),
            Err(Refusal::NoRelease)
        );
    }

    #[test]
    fn a_lock_alone_is_exit_4_anything_else_exit_3() {
        let lock = Problem::Locked(crate::engine::layout::LockState::File("{}".into()));
        let tools = Problem::MissingTools(vec!["tar".into()]);
        let gone = Problem::CurrentMissing("releases/x".into());
        let down = |unreachable, allowed| Unreached {
            unreachable,
            allowed,
            other: 0,
        };
        let refused = Unreached {
            other: 1,
            ..Unreached::NONE
        };
        // (hosts unreached, problems, exit)
        let table: Vec<(Unreached, Vec<Problem>, Option<Exit>)> = vec![
            (Unreached::NONE, vec![], None),
            (Unreached::NONE, vec![lock.clone()], Some(Exit::Locked)),
            (
                Unreached::NONE,
                vec![lock.clone(), tools.clone()],
                Some(Exit::Preflight),
            ),
            (down(1, 0), vec![lock.clone()], Some(Exit::Preflight)),
            (Unreached::NONE, vec![gone.clone()], None), // a warning stops nothing
            (
                Unreached::NONE,
                vec![gone, lock.clone()],
                Some(Exit::Locked),
            ),
            // max_unreachable: within the limit the rest go on; over it, exit 3.
            (down(1, 1), vec![], None),
            (down(2, 1), vec![], Some(Exit::Preflight)),
            (down(1, 1), vec![lock], Some(Exit::Locked)),
            (down(1, 1), vec![tools], Some(Exit::Preflight)),
            // A host key or auth failure is never skipped.
            (refused, vec![], Some(Exit::Preflight)),
            (
                Unreached {
                    other: 1,
                    ..down(1, 5)
                },
                vec![],
                Some(Exit::Preflight),
            ),
        ];
        for (unreached, problems, exit) in table {
            assert_eq!(
                preflight_exit(unreached, &problems),
                exit,
                "{unreached:?} {problems:?}"
            );
        }
    }

    #[test]
    fn only_the_network_makes_a_host_unreachable() {
        let net = |e| is_unreachable(&Failure::Transport(e));
        let host = || "web1".to_string();
        assert!(net(TransportError::Unreachable {
            host: host(),
            reason: "refused".into()
        }));
        assert!(net(TransportError::Timeout {
            what: "connecting".into(),
            after: std::time::Duration::from_secs(1)
        }));
        assert!(net(TransportError::Disconnected {
            host: host(),
            reason: "reset".into()
        }));
        assert!(!net(TransportError::HostKeyMismatch {
            host: host(),
            key_type: "ed25519".into(),
            fingerprint: "SHA256:x".into(),
            expected: "the pin".into()
        }));
        assert!(!net(TransportError::Auth {
            host: host(),
            user: "u".into(),
            tried: "key".into()
        }));
        assert!(!is_unreachable(&Failure::Other("probe".into())));
    }

    #[test]
    fn a_deploy_that_skipped_hosts_exits_1_not_0() {
        // (exit of the rollout, hosts skipped, exit of the run)
        for (exit, skipped, expected) in [
            (Exit::Ok, 0, Exit::Ok),
            (Exit::Ok, 1, Exit::Failed),
            (Exit::RolledBack, 1, Exit::RolledBack),
            (Exit::Failed, 2, Exit::Failed),
            (Exit::Interrupted, 1, Exit::Interrupted),
        ] {
            assert_eq!(with_skipped(exit, skipped), expected, "{exit:?} {skipped}");
        }
        assert!(down_skips(1, 1) && !down_skips(2, 1) && !down_skips(0, 0));
    }

    #[test]
    fn only_a_host_that_failed_after_its_switch_is_diagnosed() {
        let health = || Failure::Health {
            reason: "exit 1".into(),
            tail: vec![],
        };
        // (switched, failure, interrupted, diagnosed)
        let table = [
            (true, health(), false, true),
            (false, health(), false, false),
            (true, health(), true, false),
            (true, Failure::Halted, false, false),
            (true, Failure::Interrupted, false, false),
            (true, Failure::Other("lost".into()), false, true),
        ];
        for (switched, failure, interrupted, expected) in table {
            assert_eq!(
                diagnoses(switched, &failure, interrupted),
                expected,
                "{switched} {failure:?} {interrupted}"
            );
        }
    }

    fn down_skips(unreachable: usize, allowed: usize) -> bool {
        Unreached {
            unreachable,
            allowed,
            other: 0,
        }
        .skipped()
    }

    fn journal(entries: &[(Kind, &str, Option<&str>, Option<&str>)]) -> Journal {
        Journal {
            entries: entries
                .iter()
                .map(|&(kind, ts, release, previous)| Entry {
                    ts: ts.into(),
                    release: release.map(str::to_string),
                    previous: previous.map(str::to_string),
                    ..Entry::new(kind, "me@here")
                })
                .collect(),
        }
    }

    #[test]
    fn resume_carries_the_last_deploy_on() {
        let j = journal(&[
            (Kind::Lock, "2026-01-01T00:00:00Z", Some(R1), None),
            (Kind::Lock, "2026-01-02T00:00:00Z", Some(R2), None),
            (Kind::Lock, "2026-01-03T00:00:00Z", None, None),
        ]);
        let (r1, r2) = (id(R1), id(R2));
        let hosts = [(Some(&r2), &j), (Some(&r1), &j)];
        assert_eq!(resume_target(&hosts, "bbbbbbbb0000"), Ok(id(R2)));
        assert!(
            resume_target(&hosts, "cccccccc0000")
                .unwrap_err()
                .contains("the artifact changed")
        );
        let all_there = [(Some(&r2), &j)];
        assert!(
            resume_target(&all_there, "bbbbbbbb")
                .unwrap_err()
                .contains("already on")
        );
    }

    #[test]
    fn a_rolled_back_release_is_never_resumed() {
        let j = journal(&[
            (Kind::Lock, "2026-01-02T00:00:00Z", Some(R2), None),
            (Kind::Rollback, "2026-01-02T00:01:00Z", Some(R1), Some(R2)),
        ]);
        let r1 = id(R1);
        assert!(
            resume_target(&[(Some(&r1), &j)], "bbbbbbbb")
                .unwrap_err()
                .contains("was rolled back")
        );
        assert!(
            resume_target(&[(Some(&r1), &Journal::default())], "bbbbbbbb")
                .unwrap_err()
                .contains("nothing to resume")
        );
    }

    fn colors() -> [Color; 2] {
        let c = |name: &str, hosts: &[&str]| Color {
            name: name.into(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
        };
        [c("blue", &["b1", "b2"]), c("green", &["g1", "g2"])]
    }

    #[test]
    fn the_first_deploy_goes_to_the_first_colour() {
        assert_eq!(sides(None, &colors()), Ok((None, 0)));
        assert_eq!(sides(Some("blue"), &colors()), Ok((Some(0), 1)));
        assert_eq!(sides(Some("green"), &colors()), Ok((Some(1), 0)));
        assert!(sides(Some("red"), &colors()).unwrap_err().contains("red"));
    }

    #[test]
    fn journals_that_disagree_on_the_live_colour_stop_the_run_unless_the_user_says() {
        let now = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
        let t1 = "2026-01-01T00:00:00Z";
        let forged = "2099-01-01T00:00:00Z";
        let rec = |host, said| TrafficRecord { host, said };
        let none = [rec("b1", None), rec("g1", None)];
        assert_eq!(live_color(&none), Live::Unknown);
        assert_eq!(live_by(&none, None, &colors(), now), Ok(None));
        let agreed = [rec("b1", Some(("blue", t1))), rec("g1", Some(("blue", t1)))];
        assert_eq!(live_color(&agreed), Live::Agreed("blue".into()));
        assert_eq!(
            live_by(&agreed, None, &colors(), now),
            Ok(Some("blue".into()))
        );
        // A later record, even one dated after now, does not win.
        let split = [
            rec("b1", Some(("blue", t1))),
            rec("g1", Some(("green", forged))),
            rec("g2", None),
        ];
        assert_eq!(live_color(&split), Live::Disagree);
        let e = live_by(&split, None, &colors(), now).unwrap_err();
        for said in [
            "b1 says blue (2026-01-01T00:00:00Z)",
            "g1 says green (2099-01-01T00:00:00Z, dated after now)",
            "g2 says nothing",
            "--live blue",
        ] {
            assert!(e.contains(said), "{e}");
        }
        let one_missing = [rec("b1", Some(("blue", t1))), rec("g1", None)];
        assert_eq!(live_color(&one_missing), Live::Disagree);
        assert_eq!(
            live_by(&split, Some("blue"), &colors(), now),
            Ok(Some("blue".into()))
        );
        let red = live_by(&split, Some("red"), &colors(), now).unwrap_err();
        assert!(red.contains("red"), "{red}");
        assert!(split[1].is_ahead(now) && !split[0].is_ahead(now));
    }

    #[test]
    fn a_limit_must_take_whole_colours() {
        let all = ["b1", "b2", "g1", "g2"];
        assert_eq!(whole_colors(&all, &colors()), Ok(()));
        let cut = whole_colors(&["b1", "g1", "g2"], &colors()).unwrap_err();
        assert!(cut.contains("\"blue\"") && cut.contains("b2"), "{cut}");
        let stray = whole_colors(&["b1", "b2", "g1", "g2", "db"], &colors()).unwrap_err();
        assert!(stray.contains("db"), "{stray}");
    }

    #[test]
    fn traffic_goes_back_only_to_a_colour_that_runs_a_release() {
        let r = id(R1);
        assert_eq!(
            traffic_back(Some(1), &colors(), &[("b1", Some(&r)), ("b2", Some(&r))]),
            Ok(0)
        );
        let bare = traffic_back(Some(0), &colors(), &[("g1", Some(&r)), ("g2", None)]);
        assert!(bare.unwrap_err().contains("g2"));
        assert!(traffic_back(None, &colors(), &[]).is_err());
    }

    #[test]
    fn a_bake_fails_after_retries_failed_probes_in_a_row() {
        assert!(!bake_failed(0, 3));
        assert!(!bake_failed(2, 3));
        assert!(bake_failed(3, 3));
        assert!(bake_failed(1, 1));
        assert!(bake_failed(1, 0), "retries 0 counts as 1");
    }

    #[test]
    fn a_held_lock_is_polled_with_jitter_until_the_wait_is_over() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        assert_eq!(next_lock_poll(s(0), s(30), 0.0), Some(ms(500)));
        assert_eq!(next_lock_poll(s(0), s(30), 1.0), Some(ms(1500)));
        assert_eq!(
            next_lock_poll(ms(1800), s(2), 0.5),
            Some(ms(200)),
            "never past the deadline"
        );
        assert_eq!(next_lock_poll(s(2), s(2), 0.5), None);
        assert_eq!(next_lock_poll(s(3), s(2), 0.5), None);
        assert_eq!(
            next_lock_poll(s(0), s(0), 0.5),
            None,
            "no wait: exit 4 at once"
        );
    }

    #[test]
    fn until_canary_needs_a_canary_and_hosts_after_it() {
        use crate::config::Amount::{Hosts, Percent};
        let w = |total, canary| super::super::strategy::waves(total, canary, &[Percent(50)]);
        assert_eq!(until_canary(&w(4, Hosts(1)), false), Ok(()));
        assert!(
            until_canary(&w(4, Hosts(0)), false)
                .unwrap_err()
                .contains("canary is 0")
        );
        assert!(
            until_canary(&w(1, Hosts(1)), false)
                .unwrap_err()
                .contains("whole selection")
        );
        assert!(
            until_canary(&w(4, Hosts(1)), true)
                .unwrap_err()
                .contains("blue-green")
        );
    }

    fn awaiting(release: &str, sha: &str) -> Journal {
        Journal {
            entries: vec![Entry {
                release: Some(release.into()),
                sha256: Some(sha.into()),
                hosts: vec!["web1".into()],
                ..Entry::new(Kind::AwaitPromotion, "ci@runner")
            }],
        }
    }

    #[test]
    fn promotion_needs_one_waiting_release_and_the_same_artifact() {
        let a = awaiting(R2, "bbbbbbbb11");
        let none = Journal::default();
        let w = waiting(&[&a, &none]).unwrap();
        assert_eq!(w.as_ref().unwrap().release, id(R2));
        assert_eq!(w.as_ref().unwrap().canary, vec!["web1".to_string()]);
        assert_eq!(
            promotable(w.as_ref(), Some("bbbbbbbb11"), "promote")
                .unwrap()
                .release,
            id(R2)
        );
        let differs = promotable(w.as_ref(), Some("cccccccc11"), "promote").unwrap_err();
        assert!(differs.contains("differs"), "{differs}");
        let nothing = promotable(None, Some("bbbbbbbb11"), "promote").unwrap_err();
        assert!(nothing.contains("nothing is waiting"), "{nothing}");
        let other = awaiting(R3, "cccccccc11");
        assert!(waiting(&[&a, &other]).unwrap_err().contains("disagree"));
        assert_eq!(waiting(&[&none]), Ok(None));
    }
}
