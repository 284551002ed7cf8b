//! Resilience for anything a service calls out to (the event log today, payment providers
//! later): a circuit breaker, a timeout around each call, and the retry backoff consumers use.
//!
//! The breaker is a pure state machine with time passed in (`Instant`), so its transitions are
//! tested without a runtime or sleeps; [`Guarded`] is the thin async wrapper that reads the
//! clock, applies the timeout and feeds the outcome back.
//!
//! - Closed: calls go through; `failure_threshold` failures in a row open it.
//! - Open: calls fail fast (the caller waits out `retry_after` instead of piling onto a
//!   dependency that is down) until `cool_down` has passed.
//! - Half-open: one trial call goes through; its success closes the breaker, its failure
//!   opens it again for another cool-down.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// How long an open breaker refuses calls before it lets a trial through.
    pub cool_down: Duration,
    /// How long one call may take before it counts as a failure.
    pub call_timeout: Duration,
}

impl Default for BreakerConfig {
    fn default() -> BreakerConfig {
        BreakerConfig {
            failure_threshold: 5,
            cool_down: Duration::from_secs(2),
            call_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// A trial call is out; others are refused until it reports.
    HalfOpen,
}

/// The breaker refused a call: the dependency failed too often lately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit open: retry in {retry_after:?}")]
pub struct Open {
    pub retry_after: Duration,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: BreakerState,
}

impl CircuitBreaker {
    pub fn new(config: BreakerConfig) -> CircuitBreaker {
        CircuitBreaker {
            config,
            state: BreakerState::Closed { failures: 0 },
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// May a call start now? An open breaker whose cool-down has passed lets this one
    /// through as the half-open trial.
    pub fn try_acquire(&mut self, now: Instant) -> Result<(), Open> {
        match self.state {
            BreakerState::Closed { .. } => Ok(()),
            BreakerState::Open { until } if now >= until => {
                self.state = BreakerState::HalfOpen;
                Ok(())
            }
            BreakerState::Open { until } => Err(Open {
                retry_after: until - now,
            }),
            // The trial has not reported yet; a caller retrying after a cool-down is fine.
            BreakerState::HalfOpen => Err(Open {
                retry_after: self.config.cool_down,
            }),
        }
    }

    pub fn on_success(&mut self) {
        self.state = BreakerState::Closed { failures: 0 };
    }

    pub fn on_failure(&mut self, now: Instant) {
        self.state = match self.state {
            BreakerState::Closed { failures } if failures + 1 < self.config.failure_threshold => {
                BreakerState::Closed {
                    failures: failures + 1,
                }
            }
            // The threshold reached, or the half-open trial failed: open again.
            _ => BreakerState::Open {
                until: now + self.config.cool_down,
            },
        };
    }
}

/// Why a guarded call did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CallError<E> {
    #[error(transparent)]
    Open(Open),
    #[error("timed out after {0:?}")]
    TimedOut(Duration),
    #[error(transparent)]
    Failed(E),
}

impl<E> CallError<E> {
    /// How long to wait before calling again: the breaker's answer when it refused, else none
    /// (the caller's own backoff applies).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CallError::Open(open) => Some(open.retry_after),
            _ => None,
        }
    }
}

/// A breaker shared by the calls to one dependency, with a timeout on each call.
#[derive(Debug)]
pub struct Guarded {
    name: &'static str,
    timeout: Duration,
    breaker: Mutex<CircuitBreaker>,
}

impl Guarded {
    pub fn new(name: &'static str, config: BreakerConfig) -> Guarded {
        Guarded {
            name,
            timeout: config.call_timeout,
            breaker: Mutex::new(CircuitBreaker::new(config)),
        }
    }

    /// Runs `call` if the breaker allows it, bounded by the timeout; its outcome feeds the
    /// breaker. A call that times out is dropped: callers must only guard calls that are safe
    /// to abandon and repeat (idempotent publishes, reads, offset commits).
    pub async fn call<T, E, F>(&self, call: F) -> Result<T, CallError<E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        self.with_breaker(|breaker| breaker.try_acquire(Instant::now()))
            .map_err(CallError::Open)?;
        let outcome = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(CallError::Failed(error)),
            Err(_) => Err(CallError::TimedOut(self.timeout)),
        };
        match &outcome {
            Ok(_) => self.with_breaker(|breaker| breaker.on_success()),
            Err(_) => {
                let opened = self.with_breaker(|breaker| {
                    breaker.on_failure(Instant::now());
                    matches!(breaker.state(), BreakerState::Open { .. })
                });
                if opened {
                    tracing::warn!(dependency = self.name, "circuit breaker open");
                }
            }
        }
        outcome
    }

    fn with_breaker<R>(&self, f: impl FnOnce(&mut CircuitBreaker) -> R) -> R {
        // The breaker holds no invariant a panic elsewhere could break: use it as left.
        let mut breaker = match self.breaker.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut breaker)
    }
}

