//! Partition log throughput: appending 1 MiB batches of 1 KiB records, and reading the log
//! back sequentially in 1 MiB fetches — the broker's produce and consume paths minus the
//! network. Run with
//! `cargo bench -p commerce-bench --bench log`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use commerce_storage::{FlushPolicy, LogConfig, PartitionLog, ReadOptions};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const MIB: usize = 1024 * 1024;
const RECORD: usize = 1024;

/// One valid v2 batch of `len` bytes in total holding `len / RECORD` dummy records
/// (storage never parses records, so their bytes need only be covered by the CRC).
fn batch(len: usize) -> Vec<u8> {
    let records = (len / RECORD) as i32;
    let mut buf = Vec::with_capacity(len);
    buf.extend(0i64.to_be_bytes());
    buf.extend(((len - 12) as i32).to_be_bytes());
    buf.extend((-1i32).to_be_bytes());
    buf.push(2);
    buf.extend(0u32.to_be_bytes());
    buf.extend(0i16.to_be_bytes());
    buf.extend((records - 1).to_be_bytes());
    buf.extend(1_700_000_000_000i64.to_be_bytes());
    buf.extend(1_700_000_000_000i64.to_be_bytes());
    buf.extend((-1i64).to_be_bytes());
    buf.extend((-1i16).to_be_bytes());
    buf.extend((-1i32).to_be_bytes());
    buf.extend(records.to_be_bytes());
    buf.extend((buf.len()..len).map(|i| (i % 251) as u8));
    let crc = crc32c::crc32c(&buf[21..]);
    buf[17..21].copy_from_slice(&crc.to_be_bytes());
    buf
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 128 * MIB as u64,
        retention_bytes: Some(512 * MIB as u64),
        flush: FlushPolicy::Os,
        ..LogConfig::default()
    }
}

fn append(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config()).unwrap();
    let mut group = c.benchmark_group("append");
    for batch_len in [MIB, 16 * 1024] {
        let mut buf = batch(batch_len);
        group.throughput(Throughput::Bytes(batch_len as u64));
        group.bench_function(
            format!("1KiB_records_{}KiB_batches", batch_len / 1024),
            |b| {
                b.iter(|| {
                    // The same buffer every time: append only rewrites baseOffset and epoch.
                    log.append(&mut buf, 1).unwrap();
                    if log.size_bytes() > 640 * MIB as u64 {
                        log.enforce_retention(0).unwrap(); // keep the disk footprint bounded
                    }
                })
            },
        );
    }
    group.finish();
}

fn read(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config()).unwrap();
    let mut group = c.benchmark_group("read");
    for batch_len in [MIB, 16 * 1024] {
        let mut buf = batch(batch_len);
        let start = log.log_end_offset();
        while log.log_end_offset() - start < (256 * MIB / RECORD) as i64 {
            log.append(&mut buf, 1).unwrap();
        }
        let end = log.log_end_offset();
        let options = ReadOptions {
            max_bytes: MIB,
            min_one_batch: true,
            upper_bound: None,
        };
        let mut next = start;
        group.throughput(Throughput::Bytes(MIB as u64));
        group.bench_function(
            format!("sequential_1MiB_fetches_{}KiB_batches", batch_len / 1024),
            |b| {
                b.iter(|| {
                    let read = log.read(next, options).unwrap();
                    // Stored batches carry their assigned offsets; continue after the last one.
                    next += (read.bytes.len() / RECORD) as i64;
                    if next >= end {
                        next = start;
                    }
                    read.bytes
                })
            },
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1)).sample_size(30);
    targets = append, read
}
criterion_main!(benches);
