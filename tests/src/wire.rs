//! A minimal Kafka wire client for the APIs librdkafka's Rust binding does not expose
//! (IncrementalAlterConfigs, DescribeCluster, DescribeLogDirs, OffsetForLeaderEpoch,
//! ListOffsets with MAX_TIMESTAMP): one request at a time on a blocking socket, encoded and
//! decoded with the kafka-protocol crate's generated messages — Kafka's own schema, not the
//! broker's code. Also used to read error codes the binding drops (its `alter_configs`
//! reports every resource as Ok).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
};
use kafka_protocol::messages::{
    ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind, TopicName,
    alter_configs_request, describe_configs_request, incremental_alter_configs_request,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// Resource type of a topic in the config APIs.
const RESOURCE_TOPIC: i8 = 2;

pub fn topic_name(name: &str) -> TopicName {
    TopicName(str_bytes(name))
}

pub fn str_bytes(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

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
    /// (error code, offset) of ListOffsets v7 for `timestamp` (or -1 latest, -2 earliest,
    /// -3 max timestamp) on partition 0 of `topic`.
    pub fn list_offset(&mut self, topic: &str, timestamp: i64) -> (i16, i64) {
        let request = ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(timestamp),
                    ]),
            ]);
        let ResponseKind::ListOffsets(response) =
            self.call(ApiKey::ListOffsets, 7, RequestKind::ListOffsets(request))
        else {
            panic!("not a ListOffsets response");
        };
        let partition = &response.topics[0].partitions[0];
        (partition.error_code, partition.offset)
    }

    /// (value, source) of each synonym of `topic`'s config `key` (DescribeConfigs v4).
    pub fn synonyms(&mut self, topic: &str, key: &str) -> Vec<(String, i8)> {
        let request = describe_configs_request::DescribeConfigsRequest::default()
            .with_include_synonyms(true)
            .with_resources(vec![
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(RESOURCE_TOPIC)
                    .with_resource_name(str_bytes(topic))
                    .with_configuration_keys(Some(vec![str_bytes(key)])),
            ]);
        let ResponseKind::DescribeConfigs(response) = self.call(
            ApiKey::DescribeConfigs,
            4,
            RequestKind::DescribeConfigs(request),
        ) else {
            panic!("not a DescribeConfigs response");
        };
        response.results[0].configs[0]
            .synonyms
            .iter()
            .map(|s| {
                (
                    s.value.as_ref().expect("a synonym value").to_string(),
                    s.source,
                )
            })
            .collect()
    }

    /// AlterConfigs v2 of `topic` to exactly `entries`; the resource's error code.
    pub fn alter_configs(&mut self, topic: &str, entries: &[(&str, &str)]) -> i16 {
        let configs = entries
            .iter()
            .map(|(name, value)| {
                alter_configs_request::AlterableConfig::default()
                    .with_name(str_bytes(name))
                    .with_value(Some(str_bytes(value)))
            })
            .collect();
        let request = alter_configs_request::AlterConfigsRequest::default().with_resources(vec![
            alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(str_bytes(topic))
                .with_configs(configs),
        ]);
        let ResponseKind::AlterConfigs(response) =
            self.call(ApiKey::AlterConfigs, 2, RequestKind::AlterConfigs(request))
        else {
            panic!("not an AlterConfigs response");
        };
        response.responses[0].error_code
    }

    /// IncrementalAlterConfigs v1 of `topic`: (key, operation, value) with operation 0 SET,
    /// 1 DELETE, 2 APPEND, 3 SUBTRACT; the resource's error code.
    pub fn incremental_alter_configs(
        &mut self,
        topic: &str,
        operations: &[(&str, i8, Option<&str>)],
    ) -> i16 {
        use incremental_alter_configs_request::{
            AlterConfigsResource, AlterableConfig, IncrementalAlterConfigsRequest,
        };
        let configs = operations
            .iter()
            .map(|(name, operation, value)| {
                AlterableConfig::default()
                    .with_name(str_bytes(name))
                    .with_config_operation(*operation)
                    .with_value(value.map(str_bytes))
            })
            .collect();
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(str_bytes(topic))
                .with_configs(configs),
        ]);
        let ResponseKind::IncrementalAlterConfigs(response) = self.call(
            ApiKey::IncrementalAlterConfigs,
            1,
            RequestKind::IncrementalAlterConfigs(request),
        ) else {
            panic!("not an IncrementalAlterConfigs response");
        };
        response.responses[0].error_code
    }
}
