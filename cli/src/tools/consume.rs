//! `commerce consume TOPIC`: print records, as `kcat -C` does.
//!
//! Records are read by assigning partitions directly (no consumer group, nothing committed):
//! all of the topic's partitions, or the one named by `--partition`, from the end, the
//! beginning or a given offset. With `--group` the tool is a member of that consumer group
//! instead: it gets its partitions from the group, starts after the group's committed offsets
//! and commits what it printed (every 5 s and when it exits). Everything after `open` is
//! shared by both sources.
//!
//! Each record is printed through a format (kcat's `-f` vocabulary): by default the value,
//! or `key<SEP>value` with `--key-separator`. Keys and values are written as raw bytes.

use std::collections::HashSet;
use std::io::{self, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::connection::{ConnectionArgs, REQUEST_TIMEOUT};

/// The group id librdkafka requires of a consumer that is assigned partitions directly.
pub(crate) const ASSIGN_GROUP_ID: &str = "commerce-cli";

/// How long one poll may block; bounds how late an idle timeout or a flush of stdout is.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,

    /// Topic to consume from.
    pub topic: String,

    /// Start at the earliest offset (default: only records produced from now on).
    #[arg(long, conflicts_with = "offset")]
    pub from_beginning: bool,

    /// Consume only this partition (default: all).
    #[arg(long, short = 'p')]
    pub partition: Option<i32>,

    /// Start at this offset; a negative value -N starts N records before the end.
    #[arg(long, short = 'o', allow_negative_numbers = true)]
    pub offset: Option<i64>,

    /// Consume as a member of this consumer group (partitions from the group, offsets
    /// committed); --from-beginning then applies only where the group has no commit.
    #[arg(long, short = 'g', conflicts_with_all = ["partition", "offset"])]
    pub group: Option<String>,

    /// Exit after this many records.
    #[arg(long, short = 'n')]
    pub count: Option<u64>,

    /// Exit when no record arrives for this long (an error if --count was not reached).
    #[arg(long)]
    pub timeout_ms: Option<u64>,

    /// Exit once every partition has been read to its end.
    #[arg(long, short = 'e')]
    pub exit_at_end: bool,

    /// Print `key<SEP>value` instead of the value alone.
    #[arg(long, short = 'K', value_name = "SEP")]
    pub key_separator: Option<String>,

    /// Output format: %t topic, %p partition, %o offset, %k key, %v value, %T timestamp (ms),
    /// %K key length, %S value length, %% a percent sign; \n \t \r \\ escapes.
    #[arg(long, short = 'f', conflicts_with = "key_separator")]
    pub format: Option<String>,
}

/// Where the records come from.
enum Source {
    /// Fixed partitions from a fixed starting point; no group, no commits.
    Assign { partitions: Vec<i32>, start: Offset },
    /// A consumer group's share of the topic, from the group's committed offsets.
    Group,
}

pub async fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    // BaseConsumer is a blocking poll loop and stdout is blocking: keep both off the runtime.
    tokio::task::spawn_blocking(move || consume(&args))
        .await
        .context("the consume task panicked")?
}

fn consume(args: &ConsumeArgs) -> anyhow::Result<()> {
    let format = match (&args.format, &args.key_separator) {
        (Some(format), _) => parse_format(format).map_err(anyhow::Error::msg)?,
        (None, Some(separator)) => vec![
            Piece::Key,
            Piece::Literal(separator.as_bytes().to_vec()),
            Piece::Value,
            Piece::Literal(b"\n".to_vec()),
        ],
        (None, None) => vec![Piece::Value, Piece::Literal(b"\n".to_vec())],
    };
    let reset = if args.from_beginning {
        "earliest"
    } else {
        "latest"
    };
    let defaults = match &args.group {
        // librdkafka only takes an assignment from a consumer with a group id; nothing
        // is committed under it (auto commit is off) and no group is joined.
        None => [
            ("group.id", ASSIGN_GROUP_ID),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "true"),
        ],
        // Only printed records count as consumed: their offsets are stored one by one after
        // the write, and auto commit sends what was stored.
        Some(group) => [
            ("group.id", group.as_str()),
            ("enable.auto.commit", "true"),
            ("enable.auto.offset.store", "false"),
        ],
    };
    let mut config = args.connection.client_config(&defaults);
    config
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", reset);
    for (key, value) in &args.connection.properties {
        config.set(key, value);
    }
    let consumer: BaseConsumer = config
        .create()
        .context("cannot create the Kafka consumer")?;

    let source = match &args.group {
        Some(_) => Source::Group,
        None => Source::Assign {
            partitions: partitions_of(&consumer, &args.topic, args.partition)?,
            start: match (args.offset, args.from_beginning) {
                (Some(offset), _) if offset >= 0 => Offset::Offset(offset),
                (Some(offset), _) => Offset::OffsetTail(offset.unsigned_abs() as i64),
                (None, true) => Offset::Beginning,
                (None, false) => Offset::End,
            },
        },
    };
    let partition_count = open(&consumer, &args.topic, &source)?;
    let result = poll_loop(args, &consumer, &format, &source, partition_count);
    if matches!(source, Source::Group) {
        commit_printed(&consumer)?;
    }
    result
}

