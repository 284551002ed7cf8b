//! The log's one error type.

/// Everything that can go wrong in the partition log.
///
/// The broker maps these once, at its edge, to Kafka error codes: `CorruptBatch` to
/// `CORRUPT_MESSAGE`, `UnsupportedMagic` to `UNSUPPORTED_FOR_MESSAGE_FORMAT`,
/// `OffsetOutOfRange` to `OFFSET_OUT_OF_RANGE`, and the rest to a storage error.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The file system failed us.
    #[error("log I/O error: {0}")]
    Io(#[from] std::io::Error),

    /// Input that is not a well-formed v2 batch: bad CRC, lengths that disagree with the
    /// buffer, a truncated batch, trailing garbage. Nothing was written.
    #[error("corrupt record batch: {reason}")]
    CorruptBatch { reason: String },

    /// A batch whose magic byte is not 2 (the only format stored).
    #[error("unsupported record batch magic {magic} (only magic 2 is supported)")]
    UnsupportedMagic { magic: i8 },

    /// A read or lookup outside `[log start, log end]`.
    #[error("offset {requested} is out of range [{start}, {end}]")]
    OffsetOutOfRange {
        requested: i64,
        start: i64,
        end: i64,
    },

    /// An earlier I/O failure left the log in a state we do not trust; it refuses writes
    /// until it is reopened (which runs recovery). Reads of published data still work.
    #[error("log refuses writes after an earlier I/O failure; reopen it to recover")]
    Poisoned,
}

impl LogError {
    pub(crate) fn corrupt(reason: impl Into<String>) -> LogError {
        LogError::CorruptBatch {
            reason: reason.into(),
        }
    }
}
