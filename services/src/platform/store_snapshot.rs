//! A service store's snapshot: what a Raft group sends a replica that is too far behind (or
//! whose disk was wiped) to catch up from the log.
//!
//! The format is a plain length-prefixed dump of the replicated keyspaces (`state`, `outbox`,
//! `meta`), preceded by a magic and the last applied Raft index:
//! `SVC1 | applied u64 | (tag u8 | key len u32 | key | value len u32 | value)* | 0xFF`.
//! The store is synced before it is read, so the dump never claims an index whose effect a
//! crash could still take back.

use super::error::StoreError;
use super::store::{META_RAFT_APPLIED, Store};
use fjall::{Keyspace, PersistMode};

const MAGIC: &[u8; 4] = b"SVC1";
const END: u8 = 0xFF;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("not a service store snapshot")]
    NotASnapshot,
    #[error("the service store snapshot is cut short")]
    Truncated,
    #[error("unknown keyspace tag {0} in a service store snapshot")]
    UnknownKeyspace(u8),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<fjall::Error> for SnapshotError {
    fn from(error: fjall::Error) -> Self {
        SnapshotError::Store(StoreError::from(error))
    }
}

impl Store {
    fn replicated_keyspaces(&self) -> [(u8, &Keyspace); 3] {
        [(1, &self.state), (2, &self.outbox), (3, &self.meta)]
    }

    /// The whole replicated state, synced first.
    pub(crate) fn export_snapshot(&self) -> Result<Vec<u8>, StoreError> {
        self.check()?;
        self.db.persist(PersistMode::SyncData)?;
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&self.raft_applied()?.to_be_bytes());
        for (tag, keyspace) in self.replicated_keyspaces() {
            for guard in keyspace.iter() {
                let (key, value) = guard.into_inner()?;
                out.push(tag);
                put_bytes(&mut out, &key);
                put_bytes(&mut out, &value);
            }
        }
        out.push(END);
        Ok(out)
    }

    /// Replaces the replicated state with a snapshot's unless this store has applied as far
    /// already (a node reopening its own last snapshot); returns the snapshot's index.
    pub(crate) fn import_snapshot(&self, bytes: &[u8]) -> Result<u64, SnapshotError> {
        let (magic, rest) = bytes
            .split_first_chunk::<4>()
            .ok_or(SnapshotError::NotASnapshot)?;
        if magic != MAGIC {
            return Err(SnapshotError::NotASnapshot);
        }
        let (applied, mut rest) = rest
            .split_first_chunk::<8>()
            .ok_or(SnapshotError::Truncated)?;
        let applied = u64::from_be_bytes(*applied);
        let mut entries: Vec<(u8, &[u8], &[u8])> = Vec::new();
        loop {
            let (tag, after) = rest.split_first().ok_or(SnapshotError::Truncated)?;
            if *tag == END {
                break;
            }
            if !self
                .replicated_keyspaces()
                .iter()
                .any(|(known, _)| known == tag)
            {
                return Err(SnapshotError::UnknownKeyspace(*tag));
            }
            let (key, after) = take_bytes(after)?;
            let (value, after) = take_bytes(after)?;
            entries.push((*tag, key, value));
            rest = after;
        }
        if self.raft_applied()? >= applied {
            return Ok(applied);
        }
        self.check()?;
        // One batch shares one sequence number, so a key is either removed (absent from the
        // snapshot) or written, never both.
        let kept: std::collections::HashSet<(u8, &[u8])> =
            entries.iter().map(|(tag, key, _)| (*tag, *key)).collect();
        let mut batch = self.db.batch();
        for (tag, keyspace) in self.replicated_keyspaces() {
            for guard in keyspace.iter() {
                let key = guard.key()?;
                if !kept.contains(&(tag, key.as_ref())) {
                    batch.remove(keyspace, key.to_vec());
                }
            }
        }
        for (tag, key, value) in entries {
            if let Some((_, keyspace)) = self
                .replicated_keyspaces()
                .into_iter()
                .find(|(known, _)| *known == tag)
            {
                if tag == 3 && key == META_RAFT_APPLIED {
                    continue;
                }
                batch.insert(keyspace, key.to_vec(), value.to_vec());
            }
        }
        batch.insert(&self.meta, META_RAFT_APPLIED, applied.to_be_bytes());
        if let Err(error) = batch.commit() {
            self.poison();
            return Err(StoreError::from(error).into());
        }
        self.db.persist(PersistMode::SyncData)?;
        Ok(applied)
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

fn take_bytes(input: &[u8]) -> Result<(&[u8], &[u8]), SnapshotError> {
    let (len, rest) = input
        .split_first_chunk::<4>()
        .ok_or(SnapshotError::Truncated)?;
    let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| SnapshotError::Truncated)?;
    if rest.len() < len {
        return Err(SnapshotError::Truncated);
    }
    Ok(rest.split_at(len))
}
