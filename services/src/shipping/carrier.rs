//! The carrier's webhook credential: a random token the carrier presents in
//! `X-Carrier-Token`.
//!
//! Whichever node the carrier calls must accept the same token, so the token is a record of
//! shipping's replicated state, installed by `Command::InstallCarrierToken`: made before the
//! command is logged (apply stays deterministic), and the first one ever installed is kept,
//! so nodes racing at first start converge on one token. At start a node whose state holds
//! none offers one ([`ensure_installed`]): the token file of an older data directory if there
//! is one (the carrier keeps working after the upgrade), else a fresh token. The installed
//! token is then written to `<data-dir>/services/shipping/carrier-token` (mode 0600), the
//! copy an operator hands to the carrier out of band.
//!
//! The webhook reads the token from the store at each call, so a token installed by another
//! node's command is accepted here without a restart.

use super::apply::{CARRIER_TOKEN, CARRIER_TOKEN_ID, Shipping};
use super::commands::Command;
use crate::platform::engine::CommandContext;
use crate::platform::{Engine, Rejection, StoreError, secret_file};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

pub const TOKEN_FILE: &str = "carrier-token";

#[derive(Debug, thiserror::Error)]
pub enum CarrierTokenError {
    #[error("cannot read or write the carrier token {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot generate the carrier token: {0}")]
    Random(String),
    #[error("the carrier token {0} is empty or not text")]
    Malformed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the carrier token installation was refused: {0}")]
    Refused(Rejection),
    #[error("a carrier token was submitted but none is installed")]
    NotInstalled,
}

/// A carrier token: non-empty text without surrounding whitespace.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CarrierToken {
    token: String,
}

impl CarrierToken {
    /// A fresh random token (64 hex digits).
    pub fn generate() -> Result<CarrierToken, CarrierTokenError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)
            .map_err(|error| CarrierTokenError::Random(error.to_string()))?;
        Ok(CarrierToken {
            token: secret.iter().map(|byte| format!("{byte:02x}")).collect(),
        })
    }

    /// A token from text (trimmed); `what` names the source in the error.
    pub fn parse(text: &str, what: &str) -> Result<CarrierToken, CarrierTokenError> {
        let token = text.trim();
        if token.is_empty() {
            return Err(CarrierTokenError::Malformed(what.to_string()));
        }
        Ok(CarrierToken {
            token: token.to_string(),
        })
    }

    /// The token in `dir`'s token file, if there is one.
    pub fn read_file(dir: &Path) -> Result<Option<CarrierToken>, CarrierTokenError> {
        let path = dir.join(TOKEN_FILE);
        let what = path.display().to_string();
        match secret_file::read(&path).map_err(|source| io_error(&path, source))? {
            Some(bytes) => {
                let text = String::from_utf8(bytes)
                    .map_err(|_| CarrierTokenError::Malformed(what.clone()))?;
                Ok(Some(CarrierToken::parse(&text, &what)?))
            }
            None => Ok(None),
        }
    }

    /// Makes `dir`'s token file hold this token.
    pub fn write_file(&self, dir: &Path) -> Result<(), CarrierTokenError> {
        let path = dir.join(TOKEN_FILE);
        secret_file::write_if_changed(&path, self.token.as_bytes())
            .map_err(|source| io_error(&path, source))
    }

    /// Whether `presented` is the token, in time independent of where they differ: the
    /// digests compared have a fixed length whatever was presented.
    pub fn matches(&self, presented: &str) -> bool {
        let expected: [u8; 32] = Sha256::digest(self.token.as_bytes()).into();
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        presented
            .iter()
            .zip(expected.iter())
            .fold(0u8, |difference, (a, b)| difference | (a ^ b))
            == 0
    }
}

fn io_error(path: &Path, source: std::io::Error) -> CarrierTokenError {
    CarrierTokenError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Never prints the token.
impl std::fmt::Debug for CarrierToken {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("CarrierToken(..)")
    }
}

impl TryFrom<String> for CarrierToken {
    type Error = CarrierTokenError;

    fn try_from(text: String) -> Result<CarrierToken, CarrierTokenError> {
        CarrierToken::parse(&text, "the stored carrier token")
    }
}

