//! `commerce bench produce|consume`: an end-to-end load generator against any Kafka broker
//! (`fetch`, `http`, `orders` and `transactions` are in their own files).
//!
//! Produce: a `ThreadedProducer` tuned for throughput sends `--records` records of
//! `--record-size` bytes as fast as librdkafka accepts them; each record carries its send
//! time as its delivery opaque, so the delivery callback measures produce latency (send to
//! acknowledgement) into an HDR histogram. Consume: a `BaseConsumer` assigned to every
//! partition from the beginning, counting records and bytes.
//!
//! Both print a progress line every second (to stderr) and a summary at the end (to stdout).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::connection::{ConnectionArgs, REQUEST_TIMEOUT};
use super::consume::ASSIGN_GROUP_ID;
use super::produce::{Acks, parse_acks, send_waiting_for_room};

pub(super) const MIB: f64 = 1024.0 * 1024.0;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,

    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Produce records as fast as possible and measure throughput and latency.
    Produce(BenchProduceArgs),
    /// Read a topic from the beginning as fast as possible and measure throughput.
    Consume(BenchConsumeArgs),
    /// Read one partition with raw Fetch requests (no record decoding): the broker's side.
    Fetch(super::bench_fetch::BenchFetchArgs),
    /// Load the REST API through the gateway (catalog reads or product writes).
    Http(super::bench_http::BenchHttpArgs),
    /// Place orders through the gateway and time them from POST to confirmed.
    Orders(super::bench_orders::BenchOrdersArgs),
    /// Run transactions one after the other and time each from begin to committed.
    Transactions(super::bench_txn::BenchTxnArgs),
}

#[derive(Debug, clap::Args)]
pub struct BenchProduceArgs {
    #[arg(long, short = 't')]
    pub topic: String,
    /// Records to send.
    #[arg(long, short = 'n', default_value_t = 1_000_000)]
    pub records: u64,
    /// Value size in bytes (records have no key).
    #[arg(long, short = 's', default_value_t = 1024)]
    pub record_size: usize,
    /// Acknowledgements to wait for: all (-1), 1 or 0.
    #[arg(long, default_value = "1", value_parser = parse_acks)]
    pub acks: Acks,
    /// librdkafka batch.size in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub batch_size: u64,
    /// librdkafka linger.ms.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// Compression codec: none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// Create the topic with this many partitions first, if it does not exist.
    #[arg(long)]
    pub partitions: Option<i32>,
    /// Send at most this many records per second (default: as fast as the client takes
    /// them). At a rate the brokers keep up with, the latency figures are the brokers'
    /// (replication included) rather than time queued in the client.
    #[arg(long)]
    pub rate: Option<u64>,
}

#[derive(Debug, clap::Args)]
pub struct BenchConsumeArgs {
    #[arg(long, short = 't')]
    pub topic: String,
    /// Stop after this many records (default: at the end of every partition).
    #[arg(long, short = 'n')]
    pub records: Option<u64>,
    /// Give up when no record arrives for this long.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Produce(bench) => {
            if let Some(partitions) = bench.partitions {
                ensure_topic(&args.connection, &bench.topic, partitions).await?;
            }
            let connection = args.connection;
            tokio::task::spawn_blocking(move || bench_produce(&connection, &bench))
                .await
                .context("the bench task panicked")?
        }
        BenchCommand::Fetch(bench) => super::bench_fetch::run(&args.connection, &bench).await,
        BenchCommand::Http(bench) => super::bench_http::run(bench).await,
        BenchCommand::Orders(bench) => super::bench_orders::run(bench).await,
        BenchCommand::Transactions(bench) => super::bench_txn::run(args.connection, bench).await,
        BenchCommand::Consume(bench) => {
            let connection = args.connection;
            tokio::task::spawn_blocking(move || bench_consume(&connection, &bench))
                .await
                .context("the bench task panicked")?
        }
    }
}

/// Creates `topic` with `partitions` partitions unless it already exists.
pub(super) async fn ensure_topic(
    connection: &ConnectionArgs,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = connection
        .client_config(&[])
        .create()
        .context("cannot create the Kafka admin client")?;
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
    let options = AdminOptions::new().request_timeout(Some(REQUEST_TIMEOUT));
    let results = admin
        .create_topics([&new_topic], &options)
        .await
        .with_context(|| format!("cannot create topic {topic}"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => bail!("cannot create topic {topic}: {code}"),
        }
    }
    Ok(())
}

/// What the delivery callback measures, shared with the progress reporter.
struct ProduceStats {
    started: Instant,
    acked: AtomicU64,
    acked_bytes: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<KafkaError>>,
    /// Produce latency in microseconds.
    latency: Mutex<Histogram<u64>>,
}

