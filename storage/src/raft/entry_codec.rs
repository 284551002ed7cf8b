//! The on-disk form of one Raft log entry.
//!
//! A fixed header (format version, payload kind, term, leader node, index) followed by the
//! payload. A normal entry's payload is the command's bytes exactly as proposed, never
//! re-encoded: this keeps the door open to storing a Kafka record batch as the entry itself
//! (the partition log IS the Raft log), where the header fields map onto the batch's
//! partitionLeaderEpoch and base offset. Membership changes are rare and small, so they are
//! kept as JSON.

use openraft::{CommittedLeaderId, EntryPayload};

use super::types::{Command, Entry, LogId};

const FORMAT_V1: u8 = 1;
const KIND_BLANK: u8 = 0;
const KIND_NORMAL: u8 = 1;
const KIND_MEMBERSHIP: u8 = 2;
/// version + kind + term + leader node + index.
const HEADER_LEN: usize = 1 + 1 + 8 + 8 + 8;

/// Why stored bytes are not an entry: a torn or foreign record.
#[derive(Debug, thiserror::Error)]
pub enum EntryDecodeError {
    #[error("entry shorter than its {HEADER_LEN}-byte header ({0} bytes)")]
    Short(usize),
    #[error("unknown entry format version {0}")]
    Version(u8),
    #[error("unknown entry kind {0}")]
    Kind(u8),
    #[error("bad membership payload: {0}")]
    Membership(#[from] serde_json::Error),
}

/// Encodes `entry` for the log store.
pub fn encode(entry: &Entry) -> Result<Vec<u8>, serde_json::Error> {
    let (kind, payload): (u8, std::borrow::Cow<'_, [u8]>) = match &entry.payload {
        EntryPayload::Blank => (KIND_BLANK, std::borrow::Cow::Borrowed(&[])),
        EntryPayload::Normal(command) => (KIND_NORMAL, std::borrow::Cow::Borrowed(&command.0)),
        EntryPayload::Membership(membership) => (
            KIND_MEMBERSHIP,
            std::borrow::Cow::Owned(serde_json::to_vec(membership)?),
        ),
    };
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.push(FORMAT_V1);
    out.push(kind);
    out.extend_from_slice(&entry.log_id.leader_id.term.to_be_bytes());
    out.extend_from_slice(&entry.log_id.leader_id.node_id.to_be_bytes());
    out.extend_from_slice(&entry.log_id.index.to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Decodes bytes written by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<Entry, EntryDecodeError> {
    let (header, payload) = bytes
        .split_at_checked(HEADER_LEN)
        .ok_or(EntryDecodeError::Short(bytes.len()))?;
    let byte = |at: usize| header.get(at).copied().unwrap_or_default();
    let (version, kind) = (byte(0), byte(1));
    if version != FORMAT_V1 {
        return Err(EntryDecodeError::Version(version));
    }
    let word = |at: usize| -> u64 {
        header
            .get(2 + at..2 + at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
            .unwrap_or_default()
    };
    let log_id = LogId::new(CommittedLeaderId::new(word(0), word(8)), word(16));
    let payload = match kind {
        KIND_BLANK => EntryPayload::Blank,
        KIND_NORMAL => EntryPayload::Normal(Command(payload.to_vec())),
        KIND_MEMBERSHIP => EntryPayload::Membership(serde_json::from_slice(payload)?),
        other => return Err(EntryDecodeError::Kind(other)),
    };
    Ok(Entry { log_id, payload })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use std::collections::BTreeSet;

    use openraft::Membership;

    use super::*;

    fn roundtrip(entry: Entry) {
        let bytes = encode(&entry).unwrap();
        assert_eq!(decode(&bytes).unwrap(), entry);
    }

    #[test]
    fn every_payload_kind_roundtrips() {
        let log_id = LogId::new(CommittedLeaderId::new(7, 3), 42);
        roundtrip(Entry {
            log_id,
            payload: EntryPayload::Blank,
        });
        roundtrip(Entry {
            log_id,
            payload: EntryPayload::Normal(Command(b"abc".to_vec())),
        });
        let members = Membership::new(vec![BTreeSet::from([1, 2, 3])], None);
        roundtrip(Entry {
            log_id,
            payload: EntryPayload::Membership(members),
        });
    }

    #[test]
    fn normal_payload_is_stored_verbatim_after_the_header() {
        let log_id = LogId::new(CommittedLeaderId::new(1, 1), 1);
        let bytes = encode(&Entry {
            log_id,
            payload: EntryPayload::Normal(Command(b"xyz".to_vec())),
        })
        .unwrap();
        assert_eq!(bytes.get(HEADER_LEN..), Some(&b"xyz"[..]));
    }

    #[test]
    fn torn_or_foreign_bytes_are_errors_not_panics() {
        assert!(matches!(
            decode(&[1, 1, 0]),
            Err(EntryDecodeError::Short(3))
        ));
        let mut bytes = vec![9u8; HEADER_LEN];
        assert!(matches!(decode(&bytes), Err(EntryDecodeError::Version(9))));
        bytes[0] = FORMAT_V1;
        assert!(matches!(decode(&bytes), Err(EntryDecodeError::Kind(9))));
    }
}
