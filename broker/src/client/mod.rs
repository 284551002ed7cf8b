//! A small async Kafka wire client: what a service needs to publish to and consume from a
//! Kafka-compatible cluster (this broker's three-node cluster, or any Kafka) without a
//! client library. It speaks the protocol through the kafka-protocol crate's generated
//! messages, the same codec the broker serves with.
//!
//! - [`KafkaClient`]: the API: topics (`ensure_topic`, `partition_count`), `produce` of one
//!   raw v2 batch, `fetch` of raw batches, `list_offset`, and a standalone consumer's group
//!   offsets (`committed_offset`, `commit_offset`) through the group's coordinator.
//! - `metadata`: the cache of brokers and partition leaders, refreshed when a broker says it
//!   is stale.
//! - `connection`: one TCP connection, framed and pipelined by correlation id; `pool`: the
//!   connections by broker, opened lazily and again after a failure.
//!
//! Every operation retries what Kafka calls retriable (a leader or coordinator moving, a node
//! going down) within [`ClientConfig::retry_deadline`], reading fresh metadata or finding
//! the coordinator again first; anything else is returned at once as a [`ClientError`].
//! What it is not: a producer with batching or a group member with assignments. Batches
//! are built by the caller (see `record_batch`), so an idempotent caller keeps its own
//! producer id and sequences.

mod connection;
mod error;
mod log;
mod metadata;
mod offsets;
mod pool;
#[cfg(test)]
mod tests;

pub use error::ClientError;
pub use log::{AbortedTransaction, FetchedBatches, IsolationLevel, OffsetSpec};

use metadata::{ClusterView, TopicState};
use pool::Pool;

use kafka_protocol::error::{ParseResponseErrorCode, ResponseError};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{CreateTopicsRequest, MetadataRequest, TopicName};
use kafka_protocol::protocol::{Request, StrBytes};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Versions spoken: in the ranges of both this broker and Kafka 4 (which dropped the old
/// ones), by topic name (the newest Produce and Fetch want topic ids).
const METADATA_VERSION: i16 = 12;
const CREATE_TOPICS_VERSION: i16 = 7;

/// The first pause between two tries of an operation, doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_millis(1_000);

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// "host:port" of some brokers; the others are learnt from metadata.
    pub bootstrap: Vec<String>,
    pub client_id: String,
    /// How long one request may wait for its response (a fetch: this beyond its max wait).
    pub request_timeout: Duration,
    /// How long an operation keeps retrying retriable errors before it gives up: long
    /// enough for a leader election after a node dies.
    pub retry_deadline: Duration,
    pub connect_timeout: Duration,
    /// How long a lookup (Metadata, FindCoordinator) may wait for one broker
    /// before the next one is asked: a paused node must not stall every lookup.
    pub lookup_timeout: Duration,
}

impl ClientConfig {
    /// Defaults for `bootstrap`, a list such as `["n1:9092", "n2:9092"]`.
    pub fn new(bootstrap: impl IntoIterator<Item = impl Into<String>>) -> ClientConfig {
        ClientConfig {
            bootstrap: bootstrap.into_iter().map(Into::into).collect(),
            client_id: "commerce".to_string(),
            request_timeout: Duration::from_secs(30),
            retry_deadline: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            lookup_timeout: Duration::from_secs(5),
        }
    }

    /// Defaults for a comma-separated bootstrap list, as Kafka's `bootstrap.servers`.
    pub fn from_list(bootstrap: &str) -> ClientConfig {
        ClientConfig::new(
            bootstrap
                .split(',')
                .map(str::trim)
                .filter(|addr| !addr.is_empty()),
        )
    }
}

/// A handle to a cluster; cheap to clone (clones share connections and metadata).
#[derive(Clone)]
pub struct KafkaClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClientConfig,
    pool: Pool,
    view: Mutex<ClusterView>,
    /// Group id -> the address of its coordinator.
    coordinators: Mutex<HashMap<String, String>>,
    /// The broker that last answered a lookup: asked first next time.
    last_answered: Mutex<Option<String>>,
}

