//! DescribeLogDirs: the node's one log directory and the size of every partition in it
//! (all topics, or those asked for). Replication lag is zero: there are no followers.

use super::str_bytes;
use crate::broker::{Broker, Topic};
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};
use std::sync::Arc;

pub fn handle(broker: &Arc<Broker>, request: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    let dir = broker.config().data_dir.join("topics");
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    let mut result =
        DescribeLogDirsResult::default().with_log_dir(str_bytes(dir.display().to_string()));
    match request.topics {
        None => {
            for topic in broker.topics() {
                result.topics.push(describe(&topic, None));
            }
        }
        Some(wanted) => {
            for wanted in wanted {
                // Unknown topics and partitions are left out, as Kafka does.
                if let Some(topic) = broker.topic(wanted.topic.0.as_str()) {
                    result
                        .topics
                        .push(describe(&topic, Some(&wanted.partitions)));
                }
            }
        }
    }
    let mut response = DescribeLogDirsResponse::default();
    response.results.push(result);
    response
}

fn describe(topic: &Topic, only: Option<&[i32]>) -> DescribeLogDirsTopic {
    let mut described =
        DescribeLogDirsTopic::default().with_name(str_bytes(topic.name.to_string()).into());
    for partition in &topic.partitions {
        if only.is_some_and(|only| !only.contains(&partition.index)) {
            continue;
        }
        described.partitions.push(
            DescribeLogDirsPartition::default()
                .with_partition_index(partition.index)
                .with_partition_size(
                    i64::try_from(partition.log().size_bytes()).unwrap_or(i64::MAX),
                )
                .with_offset_lag(0),
        );
    }
    described
}