/// Bounded retries with exponential backoff: `attempts` tries in all, waiting `initial`,
/// `2 * initial`, ... (at most `max`) between them.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub initial: Duration,
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts: 4,
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt `attempt` (1-based), or None when it was the last.
    pub fn backoff(&self, attempt: u32) -> Option<Duration> {
        if attempt >= self.attempts {
            return None;
        }
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        Some(self.initial.saturating_mul(factor).min(self.max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            failure_threshold: 3,
            cool_down: Duration::from_secs(10),
            call_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn opens_after_threshold_consecutive_failures_only() {
        let t0 = Instant::now();
        let mut breaker = CircuitBreaker::new(config());
        breaker.on_failure(t0);
        breaker.on_failure(t0);
        // A success in between resets the count.
        breaker.on_success();
        breaker.on_failure(t0);
        breaker.on_failure(t0);
        assert_eq!(breaker.state(), BreakerState::Closed { failures: 2 });
        assert_eq!(breaker.try_acquire(t0), Ok(()));
        breaker.on_failure(t0);
        assert_eq!(
            breaker.state(),
            BreakerState::Open {
                until: t0 + Duration::from_secs(10)
            }
        );
    }

    #[test]
    fn open_refuses_until_cool_down_then_lets_one_trial_through() {
        let t0 = Instant::now();
        let mut breaker = CircuitBreaker::new(config());
        for _ in 0..3 {
            breaker.on_failure(t0);
        }
        let later = t0 + Duration::from_secs(4);
        assert_eq!(
            breaker.try_acquire(later),
            Err(Open {
                retry_after: Duration::from_secs(6)
            })
        );
        let after = t0 + Duration::from_secs(10);
        assert_eq!(breaker.try_acquire(after), Ok(()));
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        // Only one trial at a time.
        assert!(breaker.try_acquire(after).is_err());
    }

    #[test]
    fn half_open_trial_closes_on_success_and_reopens_on_failure() {
        let t0 = Instant::now();
        let mut breaker = CircuitBreaker::new(config());
        for _ in 0..3 {
            breaker.on_failure(t0);
        }
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(breaker.try_acquire(t1), Ok(()));
        breaker.on_failure(t1);
        assert_eq!(
            breaker.state(),
            BreakerState::Open {
                until: t1 + Duration::from_secs(10)
            }
        );
        let t2 = t1 + Duration::from_secs(10);
        assert_eq!(breaker.try_acquire(t2), Ok(()));
        breaker.on_success();
        assert_eq!(breaker.state(), BreakerState::Closed { failures: 0 });
        assert_eq!(breaker.try_acquire(t2), Ok(()));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_stops_after_the_last_attempt() {
        let policy = RetryPolicy {
            attempts: 5,
            initial: Duration::from_millis(100),
            max: Duration::from_millis(350),
        };
        let waits: Vec<Option<Duration>> = (1..=5).map(|a| policy.backoff(a)).collect();
        assert_eq!(
            waits,
            vec![
                Some(Duration::from_millis(100)),
                Some(Duration::from_millis(200)),
                Some(Duration::from_millis(350)),
                Some(Duration::from_millis(350)),
                None,
            ]
        );
    }

    #[tokio::test]
    async fn guarded_calls_time_out_count_as_failures_and_fail_fast_when_open() {
        let guarded = Guarded::new(
            "test",
            BreakerConfig {
                failure_threshold: 2,
                cool_down: Duration::from_secs(60),
                call_timeout: Duration::from_millis(20),
            },
        );
        let slow = guarded
            .call(async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok::<(), ()>(())
            })
            .await;
        assert!(matches!(slow, Err(CallError::TimedOut(_))));
        let failed = guarded.call(async { Err::<(), _>("down") }).await;
        assert!(matches!(failed, Err(CallError::Failed("down"))));
        // Open now: the call is not even started.
        let ran = std::sync::atomic::AtomicBool::new(false);
        let refused = guarded
            .call(async {
                ran.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok::<(), ()>(())
            })
            .await;
        assert!(refused.is_err_and(|error| error.retry_after().is_some()));
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
    }
}