impl KafkaClient {
    /// A client of the cluster `config.bootstrap` names. Nothing is connected yet: the first
    /// request does that, so a cluster still starting does not fail this.
    pub fn new(config: ClientConfig) -> Result<KafkaClient, ClientError> {
        if config.bootstrap.is_empty() {
            return Err(ClientError::NoBootstrap);
        }
        let pool = Pool::new(config.client_id.clone(), config.connect_timeout);
        Ok(KafkaClient {
            inner: Arc::new(Inner {
                config,
                pool,
                view: Mutex::new(ClusterView::default()),
                coordinators: Mutex::new(HashMap::new()),
                last_answered: Mutex::new(None),
            }),
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Creates `topic` unless it exists, with the cluster's default partition count and
    /// replication factor, and waits until every partition has a leader; returns the
    /// partition count.
    pub async fn ensure_topic(&self, topic: &str) -> Result<i32, ClientError> {
        if let Some(view) = self.view().topic(topic)
            && view.all_led()
        {
            return Ok(view.partition_count());
        }
        self.retry("ensure topic", topic, || async {
            match self.topic_state(topic).await? {
                TopicState::Present(view) if view.all_led() => Ok(view.partition_count()),
                TopicState::Present(view) => Err(ClientError::NoLeader {
                    topic: topic.to_string(),
                    partition: view
                        .leaders
                        .iter()
                        .position(Option::is_none)
                        .and_then(|index| i32::try_from(index).ok())
                        .unwrap_or(0),
                }),
                TopicState::Missing => {
                    self.create_topic(topic).await?;
                    // Created: the next try waits for its leaders.
                    Err(ClientError::NoLeader {
                        topic: topic.to_string(),
                        partition: 0,
                    })
                }
            }
        })
        .await
    }

    /// The partition count of `topic`, `None` if it does not exist (nothing is created).
    pub async fn partition_count(&self, topic: &str) -> Result<Option<i32>, ClientError> {
        if let Some(view) = self.view().topic(topic) {
            return Ok(Some(view.partition_count()));
        }
        self.retry("partition count", topic, || async {
            Ok(match self.topic_state(topic).await? {
                TopicState::Present(view) => Some(view.partition_count()),
                TopicState::Missing => None,
            })
        })
        .await
    }

    /// The address of `topic`/`partition`'s leader, from fresh metadata.
    pub async fn leader_address(&self, topic: &str, partition: i32) -> Result<String, ClientError> {
        self.view().forget(topic);
        self.retry("find leader", topic, || self.leader(topic, partition))
            .await
    }

    /// Every broker address the last metadata named.
    pub fn known_brokers(&self) -> Vec<String> {
        self.view().addresses()
    }

    fn view(&self) -> std::sync::MutexGuard<'_, ClusterView> {
        self.inner.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The leader of `topic`/`partition`, from the cache or else fresh metadata.
    pub(crate) async fn leader(&self, topic: &str, partition: i32) -> Result<String, ClientError> {
        if let Some(addr) = self.view().leader(topic, partition) {
            return Ok(addr);
        }
        match self.topic_state(topic).await? {
            TopicState::Missing => Err(ClientError::broker(
                "find leader",
                topic,
                ResponseError::UnknownTopicOrPartition.code(),
                None,
            )),
            TopicState::Present(view) if partition >= view.partition_count() => {
                Err(ClientError::NoSuchPartition {
                    topic: topic.to_string(),
                    partition,
                })
            }
            TopicState::Present(_) => {
                self.view()
                    .leader(topic, partition)
                    .ok_or_else(|| ClientError::NoLeader {
                        topic: topic.to_string(),
                        partition,
                    })
            }
        }
    }

    /// Forgets what is known of `topic`'s leaders if `error` says it is stale.
    pub(crate) fn after_error(&self, topic: &str, error: &ClientError) {
        if error.stale_leader() {
            self.view().forget(topic);
        }
    }

    /// Reads `topic`'s metadata (without creating it) and takes it into the cache.
    async fn topic_state(&self, topic: &str) -> Result<TopicState, ClientError> {
        let request = MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic_name(topic))),
            ]))
            .with_allow_auto_topic_creation(false);
        let response = self.send_any(METADATA_VERSION, &request).await?;
        let mut states = self.view().update(&response)?;
        states
            .remove(topic)
            .ok_or_else(|| ClientError::UnexpectedResponse {
                api: "Metadata",
                reason: format!("no entry for topic {topic}"),
            })
    }

    async fn create_topic(&self, topic: &str) -> Result<(), ClientError> {
        let request = CreateTopicsRequest::default()
            .with_topics(vec![
                // -1, -1: the cluster's default partition count and replication factor.
                CreatableTopic::default()
                    .with_name(topic_name(topic))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1),
            ])
            .with_timeout_ms(millis(self.inner.config.request_timeout));
        let controller = self.view().controller();
        let response = match controller {
            Some(addr) => self.send_to(&addr, CREATE_TOPICS_VERSION, &request).await?,
            None => self.send_any(CREATE_TOPICS_VERSION, &request).await?,
        };
        let result = response
            .topics
            .first()
            .ok_or_else(|| ClientError::UnexpectedResponse {
                api: "CreateTopics",
                reason: format!("no result for topic {topic}"),
            })?;
        match result.error_code.err() {
            None | Some(ResponseError::TopicAlreadyExists) => Ok(()),
            Some(_) => Err(ClientError::broker(
                "create topic",
                topic,
                result.error_code,
                result.error_message.as_ref().map(ToString::to_string),
            )),
        }
    }

    /// Sends to the broker at `addr` on its shared connection.
    pub(crate) async fn send_to<R: Request>(
        &self,
        addr: &str,
        version: i16,
        request: &R,
    ) -> Result<R::Response, ClientError> {
        self.send_within(addr, version, request, self.inner.config.request_timeout)
            .await
    }

    async fn send_within<R: Request>(
        &self,
        addr: &str,
        version: i16,
        request: &R,
        timeout: Duration,
    ) -> Result<R::Response, ClientError> {
        let connection = self.inner.pool.shared(addr).await?;
        let sent = connection.send(version, request, timeout).await;
        if let Err(ClientError::RequestTimeout { .. }) = &sent {
            self.inner.pool.forget(addr).await;
        }
        sent
    }

    /// Sends a lookup to the first broker that answers: the one that answered last, those
    /// the metadata named, then the bootstrap list.
    pub(crate) async fn send_any<R: Request>(
        &self,
        version: i16,
        request: &R,
    ) -> Result<R::Response, ClientError> {
        let last = self
            .inner
            .last_answered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut candidates: Vec<String> = last.into_iter().collect();
        for addr in self
            .view()
            .addresses()
            .iter()
            .chain(&self.inner.config.bootstrap)
        {
            if !candidates.contains(addr) {
                candidates.push(addr.clone());
            }
        }
        let timeout = self.inner.config.lookup_timeout;
        let mut last = ClientError::NoBootstrap;
        for addr in candidates {
            match self.send_within(&addr, version, request, timeout).await {
                Ok(response) => {
                    *self
                        .inner
                        .last_answered
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = Some(addr);
                    return Ok(response);
                }
                Err(error) if error.is_retriable() => last = error,
                Err(error) => return Err(error),
            }
        }
        Err(last)
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retry deadline passes.
    pub(crate) async fn retry<T, F, Fut>(
        &self,
        operation: &'static str,
        resource: &str,
        mut attempt: F,
    ) -> Result<T, ClientError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let started = Instant::now();
        let deadline = started + self.inner.config.retry_deadline;
        let mut backoff = FIRST_BACKOFF;
        loop {
            match attempt().await {
                Ok(value) => return Ok(value),
                Err(error) if error.is_retriable() => {
                    if Instant::now() + backoff >= deadline {
                        return Err(ClientError::GaveUp {
                            operation: format!("{operation} on {resource}"),
                            after: started.elapsed(),
                            last: Box::new(error),
                        });
                    }
                    tracing::debug!(%error, operation, resource, "retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(error) => return Err(error),
            }
        }
    }
}

pub(crate) fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub(crate) fn millis(duration: Duration) -> i32 {
    i32::try_from(duration.as_millis()).unwrap_or(i32::MAX)
}
