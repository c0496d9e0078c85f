//! Per-client rate limits, one per route class, by GCRA ([`governor`]).
//!
//! | class | routes | why it has its own limit |
//! |---|---|---|
//! | `chat` | `/api/chat` | every answer is a paid LLM call |
//! | `search` | `/api/episodes/search` | an embeddings call and a scan of the podcast |
//! | `other` | every other path, unknown ones included | cheap reads of the mapped archives |
//!
//! `/api/health`, `/api/ready` and `/metrics` are never limited: probes and scrapes must
//! answer whoever asks, as often as they ask.
//!
//! A quota of `N` per period lets a client spend all `N` at once (burst = `N`) and then one
//! more every `period / N`. Each class has its own keyed limiter, so a client over its chat
//! limit still searches. A refused request answers 429 with `Retry-After` (whole seconds, at
//! least 1) and is counted as `podmap_rate_limited_total{class}`; it never reaches the body
//! reader or the request slots, so refusing costs almost nothing.
//!
//! With `REDIS_URL` the quotas are global: the request is checked in Redis
//! ([`shared::limits`](super::shared::limits)), where every replica counts, and Redis's answer
//! decides. A request Redis admits is counted by the local limiter too (its verdict ignored),
//! so the local limiter always holds this replica's share of what was admitted; a request
//! Redis refuses is not, so it costs the client nothing locally. When Redis does not answer in
//! time, the local limiter decides alone, from that warm state: the limit then holds per
//! replica.
//!
//! Clients are keyed by [`ClientAddr`]. Each limiter remembers every client it has seen until
//! that client's quota is full again; every [`PRUNE_EVERY`] checks the limiters forget those
//! clients (`retain_recent`), so memory is bounded by the clients of the last period, not by
//! every client ever seen.

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::client::ClientAddr;
use super::error::ApiError;
use super::shared::Redis;

/// Checks between two prunings of the limiters' client tables.
pub const PRUNE_EVERY: u64 = 4096;

/// A group of routes that shares one limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteClass {
    Chat,
    Search,
    Other,
}

impl RouteClass {
    /// The class of a request path; `None` for the paths that are never limited.
    pub fn of(path: &str) -> Option<RouteClass> {
        match path {
            "/api/health" | "/api/ready" | "/metrics" => None,
            "/api/chat" => Some(RouteClass::Chat),
            "/api/episodes/search" => Some(RouteClass::Search),
            _ => Some(RouteClass::Other),
        }
    }

    /// The class's name, as in the settings and the metric's label.
    pub fn name(self) -> &'static str {
        match self {
            RouteClass::Chat => "chat",
            RouteClass::Search => "search",
            RouteClass::Other => "other",
        }
    }
}

/// The period of a [`Rate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Per {
    Second,
    Minute,
    Hour,
}

/// `count` requests per period, all of which may come at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub per: Per,
}

impl Rate {
    pub fn per_minute(count: u32) -> Rate {
        Rate {
            count: NonZeroU32::new(count).expect("a rate of at least 1"),
            per: Per::Minute,
        }
    }

    /// The period the count is spread over.
    pub fn period(self) -> Duration {
        match self.per {
            Per::Second => Duration::from_secs(1),
            Per::Minute => Duration::from_secs(60),
            Per::Hour => Duration::from_secs(3600),
        }
    }

    fn quota(self) -> Quota {
        match self.per {
            Per::Second => Quota::per_second(self.count),
            Per::Minute => Quota::per_minute(self.count),
            Per::Hour => Quota::per_hour(self.count),
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per = match self.per {
            Per::Second => "s",
            Per::Minute => "min",
            Per::Hour => "h",
        };
        write!(f, "{}/{per}", self.count)
    }
}

/// A rate setting that is not `N/s`, `N/min`, `N/h` (N ≥ 1) or `off`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a rate: use N/s, N/min or N/h with N of at least 1, or off")]
pub struct InvalidRate(pub String);

/// A class's limit: a rate, or `off` (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(pub Option<Rate>);

impl FromStr for Limit {
    type Err = InvalidRate;

