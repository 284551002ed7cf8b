//! The partition log: Kafka record batches in segment files.
//!
//! A [`PartitionLog`] is a directory of segments. Each segment is a `.log` file holding
//! whole v2 record batches back to back, named after the offset of its first batch
//! (20 digits, as Kafka does), with two sparse indexes beside it: `.index` maps offsets to
//! file positions, `.timeindex` maps timestamps to offsets. Only the last segment (the
//! *active* one) is appended to; when it grows past `segment_bytes` or `segment_ms` it is
//! sealed (fsynced, indexes written) and a new one is started. Retention deletes whole sealed
//! segments from the front.
//!
//! How the pieces fit:
//! - `batch` — the v2 batch header view and the validation every byte goes through.
//! - `index` — the in-memory sparse indexes and their file format.
//! - `segment` — one segment: file handle, published size, indexes, positional I/O.
//! - `recovery` — turning a directory back into segments, scanning and truncating a torn tail.
//! - `retention` — which sealed segments retention deletes (pure).
//! - `log_start` — the durable log start (DeleteRecords) and its checkpoint file.
//! - `rewrite` — crash-safe replacement of a sealed segment's batches (compaction).
//! - `reset` — restarting the log empty at any offset; a header-only walk of batch offsets
//!   (both for the Raft log kept in this log).
//! - `partition_log` — the public type: locking, offset assignment, rolling, flushing.
//!
//! Concurrency: appends are serialized by a mutex; reads never take it. A read takes a
//! snapshot of the segment list under a short lock and then does positional reads (`pread`)
//! on shared file handles, bounded by each segment's *published* size, which an append only
//! advances after its bytes are written — so a read never sees half a batch.

pub(crate) mod batch;
mod config;
mod error;
mod index;
mod log_start;
mod partition_log;
mod recovery;
mod reset;
mod retention;
mod rewrite;
mod segment;

#[cfg(test)]
pub(crate) mod tests;

pub use config::{FlushPolicy, LogConfig};
pub use error::LogError;
pub use partition_log::{AppendInfo, BatchInfo, LogRead, PartitionLog, ReadOptions};
pub use rewrite::{RewriteStats, SealedSegment};
