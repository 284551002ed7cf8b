//! Everything a partition knows about producers: sequences for idempotence and open/aborted
//! transactions for read_committed. The partition keeps one behind a mutex held across
//! check, append and record, so the verdict and the log cannot disagree.
//!
//! Restart: a clean shutdown writes the state to a snapshot file beside the log, with the
//! log end it describes; the next open loads it and scans only the batches after it. The
//! snapshot is deleted once loaded, so it is only ever used right after the clean shutdown
//! that wrote it (a later crash, or a truncation, cannot make it describe another log).
//! Without a snapshot (after a crash) the whole log's batch headers are scanned: slower on
//! a large log, always right.

use super::batch_header::{ProducerBatch, control_marker};
use super::error::ProducerError;
use super::sequence::{Admission, ProducerSequences};
use super::txn_index::{AbortedTxn, TxnIndex};
use commerce_storage::{LogError, PartitionLog, ReadOptions};
use std::path::Path;

/// How much log one rebuild read fetches at a time.
const REBUILD_CHUNK: usize = 4 << 20;
/// The snapshot's file name in the partition directory.
pub const SNAPSHOT_FILE: &str = "producer-state.json";

/// What the snapshot file holds: the state as of `end_offset`.
#[derive(serde::Serialize, serde::Deserialize)]
struct Snapshot {
    end_offset: i64,
    state: ProducerState,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ProducerState {
    sequences: ProducerSequences,
    txns: TxnIndex,
}

/// The verdict on a produce request's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Plain batches: append as they are.
    Plain,
    /// One batch from a producer, admitted: append, then `record` it.
    Producer(ProducerBatch),
    /// A retry of a stored batch: answer with its offsets.
    Duplicate { base_offset: i64, last_offset: i64 },
}

impl ProducerState {
    /// Loads the snapshot in `dir` if there is a usable one (and removes it), then scans
    /// the batches after it; without one, scans the whole log.
    pub fn recover(dir: &Path, log: &PartitionLog) -> Result<ProducerState, LogError> {
        let path = dir.join(SNAPSHOT_FILE);
        let snapshot = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Snapshot>(&bytes).ok())
            .filter(|snapshot| {
                (log.log_start_offset()..=log.log_end_offset()).contains(&snapshot.end_offset)
            });
        if path.exists() {
            std::fs::remove_file(&path)?;
        }
        match snapshot {
            Some(snapshot) => snapshot.state.scan(log, snapshot.end_offset),
            None => ProducerState::default().scan(log, log.log_start_offset()),
        }
    }

    /// Writes the snapshot for a log that ends at `end_offset` (clean shutdown: no append
    /// may follow). Written to a temporary name and renamed, so a crash mid-write leaves
    /// no half snapshot.
    pub fn write_snapshot(&self, dir: &Path, end_offset: i64) -> std::io::Result<()> {
        let snapshot = Snapshot {
            end_offset,
            state: self.clone(),
        };
        let bytes = serde_json::to_vec(&snapshot).map_err(std::io::Error::other)?;
        let temporary = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
        std::fs::write(&temporary, bytes)?;
        std::fs::File::open(&temporary)?.sync_all()?;
        std::fs::rename(&temporary, dir.join(SNAPSHOT_FILE))
    }

    /// Rebuilds from every batch header in the log (what `recover` does without snapshot).
    pub fn rebuild(log: &PartitionLog) -> Result<ProducerState, LogError> {
        ProducerState::default().scan(log, log.log_start_offset())
    }

    /// Applies the batch headers of the log from `from` on.
    fn scan(self, log: &PartitionLog, from: i64) -> Result<ProducerState, LogError> {
        let mut state = self;
        let mut offset = from;
        let end = log.log_end_offset();
        while offset < end {
            let read = log.read(
                offset,
                ReadOptions {
                    max_bytes: REBUILD_CHUNK,
                    min_one_batch: true,
                    upper_bound: Some(end),
                },
            )?;
            let mut next = offset;
            for batch in batches(&read.bytes) {
                let Some(header) = ProducerBatch::parse(batch) else {
                    break;
                };
                let base_offset = base_offset(batch);
                next = base_offset + i64::from(header.last_offset_delta) + 1;
                if header.has_producer() {
                    state.record(&header, batch, base_offset);
                }
            }
            if next <= offset {
                break;
            }
            offset = next;
        }
        Ok(state)
    }

    /// Decides what to do with a produce request's records for this partition.
    pub fn admit(&self, records: &[u8]) -> Result<Verdict, ProducerError> {
        let mut headers = batches(records).map(ProducerBatch::parse);
        let Some(Some(header)) = headers.next() else {
            return Ok(Verdict::Plain);
        };
        let more = headers.count();
        let any_producer = header.has_producer()
            || batches(records)
                .filter_map(ProducerBatch::parse)
                .any(|b| b.has_producer());
        if !any_producer {
            return Ok(Verdict::Plain);
        }
        // Kafka too insists on one batch: sequences are checked per batch, and a request
        // that mixed a duplicate with new data would have no single answer. Markers are the
        // coordinator's to write, never a client's.
        if more != 0 || !header.has_producer() || header.control {
            return Err(ProducerError::InvalidRecord);
        }
        match self.sequences.check(&header)? {
            Admission::Append => Ok(Verdict::Producer(header)),
            Admission::Duplicate {
                base_offset,
                last_offset,
            } => Ok(Verdict::Duplicate {
                base_offset,
                last_offset,
            }),
        }
    }

    /// Records an appended producer batch (`batch` is its stored bytes, for markers).
    pub fn record(&mut self, header: &ProducerBatch, batch: &[u8], base_offset: i64) {
        let last_offset = base_offset + i64::from(header.last_offset_delta);
        self.sequences.record(header, base_offset, last_offset);
        let marker = header.control.then(|| control_marker(batch)).flatten();
        self.txns.on_append(header, base_offset, marker);
    }

    pub fn last_stable_offset(&self, high_watermark: i64) -> i64 {
        self.txns.last_stable_offset(high_watermark)
    }

    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        self.txns.aborted_between(from, to)
    }

    pub fn has_open_transaction(&self, producer_id: i64) -> bool {
        self.txns.is_ongoing(producer_id)
    }

    pub fn epoch(&self, producer_id: i64) -> Option<i16> {
        self.sequences.epoch(producer_id)
    }

    pub fn trim_before(&mut self, log_start_offset: i64) {
        self.txns.trim_before(log_start_offset);
    }
}

fn base_offset(batch: &[u8]) -> i64 {
    batch
        .get(0..8)
        .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
        .map_or(-1, i64::from_be_bytes)
}

/// The whole batches in a buffer, by their length field.
pub fn batches(records: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    let mut rest = records;
    std::iter::from_fn(move || {
        let length = rest
            .get(8..12)
            .and_then(|bytes| <[u8; 4]>::try_from(bytes).ok())
            .map(i32::from_be_bytes)
            .and_then(|length| usize::try_from(length).ok())?;
        let size = length.checked_add(12)?;
        let batch = rest.get(..size)?;
        rest = rest.get(size..).unwrap_or_default();
        Some(batch)
    })
}
