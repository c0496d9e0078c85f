//! A circuit breaker: stops calling an upstream API that keeps failing, so requests fail (or
//! degrade) at once instead of each waiting out timeouts and retries against a dead service,
//! and the service gets room to recover.
//!
//! ```text
//!            N consecutive transient failures
//!   Closed ─────────────────────────────────────► Open
//!     ▲                                           │ cool-down elapsed:
//!     │ the probe succeeds                        ▼ the next call is let through as a probe
//!     └─────────────────────────────────────── HalfOpen ──► Open (the probe fails)
//! ```
//!
//! Only transient failures count (transport errors, timeouts, 5xx, 429): a 4xx caused by the
//! request proves the upstream is there, and counts as an answer. While half-open, exactly one
//! call (the probe) is in flight; the others are refused as if open. A probe whose caller goes
//! away before it ends gives its place to the next call. Hand-written rather than taken from a
//! crate: the state machine is forty lines, its clock is injected (tests step through the
//! cool-down without sleeping), and its transitions publish the state gauge the server's
//! metrics promise.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Consecutive transient failures that open the breaker, by default.
pub const DEFAULT_FAILURES: u32 = 5;
/// How long an open breaker refuses calls before it lets a probe through, by default.
pub const DEFAULT_COOL_DOWN: Duration = Duration::from_secs(10);

/// Where the breaker reads the time; a test steps a manual one.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

/// The monotonic clock of the process.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// When a breaker opens and how long it stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive transient failures that open it (at least 1).
    pub failures: u32,
    /// Time open before a probe is let through.
    pub cool_down: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: DEFAULT_FAILURES,
            cool_down: DEFAULT_COOL_DOWN,
        }
    }
}

/// The breaker's state, as the `podmap_upstream_breaker_state` gauge publishes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Calls pass (gauge 0).
    Closed,
    /// One probe is let through (gauge 1).
    HalfOpen,
    /// Calls are refused (gauge 2).
    Open,
}

impl State {
    pub fn gauge(self) -> f64 {
        match self {
            State::Closed => 0.0,
            State::HalfOpen => 1.0,
            State::Open => 2.0,
        }
    }
}

#[derive(Debug)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// One upstream's breaker.
pub struct Breaker {
    upstream: &'static str,
    config: BreakerConfig,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
}

/// A call let through. Say how it ended with [`Ticket::record`]; dropped unrecorded (its
/// caller went away), it changes nothing, except that a probe gives its place to the next call.
pub struct Ticket {
    breaker: Arc<Breaker>,
    probe: bool,
    recorded: bool,
}

/// The call was refused: the breaker is open, or half-open with its probe in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused;

impl Breaker {
    /// A closed breaker for `upstream` (its metrics label), on the system clock.
    pub fn new(upstream: &'static str, config: BreakerConfig) -> Arc<Self> {
        Breaker::with_clock(upstream, config, Arc::new(SystemClock))
    }

    pub fn with_clock(
        upstream: &'static str,
        config: BreakerConfig,
        clock: Arc<dyn Clock>,
    ) -> Arc<Self> {
        let breaker = Breaker {
            upstream,
            config: BreakerConfig {
                failures: config.failures.max(1),
                ..config
            },
            clock,
            inner: Mutex::new(Inner::Closed { failures: 0 }),
        };
        breaker.gauge(State::Closed);
        Arc::new(breaker)
    }

    /// The state now (an open breaker whose cool-down has passed is still `Open` until a call
    /// comes and is let through as the probe).
    pub fn state(&self) -> State {
        match *self.lock() {
            Inner::Closed { .. } => State::Closed,
            Inner::Open { .. } => State::Open,
            Inner::HalfOpen { .. } => State::HalfOpen,
        }
    }

