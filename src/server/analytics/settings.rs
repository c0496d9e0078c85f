//! The analytics settings. Their flags, environment variables, config-file keys and defaults
//! are in the settings table of [`config`](crate::server::config); a malformed value stops the
//! server with [`ConfigError::Invalid`] naming the setting, as the admission settings do.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde_json::Value;

use crate::server::config::ConfigError;

impl std::fmt::Debug for AnalyticsArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnalyticsArgs").finish_non_exhaustive()
    }
}

/// The analytics flags of `podmap serve`; each falls back to its environment variable.
/// `Debug` names the type only: the database URL and the address key are secrets.
#[derive(Clone, Default, Args)]
pub struct AnalyticsArgs {
    /// Analytics on or off; off answers the track routes with success and stores nothing
    /// [default: on].
    #[arg(long = "analytics", env = "ANALYTICS", value_name = "on|off")]
    pub enabled: Option<String>,
    /// Analytics database: sqlite://FILE or postgres://… [default: sqlite://analytics.db].
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// How long a stats answer is reused for the same `days` [default: 10].
    #[arg(
        long = "analytics-stats-ttl-secs",
        env = "ANALYTICS_STATS_TTL_SECS",
        value_name = "S"
    )]
    pub stats_ttl_secs: Option<u64>,
    /// Key of the HMAC stored instead of client addresses [default: generated once into
    /// analytics.secret beside the database].
    #[arg(
        long = "analytics-ip-secret",
        env = "ANALYTICS_IP_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub ip_secret: Option<String>,
    /// Store client addresses as they are instead of their HMAC [default: false].
    #[arg(
        long = "analytics-store-raw-ip",
        env = "ANALYTICS_STORE_RAW_IP",
        value_name = "BOOL"
    )]
    pub store_raw_ip: Option<String>,
    /// Days events are kept; older ones are deleted hourly; 0 keeps them [default: 395].
    #[arg(
        long = "analytics-retention-days",
        env = "ANALYTICS_RETENTION_DAYS",
        value_name = "DAYS"
    )]
    pub retention_days: Option<u32>,
    /// Events waiting to be written; more are dropped and counted [default: 10000].
    #[arg(
        long = "analytics-queue",
        env = "ANALYTICS_QUEUE_CAPACITY",
        value_name = "N"
    )]
    pub queue_capacity: Option<usize>,
    /// MaxMind GeoLite2-City database for the country and city of page views
    /// [default: GeoLite2-City.mmdb; none there: no places].
    #[arg(long = "geoip-db", env = "GEOIP_DB_PATH", value_name = "FILE")]
    pub geoip_db_path: Option<PathBuf>,
    /// simplemaps worldcities.csv for the coordinates of the stats' locations
    /// [default: worldcities.csv; none there: no coordinates].
    #[arg(long = "world-cities", env = "WORLD_CITIES_PATH", value_name = "FILE")]
    pub world_cities_path: Option<PathBuf>,
}

/// The analytics settings in force. `Debug` (in `config::redact`) prints no secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AnalyticsSettings {
    pub enabled: bool,
    pub database_url: String,
    pub stats_ttl: Duration,
    pub ip_secret: Option<String>,
    pub store_raw_ip: bool,
    /// 0: kept for ever.
    pub retention_days: u32,
    pub queue_capacity: usize,
    pub geoip_db_path: PathBuf,
    pub world_cities_path: PathBuf,
}

pub const DEFAULT_DATABASE_URL: &str = "sqlite://analytics.db";

impl Default for AnalyticsSettings {
    fn default() -> Self {
        AnalyticsSettings {
            enabled: true,
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            stats_ttl: Duration::from_secs(10),
            ip_secret: None,
            store_raw_ip: false,
            retention_days: 395,
            queue_capacity: 10_000,
            geoip_db_path: PathBuf::from("GeoLite2-City.mmdb"),
            world_cities_path: PathBuf::from("worldcities.csv"),
        }
    }
}

