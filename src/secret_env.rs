//! Secrets hoist reads from its environment, which nothing it starts may
//! inherit: hooks, local hosts' commands, inventory commands. Each reaches
//! only where it is for (the SSH key's decryption, sudo's stdin).

/// The password sudo gets for `become`.
pub(crate) const BECOME_PASSWORD: &str = "HOIST_BECOME_PASSWORD";

/// The passphrase of encrypted identity files.
pub(crate) const SSH_PASSPHRASE: &str = "HOIST_SSH_PASSPHRASE";

/// The variables, by name.
pub(crate) const SECRETS: [&str; 2] = [BECOME_PASSWORD, SSH_PASSPHRASE];

/// Takes the secrets out of a child's environment.
pub(crate) fn scrub(command: &mut std::process::Command) -> &mut std::process::Command {
    for name in SECRETS {
        command.env_remove(name);
    }
    command
}