impl ClientContext for ProduceStats {}

impl ProducerContext for ProduceStats {
    /// The send time, in nanoseconds since `started`.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_at_nanos: usize) {
        match result {
            Ok(message) => {
                let now = self.started.elapsed().as_nanos();
                let micros = now.saturating_sub(sent_at_nanos as u128) / 1_000;
                if let Ok(mut latency) = self.latency.lock() {
                    latency.saturating_record(u64::try_from(micros).unwrap_or(u64::MAX));
                }
                self.acked.fetch_add(1, Ordering::Relaxed);
                let bytes = message.payload_len() + message.key().map_or(0, <[u8]>::len);
                self.acked_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
            }
            Err((error, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = self.first_error.lock() {
                    first.get_or_insert_with(|| error.clone());
                }
            }
        }
    }
}

fn bench_produce(connection: &ConnectionArgs, args: &BenchProduceArgs) -> anyhow::Result<()> {
    let batch_size = args.batch_size.to_string();
    let linger_ms = args.linger_ms.to_string();
    let config = connection.client_config(&[
        ("acks", args.acks.as_config()),
        ("linger.ms", &linger_ms),
        ("batch.size", &batch_size),
        ("compression.type", &args.compression),
        // Let librdkafka hold plenty in its queue (1 GiB, a million records) so the sender
        // never stalls on a full local queue while batches are in flight.
        ("queue.buffering.max.kbytes", "1048576"),
        ("queue.buffering.max.messages", "1000000"),
        ("message.timeout.ms", "120000"),
    ]);
    let stats = ProduceStats {
        started: Instant::now(),
        acked: AtomicU64::new(0),
        acked_bytes: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        first_error: Mutex::new(None),
        latency: Mutex::new(
            Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .context("cannot create the latency histogram")?,
        ),
    };
    let producer: ThreadedProducer<ProduceStats> = config
        .create_with_context(stats)
        .context("cannot create the Kafka producer")?;

    let payload = filler(args.record_size);
    let progress = Progress::start("produced", {
        let producer = producer.clone();
        move || {
            let stats = producer.context();
            (
                stats.acked.load(Ordering::Relaxed),
                stats.acked_bytes.load(Ordering::Relaxed),
            )
        }
    });
    let started = producer.context().started;
    let mut send_error = None;
    let pace = args
        .rate
        .filter(|rate| *rate > 0)
        .map(|rate| Duration::from_secs(1) / u32::try_from(rate).unwrap_or(u32::MAX));
    for sent in 0..args.records {
        if let Some(pace) = pace {
            // Sleep until this record's slot; a slow client catches up without bursting.
            let due = pace.saturating_mul(u32::try_from(sent).unwrap_or(u32::MAX));
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let sent_at = usize::try_from(started.elapsed().as_nanos()).unwrap_or(usize::MAX);
        let record = BaseRecord::<[u8], [u8], usize>::with_opaque_to(&args.topic, sent_at)
            .payload(payload.as_slice());
        if let Err(error) = send_waiting_for_room(&producer, record) {
            send_error = Some(error);
            break;
        }
        if producer.context().failed.load(Ordering::Relaxed) > 0 {
            break;
        }
    }
    let flushed = producer.flush(Duration::from_secs(130));
    let elapsed = started.elapsed();
    progress.stop();

    let stats = producer.context();
    let acked = stats.acked.load(Ordering::Relaxed);
    let bytes = stats.acked_bytes.load(Ordering::Relaxed);
    let seconds = elapsed.as_secs_f64().max(f64::EPSILON);
    println!(
        "{acked} records produced in {seconds:.2} s: {:.0} records/s, {:.2} MiB/s (record size {} B, acks={})",
        acked as f64 / seconds,
        bytes as f64 / MIB / seconds,
        args.record_size,
        args.acks.as_config(),
    );
    if let Ok(latency) = stats.latency.lock()
        && !latency.is_empty()
    {
        let ms = |micros: u64| micros as f64 / 1_000.0;
        println!(
            "produce latency: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms, mean {:.2} ms",
            ms(latency.value_at_quantile(0.50)),
            ms(latency.value_at_quantile(0.99)),
            ms(latency.value_at_quantile(0.999)),
            ms(latency.max()),
            latency.mean() / 1_000.0,
        );
    }
    if let Some(error) = send_error {
        bail!("cannot produce to {}: {error}", args.topic);
    }
    let failed = stats.failed.load(Ordering::Relaxed);
    if failed > 0 {
        let first = stats
            .first_error
            .lock()
            .ok()
            .and_then(|first| first.as_ref().map(ToString::to_string))
            .unwrap_or_default();
        bail!("{failed} records were not delivered (first error: {first})");
    }
    flushed.with_context(|| format!("only {acked} of {} records were acknowledged", args.records))
}

fn bench_consume(connection: &ConnectionArgs, args: &BenchConsumeArgs) -> anyhow::Result<()> {
    let consumer: BaseConsumer = connection
        .client_config(&[
            ("group.id", ASSIGN_GROUP_ID),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "true"),
            ("auto.offset.reset", "earliest"),
            ("fetch.max.bytes", "52428800"),
            ("max.partition.fetch.bytes", "8388608"),
            ("fetch.wait.max.ms", "100"),
            ("queued.min.messages", "1000000"),
            ("queued.max.messages.kbytes", "1048576"),
        ])
        .create()
        .context("cannot create the Kafka consumer")?;
    let metadata = consumer
        .fetch_metadata(Some(&args.topic), REQUEST_TIMEOUT)
        .context("cannot fetch cluster metadata")?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|topic| topic.name() == args.topic && topic.error().is_none())
        .flat_map(|topic| topic.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        bail!("topic {} does not exist", args.topic);
    }
    let mut assignment = TopicPartitionList::new();
    for &partition in &partitions {
        assignment
            .add_partition_offset(&args.topic, partition, Offset::Beginning)
            .context("cannot build the assignment")?;
    }
    consumer
        .assign(&assignment)
        .context("cannot assign partitions")?;

    let counters = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let progress = Progress::start("consumed", {
        let counters = Arc::clone(&counters);
        move || {
            (
                counters.0.load(Ordering::Relaxed),
                counters.1.load(Ordering::Relaxed),
            )
        }
    });
    let started = Instant::now();
    let idle_timeout = Duration::from_millis(args.timeout_ms);
    let mut last_record = Instant::now();
    let mut at_end = std::collections::HashSet::new();
    let (mut records, mut bytes) = (0_u64, 0_u64);
    let outcome = loop {
        if args.records.is_some_and(|wanted| records >= wanted) {
            break Ok(());
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                at_end.remove(&message.partition());
                last_record = Instant::now();
                records += 1;
                bytes += (message.payload_len() + message.key().map_or(0, <[u8]>::len)) as u64;
                counters.0.store(records, Ordering::Relaxed);
                counters.1.store(bytes, Ordering::Relaxed);
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                at_end.insert(partition);
                if args.records.is_none() && at_end.len() >= partitions.len() {
                    break Ok(());
                }
            }
            Some(Err(error)) => eprintln!("warning: {error}"),
            None => {}
        }
        if last_record.elapsed() >= idle_timeout {
            break Err(anyhow::anyhow!(
                "no record for {} ms after {records} records",
                args.timeout_ms
            ));
        }
    };
    let elapsed = started.elapsed();
    progress.stop();
    let seconds = elapsed.as_secs_f64().max(f64::EPSILON);
    println!(
        "{records} records consumed in {seconds:.2} s: {:.0} records/s, {:.2} MiB/s ({} partitions)",
        records as f64 / seconds,
        bytes as f64 / MIB / seconds,
        partitions.len(),
    );
    outcome
}

