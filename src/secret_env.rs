//! Secrets hoist reads from its environment, which nothing it starts may
//! inherit: hooks, local hosts' commands, inventory commands. Each reaches
//! only where it is for (the SSH key's decryption, sudo's stdin).

/// The variables, by name.
pub(crate) const SECRETS: [&str; 2] = ["HOIST_BECOME_PASSWORD", "HOIST_SSH_PASSPHRASE"];

/// Takes the secrets out of a child's environment.
pub(crate) fn scrub(command: &mut std::process::Command) -> &mut std::process::Command {
    for name in SECRETS {
        command.env_remove(name);
    }
    command
}
