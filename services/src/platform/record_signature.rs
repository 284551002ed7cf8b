//! Record signatures: how a consumer tells a record this platform's services published from
//! one that anybody who reaches the Kafka port wrote.
//!
//! Until Kafka ACLs keep other producers off the services' topics, every record an outbox
//! relay publishes carries a `commerce-signature` header: an HMAC-SHA256, under the
//! platform's record key, of the record's topic, key and value (the value is the whole JSON
//! envelope, so the event id, type, aggregate and payload are covered byte for byte). A
//! consumer applies a record only if the header verifies; anything else (no header, a
//! header from another key, a payload or key altered, a genuine record copied to another
//! topic) is refused and dead-lettered by the consumer. A genuine record replayed as is
//! verifies, and is then dropped by the inbox (its event id was applied already).
//!
//! The header is a plain Kafka record header, so the scheme works the same on the built-in
//! broker and on any external Kafka. The key is one for the whole platform: the composition
//! root derives it from a secret every node already shares ([`RecordKey::derive`]) and
//! installs it in [`RecordKeys`], which the relays and consumers wait on.
//!
//! Header value: `v1:<key id>:<mac>`, the key id being 8 hex digits naming the key (not
//! revealing it), so a refusal can say "signed with another key" apart from "altered".

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;
use tokio::sync::watch;

/// The record header that carries the signature.
pub const SIGNATURE_HEADER: &str = "commerce-signature";
const VERSION: &str = "v1";
/// Domain separation: a MAC made for one purpose is never valid for another.
const DERIVE_LABEL: &[u8] = b"commerce record signing key v1";
const KEY_ID_LABEL: &[u8] = b"commerce record key id v1";
const RECORD_LABEL: &[u8] = b"commerce record v1";
const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum RecordKeyError {
    #[error("the record signing key {0} is not 64 hex digits")]
    Malformed(String),
    #[error("cannot key HMAC-SHA256: {0}")]
    Mac(String),
}

/// Why a record was not accepted as the platform's own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unverified {
    #[error("unsigned: the record has no {SIGNATURE_HEADER} header")]
    Unsigned,
    #[error("the {SIGNATURE_HEADER} header is not a {VERSION} signature")]
    Malformed,
    #[error("signed with key {found}, not this platform's key {expected}")]
    OtherKey { found: String, expected: String },
    #[error(
        "the signature does not match the record's topic, key and value (altered, or copied from another topic)"
    )]
    Mismatch,
}

impl Unverified {
    /// A short name for the kind of refusal, for logging each kind once.
    pub fn cause(&self) -> &'static str {
        match self {
            Unverified::Unsigned => "unsigned",
            Unverified::Malformed => "malformed signature",
            Unverified::OtherKey { .. } => "signed with another key",
            Unverified::Mismatch => "signature mismatch",
        }
    }
}

/// What of a record is signed.
#[derive(Debug, Clone, Copy)]
pub struct SignedRecord<'a> {
    pub topic: &'a str,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
}

/// The platform's record key. Debug never shows it.
#[derive(Clone)]
pub struct RecordKey {
    bytes: [u8; KEY_LEN],
    /// HMAC keyed with `bytes`, cloned for each record.
    mac: Hmac<Sha256>,
    id: String,
}

