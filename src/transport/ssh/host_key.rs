//! Deciding whether to trust the server's host key, during the handshake and
//! before anything else is sent: the pin first, then known_hosts.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use russh::client;
use russh::keys::ssh_key::{HashAlg, PublicKey};
use russh::keys::{Algorithm, PublicKeyOrCertificate};

use super::known_hosts::{self, Verdict};
use crate::config::{HostKeyChecking, SshTarget};
use crate::transport::TransportError;

/// Everything needed to judge one server's key; cheap to clone into a blocking task.
#[derive(Debug, Clone)]
pub struct HostKeyPolicy {
    /// How the host is named in messages.
    pub label: String,
    pub address: String,
    pub port: u16,
    pub known_hosts: Vec<PathBuf>,
    pub checking: HostKeyChecking,
    pub pin: Option<String>,
}

impl HostKeyPolicy {
    pub fn new(target: &SshTarget, label: String) -> HostKeyPolicy {
        HostKeyPolicy {
            label,
            address: target.address.clone(),
            port: target.port,
            known_hosts: target.known_hosts.clone(),
            checking: target.host_key_checking,
            pin: target.host_key.clone(),
        }
    }

    /// Key types already recorded for this host, best first for the handshake.
    pub fn known_algorithms(&self) -> Vec<Algorithm> {
        if self.pin.is_some() || self.checking == HostKeyChecking::Off {
            return Vec::new();
        }
        known_hosts::known_algorithms(&self.known_hosts, &self.address, self.port)
    }

    /// Blocking: reads (and for accept-new, locks and appends to) known_hosts.
    pub fn verify(&self, key: &PublicKey) -> Result<(), TransportError> {
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let key_type = key.algorithm().as_str().to_string();
        let mismatch = |expected: String| TransportError::HostKeyMismatch {
            host: self.label.clone(),
            key_type: key_type.clone(),
            fingerprint: fingerprint.clone(),
            expected,
        };
        if let Some(pin) = &self.pin {
            let pin = normalize_pin(pin);
            return if pin == fingerprint {
                Ok(())
            } else {
                Err(mismatch(format!("the pinned host_key is {pin}")))
            };
        }
        if self.checking == HostKeyChecking::Off {
            return Ok(());
        }
        let files = &self.known_hosts;
        let read_error = |e: std::io::Error| {
            TransportError::Other(format!(
                "cannot check the host key of {}: known_hosts ({}): {e}",
                self.label,
                list(files)
            ))
        };
        let mut verdict =
            known_hosts::check(files, &self.address, self.port, key).map_err(read_error)?;
        if verdict == Verdict::Unknown
            && self.checking == HostKeyChecking::AcceptNew
            && !files.is_empty()
        {
            verdict = known_hosts::learn(files, &self.address, self.port, key).map_err(|e| {
                TransportError::Other(format!(
                    "cannot record the host key of {} in {}: {e}",
                    self.label,
                    files[0].display()
                ))
            })?;
            if verdict == Verdict::Unknown {
                return Ok(());
            }
        }
        match verdict {
            Verdict::Known => Ok(()),
            Verdict::Changed { location } => Err(mismatch(format!(
                "{location} has another {key_type} key for it"
            ))),
            Verdict::Revoked { location } => {
                Err(mismatch(format!("{location} marks this key as @revoked")))
            }
            Verdict::Unknown => Err(TransportError::HostKeyUnknown {
                host: self.label.clone(),
                key_type,
                fingerprint,
            }),
        }
    }
}

/// Accepts `SHA256:xxx`, `sha256:xxx` or a bare `xxx`, with or without `=` padding.
fn normalize_pin(pin: &str) -> String {
    let pin = pin.trim();
    let body = match pin.split_once(':') {
        Some((alg, body)) if alg.eq_ignore_ascii_case("sha256") => body,
        _ => pin,
    };
    format!("SHA256:{}", body.trim_end_matches('='))
}

fn list(files: &[PathBuf]) -> String {
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    names.join(", ")
}

/// The russh handler. russh only hears yes or no from `check_server_key`;
/// the reason for a no waits in `refusal` for `connect` to report it, and
/// why a connection ended waits in `lost`.
pub struct Client {
    pub policy: HostKeyPolicy,
    pub refusal: Arc<Mutex<Option<TransportError>>>,
    pub lost: Arc<Mutex<Option<String>>>,
    /// The host key accepted, in OpenSSH's one-line form (`ssh-ed25519
    /// AAAA...`): what a relaying host is told to expect of this one.
    pub accepted: Arc<Mutex<Option<String>>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = server_key else {
            // russh only offers certificate algorithms when asked to; we never ask.
            self.refuse(TransportError::Other(format!(
                "{} presented a host certificate, which hoist does not support",
                self.policy.label
            )));
            return Ok(false);
        };
        let policy = self.policy.clone();
        let key = key.clone();
        let line = key.to_openssh().ok();
        let verdict = tokio::task::spawn_blocking(move || policy.verify(&key))
            .await
            .unwrap_or_else(|e| Err(TransportError::Other(format!("host key check failed: {e}"))));
        match verdict {
            Ok(()) => {
                if let Ok(mut slot) = self.accepted.lock() {
                    *slot = line;
                }
                Ok(true)
            }
            Err(e) => {
                self.refuse(e);
                Ok(false)
            }
        }
    }

    async fn disconnected(
        &mut self,
        reason: client::DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        let (why, result) = match reason {
            client::DisconnectReason::ReceivedDisconnect(info) => {
                (format!("the server disconnected: {}", info.message), Ok(()))
            }
            client::DisconnectReason::Error(e) => (format!("the connection broke ({e})"), Err(e)),
        };
        if let Ok(mut slot) = self.lost.lock() {
            slot.get_or_insert(why);
        }
        result
    }
}

impl Client {
    fn refuse(&self, error: TransportError) {
        if let Ok(mut slot) = self.refusal.lock() {
            *slot = Some(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_compared_in_one_form() {
        assert_eq!(normalize_pin("SHA256:abc="), "SHA256:abc");
        assert_eq!(normalize_pin(" sha256:abc"), "SHA256:abc");
        assert_eq!(normalize_pin("abc"), "SHA256:abc");
    }
}
