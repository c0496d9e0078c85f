//! The admission settings: who the client is ([`client`](super::client)), how often it may
//! call each route class ([`limits`](super::limits)) and how long each route may take
//! ([`deadline`](super::deadline)). Their flags, environment variables, config-file keys and
//! defaults are in the settings table of [`config`](super::config).
//!
//! Unlike the other settings these can be malformed (a CIDR, a rate, a duration), and a
//! malformed one stops the server with [`ConfigError::Invalid`] naming the setting and the
//! value, instead of being replaced by a default the operator did not ask for.

use clap::Args;
use serde_json::Value;

use super::client::TrustedProxies;
use super::config::ConfigError;
use super::deadline::{RouteTimeouts, Timeout};
use super::limits::{Limit, RateLimits};

/// The admission flags of `podmap serve`; each falls back to its environment variable.
#[derive(Debug, Clone, Default, Args)]
pub struct AdmissionArgs {
    /// Proxies whose X-Forwarded-For / X-Real-IP name the client: comma-separated CIDRs or
    /// addresses, or `none` [default: 127.0.0.0/8,::1/128].
    #[arg(long, env = "TRUSTED_PROXIES", value_name = "CIDRS")]
    pub trusted_proxies: Option<String>,
    /// Chat requests per client: N/s, N/min, N/h or off [default: 10/min].
    #[arg(long, env = "RATE_LIMIT_CHAT", value_name = "RATE")]
    pub rate_limit_chat: Option<String>,
    /// Searches per client: N/s, N/min, N/h or off [default: 120/min].
    #[arg(long, env = "RATE_LIMIT_SEARCH", value_name = "RATE")]
    pub rate_limit_search: Option<String>,
    /// Other API requests per client: N/s, N/min, N/h or off [default: 600/min].
    #[arg(long, env = "RATE_LIMIT_OTHER", value_name = "RATE")]
    pub rate_limit_other: Option<String>,
    /// Deadline of latest, speakers and podcasts: 5, 5s, 500ms, 1min [default: 5s].
    #[arg(long, env = "REQUEST_TIMEOUT_SHORT", value_name = "DURATION")]
    pub timeout_short: Option<String>,
    /// Deadline of a search [default: 15s].
    #[arg(long, env = "REQUEST_TIMEOUT_SEARCH", value_name = "DURATION")]
    pub timeout_search: Option<String>,
    /// Deadline of a chat answer's start; a started stream is not cut [default: 120s].
    #[arg(long, env = "REQUEST_TIMEOUT_CHAT", value_name = "DURATION")]
    pub timeout_chat: Option<String>,
}

/// The admission settings in force.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admission {
    pub trusted_proxies: TrustedProxies,
    pub rate_limits: RateLimits,
    pub timeouts: RouteTimeouts,
}

impl Admission {
    /// Flags (with their environment variables), then the config file, then defaults; an
    /// empty value counts as unset.
    pub fn resolve(args: &AdmissionArgs, file: &Value) -> Result<Admission, ConfigError> {
        let defaults = Admission::default();
        let limits = defaults.rate_limits;
        let timeouts = defaults.timeouts;
        Ok(Admission {
            trusted_proxies: setting(
                "TRUSTED_PROXIES",
                &args.trusted_proxies,
                file,
                "/rag/trustedProxies",
            )?
            .unwrap_or(defaults.trusted_proxies),
            rate_limits: RateLimits {
                chat: rate("RATE_LIMIT_CHAT", &args.rate_limit_chat, file, "chat")?
                    .unwrap_or(limits.chat),
                search: rate("RATE_LIMIT_SEARCH", &args.rate_limit_search, file, "search")?
                    .unwrap_or(limits.search),
                other: rate("RATE_LIMIT_OTHER", &args.rate_limit_other, file, "other")?
                    .unwrap_or(limits.other),
            },
            timeouts: RouteTimeouts {
                short: timeout("REQUEST_TIMEOUT_SHORT", &args.timeout_short, file, "short")?
                    .unwrap_or(timeouts.short),
                search: timeout(
                    "REQUEST_TIMEOUT_SEARCH",
                    &args.timeout_search,
                    file,
                    "search",
                )?
                .unwrap_or(timeouts.search),
                chat: timeout("REQUEST_TIMEOUT_CHAT", &args.timeout_chat, file, "chat")?
                    .unwrap_or(timeouts.chat),
            },
        })
    }
}

fn rate(
    name: &'static str,
    flag: &Option<String>,
    file: &Value,
    class: &str,
) -> Result<Option<Limit>, ConfigError> {
    setting(name, flag, file, &format!("/rag/rateLimit/{class}"))
}

fn timeout(
    name: &'static str,
    flag: &Option<String>,
    file: &Value,
    group: &str,
) -> Result<Option<std::time::Duration>, ConfigError> {
    Ok(setting::<Timeout>(name, flag, file, &format!("/rag/timeout/{group}"))?.map(|t| t.0))
}

