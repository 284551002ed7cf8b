//! The HTTP listener: accepts connections within limits and serves each one with hyper.
//!
//! `axum::serve` sets no header read timeout and no connection limit, so a few hundred
//! clients that send half a header and stall hold as many file descriptors until the node
//! runs out (`accept error: Too many open files`). This listener:
//!
//! - admits at most `max_connections` open connections, `max_connections_per_ip` from one
//!   client IP, and closes any other at once ([`admission`]; one warning per episode);
//! - closes a connection whose request header is not complete within `header_read_timeout`
//!   (hyper's HTTP/1 timer; it also bounds how long an idle keep-alive connection stays open);
//! - backs off on accept errors instead of spinning;
//! - stops accepting on shutdown and lets open connections finish their request, within
//!   `drain_timeout`.
//!
//! It serves HTTP/1.1 only: HTTP/2 without TLS (h2c) is not used by browsers or the API's
//! clients, and hyper's automatic version detection waits for the client's first bytes with
//! no timeout. A slow request *body* is the router's business ([`crate::body_deadline`]),
//! where it can be answered 408 in the API's shape.

pub mod admission;
mod serve;

pub use admission::{Admission, ConnectionLimits, Refusal};
pub use serve::serve;

use std::time::Duration;

/// How the listener treats connections (filled by the CLI from flags, env and file).
#[derive(Debug, Clone, Copy)]
pub struct ListenerConfig {
    pub limits: ConnectionLimits,
    /// A client must send a request's complete header within this time.
    pub header_read_timeout: Duration,
    /// How long open connections get to finish once a stop is asked for.
    pub drain_timeout: Duration,
}

impl Default for ListenerConfig {
    fn default() -> ListenerConfig {
        ListenerConfig {
            limits: ConnectionLimits {
                total: 1024,
                per_ip: 256,
            },
            header_read_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(5),
        }
    }
}
