//! Raw Kafka requests over a plain TcpStream, for what a client library will not send:
//! corrupt batches, exact fetch limits, stale generations.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

const CORRELATION_ID: i32 = 7;

/// Sends one request on a new connection and returns the response body (header removed).
pub fn round_trip(addr: SocketAddr, api: ApiKey, version: i16, body: &impl Encodable) -> Bytes {
    let mut stream = TcpStream::connect(addr).expect("cannot connect to the Kafka port");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("cannot set a read timeout");
    send(&mut stream, api, version, body);
    receive(&mut stream, api, version)
}

pub fn send(stream: &mut TcpStream, api: ApiKey, version: i16, body: &impl Encodable) {
    let mut header = RequestHeader::default();
    header.request_api_key = api as i16;
    header.request_api_version = version;
    header.correlation_id = CORRELATION_ID;
    header.client_id = Some(StrBytes::from_static_str("raw-test"));
    let mut frame = BytesMut::new();
    header
        .encode(&mut frame, api.request_header_version(version))
        .expect("cannot encode the request header");
    body.encode(&mut frame, version)
        .expect("cannot encode the request");
    stream
        .write_all(&(frame.len() as i32).to_be_bytes())
        .and_then(|()| stream.write_all(&frame))
        .expect("cannot send the request");
}

pub fn receive(stream: &mut TcpStream, api: ApiKey, version: i16) -> Bytes {
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).expect("no response");
    let mut response = vec![0u8; i32::from_be_bytes(length) as usize];
    stream
        .read_exact(&mut response)
        .expect("truncated response");
    let mut response = Bytes::from(response);
    let correlation = i32::from_be_bytes(response[..4].try_into().expect("short response"));
    assert_eq!(
        correlation, CORRELATION_ID,
        "the response answers our request"
    );
    // Correlation id, plus an empty tagged-field list for flexible response headers.
    let header_len = if api.response_header_version(version) >= 1 {
        5
    } else {
        4
    };
    let _header = response.split_to(header_len);
    response
}

/// One v2 batch (uncompressed) holding `values`, unkeyed, timestamps 1_700_000_000_000 + i.
pub fn batch(values: &[&str]) -> BytesMut {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, value)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: 1_700_000_000_000 + i as i64,
            key: None,
            value: Some(Bytes::from(value.to_string())),
            headers: Default::default(),
        })
        .collect();
    let mut out = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut out, records.iter(), &options).expect("cannot encode a batch");
    out
}
