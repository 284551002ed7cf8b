//! The signing key as identity's replicated state, and the [`KeyRing`] that signs with it.
//!
//! Every node must sign and verify with the same key, so the key is not a node's file but a
//! record of identity's state, installed by `Command::InstallSigningKey`. The key is made
//! before the command is logged (apply stays deterministic) and apply keeps the first key
//! ever installed: two nodes racing at first start each propose their own, and both end up
//! with whichever was applied first.
//!
//! At start, a node whose state holds no key offers one ([`ensure_installed`]): the key file
//! of an older data directory if there is one, so tokens issued before the upgrade stay
//! valid, else a fresh key. Whatever was installed is then written to that file, the
//! operator's copy on this node.
//!
//! The key ring reads the installed key from the store at each use (one point read) and
//! rebuilds its [`Signer`] only when the stored key differs from the one it holds, so a key
//! that another node's command installed is picked up here without a restart.

use super::apply::{Identity, SIGNING_KEY, SIGNING_KEY_ID};
use super::commands::Command;
use super::signing_key::SigningKey;
use super::tokens::{KeyError, Signer};
use crate::platform::Engine;
use crate::platform::engine::CommandContext;
use crate::platform::http::ApiError;
use std::path::Path;
use std::sync::{Arc, RwLock};

pub struct KeyRing {
    /// Read through the engine at each use (not a store captured once), so the ring sees
    /// whatever state the engine holds now.
    engine: Arc<Engine<Identity>>,
    /// The key last read from the store and the signer built from it.
    cached: RwLock<Option<(SigningKey, Arc<Signer>)>>,
}

impl KeyRing {
    pub fn new(engine: Arc<Engine<Identity>>) -> KeyRing {
        KeyRing {
            engine,
            cached: RwLock::new(None),
        }
    }

    /// The signer for the installed key; `None` until a key is installed.
    pub fn current(&self) -> Result<Option<Arc<Signer>>, KeyError> {
        let Some(installed) = SIGNING_KEY.get(self.engine.store().as_ref(), SIGNING_KEY_ID)? else {
            return Ok(None);
        };
        // A poisoned lock only means another reader panicked mid-update; the cache is
        // rebuilt from the store below either way.
        if let Ok(cached) = self.cached.read()
            && let Some((key, signer)) = cached.as_ref()
            && *key == installed
        {
            return Ok(Some(signer.clone()));
        }
        let signer = Arc::new(Signer::new(&installed)?);
        if let Ok(mut cached) = self.cached.write() {
            *cached = Some((installed, signer.clone()));
        }
        Ok(Some(signer))
    }

    /// The signer, or the 503 a route answers while no key is installed yet.
    pub fn signer(&self) -> Result<Arc<Signer>, ApiError> {
        match self.current() {
            Ok(Some(signer)) => Ok(signer),
            Ok(None) => Err(ApiError::Unavailable {
                code: "signing_key_unavailable",
                message: "no token signing key is installed yet; try again shortly".to_string(),
            }),
            Err(KeyError::Store(error)) => Err(ApiError::Store(error)),
            Err(error) => Err(ApiError::Unavailable {
                code: "signing_key_unavailable",
                message: error.to_string(),
            }),
        }
    }
}

