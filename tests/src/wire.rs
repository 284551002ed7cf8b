//! A minimal Kafka wire client for the APIs librdkafka's Rust binding does not expose
//! (IncrementalAlterConfigs, DescribeCluster, DescribeLogDirs, OffsetForLeaderEpoch,
//! ListOffsets with MAX_TIMESTAMP): one request at a time on a blocking socket, encoded and
//! decoded with the kafka-protocol crate's generated messages — Kafka's own schema, not the
//! broker's code.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Decodable;
use kafka_protocol::protocol::{Encodable, StrBytes};

pub struct WireClient {
    stream: TcpStream,
    correlation_id: i32,
}

impl WireClient {
    pub fn connect(bootstrap: &str) -> WireClient {
        let stream = TcpStream::connect(bootstrap).expect("cannot connect to the node");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("cannot set a read timeout");
        WireClient {
            stream,
            correlation_id: 0,
        }
    }

    /// Sends `request` as version `version` of `api_key` and returns the decoded response.
    pub fn call(&mut self, api_key: ApiKey, version: i16, request: RequestKind) -> ResponseKind {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("commerce-tests")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, api_key.request_header_version(version))
            .expect("cannot encode the request header");
        request
            .encode(&mut body, version)
            .expect("cannot encode the request");
        let length = i32::try_from(body.len()).expect("request too large");
        self.stream
            .write_all(&length.to_be_bytes())
            .and_then(|()| self.stream.write_all(&body))
            .expect("cannot send the request");

        let mut length = [0u8; 4];
        self.stream
            .read_exact(&mut length)
            .expect("the node closed the connection instead of answering");
        let length = usize::try_from(i32::from_be_bytes(length)).expect("negative frame length");
        let mut frame = vec![0u8; length];
        self.stream
            .read_exact(&mut frame)
            .expect("cannot read the response");
        let mut frame = bytes::Bytes::from(frame);
        let header = ResponseHeader::decode(&mut frame, api_key.response_header_version(version))
            .expect("cannot decode the response header");
        assert_eq!(header.correlation_id, self.correlation_id, "correlation id");
        let response =
            ResponseKind::decode(api_key, &mut frame, version).expect("cannot decode the response");
        assert_eq!(frame.remaining(), 0, "bytes left after the response");
        response
    }
}
