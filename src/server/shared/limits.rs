//! Global rate limits: the per-client, per-route-class quotas of [`limits`](super::super::limits)
//! counted in Redis, so a client's limit holds across replicas.
//!
//! GCRA, as the local limiter does it: a key per client and class holds the theoretical
//! arrival time (TAT) of the client's next request, in microseconds of the Redis clock (one
//! clock for every replica). A request is admitted when `max(TAT, now) + interval - period <=
//! now`, which lets a client spend its whole quota at once and then one request per
//! `interval = period / count`; the key expires when the quota is full again. The check and
//! the update are one Lua script, atomic in Redis, sent as `EVALSHA` (a hash, not the script,
//! on every request) with `EVAL` when Redis answers `NOSCRIPT` (after a restart or a
//! `SCRIPT FLUSH`; `EVAL` caches it again).

use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::Duration;

use redis::{ErrorKind, ServerErrorKind};

use super::Redis;
use crate::server::limits::{Rate, RouteClass};

/// Operation label of the check.
pub const OP_CHECK: &str = "rate_limit";

/// KEYS[1]: the client's key in one class. ARGV[1]: the interval between two requests, ARGV[2]:
/// the period, both in microseconds. Returns 0 (admitted) or the microseconds to wait.
pub const GCRA: &str = r#"
local interval = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local next_tat = tat + interval
local allowed_at = next_tat - period
if allowed_at > now then
  return allowed_at - now
end
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.ceil((next_tat - now) / 1000))
return 0
"#;

/// The script's SHA-1, for `EVALSHA`.
fn script_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| redis::Script::new(GCRA).get_hash().to_owned())
}

/// The key of `client` in `class`, without the prefix.
pub fn key(class: RouteClass, client: IpAddr) -> String {
    format!("rl:{}:{client}", class.name())
}

/// The period and interval of `rate` in microseconds.
fn micros(rate: Rate) -> (u64, u64) {
    let period = rate.period().as_micros() as u64;
    (period / u64::from(rate.count.get()), period)
}

impl Redis {
    /// Takes one request of `client`'s quota for `class` in Redis. `None`: Redis did not
    /// answer in time, and the caller decides locally; `Some(Err(wait))`: refused.
    pub async fn check_rate(
        &self,
        class: RouteClass,
        client: IpAddr,
        rate: Rate,
    ) -> Option<Result<(), Duration>> {
        let key = self.key(&key(class, client));
        let (interval, period) = micros(rate);
        let wait = self
            .run(OP_CHECK, |mut conn| async move {
                let hashed = redis::cmd("EVALSHA")
                    .arg(script_hash())
                    .arg(1)
                    .arg(&key)
                    .arg(interval)
                    .arg(period)
                    .query_async::<i64>(&mut conn)
                    .await;
                match hashed {
                    Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                        redis::cmd("EVAL")
                            .arg(GCRA)
                            .arg(1)
                            .arg(&key)
                            .arg(interval)
                            .arg(period)
                            .query_async::<i64>(&mut conn)
                            .await
                    }
                    other => other,
                }
            })
            .await?;
        Some(match wait {
            0 => Ok(()),
            micros => Err(Duration::from_micros(micros.max(1) as u64)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_the_class_and_the_client() {
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(
            key(RouteClass::Chat, "192.0.2.7".parse().unwrap()),
            "rl:chat:192.0.2.7"
        );
        assert_eq!(key(RouteClass::Search, v6), "rl:search:2001:db8::1");
    }

    #[test]
    fn an_interval_is_the_period_over_the_count() {
        assert_eq!(micros(Rate::per_minute(4)), (15_000_000, 60_000_000));
        assert_eq!(
            micros(
                "3/s"
                    .parse::<crate::server::limits::Limit>()
                    .unwrap()
                    .0
                    .unwrap()
            ),
            (333_333, 1_000_000)
        );
    }

    #[test]
    fn the_script_hash_is_its_sha1() {
        assert_eq!(script_hash().len(), 40);
        assert!(script_hash().bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