impl AnalyticsSettings {
    /// Flags (with their environment variables), then the config file's `analytics` object,
    /// then defaults; an empty value counts as unset.
    pub fn resolve(args: &AnalyticsArgs, file: &Value) -> Result<AnalyticsSettings, ConfigError> {
        let d = AnalyticsSettings::default();
        let key = |name: &str| file.pointer(&format!("/analytics/{name}"));
        let text = |arg: &Option<String>, name: &str| {
            arg.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .or_else(|| match key(name)? {
                    Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
                    Value::Bool(b) => Some(b.to_string()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
        };
        let number = |arg: Option<u64>, name: &str| arg.or_else(|| key(name)?.as_u64());
        Ok(AnalyticsSettings {
            enabled: switch("ANALYTICS", text(&args.enabled, "enabled"))?.unwrap_or(d.enabled),
            database_url: text(&args.database_url, "databaseUrl").unwrap_or(d.database_url),
            stats_ttl: number(args.stats_ttl_secs, "statsTtlSecs")
                .map_or(d.stats_ttl, Duration::from_secs),
            ip_secret: text(&args.ip_secret, "ipSecret"),
            store_raw_ip: switch(
                "ANALYTICS_STORE_RAW_IP",
                text(&args.store_raw_ip, "storeRawIp"),
            )?
            .unwrap_or(d.store_raw_ip),
            retention_days: number(args.retention_days.map(u64::from), "retentionDays")
                .map_or(d.retention_days, |n| n.min(u64::from(u32::MAX)) as u32),
            queue_capacity: number(args.queue_capacity.map(|n| n as u64), "queueCapacity")
                .map_or(d.queue_capacity, |n| n.clamp(1, 10_000_000) as usize),
            geoip_db_path: args
                .geoip_db_path
                .clone()
                .or_else(|| text(&None, "geoipDbPath").map(PathBuf::from))
                .unwrap_or(d.geoip_db_path),
            world_cities_path: args
                .world_cities_path
                .clone()
                .or_else(|| text(&None, "worldCitiesPath").map(PathBuf::from))
                .unwrap_or(d.world_cities_path),
        })
    }
}

/// `on`/`off`, `true`/`false`, `1`/`0`, `yes`/`no`.
fn switch(setting: &'static str, value: Option<String>) -> Result<Option<bool>, ConfigError> {
    let Some(value) = value else {
        return Ok(None);
    };
    match value.to_ascii_lowercase().as_str() {
        "on" | "true" | "1" | "yes" => Ok(Some(true)),
        "off" | "false" | "0" | "no" => Ok(Some(false)),
        _ => Err(ConfigError::Invalid {
            setting,
            source: "expected on/off or true/false".into(),
            value,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults() {
        let s = AnalyticsSettings::resolve(&AnalyticsArgs::default(), &Value::Null).unwrap();
        assert_eq!(s, AnalyticsSettings::default());
        assert_eq!(s.database_url, "sqlite://analytics.db");
        assert_eq!(s.stats_ttl, Duration::from_secs(10));
        assert_eq!(s.retention_days, 395);
        assert!(s.enabled && !s.store_raw_ip);
    }

    #[test]
    fn flags_win_over_the_config_file() {
        let file = json!({"analytics": {
            "enabled": false, "databaseUrl": "postgres://db/a", "statsTtlSecs": 3,
            "ipSecret": "file", "storeRawIp": true, "retentionDays": 30, "queueCapacity": 5
        }});
        let s = AnalyticsSettings::resolve(&AnalyticsArgs::default(), &file).unwrap();
        assert!(!s.enabled && s.store_raw_ip);
        assert_eq!(s.database_url, "postgres://db/a");
        assert_eq!(s.stats_ttl, Duration::from_secs(3));
        assert_eq!(s.ip_secret.as_deref(), Some("file"));
        assert_eq!((s.retention_days, s.queue_capacity), (30, 5));
        let args = AnalyticsArgs {
            enabled: Some("on".into()),
            database_url: Some("sqlite://x.db".into()),
            stats_ttl_secs: Some(0),
            ip_secret: Some(" flag ".into()),
            store_raw_ip: Some("false".into()),
            retention_days: Some(0),
            queue_capacity: Some(7),
            geoip_db_path: Some("/geo/City.mmdb".into()),
            world_cities_path: None,
        };
        let s = AnalyticsSettings::resolve(&args, &file).unwrap();
        assert!(s.enabled && !s.store_raw_ip);
        assert_eq!(s.database_url, "sqlite://x.db");
        assert_eq!(s.stats_ttl, Duration::ZERO);
        assert_eq!(s.ip_secret.as_deref(), Some("flag"));
        assert_eq!((s.retention_days, s.queue_capacity), (0, 7));
        assert_eq!(s.geoip_db_path, PathBuf::from("/geo/City.mmdb"));
        assert_eq!(s.world_cities_path, PathBuf::from("worldcities.csv"));
    }

    #[test]
    fn a_malformed_switch_names_its_setting() {
        let args = AnalyticsArgs {
            enabled: Some("maybe".into()),
            ..AnalyticsArgs::default()
        };
        let e = AnalyticsSettings::resolve(&args, &Value::Null).unwrap_err();
        assert_eq!(e.to_string(), "invalid ANALYTICS value 'maybe'");
    }
}