fn poll_loop(
    args: &ConsumeArgs,
    consumer: &BaseConsumer,
    format: &[Piece],
    source: &Source,
    partition_count: usize,
) -> anyhow::Result<()> {
    let stdout = io::stdout().lock();
    let mut out = io::BufWriter::new(stdout);
    let idle_timeout = args.timeout_ms.map(Duration::from_millis);
    let mut last_record = Instant::now();
    let mut at_end: HashSet<i32> = HashSet::new();
    let mut seen: u64 = 0;
    loop {
        if args.count.is_some_and(|count| seen >= count) {
            break;
        }
        match consumer.poll(POLL_INTERVAL) {
            None => {
                if let Err(error) = out.flush() {
                    return finish_on_closed_stdout(error);
                }
                if idle_timeout.is_some_and(|timeout| last_record.elapsed() >= timeout) {
                    if let Some(count) = args.count {
                        bail!(
                            "no record for {} ms; received {seen} of the {count} requested",
                            args.timeout_ms.unwrap_or_default()
                        );
                    }
                    break;
                }
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                at_end.insert(partition);
                if args.exit_at_end && all_at_end(consumer, source, &at_end, partition_count) {
                    break;
                }
            }
            Some(Err(KafkaError::MessageConsumption(code))) if is_permanent(code) => {
                bail!("cannot consume from {}: {code}", args.topic);
            }
            Some(Err(error)) => {
                // Transport errors and the like: librdkafka retries on its own.
                eprintln!("warning: {error}");
            }
            Some(Ok(message)) => {
                at_end.remove(&message.partition());
                last_record = Instant::now();
                seen += 1;
                if let Err(error) = write_record(&mut out, format, &message) {
                    return finish_on_closed_stdout(error);
                }
                if matches!(source, Source::Group) {
                    consumer
                        .store_offset_from_message(&message)
                        .context("cannot store the consumed offset")?;
                }
            }
        }
    }
    if let Err(error) = out.flush() {
        return finish_on_closed_stdout(error);
    }
    Ok(())
}

/// Whether every partition this consumer reads has reported its end. A group member reads
/// what the group assigned it right now (nothing before the first assignment).
fn all_at_end(
    consumer: &BaseConsumer,
    source: &Source,
    at_end: &HashSet<i32>,
    partition_count: usize,
) -> bool {
    match source {
        Source::Assign { .. } => at_end.len() >= partition_count,
        Source::Group => consumer.assignment().is_ok_and(|assigned| {
            assigned.count() > 0
                && assigned
                    .elements()
                    .iter()
                    .all(|element| at_end.contains(&element.partition()))
        }),
    }
}

/// Commits the offsets of everything printed (a group member leaving).
fn commit_printed(consumer: &BaseConsumer) -> anyhow::Result<()> {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => Ok(()),
        // Nothing was printed since the last commit.
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
        Err(error) => Err(error).context("cannot commit the consumed offsets"),
    }
}

/// The partitions to read: `only`, checked to exist, or all of the topic's.
fn partitions_of(
    consumer: &BaseConsumer,
    topic: &str,
    only: Option<i32>,
) -> anyhow::Result<Vec<i32>> {
    // A consumer's Metadata request does not ask the broker to auto-create the topic.
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .context("cannot fetch cluster metadata")?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        bail!("topic {topic} does not exist");
    };
    if let Some(error) = found.error() {
        bail!(
            "cannot consume from {topic}: {}",
            RDKafkaErrorCode::from(error)
        );
    }
    let mut partitions: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
    partitions.sort_unstable();
    if partitions.is_empty() {
        bail!("topic {topic} does not exist");
    }
    match only {
        Some(partition) if partitions.contains(&partition) => Ok(vec![partition]),
        Some(partition) => bail!(
            "topic {topic} has no partition {partition} (it has {})",
            partitions.len()
        ),
        None => Ok(partitions),
    }
}

