//! `commerce produce TOPIC`: stdin lines become records, as `kcat -P` does.
//!
//! With `--key-separator`, the part of a line before the first separator is the key and the
//! rest the value; a line without the separator is a value with no key. Lines are bytes, not
//! necessarily UTF-8. At EOF the producer is flushed and the command fails unless every
//! record was acknowledged, so a zero exit status means "all of stdin is in the log".

use std::io::BufRead;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};

use super::connection::ConnectionArgs;

/// How long a record may wait for its acknowledgement (librdkafka's `message.timeout.ms`,
/// default five minutes, is long for an interactive tool). Override with -X.
const DELIVERY_TIMEOUT_MS: &str = "30000";

#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,

    /// Topic to produce to.
    pub topic: String,

    /// Split each line at the first SEP: key before, value after.
    #[arg(long, short = 'K', value_name = "SEP")]
    pub key_separator: Option<String>,

    /// Produce to this partition instead of letting the partitioner choose.
    #[arg(long, short = 'p')]
    pub partition: Option<i32>,

    /// Acknowledgements to wait for: all (-1), 1 or 0.
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    pub acks: Acks,
}

/// The producer's `acks` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    All,
    Leader,
    None,
}

impl Acks {
    pub fn as_config(self) -> &'static str {
        match self {
            Acks::All => "all",
            Acks::Leader => "1",
            Acks::None => "0",
        }
    }
}

pub fn parse_acks(input: &str) -> Result<Acks, String> {
    match input {
        "all" | "-1" => Ok(Acks::All),
        "1" => Ok(Acks::Leader),
        "0" => Ok(Acks::None),
        other => Err(format!("acks must be all, -1, 1 or 0, not `{other}`")),
    }
}

/// Counts acknowledgements and keeps the first failure, for the final report.
#[derive(Default)]
struct DeliveryTally {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<KafkaError>>,
}

impl ClientContext for DeliveryTally {}

impl ProducerContext for DeliveryTally {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
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

pub async fn run(args: ProduceArgs) -> anyhow::Result<()> {
    // librdkafka's producer is callback-driven and stdin is blocking: run it all on a
    // blocking thread rather than stall the async runtime.
    tokio::task::spawn_blocking(move || produce(&args))
        .await
        .context("the produce task panicked")?
}

fn produce(args: &ProduceArgs) -> anyhow::Result<()> {
    let config = args.connection.client_config(&[
        ("acks", args.acks.as_config()),
        ("message.timeout.ms", DELIVERY_TIMEOUT_MS),
    ]);
    // Every record either succeeds or fails within message.timeout.ms, so a flush a little
    // longer than that sees the fate of all of them.
    let delivery_timeout_ms = config
        .get("message.timeout.ms")
        .and_then(|value| value.parse::<u64>().ok())
        .unwrap_or(300_000);
    let producer: ThreadedProducer<DeliveryTally> = config
        .create_with_context(DeliveryTally::default())
        .context("cannot create the Kafka producer")?;

    let separator = args.key_separator.as_deref().map(str::as_bytes);
    let mut sent: u64 = 0;
    let stdin = std::io::stdin().lock();
    for line in stdin.split(b'\n') {
        let line = line.context("cannot read stdin")?;
        let (key, value) = match separator.and_then(|sep| split_once(&line, sep)) {
            Some((key, value)) => (Some(key), value),
            None => (None, line.as_slice()),
        };
        let mut record = BaseRecord::<[u8], [u8]>::to(&args.topic).payload(value);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(partition) = args.partition {
            record = record.partition(partition);
        }
        send_waiting_for_room(&producer, record)
            .with_context(|| format!("cannot produce to {}", args.topic))?;
        sent += 1;
    }

    let flushed = producer.flush(Duration::from_millis(delivery_timeout_ms + 5_000));
    let tally = producer.context();
    let delivered = tally.delivered.load(Ordering::Relaxed);
    let failed = tally.failed.load(Ordering::Relaxed);
    if failed > 0 {
        let first = tally
            .first_error
            .lock()
            .ok()
            .and_then(|first| first.as_ref().map(ToString::to_string))
            .unwrap_or_default();
        bail!(
            "{failed} of {sent} records were not delivered to {} (first error: {first})",
            args.topic
        );
    }
    if let Err(error) = flushed {
        bail!(
            "only {delivered} of {sent} records were acknowledged by {} before the flush gave up: {error}",
            args.topic
        );
    }
    eprintln!("produced {delivered} records to {}", args.topic);
    Ok(())
}

/// Sends a record, waiting while librdkafka's local queue is full.
pub(crate) fn send_waiting_for_room<'a, C>(
    producer: &ThreadedProducer<C>,
    mut record: BaseRecord<'a, [u8], [u8], C::DeliveryOpaque>,
) -> Result<(), KafkaError>
where
    C: ProducerContext + 'static,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                record = returned;
                // The producer's own thread serves delivery reports; give it a moment to
                // drain the queue.
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((error, _)) => return Err(error),
        }
    }
}

/// Splits `line` at the first occurrence of `separator`.
fn split_once<'a>(line: &'a [u8], separator: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    if separator.is_empty() {
        return None;
    }
    let at = line
        .windows(separator.len())
        .position(|window| window == separator)?;
    Some((line.get(..at)?, line.get(at + separator.len()..)?))
}

#[cfg(test)]
mod tests {
    use super::{Acks, parse_acks, split_once};

    #[test]
    fn a_line_splits_at_the_first_separator() {
        assert_eq!(split_once(b"k:v:w", b":"), Some((&b"k"[..], &b"v:w"[..])));
        assert_eq!(split_once(b"k::v", b"::"), Some((&b"k"[..], &b"v"[..])));
        assert_eq!(split_once(b":v", b":"), Some((&b""[..], &b"v"[..])));
        assert_eq!(split_once(b"no separator", b":"), None);
        assert_eq!(split_once(b"k:v", b""), None);
    }

    #[test]
    fn acks_accepts_kafka_spellings() {
        assert_eq!(parse_acks("all"), Ok(Acks::All));
        assert_eq!(parse_acks("-1"), Ok(Acks::All));
        assert_eq!(parse_acks("1"), Ok(Acks::Leader));
        assert_eq!(parse_acks("0"), Ok(Acks::None));
        assert!(parse_acks("2").is_err());
    }
}