    fn from_str(text: &str) -> Result<Self, InvalidRate> {
        let invalid = || InvalidRate(text.to_owned());
        let trimmed = text.trim();
        if trimmed.eq_ignore_ascii_case("off") {
            return Ok(Limit(None));
        }
        let (count, per) = trimmed.split_once('/').ok_or_else(invalid)?;
        let count = count.trim().parse::<NonZeroU32>().map_err(|_| invalid())?;
        let per = match per.trim() {
            "s" => Per::Second,
            "min" => Per::Minute,
            "h" => Per::Hour,
            _ => return Err(invalid()),
        };
        Ok(Limit(Some(Rate { count, per })))
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(rate) => rate.fmt(f),
            None => f.write_str("off"),
        }
    }
}

/// The limit of each class (see the settings table in [`config`](super::config) for the
/// defaults and why).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub chat: Limit,
    pub search: Limit,
    pub other: Limit,
}

impl RateLimits {
    /// No limits at all.
    pub fn off() -> Self {
        RateLimits {
            chat: Limit(None),
            search: Limit(None),
            other: Limit(None),
        }
    }

    pub fn of(&self, class: RouteClass) -> Limit {
        match class {
            RouteClass::Chat => self.chat,
            RouteClass::Search => self.search,
            RouteClass::Other => self.other,
        }
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            chat: Limit(Some(Rate::per_minute(10))),
            search: Limit(Some(Rate::per_minute(120))),
            other: Limit(Some(Rate::per_minute(600))),
        }
    }
}

/// One keyed limiter per limited class, shared by every request.
pub struct Limiters {
    chat: Option<DefaultKeyedRateLimiter<IpAddr>>,
    search: Option<DefaultKeyedRateLimiter<IpAddr>>,
    other: Option<DefaultKeyedRateLimiter<IpAddr>>,
    checks: AtomicU64,
    limits: RateLimits,
    /// Where the global count is kept, with `REDIS_URL`.
    shared: Option<Redis>,
}

impl Limiters {
    /// Per-replica limits only.
    pub fn new(limits: &RateLimits) -> Arc<Limiters> {
        Limiters::with_shared(limits, None)
    }

    /// Limits counted in `shared` too, when given: global across replicas.
    pub fn with_shared(limits: &RateLimits, shared: Option<Redis>) -> Arc<Limiters> {
        let limiter = |class| {
            limits
                .of(class)
                .0
                .map(|rate| RateLimiter::keyed(rate.quota()))
        };
        Arc::new(Limiters {
            chat: limiter(RouteClass::Chat),
            search: limiter(RouteClass::Search),
            other: limiter(RouteClass::Other),
            checks: AtomicU64::new(0),
            limits: *limits,
            shared,
        })
    }

    fn limiter(&self, class: RouteClass) -> Option<&DefaultKeyedRateLimiter<IpAddr>> {
        match class {
            RouteClass::Chat => self.chat.as_ref(),
            RouteClass::Search => self.search.as_ref(),
            RouteClass::Other => self.other.as_ref(),
        }
    }

    /// Takes one request of `client`'s quota for `class`; `Err` holds the time until the
    /// next request would be admitted.
    pub fn check(&self, class: RouteClass, client: IpAddr) -> Result<(), Duration> {
        let Some(limiter) = self.limiter(class) else {
            return Ok(());
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.prune();
        }
        limiter
            .check_key(&client)
            .map_err(|not_until| not_until.wait_time_from(limiter.clock().now()))
    }

    /// With Redis, the global count decides (and what it admits is counted locally too);
    /// without it, or when it does not answer in time, [`check`](Self::check).
    pub async fn admit(&self, class: RouteClass, client: IpAddr) -> Result<(), Duration> {
        let (Some(redis), Some(rate)) = (&self.shared, self.limits.of(class).0) else {
            return self.check(class, client);
        };
        match redis.check_rate(class, client, rate).await {
            Some(Ok(())) => {
                // Keeps the local state warm for when Redis is away; Redis has decided.
                let _ = self.check(class, client);
                Ok(())
            }
            Some(Err(wait)) => Err(wait),
            None => self.check(class, client),
        }
    }

