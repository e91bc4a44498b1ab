//! Exit codes: each means one thing (see SPEC "Exit codes").

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every selected host is on the new release and healthy.
    Ok,
    /// Changes were made and hosts are not all where they should be.
    Failed,
    /// Usage or configuration error; nothing was touched.
    Usage,
    /// Preflight failed; nothing was changed.
    Preflight,
    /// The fleet is locked by someone else.
    Locked,
    /// The deploy failed and every host it touched is back on the previous release.
    RolledBack,
    /// Interrupted; hosts are on a consistent release and the lock is free.
    Interrupted,
}

impl Exit {
    /// Every exit, in order of its code.
    pub const ALL: [Exit; 7] = [
        Exit::Ok,
        Exit::Failed,
        Exit::Usage,
        Exit::Preflight,
        Exit::Locked,
        Exit::RolledBack,
        Exit::Interrupted,
    ];

    /// The exit whose code is `code`, if one is.
    pub fn of_code(code: i32) -> Option<Exit> {
        Exit::ALL.into_iter().find(|e| e.code() == code)
    }

    /// What it means, in the words of the contract.
    pub fn meaning(self) -> &'static str {
        match self {
            Exit::Ok => "done",
            Exit::Failed => "failed; hosts are not all where they should be",
            Exit::Usage => "usage or configuration error; nothing was touched",
            Exit::Preflight => "preflight failed; nothing was changed",
            Exit::Locked => "the fleet is locked (who holds it is said above)",
            Exit::RolledBack => "failed; every host it touched is back on the previous release",
            Exit::Interrupted => {
                "interrupted; no host was left half-switched and the lock was freed"
            }
        }
    }

    /// `HOIST_RESULT` for the run-level end hooks; `None` after a usage
    /// error (nothing was started, no end hook runs).
    pub fn result(self) -> Option<&'static str> {
        Some(match self {
            Exit::Ok => "done",
            Exit::Failed => "failed",
            Exit::Usage => return None,
            Exit::Preflight => "preflight_failed",
            Exit::Locked => "locked",
            Exit::RolledBack => "rolled_back",
            Exit::Interrupted => "interrupted",
        })
    }

    pub fn code(self) -> i32 {
        match self {
            Exit::Ok => 0,
            Exit::Failed => 1,
            Exit::Usage => 2,
            Exit::Preflight => 3,
            Exit::Locked => 4,
            Exit::RolledBack => 5,
            Exit::Interrupted => 130,
        }
    }
}
