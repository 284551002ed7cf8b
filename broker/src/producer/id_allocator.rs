//! Producer ids: handed out from blocks whose end is made durable before the first id of the
//! block is given, so a restart (even a crash) resumes past every id ever handed out and an
//! id is never reused. Losing the rest of a block on a crash is the price; ids are plentiful.

use super::error::ProducerError;
use super::store::ProducerStore;
use crate::error::Result;

/// Ids reserved per durable write.
const BLOCK_SIZE: i64 = 1000;

/// Producer ids from here up are never allocated: they are for in-process producers that
/// pick a fixed id (the services' outbox relays, one id per service partition, so a relay
/// restarting on another node continues the same sequence). 2^48 allocations is far beyond
/// any node's life.
pub const FIXED_PRODUCER_IDS_START: i64 = 1 << 48;

/// In a cluster each node hands out ids from its own range of this size (node `n` from
/// `n * 2^40`), so two nodes never give the same id without asking each other; Kafka's
/// controller hands out blocks instead, which would cost a controller round trip per
/// block. 255 nodes fit below the fixed ids.
const NODE_RANGE: i64 = 1 << 40;

#[derive(Debug)]
pub struct IdAllocator {
    next: i64,
    block_end: i64,
    /// One past the last id this node may hand out.
    range_end: i64,
}

impl IdAllocator {
    /// Starts past everything a previous run may have handed out (a single node: ids from 0).
    pub fn open(store: &ProducerStore) -> Result<IdAllocator> {
        Self::open_in_range(store, None)
    }

    /// Like [`IdAllocator::open`], for cluster node `node`: ids from its own range only.
    pub fn open_in_range(store: &ProducerStore, node: Option<u64>) -> Result<IdAllocator> {
        let high_water = store.producer_id_high_water()?;
        let (range_start, range_end) = match node {
            None => (0, FIXED_PRODUCER_IDS_START),
            Some(node) => {
                let start = i64::try_from(node)
                    .ok()
                    .and_then(|node| node.checked_mul(NODE_RANGE))
                    .filter(|start| *start < FIXED_PRODUCER_IDS_START)
                    .ok_or(ProducerError::CoordinatorNotAvailable(
                        "node id too large for a producer id range",
                    ))?;
                (start, start + NODE_RANGE)
            }
        };
        let next = high_water.max(range_start);
        Ok(IdAllocator {
            next,
            block_end: next,
            range_end,
        })
    }

    pub fn allocate(&mut self, store: &ProducerStore) -> Result<i64> {
        if self.next >= self.range_end {
            return Err(ProducerError::CoordinatorNotAvailable("producer ids exhausted").into());
        }
        if self.next >= self.block_end {
            let block_end = self.next + BLOCK_SIZE;
            store.set_producer_id_high_water(block_end)?;
            self.block_end = block_end;
        }
        let id = self.next;
        self.next += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cluster_nodes_hand_out_disjoint_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let first = ProducerStore::open(&dir.path().join("one.redb")).unwrap();
        let second = ProducerStore::open(&dir.path().join("two.redb")).unwrap();
        let mut one = IdAllocator::open_in_range(&first, Some(1)).unwrap();
        let mut two = IdAllocator::open_in_range(&second, Some(2)).unwrap();
        let a = one.allocate(&first).unwrap();
        let b = two.allocate(&second).unwrap();
        assert_eq!(a, NODE_RANGE);
        assert_eq!(b, 2 * NODE_RANGE);
        assert!(IdAllocator::open_in_range(&first, Some(1 << 20)).is_err());
    }

    #[test]
    fn ids_are_not_reused_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("producers.redb");
        let first = {
            let store = ProducerStore::open(&path).unwrap();
            let mut ids = IdAllocator::open(&store).unwrap();
            (0..3)
                .map(|_| ids.allocate(&store).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(first, vec![0, 1, 2]);
        let store = ProducerStore::open(&path).unwrap();
        let mut ids = IdAllocator::open(&store).unwrap();
        assert!(ids.allocate(&store).unwrap() > 2);
    }
}
