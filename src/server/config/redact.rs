//! `Debug` for the settings without their secrets: settings are logged and end up in panic
//! messages and test output, so API keys, tokens, the address key and database passwords
//! print as `"<redacted>"` (or `None` when unset) and everything else prints as it is.

use std::fmt;

use super::Settings;
use crate::server::analytics::AnalyticsSettings;
use crate::server::shared::RedisSettings;

/// What a secret prints as.
pub const REDACTED: &str = "<redacted>";

/// A set secret as [`REDACTED`], an unset one as `None`.
struct Secret<'a>(&'a Option<String>);

impl fmt::Debug for Secret<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(_) => write!(f, "Some({REDACTED:?})"),
            None => f.write_str("None"),
        }
    }
}

/// `url` with the password of its user info (`scheme://user:PASSWORD@host`) and any
/// `password=` query value replaced by [`REDACTED`].
pub fn url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(start) = out.find("://").map(|i| i + 3) {
        let end = out[start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| start + i);
        if let Some(at) = out[start..end].rfind('@').map(|i| start + i) {
            if let Some(colon) = out[start..at].find(':').map(|i| start + i) {
                out.replace_range(colon + 1..at, REDACTED);
            }
        }
    }
    if let Some(query) = out.find('?') {
        let mut redacted = String::with_capacity(out.len());
        redacted.push_str(&out[..=query]);
        let pairs: Vec<String> = out[query + 1..]
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                    format!("{key}={REDACTED}")
                }
                _ => pair.to_owned(),
            })
            .collect();
        redacted.push_str(&pairs.join("&"));
        out = redacted;
    }
    out
}

/// An optional URL with its password redacted.
struct Url<'a>(&'a Option<String>);

impl fmt::Debug for Url<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0.as_deref().map(url), f)
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("llm_base_url", &Url(&self.llm_base_url))
            .field("llm_api_key", &Secret(&self.llm_api_key))
            .field("llm_model", &self.llm_model)
            .field("embedding_base_url", &Url(&self.embedding_base_url))
            .field("embedding_api_key", &Secret(&self.embedding_api_key))
            .field("embedding_model", &self.embedding_model)
            .field("top_k", &self.top_k)
            .field("max_context_chars", &self.max_context_chars)
            .field("auth_token", &Secret(&self.auth_token))
            .field("stats_auth_token", &Secret(&self.stats_auth_token))
            .field("cors_origins", &self.cors_origins)
            .field("max_in_flight", &self.max_in_flight)
            .field("body_timeout", &self.body_timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("admission", &self.admission)
            .field("embedding_max_concurrency", &self.embedding_max_concurrency)
            .field("llm_max_concurrency", &self.llm_max_concurrency)
            .field("search_embedding_wait", &self.search_embedding_wait)
            .field("breaker", &self.breaker)
            .field("log_format", &self.log_format)
            .field("preload", &self.preload)
            .field("prompts_file", &self.prompts_file)
            .field("prompts", &self.prompts)
            .field("static_dir", &self.static_dir)
            .field("static_podcasts_dir", &self.static_podcasts_dir)
            .field("analytics", &self.analytics)
            .field("redis", &self.redis)
            .finish()
    }
}

impl fmt::Debug for AnalyticsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnalyticsSettings")
            .field("enabled", &self.enabled)
            .field("database_url", &url(&self.database_url))
            .field("stats_ttl", &self.stats_ttl)
            .field("ip_secret", &Secret(&self.ip_secret))
            .field("store_raw_ip", &self.store_raw_ip)
            .field("retention_days", &self.retention_days)
            .field("queue_capacity", &self.queue_capacity)
            .field("geoip_db_path", &self.geoip_db_path)
            .field("world_cities_path", &self.world_cities_path)
            .finish()
    }
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &url(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .field("embedding_ttl", &self.embedding_ttl)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_passwords_only() {
        assert_eq!(
            url("postgres://podmap:hunter2@db:5432/a?sslmode=require"),
            "postgres://podmap:<redacted>@db:5432/a?sslmode=require"
        );
        assert_eq!(
            url("postgres://db/a?user=u&password=hunter2"),
            "postgres://db/a?user=u&password=<redacted>"
        );
        assert_eq!(url("postgres://podmap@db/a"), "postgres://podmap@db/a");
        assert_eq!(url("sqlite://analytics.db"), "sqlite://analytics.db");
        assert_eq!(url("http://127.0.0.1:8001/v1"), "http://127.0.0.1:8001/v1");
    }

    #[test]
    fn settings_debug_prints_no_secret() {
        let mut s = Settings {
            llm_api_key: Some("sk-llm-SECRET1".into()),
            embedding_api_key: Some("sk-emb-SECRET2".into()),
            auth_token: Some("auth-SECRET3".into()),
            stats_auth_token: Some("stats-SECRET4".into()),
            llm_base_url: Some("https://user:SECRET5@llm.example/v1".into()),
            ..Settings::default()
        };
        s.analytics.ip_secret = Some("ip-SECRET6".into());
        s.analytics.database_url = "postgres://podmap:SECRET7@db:5432/analytics".into();
        s.redis = Some(crate::server::shared::RedisSettings::new(
            "redis://:SECRET8@cache:6379/0",
        ));
        let printed = format!("{s:?}");
        for n in 1..=8 {
            assert!(
                !printed.contains(&format!("SECRET{n}")),
                "SECRET{n} in {printed}"
            );
        }
        for kept in [
            "llm_api_key: Some(\"<redacted>\")",
            "ip_secret: Some(\"<redacted>\")",
            "postgres://podmap:<redacted>@db:5432/analytics",
            "https://user:<redacted>@llm.example/v1",
            "redis://:<redacted>@cache:6379/0",
            "llm_model:",
        ] {
            assert!(printed.contains(kept), "{kept} not in {printed}");
        }
        let pretty = format!("{s:#?}");
        assert!(!pretty.contains("SECRET"), "{pretty}");
        let unset = format!("{:?}", Settings::default());
        assert!(unset.contains("auth_token: None"), "{unset}");
    }
}
