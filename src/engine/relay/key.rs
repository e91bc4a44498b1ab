//! A relay's key: an ed25519 key made in memory for one relaying host of
//! one run, never written on this machine. Its private half goes to that
//! host only (on stdin, into a 0600 file removed when the relay ends);
//! its public half goes to that host's children, behind a forced command.

use std::io::Read;

use russh::keys::PrivateKey;
use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::Ed25519Keypair;

/// One relaying host's key.
pub(crate) struct RelayKey {
    /// OpenSSH's private key file format.
    pub private: String,
    /// `ssh-ed25519 AAAA...`, no comment.
    pub public: String,
}

impl RelayKey {
    /// A new key, from 32 bytes of the system's random source.
    pub(crate) fn new() -> std::io::Result<RelayKey> {
        let mut seed = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut seed)?;
        let key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
        seed.fill(0);
        let private = key
            .to_openssh(LineEnding::LF)
            .map_err(std::io::Error::other)?
            .to_string();
        let public = key
            .public_key()
            .to_openssh()
            .map_err(std::io::Error::other)?;
        Ok(RelayKey { private, public })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_is_new_and_reads_back() {
        let (a, b) = (RelayKey::new().unwrap(), RelayKey::new().unwrap());
        assert_ne!(a.public, b.public);
        assert!(a.public.starts_with("ssh-ed25519 AAAA"), "{}", a.public);
        let back = PrivateKey::from_openssh(&a.private).unwrap();
        assert_eq!(back.public_key().to_openssh().unwrap(), a.public);
    }
}
