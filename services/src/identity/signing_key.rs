//! The access-token signing key as a value: an Ed25519 private key in PKCS#8 v1 DER.
//!
//! It is generated at the edge (before the command that installs it is logged, so apply stays
//! deterministic) and travels in that command; in state and in the log it is the DER in
//! base64. A value of this type is always well formed: it is checked when built and when
//! read back.

use crate::platform::secret_file;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The node-local copy of the installed key, under `<data-dir>/services/identity-keys/`
/// (where an older data directory kept the key it generated itself).
pub const KEY_FILE: &str = "jwt-ed25519.der";

/// PKCS#8 v1 prefix of an Ed25519 private key; the 32-byte seed follows.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
const DER_LEN: usize = ED25519_PKCS8_PREFIX.len() + 32;

#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    #[error("cannot read or write the signing key {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} is not an Ed25519 PKCS#8 key")]
    Malformed(String),
    #[error("no randomness: {0}")]
    Random(String),
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SigningKey {
    der: Vec<u8>,
}

impl SigningKey {
    /// A fresh random key.
    pub fn generate() -> Result<SigningKey, SigningKeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|error| SigningKeyError::Random(error.to_string()))?;
        let mut der = ED25519_PKCS8_PREFIX.to_vec();
        der.extend_from_slice(&seed);
        Ok(SigningKey { der })
    }

    /// A key from its DER; `what` names the source in the error.
    pub fn from_der(der: Vec<u8>, what: &str) -> Result<SigningKey, SigningKeyError> {
        if der.len() != DER_LEN
            || der.get(..ED25519_PKCS8_PREFIX.len()) != Some(&ED25519_PKCS8_PREFIX[..])
        {
            return Err(SigningKeyError::Malformed(what.to_string()));
        }
        Ok(SigningKey { der })
    }

    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The key in `dir`'s key file, if there is one.
    pub fn read_file(dir: &Path) -> Result<Option<SigningKey>, SigningKeyError> {
        let path = dir.join(KEY_FILE);
        match secret_file::read(&path).map_err(|source| io_error(&path, source))? {
            Some(der) => Ok(Some(SigningKey::from_der(
                der,
                &path.display().to_string(),
            )?)),
            None => Ok(None),
        }
    }

    /// Makes `dir`'s key file hold this key.
    pub fn write_file(&self, dir: &Path) -> Result<(), SigningKeyError> {
        let path = dir.join(KEY_FILE);
        secret_file::write_if_changed(&path, &self.der).map_err(|source| io_error(&path, source))
    }
}

fn io_error(path: &Path, source: std::io::Error) -> SigningKeyError {
    SigningKeyError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Never prints the key.
impl std::fmt::Debug for SigningKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("SigningKey(..)")
    }
}

impl TryFrom<String> for SigningKey {
    type Error = SigningKeyError;

    fn try_from(text: String) -> Result<SigningKey, SigningKeyError> {
        let der = base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(|_| SigningKeyError::Malformed("the stored signing key".to_string()))?;
        SigningKey::from_der(der, "the stored signing key")
    }
}

impl From<SigningKey> for String {
    fn from(key: SigningKey) -> String {
        base64::engine::general_purpose::STANDARD.encode(key.der)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_key_round_trips_through_json_and_its_file() {
        let key = SigningKey::generate().unwrap();
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(serde_json::from_str::<SigningKey>(&json).unwrap(), key);
        assert!(serde_json::from_str::<SigningKey>("\"AAAA\"").is_err());

        let dir = tempfile::tempdir().unwrap();
        assert!(SigningKey::read_file(dir.path()).unwrap().is_none());
        key.write_file(dir.path()).unwrap();
        assert_eq!(SigningKey::read_file(dir.path()).unwrap(), Some(key));
        std::fs::write(dir.path().join(KEY_FILE), b"short").unwrap();
        assert!(matches!(
            SigningKey::read_file(dir.path()),
            Err(SigningKeyError::Malformed(_))
        ));
    }
}
