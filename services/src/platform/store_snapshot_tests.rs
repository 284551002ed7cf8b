//! A service store's snapshot: it round-trips into an empty store, streams out in chunks and
//! in by batches (memory does not grow with the store), changes nothing when it is bad, and
//! an install cut short leaves a store that refuses to serve until the install is redone.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
use super::CommandMeta;
use super::error::StoreError;
use super::store::{Position, Store};
use super::store_snapshot::{CHUNK, SnapshotError};
use std::collections::BTreeMap;
use std::io::{Cursor, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// A store of `count` records of `size` bytes, applied at Raft entries 1..=count, one event
/// per ten records.
fn filled(path: &Path, prefix: &str, count: u64, size: usize) -> Store {
    let store = Store::open(path).unwrap();
    for index in 1..=count {
        commit(&store, prefix, index, size).unwrap();
    }
    store
}

fn commit(store: &Store, prefix: &str, index: u64, size: usize) -> Result<(), StoreError> {
    let key = format!("{prefix}/{index:06}");
    let writes = BTreeMap::from([(key.clone().into_bytes(), Some(vec![index as u8; size]))]);
    let meta = CommandMeta {
        command_id: format!("c-{index}"),
        at_ms: 0,
        correlation_id: "x".into(),
        causation_id: None,
        traceparent: None,
        consumed_event: None,
    };
    let events = if index.is_multiple_of(10) {
        vec![("counts".to_string(), meta.event("Counted", &key, 1, index)?)]
    } else {
        Vec::new()
    };
    store.commit(writes, events, None, Position::Raft(index))
}

/// Every record of the replicated keyspaces, with its keyspace's tag.
fn contents(store: &Store) -> Vec<(u8, Vec<u8>, Vec<u8>)> {
    let mut all = Vec::new();
    for (tag, keyspace) in store.replicated_keyspaces() {
        for guard in keyspace.iter() {
            let (key, value) = guard.into_inner().unwrap();
            all.push((tag, key.to_vec(), value.to_vec()));
        }
    }
    all
}

fn keys_with(store: &Store, prefix: &str) -> usize {
    store.state.prefix(prefix.as_bytes()).count()
}

fn snapshot_of(store: &Store) -> Vec<u8> {
    let mut out = Vec::new();
    store.write_snapshot(&mut out).unwrap();
    out
}

#[test]
fn a_snapshot_round_trips_into_an_empty_store_and_an_older_one_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let leader = filled(&dir.path().join("leader"), "k", 30, 100);
    let older = snapshot_of(&leader);
    commit(&leader, "k", 31, 100).unwrap();
    let newer = snapshot_of(&leader);

    let wiped = Store::open(&dir.path().join("wiped")).unwrap();
    assert_eq!(
        wiped.install_snapshot(&mut Cursor::new(&newer)).unwrap(),
        31
    );
    assert_eq!(contents(&wiped), contents(&leader));
    assert_eq!(wiped.raft_applied().unwrap(), 31);
    assert_eq!(wiped.outbox_pending(10).unwrap().len(), 3);
    assert!(wiped.is_healthy());

    // A replica already past a snapshot keeps its state.
    assert_eq!(
        wiped.install_snapshot(&mut Cursor::new(&older)).unwrap(),
        31
    );
    assert_eq!(keys_with(&wiped, "k/"), 31);
}

#[test]
fn a_store_larger_than_a_chunk_is_written_out_in_pieces_no_larger() {
    /// Records the largest single write it is asked for.
    #[derive(Default)]
    struct Recording {
        largest: usize,
        total: usize,
    }
    impl Write for Recording {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.largest = self.largest.max(buf.len());
            self.total += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let store = filled(dir.path(), "k", 2_000, 1_000);
    let mut out = Recording::default();
    store.write_snapshot(&mut out).unwrap();
    assert!(
        out.total > 16 * CHUNK,
        "the store ({} bytes) is many chunks",
        out.total
    );
    assert!(
        out.largest <= CHUNK,
        "a write of {} bytes: the export buffered more than a chunk",
        out.largest
    );
}

/// A snapshot source over `bytes` that calls `at_half` with the store being installed each
/// time a pass over it crosses its middle.
struct Watching<'a, F: FnMut(&Store)> {
    bytes: Cursor<&'a [u8]>,
    store: &'a Store,
    crossed: bool,
    at_half: F,
}

impl<F: FnMut(&Store)> Read for Watching<'_, F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.bytes.read(buf)?;
        let half = self.bytes.get_ref().len() as u64 / 2;
        if !self.crossed && self.bytes.position() > half {
            self.crossed = true;
            (self.at_half)(self.store);
        }
        Ok(read)
    }
}

impl<F: FnMut(&Store)> Seek for Watching<'_, F> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.crossed = false;
        self.bytes.seek(to)
    }
}

