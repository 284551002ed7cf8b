//! The Kafka listener: accepts connections (bounded, with backoff on accept errors) and serves
//! each one as a reader that decodes and handles requests in order and a writer that sends the
//! responses, so that writing one response overlaps handling the next request. Requests on a
//! connection are handled one at a time, in order, as Kafka does.

use crate::api;
use crate::broker::Broker;
use crate::protocol::codec::{self, CodecError};
use crate::protocol::frame::split_frame;
use bytes::BytesMut;
use kafka_protocol::messages::ApiKey;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};

/// Read-buffer growth step: large enough that a 1 MiB produce request arrives in few reads.
const READ_CHUNK: usize = 256 * 1024;
/// Responses queued for the writer before the reader waits (back-pressure on slow clients).
const WRITE_QUEUE: usize = 64;

/// Serves Kafka clients until `shutdown` turns true.
pub async fn run(listener: TcpListener, broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let connections = Arc::new(Semaphore::new(broker.config().max_connections));
    let mut backoff = Duration::from_millis(5);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            _ = shutdown.changed() => return,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(5);
                let broker = broker.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    serve_connection(stream, peer, broker, shutdown).await;
                    drop(permit);
                });
            }
            Err(error) => {
                // Typically EMFILE: wait instead of spinning, as mini-redis does.
                tracing::warn!(%error, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%peer, %error, "set_nodelay failed");
    }
    let (mut reader, writer) = stream.into_split();
    let (responses, queue) = mpsc::channel(WRITE_QUEUE);
    let writer_task = tokio::spawn(write_responses(writer, queue, peer));
    let limit = broker.config().max_request_bytes;
    let mut buffer = BytesMut::with_capacity(READ_CHUNK);
    'connection: loop {
        loop {
            let frame = match split_frame(&mut buffer, limit) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(%peer, %error, "refusing frame; closing the connection");
                    break 'connection;
                }
            };
            let Some(response) = handle_frame(&broker, frame, peer).await else {
                break 'connection;
            };
            if let Some(bytes) = response
                && responses.send(bytes).await.is_err()
            {
                break 'connection;
            }
        }
        if buffer.capacity() - buffer.len() < READ_CHUNK / 4 {
            buffer.reserve(READ_CHUNK);
        }
        tokio::select! {
            read = reader.read_buf(&mut buffer) => match read {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%peer, %error, "read failed");
                    break;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
    drop(responses);
    if let Err(error) = writer_task.await {
        tracing::debug!(%peer, %error, "writer task ended abnormally");
    }
}

/// Handles one frame. `None`: the connection must close. `Some(None)`: no response is owed
/// (acks=0). `Some(Some(bytes))`: the encoded response.
async fn handle_frame(
    broker: &Arc<Broker>,
    frame: bytes::Bytes,
    peer: SocketAddr,
) -> Option<Option<BytesMut>> {
    let request = match codec::decode_request(frame, api::supported_versions) {
        Ok(request) => request,
        Err(CodecError::UnsupportedVersion {
            api: ApiKey::ApiVersions,
            correlation_id,
            ..
        }) => {
            // KIP-511: answer in v0 so that any client can read the versions we do support.
            let mut out = BytesMut::new();
            let body = api::api_versions::unsupported_version_response();
            return match codec::encode_response(
                &mut out,
                ApiKey::ApiVersions,
                0,
                correlation_id,
                &body,
            ) {
                Ok(()) => Some(Some(out)),
                Err(error) => {
                    tracing::error!(%peer, %error, "cannot encode ApiVersions fallback");
                    None
                }
            };
        }
        Err(error) => {
            tracing::warn!(%peer, %error, "refusing request; closing the connection");
            return None;
        }
    };
    let version = request.header.request_api_version;
    let correlation_id = request.header.correlation_id;
    let api_key = request.api_key;
    let Some(response) = api::handle(broker, request).await else {
        return Some(None);
    };
    let mut out = BytesMut::new();
    match codec::encode_response(&mut out, api_key, version, correlation_id, &response) {
        Ok(()) => Some(Some(out)),
        Err(error) => {
            tracing::error!(%peer, %error, "cannot encode response; closing the connection");
            None
        }
    }
}

async fn write_responses(
    mut writer: OwnedWriteHalf,
    mut queue: mpsc::Receiver<BytesMut>,
    peer: SocketAddr,
) {
    while let Some(bytes) = queue.recv().await {
        if let Err(error) = writer.write_all(&bytes).await {
            tracing::debug!(%peer, %error, "write failed");
            return;
        }
    }
    if let Err(error) = writer.shutdown().await {
        tracing::debug!(%peer, %error, "shutdown failed");
    }
}