impl From<CarrierToken> for String {
    fn from(token: CarrierToken) -> String {
        token.token
    }
}

/// Installs a carrier token unless shipping's state holds one, then makes `dir`'s token file
/// hold the installed token. Returns the installed token.
///
/// It submits a command, so it runs once the engine accepts commands (in a cluster: once the
/// engine is attached to its Raft group).
pub fn ensure_installed(
    engine: &Engine<Shipping>,
    dir: &Path,
) -> Result<CarrierToken, CarrierTokenError> {
    // What any node installed before, not only what this replica has applied so far.
    engine.read_barrier_blocking()?;
    let installed = match CARRIER_TOKEN.get(engine.store().as_ref(), CARRIER_TOKEN_ID)? {
        Some(token) => token,
        None => {
            let offered = match CarrierToken::read_file(dir)? {
                Some(token) => token,
                None => CarrierToken::generate()?,
            };
            let context = CommandContext {
                correlation_id: "shipping-carrier-token".to_string(),
                ..CommandContext::default()
            };
            engine
                .submit_blocking(Command::InstallCarrierToken { token: offered }, context)?
                .map_err(CarrierTokenError::Refused)?;
            // Not necessarily the token offered: another node's may have been first.
            engine.read_barrier_blocking()?;
            CARRIER_TOKEN
                .get(engine.store().as_ref(), CARRIER_TOKEN_ID)?
                .ok_or(CarrierTokenError::NotInstalled)?
        }
    };
    installed.write_file(dir)?;
    Ok(installed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::platform::Store;
    use std::sync::Arc;

    fn engine(dir: &Path) -> Arc<Engine<Shipping>> {
        let store = Arc::new(Store::open(&dir.join("shipping")).unwrap());
        crate::platform::testing::leaked(dir, store, Shipping)
    }

    fn install(engine: &Engine<Shipping>, token: &CarrierToken) {
        let command = Command::InstallCarrierToken {
            token: token.clone(),
        };
        engine
            .submit_blocking(command, CommandContext::default())
            .unwrap()
            .unwrap();
    }

    fn installed(engine: &Engine<Shipping>) -> Option<CarrierToken> {
        CARRIER_TOKEN
            .get(engine.store().as_ref(), CARRIER_TOKEN_ID)
            .unwrap()
    }

    #[test]
    fn the_token_is_made_once_private_and_matched_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let first = ensure_installed(&engine(dir.path()), dir.path()).unwrap();
        let token = std::fs::read_to_string(dir.path().join(TOKEN_FILE)).unwrap();
        assert_eq!(token.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(TOKEN_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(first.matches(&token));
        assert!(!first.matches(&token[1..]));
        assert!(!first.matches(""));
    }

    #[test]
    fn the_first_installed_token_wins_and_a_replica_replaying_the_commands_holds_it() {
        let (first, second) = (
            CarrierToken::generate().unwrap(),
            CarrierToken::generate().unwrap(),
        );
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let node_a = engine(dir_a.path());
        let node_b = engine(dir_b.path());
        for node in [&node_a, &node_b] {
            install(node, &first);
            install(node, &second);
            assert_eq!(installed(node), Some(first.clone()));
        }
        // The node that offered the losing token writes the winner to its file.
        second.write_file(dir_b.path()).unwrap();
        assert_eq!(ensure_installed(&node_b, dir_b.path()).unwrap(), first);
        assert_eq!(CarrierToken::read_file(dir_b.path()).unwrap(), Some(first));
    }

    #[test]
    fn an_older_token_file_is_installed_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(TOKEN_FILE), "legacy-token\n").unwrap();
        let open = || {
            let store = Arc::new(Store::open(&dir.path().join("shipping")).unwrap());
            crate::platform::testing::Standalone::open(&dir.path().join("raft"), store, Shipping)
        };
        let node = open();
        let token = ensure_installed(&node.engine, dir.path()).unwrap();
        assert!(token.matches("legacy-token"));
        node.stop();
        let node = open();
        let again = ensure_installed(&node.engine, dir.path()).unwrap();
        assert!(
            again.matches("legacy-token"),
            "the token survives a restart"
        );
        node.stop();
    }
}