#[test]
fn an_install_writes_the_store_by_batches_as_it_reads_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let leader = filled(&dir.path().join("leader"), "k", 2_000, 1_000);
    let snapshot = snapshot_of(&leader);
    let wiped = Store::open(&dir.path().join("wiped")).unwrap();
    let mut seen = Vec::new();
    let mut source = Watching {
        bytes: Cursor::new(&snapshot),
        store: &wiped,
        crossed: false,
        at_half: |store: &Store| seen.push(keys_with(store, "k/")),
    };
    wiped
        .install_snapshot_in_batches(&mut source, 64 * 1024)
        .unwrap();
    // Halfway through reading the records it writes, part of them is in the store already:
    // they were not gathered whole before the first write.
    assert!(
        seen.iter().any(|keys| (1..2_000).contains(keys)),
        "keys in the store each time the install was halfway through the snapshot: {seen:?}"
    );
    assert_eq!(contents(&wiped), contents(&leader));
}

#[test]
fn a_snapshot_that_fails_its_check_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let leader = filled(&dir.path().join("leader"), "k", 50, 100);
    let snapshot = snapshot_of(&leader);
    let replica = filled(&dir.path().join("replica"), "old", 20, 100);
    let before = contents(&replica);

    let mut trailing = snapshot.clone();
    trailing.push(0);
    let cut = &snapshot[..snapshot.len() - 3];
    // The second record's key, made to sort before the first: out of order.
    let mut reordered = snapshot.clone();
    let second_key = 12 + 1 + 4 + 8 + 4 + 100 + 1 + 4;
    reordered[second_key..second_key + 8].copy_from_slice(b"k/000000");
    for (bad, what) in [
        (&b"not a snapshot"[..], "not a snapshot"),
        (cut, "cut short"),
        (&trailing, "trailing bytes"),
        (&reordered, "out of order"),
    ] {
        let error = replica.install_snapshot(&mut Cursor::new(bad)).unwrap_err();
        assert!(
            matches!(
                error,
                SnapshotError::NotASnapshot
                    | SnapshotError::Truncated
                    | SnapshotError::TrailingBytes
                    | SnapshotError::OutOfOrder
            ),
            "{what}: {error}"
        );
        assert_eq!(contents(&replica), before, "{what} changed the store");
        assert!(replica.is_healthy());
    }
}

#[test]
fn an_install_cut_short_refuses_writes_across_a_restart_until_it_is_redone() {
    let dir = tempfile::tempdir().unwrap();
    let leader = filled(&dir.path().join("leader"), "k", 500, 1_000);
    let snapshot = snapshot_of(&leader);
    let path = dir.path().join("replica");
    let replica = filled(&path, "old", 20, 100);

    // The install fails halfway through writing (as a crash would stop it).
    struct Failing<'a> {
        bytes: Cursor<&'a [u8]>,
        store: &'a Store,
    }
    impl Read for Failing<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.store.is_installing()
                && self.bytes.position() > self.bytes.get_ref().len() as u64 / 2
            {
                return Err(std::io::Error::other("the disk went away"));
            }
            self.bytes.read(buf)
        }
    }
    impl Seek for Failing<'_> {
        fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
            self.bytes.seek(to)
        }
    }
    let mut failing = Failing {
        bytes: Cursor::new(&snapshot),
        store: &replica,
    };
    assert!(
        replica
            .install_snapshot_in_batches(&mut failing, 16 * 1024)
            .is_err()
    );
    let half = keys_with(&replica, "k/");
    assert!(
        (1..500).contains(&half) && keys_with(&replica, "old/") == 0,
        "half installed: {half} new keys"
    );
    drop(replica);

    // Reopened, it knows it is neither the old state nor the new: it refuses writes and
    // reports itself unhealthy, and claims no applied entry.
    let replica = Store::open(&path).unwrap();
    assert!(!replica.is_healthy());
    assert!(matches!(
        commit(&replica, "k", 501, 10),
        Err(StoreError::Installing)
    ));
    assert_eq!(replica.raft_applied().unwrap(), 0);
    let mut out = Vec::new();
    assert!(replica.write_snapshot(&mut out).is_err());

    // The group's adapter installs the kept snapshot file again on open.
    assert_eq!(
        replica
            .install_snapshot(&mut Cursor::new(&snapshot))
            .unwrap(),
        500
    );
    assert_eq!(contents(&replica), contents(&leader));
    assert!(replica.is_healthy());
    commit(&replica, "k", 501, 10).unwrap();
    drop(replica);
    let replica = Store::open(&path).unwrap();
    assert!(replica.is_healthy());
    assert_eq!(replica.raft_applied().unwrap(), 501);
}

#[test]
fn a_store_that_holds_the_snapshot_already_reads_only_its_header() {
    /// Counts the bytes read.
    struct Counting<'a> {
        bytes: Cursor<&'a [u8]>,
        read: usize,
    }
    impl Read for Counting<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let read = self.bytes.read(buf)?;
            self.read += read;
            Ok(read)
        }
    }
    impl Seek for Counting<'_> {
        fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
            self.bytes.seek(to)
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let store = filled(dir.path(), "k", 1_000, 1_000);
    let snapshot = snapshot_of(&store);
    commit(&store, "k", 1_001, 10).unwrap();
    // What a node does on every open: restore the group's kept snapshot.
    let mut source = Counting {
        bytes: Cursor::new(&snapshot),
        read: 0,
    };
    assert_eq!(store.install_snapshot(&mut source).unwrap(), 1_001);
    assert_eq!(source.read, 12, "magic and applied index only");
    assert_eq!(keys_with(&store, "k/"), 1_001);
}
