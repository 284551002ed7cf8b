//! Per-account login throttling: after a few wrong passwords in a row, the account refuses
//! sign-ins (even with the right password) for a time that doubles with each further
//! failure, up to a cap. The count is replicated state of identity's group, so an attacker
//! who spreads guesses over every node behind the load balancer gets no more of them; a
//! successful sign-in clears it. Per-IP rate limits at the edge bound the writes a guessing
//! client can cause.

use serde::{Deserialize, Serialize};

/// Wrong passwords allowed in a row before the account starts refusing sign-ins.
pub const FREE_FAILURES: u32 = 5;
/// The first lock's length; each further failure doubles it.
const FIRST_LOCK_MS: i64 = 1_000;
/// The longest lock.
const MAX_LOCK_MS: i64 = 15 * 60 * 1_000;

/// An account's run of failed sign-ins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginFailures {
    /// Wrong passwords in a row since the last successful sign-in.
    pub failures: u32,
    /// Until when (ms since the epoch) sign-ins are refused; 0 when not locked.
    pub locked_until_ms: i64,
}

impl LoginFailures {
    /// One more wrong password at `at_ms`.
    pub fn record(&mut self, at_ms: i64) {
        self.failures = self.failures.saturating_add(1);
        if self.failures >= FREE_FAILURES {
            let doublings = (self.failures - FREE_FAILURES).min(20);
            let lock = FIRST_LOCK_MS
                .saturating_mul(1_i64 << doublings)
                .min(MAX_LOCK_MS);
            self.locked_until_ms = at_ms.saturating_add(lock);
        }
    }

    /// How long sign-ins are still refused at `now_ms`, in whole seconds (at least 1);
    /// `None` when they are not.
    pub fn locked_for_secs(&self, now_ms: i64) -> Option<i64> {
        let left = self.locked_until_ms - now_ms;
        (left > 0).then(|| (left + 999) / 1_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_starts_after_the_free_failures_and_doubles_up_to_the_cap() {
        let mut failures = LoginFailures::default();
        for _ in 0..FREE_FAILURES - 1 {
            failures.record(0);
            assert_eq!(failures.locked_for_secs(0), None);
        }
        failures.record(0);
        assert_eq!(failures.locked_for_secs(0), Some(1));
        failures.record(0);
        assert_eq!(failures.locked_for_secs(0), Some(2));
        failures.record(10_000);
        assert_eq!(failures.locked_for_secs(10_000), Some(4));
        assert_eq!(failures.locked_for_secs(14_000), None);
        for _ in 0..100 {
            failures.record(0);
        }
        assert_eq!(failures.locked_for_secs(0), Some(15 * 60));
    }
}
