//! One TCP connection to one broker. Requests are framed as Kafka frames them (a 4-byte
//! big-endian length), each with its own correlation id, and may be pipelined: a writer task
//! sends the frames in the order they were queued and a reader task hands each response to
//! the request with its correlation id. Kafka answers one connection's requests in order,
//! so a request waits behind those sent before it here (which is why long-poll fetches take
//! connections of their own, see `pool.rs`).
//!
//! A request whose caller gave up (its timeout, or its future dropped) leaves the
//! connection usable: the frame was queued whole or not at all, and its late response is
//! dropped. A read or write failure closes the connection for every waiting request; the
//! pool then opens a new one.

use super::error::ClientError;
use crate::protocol::frame::split_frame;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// The largest response accepted: above any fetch this client asks for, far below memory.
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;
/// Frames queued for the writer before a sender waits.
const WRITE_QUEUE: usize = 64;

/// The requests waiting for their responses, and why the connection closed once it has.
#[derive(Default)]
struct Pending {
    waiting: HashMap<i32, oneshot::Sender<Bytes>>,
    closed: Option<String>,
}

impl Pending {
    /// Closes for good: every waiting request learns it when its sender drops.
    fn close(&mut self, reason: String) {
        self.closed.get_or_insert(reason);
        self.waiting.clear();
    }
}

pub(crate) struct Connection {
    addr: String,
    client_id: StrBytes,
    next_correlation: AtomicI32,
    outgoing: mpsc::Sender<Bytes>,
    pending: Arc<Mutex<Pending>>,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for Connection {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Connection {
    pub(crate) async fn open(
        addr: &str,
        client_id: &str,
        timeout: Duration,
    ) -> Result<Connection, ClientError> {
        let connect_error = |reason: String| ClientError::Connect {
            addr: addr.to_string(),
            reason,
        };
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| connect_error(format!("no answer within {timeout:?}")))?
            .map_err(|error| connect_error(error.to_string()))?;
        // Requests are small and waited for one by one: do not let Nagle hold them back.
        stream
            .set_nodelay(true)
            .map_err(|error| connect_error(error.to_string()))?;
        let (reader, writer) = stream.into_split();
        let pending = Arc::new(Mutex::new(Pending::default()));
        let (outgoing, queue) = mpsc::channel(WRITE_QUEUE);
        let tasks = [
            tokio::spawn(read_responses(reader, pending.clone())),
            tokio::spawn(write_requests(writer, queue, pending.clone())),
        ];
        Ok(Connection {
            addr: addr.to_string(),
            client_id: StrBytes::from_string(client_id.to_string()),
            next_correlation: AtomicI32::new(1),
            outgoing,
            pending,
            tasks,
        })
    }

    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn closed_error(&self) -> ClientError {
        ClientError::Connection {
            addr: self.addr.clone(),
            reason: self
                .lock()
                .closed
                .clone()
                .unwrap_or_else(|| "closed".to_string()),
        }
    }

    /// Sends `request` as `version` and waits up to `timeout` for its response.
    pub(crate) async fn send<R: Request>(
        &self,
        version: i16,
        request: &R,
        timeout: Duration,
    ) -> Result<R::Response, ClientError> {
        let api = api_name(R::KEY);
        let codec_error = |reason: anyhow::Error| ClientError::Codec {
            api: api.clone(),
            version,
            reason: format!("{reason:#}"),
        };
        let correlation_id = self.next_correlation.fetch_add(1, Ordering::Relaxed);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut frame = BytesMut::new();
        frame.put_i32(0);
        header
            .encode(&mut frame, R::header_version(version))
            .map_err(codec_error)?;
        request.encode(&mut frame, version).map_err(codec_error)?;
        let length = i32::try_from(frame.len() - 4)
            .map_err(|_| codec_error(anyhow::anyhow!("request larger than 2 GiB")))?;
        if let Some(prefix) = frame.get_mut(..4) {
            prefix.copy_from_slice(&length.to_be_bytes());
        }

        let (answer, response) = oneshot::channel();
        {
            let mut pending = self.lock();
            if pending.closed.is_some() {
                drop(pending);
                return Err(self.closed_error());
            }
            pending.waiting.insert(correlation_id, answer);
        }
        let exchange = async {
            self.outgoing
                .send(frame.freeze())
                .await
                .map_err(|_| self.closed_error())?;
            response.await.map_err(|_| self.closed_error())
        };
        let frame = match tokio::time::timeout(timeout, exchange).await {
            Ok(frame) => frame?,
            Err(_) => {
                self.lock().waiting.remove(&correlation_id);
                return Err(ClientError::RequestTimeout {
                    api,
                    addr: self.addr.clone(),
                    timeout,
                });
            }
        };
        decode_response::<R>(frame, version).map_err(codec_error)
    }
}

fn decode_response<R: Request>(mut frame: Bytes, version: i16) -> anyhow::Result<R::Response> {
    ResponseHeader::decode(&mut frame, R::Response::header_version(version))?;
    let response = R::Response::decode(&mut frame, version)?;
    if frame.has_remaining() {
        anyhow::bail!("{} bytes left after the response", frame.remaining());
    }
    Ok(response)
}

pub(crate) fn api_name(key: i16) -> String {
    ApiKey::try_from(key)
        .map(|api| format!("{api:?}"))
        .unwrap_or_else(|()| format!("API {key}"))
}

async fn read_responses(mut reader: OwnedReadHalf, pending: Arc<Mutex<Pending>>) {
    let mut buffer = BytesMut::with_capacity(64 * 1024);
    let reason = loop {
        match split_frame(&mut buffer, MAX_RESPONSE_BYTES) {
            Ok(Some(frame)) => {
                let Some(id) = frame.first_chunk::<4>().map(|id| i32::from_be_bytes(*id)) else {
                    break "a response without a header".to_string();
                };
                let waiter = pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .waiting
                    .remove(&id);
                // No waiter: its caller gave up; the response is dropped.
                if let Some(waiter) = waiter {
                    let _ = waiter.send(frame);
                }
                continue;
            }
            Ok(None) => {}
            Err(error) => break error.to_string(),
        }
        match reader.read_buf(&mut buffer).await {
            Ok(0) => break "the broker closed the connection".to_string(),
            Ok(_) => {}
            Err(error) => break error.to_string(),
        }
    };
    pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .close(reason);
}

async fn write_requests(
    mut writer: OwnedWriteHalf,
    mut queue: mpsc::Receiver<Bytes>,
    pending: Arc<Mutex<Pending>>,
) {
    while let Some(frame) = queue.recv().await {
        if let Err(error) = writer.write_all(&frame).await {
            pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .close(error.to_string());
            return;
        }
    }
}
