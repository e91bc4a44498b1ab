//! One host a relay passes the release on to, as the relay reaches it:
//! what both clients' lines need ([`super::script`] for OpenSSH,
//! [`super::dropbear`] for dbclient).

use crate::engine::layout::q;

/// One host a relay passes the release on to, as the relay reaches it.
pub(crate) struct Child {
    /// Its name in the relay's known_hosts (`HostKeyAlias`).
    pub alias: String,
    pub user: String,
    pub address: String,
    pub port: u16,
}

/// The most of a hop client's stderr a relaying host keeps: its last
/// lines say why the hop failed ([`Finished`]).
pub(super) const LAST_WORDS: usize = 500;

/// What a hop client's stderr is piped into: its last [`LAST_WORDS`]
/// bytes (`tail -c`: bounded however much a child sends) kept in the
/// run's directory as `<alias>.err`, which the relay's end reads back
/// and removes.
pub(crate) fn keep_last_words(alias: &str) -> String {
    format!("tail -c {LAST_WORDS} > \"$X/\"{}.err", q(alias))
}
