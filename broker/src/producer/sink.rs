//! The port through which a committed transaction's consumer offsets reach the group
//! coordinator. The producer module does not know consumer groups; the composition root
//! plugs the group coordinator in with `TransactionCoordinator::set_offset_sink`.

/// One offset a transaction commits for a group: (topic, partition, offset, metadata).
pub type TxnOffset = (String, i32, i64, Option<String>);

pub trait TxnOffsetSink: Send + Sync {
    /// Makes `offsets` the group's committed offsets; called once, at EndTxn commit.
    fn commit_offsets(&self, group: &str, offsets: Vec<TxnOffset>) -> Result<(), String>;
}
