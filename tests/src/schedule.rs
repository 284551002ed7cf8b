//! A fault schedule's randomness: a seed from `CLUSTER_FAULT_SEED` or the clock, and a
//! small PRNG, so a failing schedule can be replayed.

use std::time::{Duration, Instant};

use crate::cluster::Fault;

/// `CLUSTER_FAULT_SEED`, else one from the clock.
pub fn seed() -> u64 {
    if let Some(seed) = std::env::var("CLUSTER_FAULT_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
    {
        return seed;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    // Keep it short enough to type back; never zero (xorshift's fixed point).
    u64::try_from(nanos % 1_000_000_007).unwrap_or(1).max(1)
}

/// xorshift64*: a small deterministic PRNG, enough to replay a fault schedule.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed.max(1))
    }

    fn next_value(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform enough in `0..bound` for a schedule.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_value() % bound.max(1)
    }

    pub fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.below(high.saturating_sub(low) + 1))
    }
}

impl XorShift {
    /// One of the three faults, uniformly.
    pub fn fault(&mut self) -> Fault {
        match self.below(3) {
            0 => Fault::Kill,
            1 => Fault::Pause,
            _ => Fault::Isolate,
        }
    }
}

/// A schedule's line for one fault, `started` being the schedule's start; printed as it
/// is applied, and returned for the test's report.
pub fn fault_line(
    started: Instant,
    fault: Fault,
    target: u64,
    whom: &str,
    lasting: Duration,
) -> String {
    let line = format!(
        "{:5.1}s {fault:?} node {target} ({whom}) for {lasting:?}",
        started.elapsed().as_secs_f64()
    );
    eprintln!("fault: {line}");
    line
}
