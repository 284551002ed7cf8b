//! A checker of produce histories: what the producer was told (each acknowledged record and
//! the offset it was acknowledged at) against what a reader finds in the log afterwards.
//!
//! The checker is pure: it knows nothing of clusters or clients, so its verdicts are tested
//! here on hand-made histories. Records are told apart by their value, which the workload
//! makes unique per send. Verdicts:
//!
//! - lost: acknowledged, never read back;
//! - duplicated: a value read more than once (acknowledged or not: with an idempotent
//!   producer no record may be stored twice, retried or not);
//! - misplaced: read back somewhere else than the partition and offset it was acknowledged at;
//! - out of order: two acknowledged records of a partition, one sent before the other, read
//!   back in the opposite order.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::kafka::Record;

/// How many examples of each verdict [`Report`]'s `Display` shows.
const SHOWN: usize = 5;

/// One record of a history: where it was acknowledged or read, and its (unique) value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub partition: i32,
    pub offset: i64,
    pub value: String,
}

impl Entry {
    pub fn new(partition: i32, offset: i64, value: impl Into<String>) -> Entry {
        Entry {
            partition,
            offset,
            value: value.into(),
        }
    }
}

impl From<&Record> for Entry {
    fn from(record: &Record) -> Entry {
        Entry::new(
            record.partition,
            record.offset,
            String::from_utf8_lossy(&record.value),
        )
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} at {}/{}", self.value, self.partition, self.offset)
    }
}

/// A value read back at more than one position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    pub value: String,
    /// (partition, offset) of every copy, in read order.
    pub positions: Vec<(i32, i64)>,
}

/// An acknowledged record read back elsewhere than where it was acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misplaced {
    pub value: String,
    pub acked: (i32, i64),
    /// Where its first copy was read.
    pub read: (i32, i64),
}

/// Two acknowledged records of one partition read back against their send order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfOrder {
    pub partition: i32,
    /// The record sent first, at the position it was read.
    pub earlier: Entry,
    /// The record sent next, read at or before `earlier`.
    pub later: Entry,
}

/// The verdicts on one history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub acked: usize,
    pub read: usize,
    /// Acknowledged records read back nowhere, as acknowledged.
    pub lost: Vec<Entry>,
    pub duplicated: Vec<Duplicate>,
    pub misplaced: Vec<Misplaced>,
    pub out_of_order: Vec<OutOfOrder>,
}

impl Report {
    /// No verdict against the log.
    pub fn is_clean(&self) -> bool {
        self.lost.is_empty()
            && self.duplicated.is_empty()
            && self.misplaced.is_empty()
            && self.out_of_order.is_empty()
    }
}