/// The flag's value, else the config file's at `pointer`, parsed; `None` when neither is
/// set. In the file a number stands for itself as text (a timeout of `15` seconds) and an
/// array of strings for its comma-separated items (a list of CIDRs).
fn setting<T>(
    name: &'static str,
    flag: &Option<String>,
    file: &Value,
    pointer: &str,
) -> Result<Option<T>, ConfigError>
where
    T: std::str::FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text = match flag.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        Some(text) => text.to_owned(),
        None => match file.pointer(pointer) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(","),
            Some(other) => other.to_string(),
        },
    };
    text.parse()
        .map(Some)
        .map_err(|e: T::Err| ConfigError::Invalid {
            setting: name,
            value: text.clone(),
            source: Box::new(e),
        })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::server::limits::Rate;

    #[test]
    fn defaults_are_loopback_proxies_and_the_documented_limits() {
        let a = Admission::resolve(&AdmissionArgs::default(), &Value::Null).unwrap();
        assert_eq!(a, Admission::default());
        assert_eq!(a.trusted_proxies.to_string(), "127.0.0.0/8,::1/128");
        let limits = a.rate_limits;
        let shown = [limits.chat, limits.search, limits.other].map(|l| l.to_string());
        assert_eq!(shown, ["10/min", "120/min", "600/min"]);
        let t = a.timeouts;
        assert_eq!(
            [t.short, t.search, t.chat],
            [5, 15, 120].map(Duration::from_secs)
        );
    }

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let file = json!({"rag": {
            "trustedProxies": ["10.0.0.0/8", "::1"],
            "rateLimit": {"chat": "3/h", "search": "off"},
            "timeout": {"search": 30, "chat": "2min"},
        }});
        let from_file = Admission::resolve(&AdmissionArgs::default(), &file).unwrap();
        assert_eq!(from_file.trusted_proxies.to_string(), "10.0.0.0/8,::1/128");
        assert_eq!(from_file.rate_limits.chat.to_string(), "3/h");
        assert_eq!(from_file.rate_limits.search, Limit(None));
        assert_eq!(
            from_file.rate_limits.other,
            Limit(Some(Rate::per_minute(600)))
        );
        assert_eq!(from_file.timeouts.search, Duration::from_secs(30));
        assert_eq!(from_file.timeouts.chat, Duration::from_secs(120));
        let args = AdmissionArgs {
            trusted_proxies: Some("none".into()),
            rate_limit_chat: Some("1/s".into()),
            timeout_search: Some("500ms".into()),
            timeout_short: Some("  ".into()),
            ..AdmissionArgs::default()
        };
        let flagged = Admission::resolve(&args, &file).unwrap();
        assert_eq!(flagged.trusted_proxies, TrustedProxies::none());
        assert_eq!(flagged.rate_limits.chat.to_string(), "1/s");
        assert_eq!(flagged.timeouts.search, Duration::from_millis(500));
        assert_eq!(
            flagged.timeouts.short,
            Duration::from_secs(5),
            "empty: unset"
        );
    }

    #[test]
    fn malformed_values_are_errors_naming_setting_and_value() {
        let cases: [(AdmissionArgs, Value, &str, &str); 5] = [
            (
                AdmissionArgs {
                    trusted_proxies: Some("10.0.0.0/8,10.0.0.0/40".into()),
                    ..AdmissionArgs::default()
                },
                Value::Null,
                "TRUSTED_PROXIES",
                "10.0.0.0/8,10.0.0.0/40",
            ),
            (
                AdmissionArgs {
                    rate_limit_search: Some("lots".into()),
                    ..AdmissionArgs::default()
                },
                Value::Null,
                "RATE_LIMIT_SEARCH",
                "lots",
            ),
            (
                AdmissionArgs::default(),
                json!({"rag": {"rateLimit": {"other": 100}}}),
                "RATE_LIMIT_OTHER",
                "100",
            ),
            (
                AdmissionArgs::default(),
                json!({"rag": {"timeout": {"chat": "0s"}}}),
                "REQUEST_TIMEOUT_CHAT",
                "0s",
            ),
            (
                AdmissionArgs::default(),
                json!({"rag": {"trustedProxies": {"a": 1}}}),
                "TRUSTED_PROXIES",
                r#"{"a":1}"#,
            ),
        ];
        for (args, file, name, value) in cases {
            let e = Admission::resolve(&args, &file).unwrap_err();
            let ConfigError::Invalid {
                setting, value: v, ..
            } = &e
            else {
                panic!("{e:?}");
            };
            assert_eq!((*setting, v.as_str()), (name, value));
            assert!(
                e.to_string().contains(name) && e.to_string().contains(value),
                "{e}"
            );
            assert!(std::error::Error::source(&e).is_some(), "{e}");
        }
    }
}
