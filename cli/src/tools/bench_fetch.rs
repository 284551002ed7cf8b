//! `commerce bench fetch`: reads one partition to its end with raw Fetch requests, counting
//! bytes and records from the batch headers without decoding any record.
//!
//! `bench consume` measures what a librdkafka consumer achieves, which on a small machine is
//! bounded by the client's per-record work; this measures what the broker serves, so the two
//! together say which side limits a consumer.

use std::time::Instant;

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::bench::{MIB, Progress};
use super::connection::ConnectionArgs;

const FETCH_VERSION: i16 = 12;
/// Batch header fields used to count records: lastOffsetDelta (i32) at byte 23, batch
/// length (i32) at byte 8.
const LAST_OFFSET_DELTA_AT: usize = 23;
const LENGTH_AT: usize = 8;

#[derive(Debug, clap::Args)]
pub struct BenchFetchArgs {
    #[arg(long, short = 't')]
    pub topic: String,
    #[arg(long, short = 'p', default_value_t = 0)]
    pub partition: i32,
    /// Bytes asked for per Fetch (partition_max_bytes).
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    pub fetch_bytes: i32,
}

pub async fn run(connection: &ConnectionArgs, args: &BenchFetchArgs) -> anyhow::Result<()> {
    let broker = connection
        .brokers
        .split(',')
        .next()
        .context("no broker given")?
        .trim()
        .to_string();
    let mut stream = TcpStream::connect(&broker)
        .await
        .with_context(|| format!("cannot connect to {broker}"))?;
    stream.set_nodelay(true)?;
    let totals = std::sync::Arc::new((
        std::sync::atomic::AtomicU64::new(0),
        std::sync::atomic::AtomicU64::new(0),
    ));
    let progress = Progress::start("fetched", {
        let totals = std::sync::Arc::clone(&totals);
        move || {
            (
                totals.0.load(std::sync::atomic::Ordering::Relaxed),
                totals.1.load(std::sync::atomic::Ordering::Relaxed),
            )
        }
    });
    let started = Instant::now();
    let mut offset = 0_i64;
    let mut correlation_id = 0;
    loop {
        correlation_id += 1;
        let data = fetch(&mut stream, correlation_id, args, offset).await?;
        let (records, bytes, next) = count_batches(&data.records, offset);
        totals
            .0
            .fetch_add(records, std::sync::atomic::Ordering::Relaxed);
        totals
            .1
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        offset = next;
        if offset >= data.high_watermark {
            break;
        }
        if records == 0 {
            bail!(
                "the broker returned no batch at offset {offset} below its high watermark {}",
                data.high_watermark
            );
        }
    }
    progress.stop();
    let seconds = started.elapsed().as_secs_f64().max(f64::EPSILON);
    let records = totals.0.load(std::sync::atomic::Ordering::Relaxed);
    let bytes = totals.1.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "{records} records ({:.2} MiB) fetched in {seconds:.2} s: {:.0} records/s, {:.2} MiB/s (raw Fetch, no record decoding)",
        bytes as f64 / MIB,
        records as f64 / seconds,
        bytes as f64 / MIB / seconds,
    );
    Ok(())
}

struct Fetched {
    records: Bytes,
    high_watermark: i64,
}

async fn fetch(
    stream: &mut TcpStream,
    correlation_id: i32,
    args: &BenchFetchArgs,
    offset: i64,
) -> anyhow::Result<Fetched> {
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(args.fetch_bytes)
        .with_session_epoch(-1)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(args.topic.clone())))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(args.partition)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(args.fetch_bytes)
                        .with_current_leader_epoch(-1)
                        .with_log_start_offset(-1),
                ]),
        ]);
    let mut header = RequestHeader::default();
    header.request_api_key = ApiKey::Fetch as i16;
    header.request_api_version = FETCH_VERSION;
    header.correlation_id = correlation_id;
    let mut frame = BytesMut::new();
    frame.extend_from_slice(&[0; 4]);
    header.encode(
        &mut frame,
        ApiKey::Fetch.request_header_version(FETCH_VERSION),
    )?;
    request.encode(&mut frame, FETCH_VERSION)?;
    let length = i32::try_from(frame.len() - 4)?;
    if let Some(prefix) = frame.get_mut(..4) {
        prefix.copy_from_slice(&length.to_be_bytes());
    }
    stream.write_all(&frame).await?;

    let length = usize::try_from(stream.read_i32().await?).context("negative response length")?;
    let mut body = BytesMut::zeroed(length);
    stream.read_exact(&mut body).await?;
    let mut body = body.freeze();
    let header = ResponseHeader::decode(
        &mut body,
        ApiKey::Fetch.response_header_version(FETCH_VERSION),
    )?;
    if header.correlation_id != correlation_id {
        bail!(
            "response to request {} while waiting for {correlation_id}",
            header.correlation_id
        );
    }
    let response = FetchResponse::decode(&mut body, FETCH_VERSION)?;
    if response.error_code != 0 {
        bail!("Fetch failed with error code {}", response.error_code);
    }
    let data = response
        .responses
        .into_iter()
        .next()
        .and_then(|topic| topic.partitions.into_iter().next())
        .context("the Fetch response has no partition")?;
    if data.error_code != 0 {
        bail!(
            "Fetch of {}/{} failed with error code {}",
            args.topic,
            args.partition,
            data.error_code
        );
    }
    Ok(Fetched {
        records: data.records.unwrap_or_default(),
        high_watermark: data.high_watermark,
    })
}

/// (records, bytes, next offset) of the whole batches in `records`.
fn count_batches(records: &[u8], mut next: i64) -> (u64, u64, i64) {
    let (mut count, mut bytes, mut rest) = (0_u64, 0_u64, records);
    while let (Some(base), Some(length), Some(delta)) = (
        read_i64(rest, 0),
        read_i32(rest, LENGTH_AT),
        read_i32(rest, LAST_OFFSET_DELTA_AT),
    ) {
        let Some(size) = usize::try_from(length).ok().map(|length| length + 12) else {
            break;
        };
        if size > rest.len() {
            break;
        }
        count += u64::try_from(delta).unwrap_or(0) + 1;
        bytes += size as u64;
        next = base + i64::from(delta) + 1;
        rest = rest.get(size..).unwrap_or_default();
    }
    (count, bytes, next)
}

fn read_i64(buf: &[u8], at: usize) -> Option<i64> {
    buf.get(at..at + 8)?.try_into().ok().map(i64::from_be_bytes)
}

fn read_i32(buf: &[u8], at: usize) -> Option<i32> {
    buf.get(at..at + 4)?.try_into().ok().map(i32::from_be_bytes)
}
