//! Room for a connection to every host: each SSH connection holds an open
//! file (its socket) for the whole run, and the usual soft limit of 1024
//! open files would make the thousandth host look unreachable ("too many
//! open files"). The soft limit is raised as far as the hard limit allows.

/// Open files a run keeps per selected host: its connection, and a second
/// one now and then (the confirmation, a side session).
const PER_HOST: u64 = 2;
/// Open files a run needs whatever the fleet: the terminal, the log, the
/// artifact, the local commands' pipes.
const SPARE: u64 = 256;

/// Raises the soft limit on open files for `hosts` hosts when it is short;
/// `Err` says why a run of this size may run out (the hard limit is too
/// low, or the limit cannot be read or set).
pub(crate) fn room_for(hosts: usize) -> Result<(), String> {
    let need = hosts as u64 * PER_HOST + SPARE;
    let (soft, hard) = rlimit::Resource::NOFILE
        .get()
        .map_err(|e| format!("could not read the limit on open files: {e}"))?;
    if soft >= need {
        return Ok(());
    }
    let raised = rlimit::increase_nofile_limit(need)
        .map_err(|e| format!("could not raise the limit on open files from {soft}: {e}"))?;
    if raised >= need {
        return Ok(());
    }
    Err(format!(
        "{hosts} hosts need about {need} open files (a connection each, and more), but the limit is {raised} (hard limit {hard}): hosts past it may fail as unreachable with \"too many open files\"; raise it (`ulimit -n {need}`, or LimitNOFILE= in a systemd unit) before running hoist on this fleet"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_fleet_needs_no_change_and_a_huge_one_is_told_what_to_raise() {
        assert!(room_for(1).is_ok());
        let (_, hard) = rlimit::Resource::NOFILE.get().unwrap();
        if hard < u64::MAX / 4 {
            let too_many = (hard / PER_HOST + 1) as usize;
            let err = room_for(too_many).unwrap_err();
            assert!(err.contains("ulimit -n"), "{err}");
        }
    }
}
