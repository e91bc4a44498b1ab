//! One host a relay passes the release on to, as the relay reaches it:
//! what both clients' lines need ([`super::script`] for OpenSSH,
//! [`super::dropbear`] for dbclient).

/// One host a relay passes the release on to, as the relay reaches it.
pub(crate) struct Child {
    /// Its name in the relay's known_hosts (`HostKeyAlias`).
    pub alias: String,
    pub user: String,
    pub address: String,
    pub port: u16,
}