/// Installs a signing key unless identity's state holds one, then makes `keys_dir`'s key
/// file hold the installed key. Returns the installed key.
///
/// It submits a command, so it runs once the engine accepts commands (in a cluster: once the
/// engine is attached to its Raft group).
pub fn ensure_installed(
    engine: &Engine<Identity>,
    keys_dir: &Path,
) -> Result<SigningKey, KeyError> {
    // What any node installed before, not only what this replica has applied so far.
    engine.read_barrier_blocking()?;
    let installed = match SIGNING_KEY.get(engine.store().as_ref(), SIGNING_KEY_ID)? {
        Some(key) => key,
        None => {
            let offered = match SigningKey::read_file(keys_dir)? {
                Some(key) => key,
                None => SigningKey::generate()?,
            };
            let context = CommandContext {
                correlation_id: "identity-signing-key".to_string(),
                ..CommandContext::default()
            };
            engine
                .submit_blocking(Command::InstallSigningKey { key: offered }, context)?
                .map_err(KeyError::Refused)?;
            // Not necessarily the key offered: another node's may have been first.
            engine.read_barrier_blocking()?;
            SIGNING_KEY
                .get(engine.store().as_ref(), SIGNING_KEY_ID)?
                .ok_or(KeyError::NotInstalled)?
        }
    };
    installed.write_file(keys_dir)?;
    Ok(installed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::platform::Store;
    use crate::platform::http::Role;

    fn engine(dir: &Path) -> Arc<Engine<Identity>> {
        let store = Arc::new(Store::open(&dir.join("identity")).unwrap());
        crate::platform::testing::leaked(dir, store, Identity)
    }

    fn install(engine: &Engine<Identity>, key: &SigningKey) {
        let command = Command::InstallSigningKey { key: key.clone() };
        engine
            .submit_blocking(command, CommandContext::default())
            .unwrap()
            .unwrap();
    }

    fn installed(engine: &Engine<Identity>) -> Option<SigningKey> {
        SIGNING_KEY
            .get(engine.store().as_ref(), SIGNING_KEY_ID)
            .unwrap()
    }

    #[test]
    fn the_first_installed_key_wins_and_a_replica_replaying_the_commands_holds_it() {
        let (first, second) = (
            SigningKey::generate().unwrap(),
            SigningKey::generate().unwrap(),
        );
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let node_a = engine(dir_a.path());
        install(&node_a, &first);
        install(&node_a, &second);
        assert_eq!(installed(&node_a), Some(first.clone()));

        // Another replica applies the same log: the same key, whatever it offered itself.
        let node_b = engine(dir_b.path());
        install(&node_b, &first);
        install(&node_b, &second);
        assert_eq!(installed(&node_b), Some(first));

        // So a token signed on one node is accepted on the other, with the same JWKS.
        let ring_a = KeyRing::new(node_a.clone());
        let ring_b = KeyRing::new(node_b.clone());
        let signer_a = ring_a.current().unwrap().unwrap();
        let signer_b = ring_b.current().unwrap().unwrap();
        assert_eq!(
            serde_json::to_value(signer_a.jwks()).unwrap(),
            serde_json::to_value(signer_b.jwks()).unwrap()
        );
        let token = signer_a
            .issue(
                "user-1",
                "session-1",
                &[Role::Customer],
                crate::platform::time::now_ms(),
            )
            .unwrap();
        let principal = signer_b.verifier().verify(&token).unwrap();
        assert_eq!(principal.user_id, "user-1");
    }

    #[test]
    fn the_key_ring_answers_503_until_a_key_is_installed_then_uses_it_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let node = engine(dir.path());
        let ring = KeyRing::new(node.clone());
        assert!(ring.current().unwrap().is_none());
        match ring.signer() {
            Err(ApiError::Unavailable { code, .. }) => assert_eq!(code, "signing_key_unavailable"),
            other => panic!("expected a 503 answer, got {:?}", other.map(|_| ())),
        }

        // Installed by a command this ring did not see coming (another node's, replicated).
        let key = SigningKey::generate().unwrap();
        install(&node, &key);
        let signer = ring.signer().unwrap();
        let token = signer
            .issue(
                "user-1",
                "session-1",
                &[Role::Admin],
                crate::platform::time::now_ms(),
            )
            .unwrap();
        assert!(
            ring.current()
                .unwrap()
                .unwrap()
                .verifier()
                .verify(&token)
                .is_ok()
        );
    }

    #[test]
    fn at_start_an_older_key_file_is_installed_and_the_file_then_holds_the_installed_key() {
        // An older data directory: its own key file, nothing installed yet.
        let dir = tempfile::tempdir().unwrap();
        let keys_dir = dir.path().join("identity-keys");
        let legacy = SigningKey::generate().unwrap();
        legacy.write_file(&keys_dir).unwrap();
        let node = engine(dir.path());
        assert_eq!(ensure_installed(&node, &keys_dir).unwrap(), legacy);
        assert_eq!(installed(&node), Some(legacy.clone()));
        // A restart installs nothing new.
        assert_eq!(ensure_installed(&node, &keys_dir).unwrap(), legacy);

        // A node whose state already holds another node's key: its file follows the state.
        let dir = tempfile::tempdir().unwrap();
        let keys_dir = dir.path().join("identity-keys");
        SigningKey::generate()
            .unwrap()
            .write_file(&keys_dir)
            .unwrap();
        let node = engine(dir.path());
        let winner = SigningKey::generate().unwrap();
        install(&node, &winner);
        assert_eq!(ensure_installed(&node, &keys_dir).unwrap(), winner);
        assert_eq!(SigningKey::read_file(&keys_dir).unwrap(), Some(winner));

        // A fresh data directory: a new key, installed and copied to the file.
        let dir = tempfile::tempdir().unwrap();
        let keys_dir = dir.path().join("identity-keys");
        let node = engine(dir.path());
        let fresh = ensure_installed(&node, &keys_dir).unwrap();
        assert_eq!(installed(&node), Some(fresh.clone()));
        assert_eq!(SigningKey::read_file(&keys_dir).unwrap(), Some(fresh));
    }
}