    /// Lets a call through, or refuses it while open.
    pub fn try_call(self: &Arc<Self>) -> Result<Ticket, Refused> {
        let mut inner = self.lock();
        let probe = match *inner {
            Inner::Closed { .. } => false,
            Inner::Open { until } if self.clock.now() >= until => {
                *inner = Inner::HalfOpen { probing: true };
                self.publish(State::HalfOpen);
                true
            }
            Inner::HalfOpen { probing: false } => {
                *inner = Inner::HalfOpen { probing: true };
                true
            }
            Inner::Open { .. } | Inner::HalfOpen { probing: true } => return Err(Refused),
        };
        drop(inner);
        Ok(Ticket {
            breaker: self.clone(),
            probe,
            recorded: false,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The state is a plain value, whole after any panic: keep using it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn gauge(&self, state: State) {
        metrics::gauge!("podmap_upstream_breaker_state", "upstream" => self.upstream)
            .set(state.gauge());
    }

    /// A transition: the gauge, and a log line (a warning unless it closed).
    fn publish(&self, state: State) {
        self.gauge(state);
        if state != State::Closed {
            tracing::warn!(upstream = self.upstream, "circuit breaker {state:?}");
        } else {
            tracing::info!(upstream = self.upstream, "circuit breaker closed");
        }
    }

    fn open(&self, inner: &mut Inner) {
        *inner = Inner::Open {
            until: self.clock.now() + self.config.cool_down,
        };
        self.publish(State::Open);
    }

    fn settle(&self, probe: bool, failed: bool) {
        let mut inner = self.lock();
        match (&mut *inner, probe) {
            (Inner::HalfOpen { .. }, true) if failed => self.open(&mut inner),
            (Inner::HalfOpen { .. }, true) => {
                *inner = Inner::Closed { failures: 0 };
                self.publish(State::Closed);
            }
            (Inner::Closed { failures }, _) if failed => {
                *failures += 1;
                if *failures >= self.config.failures {
                    self.open(&mut inner);
                }
            }
            (Inner::Closed { failures }, _) => *failures = 0,
            // A call that started before the breaker opened, or beside the probe: the probe
            // alone decides.
            _ => {}
        }
    }
}

impl Ticket {
    /// How the call ended: `failed` for a transient failure of the upstream.
    pub fn record(mut self, failed: bool) {
        self.recorded = true;
        self.breaker.settle(self.probe, failed);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.probe && !self.recorded {
            let mut inner = self.breaker.lock();
            if let Inner::HalfOpen { probing } = &mut *inner {
                *probing = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock that moves only when told.
    struct Manual(Mutex<Instant>);

    impl Clock for Manual {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }
    }

    impl Manual {
        fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }
    }

    fn breaker(failures: u32) -> (Arc<Breaker>, Arc<Manual>) {
        let clock = Arc::new(Manual(Mutex::new(Instant::now())));
        let config = BreakerConfig {
            failures,
            cool_down: Duration::from_secs(10),
        };
        (Breaker::with_clock("test", config, clock.clone()), clock)
    }

    fn fail(b: &Arc<Breaker>) {
        b.try_call().expect("let through").record(true);
    }

    #[test]
    fn opens_after_n_consecutive_failures_only() {
        let (b, _) = breaker(3);
        fail(&b);
        fail(&b);
        b.try_call().unwrap().record(false); // a success resets the count
        fail(&b);
        fail(&b);
        assert_eq!(b.state(), State::Closed);
        fail(&b);
        assert_eq!(b.state(), State::Open);
        assert!(b.try_call().is_err(), "open: refused");
    }

    #[test]
    fn half_opens_after_the_cool_down_and_a_successful_probe_closes() {
        let (b, clock) = breaker(1);
        fail(&b);
        clock.advance(Duration::from_millis(9_999));
        assert!(b.try_call().is_err(), "still cooling down");
        clock.advance(Duration::from_millis(1));
        let probe = b.try_call().expect("the probe");
        assert_eq!(b.state(), State::HalfOpen);
        assert!(b.try_call().is_err(), "one probe at a time");
        probe.record(false);
        assert_eq!(b.state(), State::Closed);
        assert!(b.try_call().is_ok());
    }

    #[test]
    fn a_failed_probe_reopens_for_a_new_cool_down() {
        let (b, clock) = breaker(2);
        fail(&b);
        fail(&b);
        clock.advance(Duration::from_secs(10));
        fail(&b); // the probe
        assert_eq!(b.state(), State::Open);
        clock.advance(Duration::from_secs(5));
        assert!(b.try_call().is_err(), "the cool-down starts again");
        clock.advance(Duration::from_secs(5));
        assert!(b.try_call().is_ok());
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_call_probe() {
        let (b, clock) = breaker(1);
        fail(&b);
        clock.advance(Duration::from_secs(10));
        drop(b.try_call().expect("the probe"));
        assert_eq!(b.state(), State::HalfOpen);
        b.try_call().expect("the next probe").record(false);
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn late_outcomes_of_calls_from_before_the_opening_change_nothing() {
        let (b, clock) = breaker(1);
        let early = b.try_call().unwrap();
        let late_success = b.try_call().unwrap();
        early.record(true);
        assert_eq!(b.state(), State::Open);
        late_success.record(false);
        assert_eq!(b.state(), State::Open, "only a probe closes it");
        clock.advance(Duration::from_secs(10));
        let probe = b.try_call().unwrap();
        assert_eq!(b.state(), State::HalfOpen);
        probe.record(false);
        assert_eq!(b.state(), State::Closed);
        assert_eq!(
            [State::Closed, State::HalfOpen, State::Open].map(State::gauge),
            [0.0, 1.0, 2.0]
        );
    }
}
