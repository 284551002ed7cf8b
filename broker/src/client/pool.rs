//! The client's connections, by broker address, opened when first needed and again after
//! one failed. Each broker has one shared connection for every request that the broker
//! answers at once (metadata, produce, offsets, coordinators), pipelined. A long-poll fetch
//! takes a connection of its own instead, from a few kept idle per broker: the broker
//! answers a connection's requests in order, so a fetch waiting `max_wait` for records on
//! the shared connection would hold back every produce and commit queued behind it.

use super::connection::Connection;
use super::error::ClientError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Idle fetch connections kept per broker: about as many as fetches usually overlap.
const IDLE_FETCH_CONNECTIONS: usize = 8;

pub(crate) struct Pool {
    client_id: String,
    connect_timeout: Duration,
    /// Serialises opening the shared connections, so concurrent first requests to a broker
    /// open one, not several.
    shared: tokio::sync::Mutex<HashMap<String, Arc<Connection>>>,
    idle_fetchers: Mutex<HashMap<String, Vec<Connection>>>,
}

impl Pool {
    pub(crate) fn new(client_id: String, connect_timeout: Duration) -> Pool {
        Pool {
            client_id,
            connect_timeout,
            shared: tokio::sync::Mutex::new(HashMap::new()),
            idle_fetchers: Mutex::new(HashMap::new()),
        }
    }

    /// The shared connection to `addr`, (re)opened if it has none that works.
    pub(crate) async fn shared(&self, addr: &str) -> Result<Arc<Connection>, ClientError> {
        let mut shared = self.shared.lock().await;
        if let Some(connection) = shared.get(addr)
            && !connection.is_closed()
        {
            return Ok(connection.clone());
        }
        let connection =
            Arc::new(Connection::open(addr, &self.client_id, self.connect_timeout).await?);
        shared.insert(addr.to_string(), connection.clone());
        Ok(connection)
    }

    /// Drops the shared connection to `addr` (after it timed out: the broker may be paused
    /// or gone without closing it), so the next request opens a fresh one.
    pub(crate) async fn forget(&self, addr: &str) {
        self.shared.lock().await.remove(addr);
        self.idle().remove(addr);
    }

    /// A connection to `addr` for one long-poll fetch: an idle one, or a new one.
    pub(crate) async fn exclusive(&self, addr: &str) -> Result<Connection, ClientError> {
        let idle = self.idle().get_mut(addr).and_then(|idle| {
            // Closed ones (the broker went away while they were idle) are dropped here.
            while let Some(connection) = idle.pop() {
                if !connection.is_closed() {
                    return Some(connection);
                }
            }
            None
        });
        match idle {
            Some(connection) => Ok(connection),
            None => Connection::open(addr, &self.client_id, self.connect_timeout).await,
        }
    }

    /// Returns a fetch connection after a completed request (one that failed is dropped).
    pub(crate) fn give_back(&self, connection: Connection) {
        if connection.is_closed() {
            return;
        }
        let mut idle = self.idle();
        let kept = idle.entry(connection.addr().to_string()).or_default();
        if kept.len() < IDLE_FETCH_CONNECTIONS {
            kept.push(connection);
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Connection>>> {
        self.idle_fetchers.lock().unwrap_or_else(|p| p.into_inner())
    }
}
