//! The dead-man switch (issue 25): before a host's `current` moves, a
//! watchdog is started on it that puts it back by itself unless hoist
//! keeps it waiting (heartbeats over the run's connection) and then
//! confirms the host over a fresh connection.

pub(crate) mod scripts;
