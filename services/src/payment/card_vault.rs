//! The test provider's card vault: what it keeps of a tokenized card, and the key it
//! fingerprints cards with.
//!
//! Tokenization happens at the edge, before any command is built (as a shop's checkout page
//! hands the number to Stripe or Adyen and gets a token back): the provider decides what the
//! test-card convention makes of the number, fingerprints it and records a [`VaultedCard`]
//! under a fresh random token in its books, a replicated state, so whichever node runs the
//! payment service's leader can charge the token. The vault keeps the brand, the last four
//! digits, a fingerprint and the decision — never the number.
//!
//! The fingerprint is an HMAC-SHA256 of the digits under a [`FingerprintKey`]: a plain hash
//! of a 16-digit number with a known prefix is brute-forced in seconds, a keyed one is not.
//! The same card gets the same fingerprint on every node (so a retried order can be
//! recognised as the same request), so the key is a record of the provider's replicated
//! state, installed once (the first offered wins, as the JWT signing key and the carrier
//! token are), and copied to `<data-dir>/services/payment-provider-keys/` (mode 0600).

use super::model::DeclineReason;
use crate::platform::card::{CardBrand, CardNumber};
use crate::platform::secret_file;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::path::Path;

/// The node-local copy of the installed fingerprint key.
pub const KEY_FILE: &str = "card-fingerprint.key";
const KEY_LEN: usize = 32;

/// What the vault keeps of a card: enough to show it and to charge it, not to use it
/// anywhere else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultedCard {
    pub brand: CardBrand,
    pub last4: String,
    /// Hex HMAC-SHA256 of the digits under the installed [`FingerprintKey`].
    pub fingerprint: String,
    /// What a charge of this card comes to, by the test-card convention, decided when the
    /// number was at hand.
    pub decline: Option<DeclineReason>,
}

/// What tokenization answers the edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CardToken {
    /// `tok_` and 32 random hex digits: names the vaulted card, says nothing about it.
    pub token: String,
    pub brand: CardBrand,
    pub card_last4: String,
    pub fingerprint: String,
}

#[derive(Debug, thiserror::Error)]
pub enum FingerprintKeyError {
    #[error("cannot read or write the card fingerprint key {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} is not a 32-byte key")]
    Malformed(String),
    #[error("no randomness: {0}")]
    Random(String),
}

/// The key cards are fingerprinted with; in state and in the log as base64.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FingerprintKey([u8; KEY_LEN]);

impl FingerprintKey {
    pub fn generate() -> Result<FingerprintKey, FingerprintKeyError> {
        let mut key = [0u8; KEY_LEN];
        getrandom::fill(&mut key)
            .map_err(|error| FingerprintKeyError::Random(error.to_string()))?;
        Ok(FingerprintKey(key))
    }

    fn from_bytes(bytes: &[u8], what: &str) -> Result<FingerprintKey, FingerprintKeyError> {
        <[u8; KEY_LEN]>::try_from(bytes)
            .map(FingerprintKey)
            .map_err(|_| FingerprintKeyError::Malformed(what.to_string()))
    }

    /// The card's fingerprint: hex HMAC-SHA256 of its digits.
    pub fn fingerprint(&self, card: &CardNumber) -> String {
        // An HMAC takes a key of any length: `new_from_slice` cannot fail here.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return String::new();
        };
        mac.update(card.digits().as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    /// The key in `dir`'s key file, if there is one.
    pub fn read_file(dir: &Path) -> Result<Option<FingerprintKey>, FingerprintKeyError> {
        let path = dir.join(KEY_FILE);
        match secret_file::read(&path).map_err(|source| io_error(&path, source))? {
            Some(bytes) => Ok(Some(FingerprintKey::from_bytes(
                &bytes,
                &path.display().to_string(),
            )?)),
            None => Ok(None),
        }
    }

    /// Makes `dir`'s key file hold this key.
    pub fn write_file(&self, dir: &Path) -> Result<(), FingerprintKeyError> {
        let path = dir.join(KEY_FILE);
        secret_file::write_if_changed(&path, &self.0).map_err(|source| io_error(&path, source))
    }
}

fn io_error(path: &Path, source: std::io::Error) -> FingerprintKeyError {
    FingerprintKeyError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Never prints the key.
impl std::fmt::Debug for FingerprintKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("FingerprintKey(..)")
    }
}

impl TryFrom<String> for FingerprintKey {
    type Error = FingerprintKeyError;

    fn try_from(text: String) -> Result<FingerprintKey, FingerprintKeyError> {
        let what = "the stored card fingerprint key";
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(|_| FingerprintKeyError::Malformed(what.to_string()))?;
        FingerprintKey::from_bytes(&bytes, what)
    }
}

impl From<FingerprintKey> for String {
    fn from(key: FingerprintKey) -> String {
        base64::engine::general_purpose::STANDARD.encode(key.0)
    }
}

/// A fresh token id.
pub fn new_token() -> String {
    format!("tok_{}", uuid::Uuid::new_v4().simple())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_fingerprint_is_keyed_and_stable() {
        let card = CardNumber::parse("4242424242424242").unwrap();
        let key = FingerprintKey::generate().unwrap();
        let other = FingerprintKey::generate().unwrap();
        assert_eq!(key.fingerprint(&card), key.fingerprint(&card));
        assert_ne!(key.fingerprint(&card), other.fingerprint(&card));
        assert_eq!(key.fingerprint(&card).len(), 64);
        assert!(!key.fingerprint(&card).contains("4242424242424242"));

        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(serde_json::from_str::<FingerprintKey>(&json).unwrap(), key);
        let dir = tempfile::tempdir().unwrap();
        assert!(FingerprintKey::read_file(dir.path()).unwrap().is_none());
        key.write_file(dir.path()).unwrap();
        assert_eq!(FingerprintKey::read_file(dir.path()).unwrap(), Some(key));
        assert!(new_token().starts_with("tok_"));
    }
}