impl RecordKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Result<RecordKey, RecordKeyError> {
        let mac = keyed(&bytes)?;
        let mut id_mac = mac.clone();
        id_mac.update(KEY_ID_LABEL);
        let id = hex(id_mac.finalize().into_bytes().get(..4).unwrap_or_default());
        Ok(RecordKey { bytes, mac, id })
    }

    /// The record key derived from a secret every node shares (one-way: the record key
    /// does not reveal the secret, and the secret keeps serving its own purpose).
    pub fn derive(secret: &[u8]) -> Result<RecordKey, RecordKeyError> {
        let mut mac = keyed(secret)?;
        mac.update(DERIVE_LABEL);
        let mut bytes = [0u8; KEY_LEN];
        for (out, byte) in bytes.iter_mut().zip(mac.finalize().into_bytes()) {
            *out = byte;
        }
        RecordKey::from_bytes(bytes)
    }

    /// The key as 64 hex digits (its operator copy's text).
    pub fn to_hex(&self) -> String {
        hex(&self.bytes)
    }

    /// A key from its hex text (surrounding whitespace ignored); `what` names the source.
    pub fn from_hex(text: &str, what: &str) -> Result<RecordKey, RecordKeyError> {
        let bytes = unhex(text.trim())
            .and_then(|bytes| <[u8; KEY_LEN]>::try_from(bytes).ok())
            .ok_or_else(|| RecordKeyError::Malformed(what.to_string()))?;
        RecordKey::from_bytes(bytes)
    }

    /// 8 hex digits naming the key.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A keyed digest of `bytes` for `purpose` (a label, so digests made for one purpose
    /// never match another's), the same on every node: what a record may keep instead of
    /// bytes that must not be recoverable from it (a request body with a card number in it
    /// has too few unknowns to survive an unkeyed hash).
    pub fn digest(&self, purpose: &str, bytes: &[u8]) -> u64 {
        let mut mac = self.mac.clone();
        mac.update(
            &u64::try_from(purpose.len())
                .unwrap_or(u64::MAX)
                .to_be_bytes(),
        );
        mac.update(purpose.as_bytes());
        mac.update(bytes);
        let mut first = [0u8; 8];
        for (out, byte) in first.iter_mut().zip(mac.finalize().into_bytes()) {
            *out = byte;
        }
        u64::from_be_bytes(first)
    }

    /// The `commerce-signature` header value for `record`.
    pub fn sign(&self, record: SignedRecord<'_>) -> String {
        format!("{VERSION}:{}:{}", self.id, hex(&self.mac_of(record)))
    }

    /// Whether `header` (the record's `commerce-signature` value, if any) is this key's
    /// signature of `record`. The MAC is compared in constant time.
    pub fn verify(
        &self,
        record: SignedRecord<'_>,
        header: Option<&[u8]>,
    ) -> Result<(), Unverified> {
        let header = header.ok_or(Unverified::Unsigned)?;
        let text = std::str::from_utf8(header).map_err(|_| Unverified::Malformed)?;
        let mut parts = text.split(':');
        let (Some(VERSION), Some(key_id), Some(mac), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Unverified::Malformed);
        };
        let mac = unhex(mac).ok_or(Unverified::Malformed)?;
        if key_id != self.id {
            return Err(Unverified::OtherKey {
                found: key_id.chars().take(16).collect(),
                expected: self.id.clone(),
            });
        }
        self.keyed_record(record)
            .verify_slice(&mac)
            .map_err(|_| Unverified::Mismatch)
    }

    fn mac_of(&self, record: SignedRecord<'_>) -> Vec<u8> {
        self.keyed_record(record).finalize().into_bytes().to_vec()
    }

    /// The MAC fed with the record's signed parts, each length-prefixed so no two
    /// different records feed the same bytes.
    fn keyed_record(&self, record: SignedRecord<'_>) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(RECORD_LABEL);
        for part in [Some(record.topic.as_bytes()), record.key, record.value] {
            match part {
                None => mac.update(&[0]),
                Some(bytes) => {
                    mac.update(&[1]);
                    mac.update(&u64::try_from(bytes.len()).unwrap_or(u64::MAX).to_be_bytes());
                    mac.update(bytes);
                }
            }
        }
        mac
    }
}

impl PartialEq for RecordKey {
    fn eq(&self, other: &RecordKey) -> bool {
        self.bytes == other.bytes
    }
}

impl std::fmt::Debug for RecordKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "RecordKey({})", self.id)
    }
}

/// HMAC is defined for keys of any length, so this fails only if the crate changes that.
fn keyed(key: &[u8]) -> Result<Hmac<Sha256>, RecordKeyError> {
    <Hmac<Sha256> as Mac>::new_from_slice(key)
        .map_err(|error| RecordKeyError::Mac(error.to_string()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok())
        .collect()
}

/// The platform's record key once it is known: installed by the composition root at start
/// (it comes from replicated state, so not at once), awaited by relays and consumers.
#[derive(Clone)]
pub struct RecordKeys {
    sender: Arc<watch::Sender<Option<RecordKey>>>,
}

impl Default for RecordKeys {
    fn default() -> RecordKeys {
        RecordKeys {
            sender: Arc::new(watch::channel(None).0),
        }
    }
}

impl RecordKeys {
    /// Keys already holding `key` (tests, or a key given by configuration).
    pub fn with(key: RecordKey) -> RecordKeys {
        let keys = RecordKeys::default();
        keys.install(key);
        keys
    }

    pub fn install(&self, key: RecordKey) {
        self.sender.send_replace(Some(key));
    }

    pub fn current(&self) -> Option<RecordKey> {
        self.sender.borrow().clone()
    }

    /// The key, once installed; `None` if `stopped` turns true first.
    pub async fn wait(&self, stopped: &mut watch::Receiver<bool>) -> Option<RecordKey> {
        let mut installed = self.sender.subscribe();
        loop {
            if let Some(key) = installed.borrow_and_update().clone() {
                return Some(key);
            }
            if *stopped.borrow() {
                return None;
            }
            tokio::select! {
                changed = installed.changed() => if changed.is_err() { return None },
                changed = stopped.changed() => if changed.is_err() { return None },
            }
        }
    }
}

#[cfg(test)]
#[path = "record_signature_tests.rs"]
mod tests;