    /// Forgets the clients whose quota is full again, in every class.
    pub fn prune(&self) {
        for limiter in [&self.chat, &self.search, &self.other]
            .into_iter()
            .flatten()
        {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Clients remembered, over all classes.
    pub fn clients(&self) -> usize {
        [&self.chat, &self.search, &self.other]
            .into_iter()
            .flatten()
            .map(|limiter| limiter.len())
            .sum()
    }
}

/// Whole seconds to wait, at least 1: what `Retry-After` can say.
fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_millis().div_ceil(1000).max(1) as u64
}

/// Admits the request if its client has quota left in the request's class; else 429 with
/// `Retry-After`.
pub async fn rate_limit(
    State(limiters): State<Arc<Limiters>>,
    ClientAddr(client): ClientAddr,
    request: Request,
    next: Next,
) -> Response {
    let Some(class) = RouteClass::of(request.uri().path()) else {
        return next.run(request).await;
    };
    let Err(wait) = limiters.admit(class, client).await else {
        return next.run(request).await;
    };
    metrics::counter!("podmap_rate_limited_total", "class" => class.name()).increment(1);
    let seconds = retry_after_secs(wait);
    tracing::debug!(%client, class = class.name(), seconds, "rate limited");
    let mut response = ApiError::RateLimited { seconds }.into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(RouteClass::of("/api/chat"), Some(RouteClass::Chat));
        assert_eq!(
            RouteClass::of("/api/episodes/search"),
            Some(RouteClass::Search)
        );
        for other in [
            "/api/episodes/latest",
            "/api/speakers",
            "/api/podcasts",
            "/x",
        ] {
            assert_eq!(RouteClass::of(other), Some(RouteClass::Other), "{other}");
        }
        for never in ["/api/health", "/api/ready", "/metrics"] {
            assert_eq!(RouteClass::of(never), None, "{never}");
        }
    }

    #[test]
    fn rates_parse_and_print() {
        let ok = [
            ("10/min", "10/min"),
            (" 5 / s ", "5/s"),
            ("3/h", "3/h"),
            ("OFF", "off"),
        ];
        for (text, shown) in ok {
            assert_eq!(text.parse::<Limit>().unwrap().to_string(), shown, "{text}");
        }
        for bad in [
            "", "10", "0/min", "-1/s", "10/day", "10/m", "ten/min", "10/min/s", "1.5/s",
        ] {
            let e = bad.parse::<Limit>().unwrap_err();
            assert_eq!(e, InvalidRate(bad.to_owned()));
            assert!(e.to_string().contains("is not a rate"), "{e}");
        }
    }

    #[test]
    fn a_burst_of_n_then_refusals_with_a_wait_per_class_and_client() {
        let limits = RateLimits {
            chat: "2/min".parse().unwrap(),
            search: "off".parse().unwrap(),
            other: "1/h".parse().unwrap(),
        };
        let limiters = Limiters::new(&limits);
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "::1".parse().unwrap());
        assert!(limiters.check(RouteClass::Chat, a).is_ok());
        assert!(limiters.check(RouteClass::Chat, a).is_ok());
        let wait = limiters.check(RouteClass::Chat, a).unwrap_err();
        // One request back every 30 s.
        assert!(
            wait > Duration::from_secs(20) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert!(
            limiters.check(RouteClass::Chat, b).is_ok(),
            "another client"
        );
        assert!(
            limiters.check(RouteClass::Other, a).is_ok(),
            "another class"
        );
        assert!(limiters.check(RouteClass::Other, a).is_err());
        for _ in 0..100 {
            assert!(limiters.check(RouteClass::Search, a).is_ok(), "off");
        }
    }

    #[test]
    fn retry_after_is_whole_seconds_of_at_least_one() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1000)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(30)), 30);
    }

    #[test]
    fn pruning_forgets_clients_whose_quota_is_full_again() {
        let limits = RateLimits {
            other: "1000/s".parse().unwrap(),
            ..RateLimits::off()
        };
        let limiters = Limiters::new(&limits);
        for i in 0..200u32 {
            let client = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            limiters.check(RouteClass::Other, client).unwrap();
        }
        assert_eq!(limiters.clients(), 200);
        // One request of a 1000/s quota is back after 1 ms; wait generously.
        std::thread::sleep(Duration::from_millis(50));
        limiters.prune();
        assert_eq!(limiters.clients(), 0);
    }
}
