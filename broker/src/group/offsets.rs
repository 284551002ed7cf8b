//! The records of `__consumer_offsets`, in Kafka's own formats so that Kafka tooling could
//! read our topic:
//!
//! - offset commit: key v1 `(group, topic, partition)`, value v3 `(offset, leader epoch,
//!   metadata, commit timestamp)`; a null value (tombstone) deletes the offset.
//! - group metadata: key v2 `(group)`, value v3 `(protocol type, generation, protocol,
//!   leader, state timestamp, members)`; we store no members (after a restart members rejoin
//!   anyway); a tombstone deletes the group.
//!
//! Compaction keeps the last record per key, so replaying the topic from its start rebuilds
//! the coordinator's state.

use bytes::{Buf, BufMut, Bytes, BytesMut};

const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub timestamp: i64,
}

impl Key {
    pub fn group(&self) -> &str {
        match self {
            Key::Offset { group, .. } | Key::Group { group } => group,
        }
    }

    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        match self {
            Key::Offset {
                group,
                topic,
                partition,
            } => {
                out.put_i16(OFFSET_KEY_VERSION);
                put_string(&mut out, group);
                put_string(&mut out, topic);
                out.put_i32(*partition);
            }
            Key::Group { group } => {
                out.put_i16(GROUP_KEY_VERSION);
                put_string(&mut out, group);
            }
        }
        out.freeze()
    }

    /// `None` for keys this broker does not write (other record kinds are skipped on load).
    pub fn decode(mut bytes: Bytes) -> Option<Key> {
        let version = get_i16(&mut bytes)?;
        match version {
            0 | 1 => Some(Key::Offset {
                group: get_string(&mut bytes)?,
                topic: get_string(&mut bytes)?,
                partition: get_i32(&mut bytes)?,
            }),
            2 => Some(Key::Group {
                group: get_string(&mut bytes)?,
            }),
            _ => None,
        }
    }
}

impl CommittedOffset {
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        out.put_i16(OFFSET_VALUE_VERSION);
        out.put_i64(self.offset);
        out.put_i32(self.leader_epoch);
        put_string(&mut out, &self.metadata);
        out.put_i64(self.commit_timestamp);
        out.freeze()
    }

    pub fn decode(mut bytes: Bytes) -> Option<CommittedOffset> {
        let version = get_i16(&mut bytes)?;
        let offset = get_i64(&mut bytes)?;
        let leader_epoch = if version >= 3 {
            get_i32(&mut bytes)?
        } else {
            -1
        };
        let metadata = get_string(&mut bytes)?;
        let commit_timestamp = get_i64(&mut bytes)?;
        Some(CommittedOffset {
            offset,
            leader_epoch,
            metadata,
            commit_timestamp,
        })
    }
}

impl GroupRecord {
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        out.put_i16(GROUP_VALUE_VERSION);
        put_string(&mut out, &self.protocol_type);
        out.put_i32(self.generation);
        put_nullable_string(&mut out, self.protocol.as_deref());
        put_nullable_string(&mut out, self.leader.as_deref());
        out.put_i64(self.timestamp);
        // No members: see the module comment.
        out.put_i32(0);
        out.freeze()
    }

    pub fn decode(mut bytes: Bytes) -> Option<GroupRecord> {
        let version = get_i16(&mut bytes)?;
        let protocol_type = get_string(&mut bytes)?;
        let generation = get_i32(&mut bytes)?;
        let protocol = get_nullable_string(&mut bytes)?;
        let leader = get_nullable_string(&mut bytes)?;
        let timestamp = if version >= 2 {
            get_i64(&mut bytes)?
        } else {
            -1
        };
        Some(GroupRecord {
            protocol_type,
            generation,
            protocol,
            leader,
            timestamp,
        })
    }
}

/// Kafka's `Utils.abs(groupId.hashCode()) % partitions`: Java's String hash over UTF-16
/// code units, so a group lands on the same partition number as it would in Kafka.
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let hash = group.encode_utf16().fold(0i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(i32::from(unit))
    });
    // Kafka's Utils.abs maps i32::MIN to 0 rather than overflowing.
    let positive = if hash == i32::MIN { 0 } else { hash.abs() };
    positive % partitions.max(1)
}

fn put_string(out: &mut BytesMut, value: &str) {
    // Group, topic and metadata lengths are validated (< 32 KiB) before they get here.
    let len = i16::try_from(value.len()).unwrap_or(i16::MAX);
    out.put_i16(len);
    out.put_slice(value.as_bytes().get(..len as usize).unwrap_or_default());
}

fn put_nullable_string(out: &mut BytesMut, value: Option<&str>) {
    match value {
        Some(value) => put_string(out, value),
        None => out.put_i16(-1),
    }
}

fn get_i16(bytes: &mut Bytes) -> Option<i16> {
    (bytes.remaining() >= 2).then(|| bytes.get_i16())
}

fn get_i32(bytes: &mut Bytes) -> Option<i32> {
    (bytes.remaining() >= 4).then(|| bytes.get_i32())
}

fn get_i64(bytes: &mut Bytes) -> Option<i64> {
    (bytes.remaining() >= 8).then(|| bytes.get_i64())
}

fn get_string(bytes: &mut Bytes) -> Option<String> {
    get_nullable_string(bytes)?.or(Some(String::new()))
}

fn get_nullable_string(bytes: &mut Bytes) -> Option<Option<String>> {
    let len = get_i16(bytes)?;
    if len < 0 {
        return Some(None);
    }
    let len = usize::try_from(len).ok()?;
    if bytes.remaining() < len {
        return None;
    }
    let raw = bytes.split_to(len);
    String::from_utf8(raw.to_vec()).ok().map(Some)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn records_round_trip() {
        let key = Key::Offset {
            group: "g".into(),
            topic: "orders".into(),
            partition: 3,
        };
        assert_eq!(Key::decode(key.encode()), Some(key));
        let key = Key::Group { group: "g".into() };
        assert_eq!(Key::decode(key.encode()), Some(key));
        let offset = CommittedOffset {
            offset: 42,
            leader_epoch: 0,
            metadata: "m".into(),
            commit_timestamp: 1_700_000_000_000,
        };
        assert_eq!(CommittedOffset::decode(offset.encode()), Some(offset));
        let group = GroupRecord {
            protocol_type: "consumer".into(),
            generation: 7,
            protocol: Some("range".into()),
            leader: None,
            timestamp: 5,
        };
        assert_eq!(GroupRecord::decode(group.encode()), Some(group));
    }

    #[test]
    fn truncated_records_are_refused_not_panicked_on() {
        let bytes = Key::Group {
            group: "abc".into(),
        }
        .encode();
        assert_eq!(Key::decode(bytes.slice(..3)), None);
        assert_eq!(
            CommittedOffset::decode(Bytes::from_static(&[0, 3, 1])),
            None
        );
    }

    #[test]
    fn partition_matches_java_string_hash() {
        // "test-group".hashCode() == 627_841_412 in Java; "polygenelubricants" hashes to
        // i32::MIN, which Kafka's Utils.abs maps to 0.
        assert_eq!(partition_for("test-group", 50), 627_841_412 % 50);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        assert_eq!(partition_for("", 8), 0);
    }
}
