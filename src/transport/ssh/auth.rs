//! Public-key authentication: the agent first, then each identity file.
//! Keys are read (and their passphrases asked) once per run, not once per host.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use russh::client::{AuthResult, Handle};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{self, HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};

use super::Deadline;
use super::host_key::Client;
use crate::config::SshTarget;
use crate::report::Mask;
use crate::transport::TransportError;

/// How many times a passphrase is asked on the terminal before giving up on a key.
const PROMPT_ATTEMPTS: usize = 3;

/// An identity file as this run knows it.
#[derive(Clone)]
pub enum LoadedKey {
    Key(Arc<PrivateKey>),
    Missing,
    /// Encrypted, and no way to get its passphrase (no HOIST_SSH_PASSPHRASE, no terminal).
    NeedsPassphrase,
    WrongPassphrase,
    Unreadable(String),
}

/// Identity files read so far in this run, and where passphrases come from.
pub struct KeyCache {
    passphrase: Option<String>,
    interactive: bool,
    /// Where a passphrase typed at the prompt goes, to be masked in all output.
    mask: Arc<Mask>,
    /// Held while a key is read, so that with many hosts connecting at once
    /// the terminal is asked one question at a time, and only once per file.
    loaded: tokio::sync::Mutex<HashMap<PathBuf, LoadedKey>>,
}

