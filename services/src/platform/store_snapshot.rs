//! A service store's snapshot: what a Raft group sends a replica that is too far behind (or
//! whose disk was wiped) to catch up from the log. Installing one: `store_install`.
//!
//! The format is a plain length-prefixed dump of the replicated keyspaces (`state`, `outbox`,
//! `meta`), preceded by a magic and the last applied Raft index:
//! `SVC1 | applied u64 | (tag u8 | key len u32 | key | value len u32 | value)* | 0xFF`.
//!
//! It is streamed both ways, because the store may be far larger than memory: the export
//! walks the keyspaces one record at a time into a buffer of [`CHUNK`] bytes, and
//! [`SnapshotReader`] reads one record at a time. Memory is a chunk plus one record.
//!
//! The store is synced before it is read, so the dump never claims an index whose effect a
//! crash could still take back; and it is read from one fjall snapshot across keyspaces, so
//! the outbox and the producer sequences (which the relay moves outside the log) agree.

use super::error::StoreError;
use super::store::{META_RAFT_APPLIED, Store};
use fjall::{Keyspace, PersistMode, Readable};
use std::io::{BufWriter, Read, Write};

const MAGIC: &[u8; 4] = b"SVC1";
const END: u8 = 0xFF;
/// Each replicated keyspace's tag in a snapshot.
const STATE_TAG: u8 = 1;
const OUTBOX_TAG: u8 = 2;
pub(crate) const META_TAG: u8 = 3;
/// What the export buffers before it writes: the pieces a snapshot reaches its file in.
pub(crate) const CHUNK: usize = 64 * 1024;
/// fjall refuses longer keys; a longer length is a corrupt snapshot, not an allocation.
const MAX_KEY: u64 = 1 << 16;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("not a service store snapshot")]
    NotASnapshot,
    #[error("the service store snapshot is cut short")]
    Truncated,
    #[error("unknown keyspace tag {0} in a service store snapshot")]
    UnknownKeyspace(u8),
    #[error("a key of {0} bytes in a service store snapshot")]
    KeyTooLong(u64),
    #[error("bytes after the end of a service store snapshot")]
    TrailingBytes,
    #[error("a service store snapshot's records are not in key order")]
    OutOfOrder,
    #[error("service store snapshot i/o: {0}")]
    Io(std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<fjall::Error> for SnapshotError {
    fn from(error: fjall::Error) -> Self {
        SnapshotError::Store(StoreError::from(error))
    }
}

impl From<std::io::Error> for SnapshotError {
    fn from(error: std::io::Error) -> Self {
        match error.kind() {
            std::io::ErrorKind::UnexpectedEof => SnapshotError::Truncated,
            _ => SnapshotError::Io(error),
        }
    }
}

/// One key and value of a replicated keyspace, as a snapshot carries it.
pub(crate) struct Record {
    pub(crate) tag: u8,
    pub(crate) key: Vec<u8>,
    pub(crate) value: Vec<u8>,
}

impl Store {
    /// The keyspaces a snapshot carries, by tag. `log` is not among them: it only holds an
    /// upgraded node's own unapplied entries.
    pub(crate) fn replicated_keyspaces(&self) -> [(u8, &Keyspace); 3] {
        [
            (STATE_TAG, &self.state),
            (OUTBOX_TAG, &self.outbox),
            (META_TAG, &self.meta),
        ]
    }

    /// Streams the whole replicated state into `out`, synced first; returns the applied
    /// index it carries.
    pub(crate) fn write_snapshot(&self, out: &mut dyn Write) -> Result<u64, SnapshotError> {
        self.check()?;
        self.db.persist(PersistMode::SyncData)?;
        let view = self.db.snapshot();
        let applied = match view.get(&self.meta, META_RAFT_APPLIED)? {
            Some(bytes) => <[u8; 8]>::try_from(bytes.as_ref())
                .map(u64::from_be_bytes)
                .unwrap_or(0),
            None => 0,
        };
        let mut out = BufWriter::with_capacity(CHUNK, out);
        out.write_all(MAGIC)?;
        out.write_all(&applied.to_be_bytes())?;
        for (tag, keyspace) in self.replicated_keyspaces() {
            for guard in view.iter(keyspace) {
                let (key, value) = guard.into_inner()?;
                out.write_all(&[tag])?;
                put_bytes(&mut out, &key)?;
                put_bytes(&mut out, &value)?;
            }
        }
        out.write_all(&[END])?;
        out.flush()?;
        Ok(applied)
    }
}

fn put_bytes(out: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| std::io::Error::other("a value too long for a snapshot"))?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(bytes)
}

/// Reads a snapshot one record at a time. Give it a buffered source: it reads a few bytes
/// at a time.
pub(crate) struct SnapshotReader<R> {
    input: R,
    /// The store's last applied Raft index when the snapshot was taken.
    pub(crate) applied: u64,
    done: bool,
    /// The last record's tag and key: records come in keyspace then key order, as the
    /// export walks them, so a key appears once.
    last: Option<(u8, Vec<u8>)>,
}

impl<R: Read> SnapshotReader<R> {
    /// Reads the header.
    pub(crate) fn open(mut input: R) -> Result<Self, SnapshotError> {
        let mut magic = [0u8; 4];
        input
            .read_exact(&mut magic)
            .map_err(|_| SnapshotError::NotASnapshot)?;
        if &magic != MAGIC {
            return Err(SnapshotError::NotASnapshot);
        }
        let mut applied = [0u8; 8];
        input.read_exact(&mut applied)?;
        Ok(SnapshotReader {
            input,
            applied: u64::from_be_bytes(applied),
            done: false,
            last: None,
        })
    }

    /// The next record, `None` after the end mark (and nothing after it).
    pub(crate) fn next_record(&mut self) -> Result<Option<Record>, SnapshotError> {
        if self.done {
            return Ok(None);
        }
        let mut tag = [0u8; 1];
        self.input.read_exact(&mut tag)?;
        let [tag] = tag;
        if tag == END {
            self.done = true;
            let mut after = [0u8; 1];
            if self.input.read(&mut after)? != 0 {
                return Err(SnapshotError::TrailingBytes);
            }
            return Ok(None);
        }
        if ![STATE_TAG, OUTBOX_TAG, META_TAG].contains(&tag) {
            return Err(SnapshotError::UnknownKeyspace(tag));
        }
        let key = self.take_bytes(Some(MAX_KEY))?;
        if let Some((last_tag, last_key)) = &self.last
            && (*last_tag, last_key.as_slice()) >= (tag, key.as_slice())
        {
            return Err(SnapshotError::OutOfOrder);
        }
        self.last = Some((tag, key.clone()));
        let value = self.take_bytes(None)?;
        Ok(Some(Record { tag, key, value }))
    }

    /// A length-prefixed field. Read as it comes rather than allocated by its length up
    /// front: a corrupt length fails at the end of the input, not in the allocator.
    fn take_bytes(&mut self, limit: Option<u64>) -> Result<Vec<u8>, SnapshotError> {
        let mut len = [0u8; 4];
        self.input.read_exact(&mut len)?;
        let len = u64::from(u32::from_be_bytes(len));
        if let Some(limit) = limit
            && len > limit
        {
            return Err(SnapshotError::KeyTooLong(len));
        }
        let mut bytes = Vec::new();
        (&mut self.input).take(len).read_to_end(&mut bytes)?;
        if bytes.len() as u64 != len {
            return Err(SnapshotError::Truncated);
        }
        Ok(bytes)
    }
}