/// Checks `acked` (each partition's acknowledged records in the order they were sent; the
/// partitions may be interleaved) against `read` (every record read back, any order).
pub fn check(acked: &[Entry], read: &[Entry]) -> Report {
    // Every position of every value read, in read order; a BTreeMap so that the duplicates
    // are reported in a stable order.
    let mut positions: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
    for entry in read {
        positions
            .entry(entry.value.as_str())
            .or_default()
            .push((entry.partition, entry.offset));
    }
    let duplicated = positions
        .iter()
        .filter(|(_, at)| at.len() > 1)
        .map(|(value, at)| Duplicate {
            value: (*value).to_string(),
            positions: at.clone(),
        })
        .collect();

    let mut lost = Vec::new();
    let mut misplaced = Vec::new();
    let mut out_of_order = Vec::new();
    // Per partition, the last acknowledged record found there, as read.
    let mut previous: HashMap<i32, Entry> = HashMap::new();
    for ack in acked {
        let Some(&(partition, offset)) =
            positions.get(ack.value.as_str()).and_then(|at| at.first())
        else {
            lost.push(ack.clone());
            continue;
        };
        if (partition, offset) != (ack.partition, ack.offset) {
            misplaced.push(Misplaced {
                value: ack.value.clone(),
                acked: (ack.partition, ack.offset),
                read: (partition, offset),
            });
        }
        if partition != ack.partition {
            // Not in its partition at all: there is no order within it to judge.
            continue;
        }
        let found = Entry::new(partition, offset, ack.value.clone());
        if let Some(earlier) = previous.get(&partition)
            && earlier.offset >= offset
        {
            out_of_order.push(OutOfOrder {
                partition,
                earlier: earlier.clone(),
                later: found.clone(),
            });
        }
        previous.insert(partition, found);
    }
    Report {
        acked: acked.len(),
        read: read.len(),
        lost,
        duplicated,
        misplaced,
        out_of_order,
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} acked, {} read: {} lost, {} duplicated, {} misplaced, {} out of order",
            self.acked,
            self.read,
            self.lost.len(),
            self.duplicated.len(),
            self.misplaced.len(),
            self.out_of_order.len()
        )?;
        for entry in self.lost.iter().take(SHOWN) {
            writeln!(f, "  lost: {entry} (as acked)")?;
        }
        for duplicate in self.duplicated.iter().take(SHOWN) {
            writeln!(
                f,
                "  duplicated: {:?} at {:?}",
                duplicate.value, duplicate.positions
            )?;
        }
        for wrong in self.misplaced.iter().take(SHOWN) {
            writeln!(
                f,
                "  misplaced: {:?} acked at {}/{}, read at {}/{}",
                wrong.value, wrong.acked.0, wrong.acked.1, wrong.read.0, wrong.read.1
            )?;
        }
        for pair in self.out_of_order.iter().take(SHOWN) {
            writeln!(
                f,
                "  out of order in partition {}: {} was sent before {}",
                pair.partition, pair.earlier, pair.later
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(list: &[(i32, i64, &str)]) -> Vec<Entry> {
        list.iter()
            .map(|(partition, offset, value)| Entry::new(*partition, *offset, *value))
            .collect()
    }

    #[test]
    fn a_history_read_back_as_acked_is_clean() {
        let acked = entries(&[(0, 0, "a"), (1, 0, "x"), (0, 1, "b"), (1, 1, "y")]);
        // "c" was sent but its acknowledgement never came: stored unacked records are fine.
        let read = entries(&[
            (0, 0, "a"),
            (0, 1, "b"),
            (0, 2, "c"),
            (1, 0, "x"),
            (1, 1, "y"),
        ]);
        let report = check(&acked, &read);
        assert!(report.is_clean(), "{report}");
        assert_eq!((report.acked, report.read), (4, 5));
        assert!(report.to_string().contains("0 lost, 0 duplicated"));
    }

    #[test]
    fn an_acked_record_missing_from_the_log_is_lost() {
        let acked = entries(&[(0, 0, "a"), (0, 1, "b"), (0, 2, "c")]);
        let read = entries(&[(0, 0, "a"), (0, 2, "c")]);
        let report = check(&acked, &read);
        assert_eq!(report.lost, entries(&[(0, 1, "b")]));
        assert!(report.duplicated.is_empty());
        assert!(report.misplaced.is_empty());
        assert!(report.out_of_order.is_empty());
        assert!(!report.is_clean());
        assert!(report.to_string().contains("1 lost"), "{report}");
    }

    #[test]
    fn a_record_stored_twice_is_duplicated() {
        let acked = entries(&[(0, 0, "a"), (0, 1, "b")]);
        // A retry of "a" stored again after "b".
        let read = entries(&[(0, 0, "a"), (0, 1, "b"), (0, 2, "a")]);
        let report = check(&acked, &read);
        assert_eq!(
            report.duplicated,
            vec![Duplicate {
                value: "a".to_string(),
                positions: vec![(0, 0), (0, 2)],
            }]
        );
        assert!(report.lost.is_empty());
        assert!(report.misplaced.is_empty());
        assert!(report.out_of_order.is_empty());
        assert!(!report.is_clean());
    }

    #[test]
    fn an_unacked_record_stored_twice_is_duplicated_too() {
        let acked = entries(&[(0, 0, "a")]);
        let read = entries(&[(0, 0, "a"), (0, 1, "b"), (0, 2, "b")]);
        let report = check(&acked, &read);
        assert_eq!(report.duplicated.len(), 1);
        assert_eq!(report.duplicated[0].value, "b");
    }

    #[test]
    fn records_read_against_their_send_order_are_out_of_order() {
        // Sent a, b, c; the log holds b before a.
        let acked = entries(&[(2, 0, "a"), (2, 1, "b"), (2, 2, "c")]);
        let read = entries(&[(2, 0, "b"), (2, 1, "a"), (2, 2, "c")]);
        let report = check(&acked, &read);
        assert_eq!(
            report.out_of_order,
            vec![OutOfOrder {
                partition: 2,
                earlier: Entry::new(2, 1, "a"),
                later: Entry::new(2, 0, "b"),
            }]
        );
        // Neither is where it was acknowledged either.
        assert_eq!(report.misplaced.len(), 2);
        assert!(report.lost.is_empty());
        assert!(report.duplicated.is_empty());
        assert!(report.to_string().contains("1 out of order"), "{report}");
    }

    #[test]
    fn order_is_judged_per_partition() {
        // Partition 1's offsets restart at 0: that is no reordering of partition 0.
        let acked = entries(&[(0, 5, "a"), (1, 0, "x"), (0, 6, "b")]);
        let read = entries(&[(0, 5, "a"), (0, 6, "b"), (1, 0, "x")]);
        assert!(check(&acked, &read).is_clean());
    }

    #[test]
    fn a_record_read_at_another_offset_is_misplaced() {
        let acked = entries(&[(0, 0, "a"), (0, 1, "b")]);
        let read = entries(&[(0, 0, "a"), (0, 1, "junk"), (0, 2, "b")]);
        let report = check(&acked, &read);
        assert_eq!(
            report.misplaced,
            vec![Misplaced {
                value: "b".to_string(),
                acked: (0, 1),
                read: (0, 2),
            }]
        );
        assert!(report.lost.is_empty());
        assert!(report.out_of_order.is_empty());
        assert!(!report.is_clean());
    }

    #[test]
    fn a_record_read_in_another_partition_is_misplaced_not_reordered() {
        let acked = entries(&[(0, 0, "a"), (0, 1, "b")]);
        let read = entries(&[(0, 0, "a"), (1, 0, "b")]);
        let report = check(&acked, &read);
        assert_eq!(report.misplaced.len(), 1);
        assert_eq!(report.misplaced[0].read, (1, 0));
        assert!(report.out_of_order.is_empty());
    }
}
