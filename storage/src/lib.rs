//! Local storage for DistributedCommerce.
//!
//! What it is: the durable partition log ([`PartitionLog`]) — an append-only sequence of
//! Kafka magic-v2 record batches kept in segment files exactly as they arrived on the wire,
//! with a sparse offset index and time index per segment, crash recovery that truncates a
//! torn tail, and retention by time and size; and the Raft group facility ([`raft`]): a
//! [`raft::RaftNode`] hosting many openraft groups that replicate opaque commands to a
//! caller's [`raft::StateMachine`] over one multiplexed connection per peer. Later: the
//! service stores.
//!
//! What it is not: a Kafka implementation. Storage knows only the batch *framing* (base
//! offset, length, leader epoch, magic, CRC, last offset delta, timestamps); it never looks
//! at the records inside a batch and never re-encodes one (compaction hands it replacement
//! batches, built by the broker); Raft groups never look inside a command. The broker owns
//! the protocol.
//!
//! Main types: [`PartitionLog`] (one partition's log, shared as `Arc<PartitionLog>`),
//! [`LogConfig`] / [`FlushPolicy`] (its configuration), [`AppendInfo`], [`LogRead`],
//! [`ReadOptions`], [`BatchInfo`] (what append / read / lookups return), [`SealedSegment`] /
//! [`RewriteStats`] (segment rewrites, which compaction drives) and [`LogError`].

pub mod log;
pub mod raft;

pub use log::{
    AppendInfo, BatchInfo, FlushPolicy, LogConfig, LogError, LogRead, PartitionLog, ReadOptions,
    RewriteStats, SealedSegment,
};
