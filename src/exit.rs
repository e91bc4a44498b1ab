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