/// A background thread printing, once a second, the rate since the previous line.
pub(super) struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    /// `sample` returns the running totals (records, bytes).
    pub(super) fn start(
        verb: &'static str,
        sample: impl Fn() -> (u64, u64) + Send + 'static,
    ) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = Arc::clone(&stop);
            move || {
                let mut last = (Instant::now(), 0_u64, 0_u64);
                while !stop.load(Ordering::Relaxed) {
                    // Sleep in short steps so `stop` is honoured promptly.
                    for _ in 0..10 {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    let (records, bytes) = sample();
                    let now = Instant::now();
                    let seconds = now.duration_since(last.0).as_secs_f64().max(f64::EPSILON);
                    eprintln!(
                        "{records} records {verb}, {:.0} records/s, {:.2} MiB/s",
                        records.saturating_sub(last.1) as f64 / seconds,
                        bytes.saturating_sub(last.2) as f64 / MIB / seconds,
                    );
                    last = (now, records, bytes);
                }
            }
        });
        Progress {
            stop,
            thread: Some(thread),
        }
    }

    pub(super) fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // A panicked reporter only loses progress lines; the summary still prints.
            let _ = thread.join();
        }
    }
}

/// A record value: bytes from a xorshift generator, so compression (when chosen) has
/// realistic work to do rather than a run of zeros.
pub(super) fn filler(size: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}
