//! `commerce bench transactions`: transactional produce against any Kafka broker.
//!
//! One transactional producer (librdkafka: idempotent, acks=all) runs `--transactions`
//! transactions one after the other, each of `--records-per-txn` records spread round robin
//! over the topic's partitions, and times each from its begin to the return of its commit:
//! what an application waits for before the records are visible to read_committed consumers.
//! That time is the coordinator's work (AddPartitionsToTxn, EndTxn, the markers on every
//! partition) plus the records' own produce, so it shows what transactions cost over plain
//! acks=all produce.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::bench::{MIB, Progress, ensure_topic, filler};
use super::connection::{ConnectionArgs, REQUEST_TIMEOUT};

/// How long one transaction's init, commit or abort may take before the run fails.
const TXN_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, clap::Args)]
pub struct BenchTxnArgs {
    #[arg(long, short = 't')]
    pub topic: String,
    /// Transactions to run, one after the other.
    #[arg(long, short = 'n', default_value_t = 1_000)]
    pub transactions: u64,
    /// Records in each transaction, spread round robin over the partitions.
    #[arg(long, default_value_t = 10)]
    pub records_per_txn: u32,
    /// Value size in bytes (records have no key).
    #[arg(long, short = 's', default_value_t = 1024)]
    pub record_size: usize,
    /// The producer's transactional.id.
    #[arg(long, default_value = "commerce-bench-transactions")]
    pub transactional_id: String,
    /// Create the topic with this many partitions first, if it does not exist.
    #[arg(long)]
    pub partitions: Option<i32>,
}

pub async fn run(connection: ConnectionArgs, args: BenchTxnArgs) -> anyhow::Result<()> {
    if let Some(partitions) = args.partitions {
        ensure_topic(&connection, &args.topic, partitions).await?;
    }
    tokio::task::spawn_blocking(move || bench_transactions(&connection, &args))
        .await
        .context("the bench task panicked")?
}

/// Queues `record`, serving delivery reports while librdkafka's queue is full.
fn send(producer: &BaseProducer, mut record: BaseRecord<'_, [u8], [u8]>) -> Result<(), KafkaError> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                producer.poll(Duration::from_millis(10));
                record = back;
            }
            Err((error, _)) => return Err(error),
        }
    }
}

fn bench_transactions(connection: &ConnectionArgs, args: &BenchTxnArgs) -> anyhow::Result<()> {
    // A BaseProducer, polled here: delivery reports are served on this thread.
    let producer: BaseProducer = connection
        .client_config(&[
            ("transactional.id", &args.transactional_id),
            ("enable.idempotence", "true"),
            ("linger.ms", "0"),
        ])
        .create()
        .context("cannot create the Kafka producer")?;
    let partitions = producer
        .client()
        .fetch_metadata(Some(&args.topic), REQUEST_TIMEOUT)
        .with_context(|| format!("cannot read the metadata of {}", args.topic))?
        .topics()
        .first()
        .map_or(0, |topic| topic.partitions().len());
    let partitions = i32::try_from(partitions).unwrap_or(i32::MAX);
    if partitions == 0 {
        bail!(
            "topic {} does not exist (create it, or pass --partitions)",
            args.topic
        );
    }
    producer
        .init_transactions(TXN_TIMEOUT)
        .context("cannot initialize the transactional producer")?;

    let payload = filler(args.record_size);
    let committed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let record_bytes = (args.record_size as u64) * u64::from(args.records_per_txn);
    let progress = Progress::start("committed", {
        let committed = committed.clone();
        let per_txn = u64::from(args.records_per_txn);
        move || {
            let done = committed.load(std::sync::atomic::Ordering::Relaxed);
            (done * per_txn, done * record_bytes)
        }
    });
    let mut latency = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)
        .context("cannot create the latency histogram")?;
    let started = Instant::now();
    let mut next_partition = 0;
    let result = (|| -> anyhow::Result<()> {
        for _ in 0..args.transactions {
            let begun = Instant::now();
            producer
                .begin_transaction()
                .context("cannot begin a transaction")?;
            for _ in 0..args.records_per_txn {
                let record = BaseRecord::<[u8], [u8]>::to(&args.topic)
                    .partition(next_partition)
                    .payload(payload.as_slice());
                next_partition = (next_partition + 1) % partitions;
                send(&producer, record)
                    .with_context(|| format!("cannot produce to {}", args.topic))?;
            }
            // Deliver first, polling briefly: rust-rdkafka's flush (which the commit calls)
            // polls in steps of 100 ms that each run to their end, so a commit with
            // records in flight would wait 100 ms whatever the broker does.
            let deadline = Instant::now() + TXN_TIMEOUT;
            while producer.in_flight_count() > 0 && Instant::now() < deadline {
                producer.poll(Duration::from_millis(1));
            }
            producer
                .commit_transaction(TXN_TIMEOUT)
                .context("cannot commit a transaction")?;
            let micros = u64::try_from(begun.elapsed().as_micros()).unwrap_or(u64::MAX);
            latency.saturating_record(micros);
            committed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    })();
    let elapsed = started.elapsed();
    progress.stop();

    let done = committed.load(std::sync::atomic::Ordering::Relaxed);
    let records = done * u64::from(args.records_per_txn);
    let seconds = elapsed.as_secs_f64().max(f64::EPSILON);
    println!(
        "{done} transactions of {} records committed in {seconds:.2} s: {:.1} transactions/s, \
         {:.0} records/s, {:.2} MiB/s (record size {} B, {partitions} partitions)",
        args.records_per_txn,
        done as f64 / seconds,
        records as f64 / seconds,
        (done * record_bytes) as f64 / MIB / seconds,
        args.record_size,
    );
    if !latency.is_empty() {
        let ms = |micros: u64| micros as f64 / 1_000.0;
        println!(
            "transaction latency (begin to commit): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, \
             mean {:.2} ms",
            ms(latency.value_at_quantile(0.50)),
            ms(latency.value_at_quantile(0.99)),
            ms(latency.max()),
            latency.mean() / 1_000.0,
        );
    }
    result
}
