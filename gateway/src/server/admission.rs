//! Who may open another connection: at most `per_ip` open connections from one client IP and
//! `total` from everyone. A connection over either cap is closed at once by the caller (a
//! queued client would only hold a file descriptor longer); each open connection holds a
//! [`Ticket`] that gives its place back when dropped.
//!
//! Refusals come in bursts (a flood, a misbehaving client retrying), so they are logged per
//! episode: one warning when refusing starts, then at most one line per
//! [`REFUSAL_LOG_INTERVAL`] with how many were refused since, never one line per refusal.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The shortest time between two warnings about refused connections.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// How many connections may be open at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub total: usize,
    pub per_ip: usize,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// This client IP already holds `per_ip` connections.
    PerIp,
    /// The node already holds `total` connections.
    Total,
}

/// The open connections, counted per client IP.
#[derive(Clone)]
pub struct Admission {
    limits: ConnectionLimits,
    state: Arc<Mutex<OpenConnections>>,
}

#[derive(Default)]
struct OpenConnections {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
    refusals: RefusalLog,
}

impl Admission {
    pub fn new(limits: ConnectionLimits) -> Admission {
        Admission {
            limits,
            state: Arc::new(Mutex::new(OpenConnections::default())),
        }
    }

    /// A place for one more connection from `ip`, or why there is none (logged per episode).
    pub fn admit(&self, ip: IpAddr) -> Result<Ticket, Refusal> {
        // The lock is held for a few map operations only; a panic while holding it cannot
        // leave the counts half-updated, so a poisoned lock is still usable.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let from_ip = state.per_ip.get(&ip).copied().unwrap_or(0);
        let refusal = if from_ip >= self.limits.per_ip {
            Some(Refusal::PerIp)
        } else if state.total >= self.limits.total {
            Some(Refusal::Total)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            if let Some(line) = state.refusals.refused(Instant::now()) {
                let limits = self.limits;
                match refusal {
                    Refusal::PerIp => tracing::warn!(
                        client = %ip,
                        limit = limits.per_ip,
                        refused_since_last_warning = line.refused,
                        "refusing HTTP connections: a client IP holds its maximum of open connections (--http-max-connections-per-ip)"
                    ),
                    Refusal::Total => tracing::warn!(
                        client = %ip,
                        limit = limits.total,
                        refused_since_last_warning = line.refused,
                        "refusing HTTP connections: the node holds its maximum of open connections (--http-max-connections)"
                    ),
                }
            }
            return Err(refusal);
        }
        state.total += 1;
        *state.per_ip.entry(ip).or_insert(0) += 1;
        Ok(Ticket {
            ip,
            state: self.state.clone(),
        })
    }

    /// How many connections are open (for tests and metrics).
    pub fn open(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

/// One open connection's place; dropping it frees the place.
pub struct Ticket {
    ip: IpAddr,
    state: Arc<Mutex<OpenConnections>>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.total = state.total.saturating_sub(1);
        if let Some(count) = state.per_ip.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                // Forget the IP so the map holds only clients with open connections.
                state.per_ip.remove(&self.ip);
            }
        }
    }
}

/// When to write a warning about refusals: at the first refusal, then at most once per
/// [`REFUSAL_LOG_INTERVAL`]. Time is passed in, so the rule tests without a clock.
#[derive(Debug, Default)]
pub struct RefusalLog {
    last_line: Option<Instant>,
    /// Refusals since the last line, this one included once counted.
    unreported: u64,
}

/// A warning to write now.
#[derive(Debug, PartialEq, Eq)]
pub struct RefusalLine {
    /// Refusals since the previous warning, this one included.
    pub refused: u64,
}

impl RefusalLog {
    pub fn refused(&mut self, now: Instant) -> Option<RefusalLine> {
        self.unreported += 1;
        let due = self
            .last_line
            .is_none_or(|last| now.saturating_duration_since(last) >= REFUSAL_LOG_INTERVAL);
        if !due {
            return None;
        }
        self.last_line = Some(now);
        let refused = std::mem::take(&mut self.unreported);
        Some(RefusalLine { refused })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn one_ip_gets_at_most_its_share_and_a_closed_connection_frees_a_place() {
        let admission = Admission::new(ConnectionLimits {
            total: 10,
            per_ip: 2,
        });
        let first = admission.admit(ip(1)).unwrap();
        let _second = admission.admit(ip(1)).unwrap();
        assert_eq!(admission.admit(ip(1)).err(), Some(Refusal::PerIp));
        // Another client is not affected.
        let _other = admission.admit(ip(2)).unwrap();
        drop(first);
        assert!(admission.admit(ip(1)).is_ok());
    }

    #[test]
    fn the_total_caps_everyone_together() {
        let admission = Admission::new(ConnectionLimits {
            total: 2,
            per_ip: 5,
        });
        let _a = admission.admit(ip(1)).unwrap();
        let _b = admission.admit(ip(2)).unwrap();
        assert_eq!(admission.admit(ip(3)).err(), Some(Refusal::Total));
        assert_eq!(admission.open(), 2);
    }

    #[test]
    fn refusals_are_logged_once_per_interval_with_their_count() {
        let mut log = RefusalLog::default();
        let start = Instant::now();
        assert_eq!(log.refused(start), Some(RefusalLine { refused: 1 }));
        for second in 1..10 {
            assert_eq!(log.refused(start + Duration::from_secs(second)), None);
        }
        assert_eq!(
            log.refused(start + REFUSAL_LOG_INTERVAL),
            Some(RefusalLine { refused: 10 })
        );
    }
}
