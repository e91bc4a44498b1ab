//! A relay's key: an ed25519 key made in memory for one relaying host of
//! one run, never written on this machine. Its private half goes to that
//! host only (on stdin, into a 0600 file removed when the relay ends);
//! its public half goes to that host's children, behind a forced command.
//!
//! The private half is written in the format of the host's client:
//! OpenSSH's file for `ssh`, dropbear's own for `dbclient` (dropbear
//! 2022.83 reads only its own format with `-i`: the key's type and its
//! 32-byte seed followed by its 32-byte public key, each as an SSH string).

use std::io::Read;

use russh::keys::PrivateKey;
use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::encoding::Encode;
use russh::keys::ssh_key::private::Ed25519Keypair;

/// One relaying host's key.
pub(crate) struct RelayKey {
    /// OpenSSH's private key file format.
    pub private: String,
    /// Dropbear's private key file format (for `dbclient -i`).
    pub dropbear: Vec<u8>,
    /// `ssh-ed25519 AAAA...`, no comment.
    pub public: String,
}

impl RelayKey {
    /// A new key, from 32 bytes of the system's random source.
    pub(crate) fn new() -> std::io::Result<RelayKey> {
        let mut seed = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut seed)?;
        let pair = Ed25519Keypair::from_seed(&seed);
        seed.fill(0);
        let dropbear = dropbear(&pair).map_err(std::io::Error::other)?;
        let key = PrivateKey::from(pair);
        let private = key
            .to_openssh(LineEnding::LF)
            .map_err(std::io::Error::other)?
            .to_string();
        let public = key
            .public_key()
            .to_openssh()
            .map_err(std::io::Error::other)?;
        Ok(RelayKey {
            private,
            public,
            dropbear,
        })
    }
}

/// `pair` as dropbear's private key file: `string "ssh-ed25519"`,
/// `string seed || public` (64 bytes).
fn dropbear(pair: &Ed25519Keypair) -> Result<Vec<u8>, russh::keys::ssh_key::encoding::Error> {
    let mut out = Vec::with_capacity(83);
    "ssh-ed25519".encode(&mut out)?;
    let mut both = pair.to_bytes();
    both[..].encode(&mut out)?;
    both.fill(0);
    Ok(out)
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

    #[test]
    fn the_dropbear_file_holds_the_same_key() {
        let key = RelayKey::new().unwrap();
        let d = &key.dropbear;
        assert_eq!(d.len(), 83);
        assert_eq!(&d[..15], b"\0\0\0\x0bssh-ed25519");
        assert_eq!(&d[15..19], &[0, 0, 0, 64]);
        let back = PrivateKey::from_openssh(&key.private).unwrap();
        let pair = back.key_data().ed25519().unwrap();
        assert_eq!(&d[19..51], pair.private.as_ref());
        assert_eq!(&d[51..], pair.public.as_ref());
    }
}