impl KeyCache {
    pub fn new(passphrase: Option<String>, interactive: bool, mask: Arc<Mask>) -> KeyCache {
        KeyCache {
            passphrase,
            interactive,
            mask,
            loaded: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    pub async fn load(&self, path: &Path) -> LoadedKey {
        let mut loaded = self.loaded.lock().await;
        if let Some(key) = loaded.get(path) {
            return key.clone();
        }
        let (owned, passphrase, interactive, mask) = (
            path.to_path_buf(),
            self.passphrase.clone(),
            self.interactive,
            Arc::clone(&self.mask),
        );
        let key = tokio::task::spawn_blocking(move || {
            read_key(&owned, passphrase.as_deref(), interactive, &mask)
        })
        .await
        .unwrap_or_else(|e| LoadedKey::Unreadable(e.to_string()));
        loaded.insert(path.to_path_buf(), key.clone());
        key
    }
}

fn read_key(path: &Path, passphrase: Option<&str>, interactive: bool, mask: &Mask) -> LoadedKey {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return LoadedKey::Missing,
        Err(e) => return LoadedKey::Unreadable(e.to_string()),
    };
    match keys::decode_secret_key(&text, None) {
        Ok(key) => return LoadedKey::Key(Arc::new(key)),
        Err(keys::Error::KeyIsEncrypted) => {}
        // Encrypted PKCS#8 and PEM keys fail to parse rather than say so.
        Err(_) if text.contains("ENCRYPTED") => {}
        Err(e) => return LoadedKey::Unreadable(e.to_string()),
    }
    if let Some(passphrase) = passphrase {
        if let Ok(key) = keys::decode_secret_key(&text, Some(passphrase)) {
            return LoadedKey::Key(Arc::new(key));
        }
        if !interactive {
            return LoadedKey::WrongPassphrase;
        }
    }
    if !interactive {
        return LoadedKey::NeedsPassphrase;
    }
    let prompt = format!("Enter passphrase for key '{}': ", path.display());
    for _ in 0..PROMPT_ATTEMPTS {
        let Ok(answer) = rpassword::prompt_password(&prompt) else {
            return LoadedKey::NeedsPassphrase;
        };
        if answer.is_empty() {
            return LoadedKey::NeedsPassphrase;
        }
        if let Ok(key) = keys::decode_secret_key(&text, Some(&answer)) {
            mask.add(&answer);
            return LoadedKey::Key(Arc::new(key));
        }
    }
    LoadedKey::WrongPassphrase
}

/// Tries every method in order until the server accepts one. The time spent
/// waiting for a passphrase (ours or another host's) does not count against
/// the connect timeout.
pub async fn authenticate(
    handle: &mut Handle<Client>,
    target: &SshTarget,
    agent_socket: Option<&Path>,
    keys: &KeyCache,
    label: &str,
    deadline: &mut Deadline,
) -> Result<(), TransportError> {
    let mut tried = Vec::new();
    let user = target.user.as_str();

    if let Some(socket) = agent_socket.filter(|_| !target.identities_only) {
        match with_agent(handle, user, socket, deadline).await? {
            AgentOutcome::Accepted => return Ok(()),
            AgentOutcome::Tried(what) => tried.push(what),
        }
    }

    for path in &target.identity_files {
        let started = Instant::now();
        let loaded = keys.load(path).await;
        deadline.extend(started.elapsed());
        let key = match loaded {
            LoadedKey::Key(key) => key,
            LoadedKey::Missing => {
                tried.push(format!("{} (not found)", path.display()));
                continue;
            }
            LoadedKey::NeedsPassphrase => {
                tried.push(format!(
                    "{} (encrypted; set HOIST_SSH_PASSPHRASE or run on a terminal)",
                    path.display()
                ));
                continue;
            }
            LoadedKey::WrongPassphrase => {
                tried.push(format!("{} (wrong passphrase)", path.display()));
                continue;
            }
            LoadedKey::Unreadable(why) => {
                tried.push(format!("{} (unreadable: {why})", path.display()));
                continue;
            }
        };
        let hash = rsa_hash(handle, key.public_key(), deadline).await?;
        let attempt = PrivateKeyWithHashAlg::new(key, hash);
        match deadline
            .run(handle.authenticate_publickey(user, attempt))
            .await?
        {
            Ok(AuthResult::Success) => return Ok(()),
            Ok(AuthResult::Failure { .. }) => tried.push(path.display().to_string()),
            Err(e) => return Err(lost(target, label, &tried, e.to_string())),
        }
    }

    if tried.is_empty() {
        tried.push("nothing: no agent and no identity_files".into());
    }
    Err(TransportError::Auth {
        host: label.to_string(),
        user: user.to_string(),
        tried: tried.join(", "),
    })
}

enum AgentOutcome {
    Accepted,
    /// What to list in the error, e.g. "agent (2 keys)".
    Tried(String),
}

async fn with_agent(
    handle: &mut Handle<Client>,
    user: &str,
    socket: &Path,
    deadline: &Deadline,
) -> Result<AgentOutcome, TransportError> {
    let mut agent = match deadline.run(AgentClient::connect_uds(socket)).await? {
        Ok(agent) => agent,
        Err(e) => return Ok(AgentOutcome::Tried(format!("agent (unavailable: {e})"))),
    };
    if let Some(binding) = handle.agent_session_binding() {
        // Lets destination-constrained keys be used; older agents refuse it, harmlessly.
        let _ = deadline.run(agent.bind_session(binding, false)).await?;
    }
    let identities = match deadline.run(agent.request_identities()).await? {
        Ok(identities) => identities,
        Err(e) => return Ok(AgentOutcome::Tried(format!("agent (failed: {e})"))),
    };
    let mut offered = 0;
    for identity in identities {
        let AgentIdentity::PublicKey { key, .. } = identity else {
            continue;
        };
        offered += 1;
        let hash = rsa_hash(handle, &key, deadline).await?;
        let result = deadline
            .run(handle.authenticate_publickey_with(user, key, hash, &mut agent))
            .await?;
        if let Ok(AuthResult::Success) = result {
            return Ok(AgentOutcome::Accepted);
        }
        if handle.is_closed() {
            break;
        }
    }
    let keys = if offered == 1 { "key" } else { "keys" };
    Ok(AgentOutcome::Tried(format!("agent ({offered} {keys})")))
}

/// The signature hash for an RSA key: the best the server announced.
async fn rsa_hash(
    handle: &Handle<Client>,
    key: &PublicKey,
    deadline: &Deadline,
) -> Result<Option<HashAlg>, TransportError> {
    if !key.algorithm().is_rsa() {
        return Ok(None);
    }
    let best = deadline.run(handle.best_supported_rsa_hash()).await?;
    Ok(best.ok().flatten().flatten())
}

fn lost(target: &SshTarget, label: &str, tried: &[String], reason: String) -> TransportError {
    let mut tried = tried.to_vec();
    tried.push(format!("then the server closed the connection: {reason}"));
    TransportError::Auth {
        host: label.to_string(),
        user: target.user.clone(),
        tried: tried.join(", "),
    }
}
