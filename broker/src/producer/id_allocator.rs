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

#[derive(Debug)]
pub struct IdAllocator {
    next: i64,
    block_end: i64,
}

impl IdAllocator {
    /// Starts past everything a previous run may have handed out.
    pub fn open(store: &ProducerStore) -> Result<IdAllocator> {
        let high_water = store.producer_id_high_water()?;
        Ok(IdAllocator {
            next: high_water,
            block_end: high_water,
        })
    }

    pub fn allocate(&mut self, store: &ProducerStore) -> Result<i64> {
        if self.next >= FIXED_PRODUCER_IDS_START {
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