/// Starts reading from `source`; returns how many partitions feed the consumer.
fn open(consumer: &BaseConsumer, topic: &str, source: &Source) -> anyhow::Result<usize> {
    match source {
        Source::Assign { partitions, start } => {
            let mut assignment = TopicPartitionList::new();
            for &partition in partitions {
                assignment
                    .add_partition_offset(topic, partition, *start)
                    .with_context(|| format!("cannot assign {topic}/{partition}"))?;
            }
            consumer
                .assign(&assignment)
                .context("cannot assign partitions")?;
            Ok(partitions.len())
        }
        Source::Group => {
            partitions_of(consumer, topic, None)?;
            consumer
                .subscribe(&[topic])
                .with_context(|| format!("cannot subscribe to {topic}"))?;
            Ok(0)
        }
    }
}

/// Errors that retrying will not cure.
fn is_permanent(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::UnknownPartition
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
    )
}

/// A reader closing our stdout (`| head`) is a normal way to stop, not an error.
fn finish_on_closed_stdout(error: io::Error) -> anyhow::Result<()> {
    if error.kind() == io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(error).context("cannot write to stdout")
    }
}

/// One element of an output format.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(Vec<u8>),
    Topic,
    Partition,
    Offset,
    Key,
    Value,
    Timestamp,
    KeyLength,
    ValueLength,
}

fn parse_format(format: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut literal = Vec::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        let piece = match c {
            '%' => match chars.next() {
                Some('t') => Piece::Topic,
                Some('p') => Piece::Partition,
                Some('o') => Piece::Offset,
                Some('k') => Piece::Key,
                Some('v') => Piece::Value,
                Some('T') => Piece::Timestamp,
                Some('K') => Piece::KeyLength,
                Some('S') => Piece::ValueLength,
                Some('%') => {
                    literal.push(b'%');
                    continue;
                }
                Some(other) => return Err(format!("unknown format token %{other}")),
                None => return Err("the format ends with a lone %".to_owned()),
            },
            '\\' => {
                let escaped = match chars.next() {
                    Some('n') => '\n',
                    Some('t') => '\t',
                    Some('r') => '\r',
                    Some('\\') => '\\',
                    Some(other) => return Err(format!("unknown escape \\{other}")),
                    None => return Err("the format ends with a lone \\".to_owned()),
                };
                literal.extend_from_slice(escaped.encode_utf8(&mut [0; 4]).as_bytes());
                continue;
            }
            other => {
                literal.extend_from_slice(other.encode_utf8(&mut [0; 4]).as_bytes());
                continue;
            }
        };
        if !literal.is_empty() {
            pieces.push(Piece::Literal(std::mem::take(&mut literal)));
        }
        pieces.push(piece);
    }
    if !literal.is_empty() {
        pieces.push(Piece::Literal(literal));
    }
    Ok(pieces)
}

fn write_record(
    out: &mut impl Write,
    format: &[Piece],
    message: &BorrowedMessage<'_>,
) -> io::Result<()> {
    for piece in format {
        match piece {
            Piece::Literal(bytes) => out.write_all(bytes)?,
            Piece::Topic => out.write_all(message.topic().as_bytes())?,
            Piece::Partition => write!(out, "{}", message.partition())?,
            Piece::Offset => write!(out, "{}", message.offset())?,
            Piece::Key => out.write_all(message.key().unwrap_or_default())?,
            Piece::Value => out.write_all(message.payload().unwrap_or_default())?,
            Piece::Timestamp => {
                write!(out, "{}", message.timestamp().to_millis().unwrap_or(-1))?;
            }
            Piece::KeyLength => write!(out, "{}", message.key().map_or(-1, |k| k.len() as i64))?,
            Piece::ValueLength => {
                write!(out, "{}", message.payload().map_or(-1, |v| v.len() as i64))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Piece, parse_format};

    #[test]
    fn format_tokens_and_escapes_parse() {
        assert_eq!(
            parse_format("%p:%o\\t%k=%v%%\\n"),
            Ok(vec![
                Piece::Partition,
                Piece::Literal(b":".to_vec()),
                Piece::Offset,
                Piece::Literal(b"\t".to_vec()),
                Piece::Key,
                Piece::Literal(b"=".to_vec()),
                Piece::Value,
                Piece::Literal(b"%\n".to_vec()),
            ])
        );
        assert!(parse_format("%x").is_err());
        assert!(parse_format("trailing %").is_err());
    }
}
