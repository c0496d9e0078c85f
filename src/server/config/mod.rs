//! Server settings: command-line flags, then the original's environment variables, then an
//! optional JSON config file (the original's `settings.json` layout), then defaults.
//!
//! | setting | flag | environment | config file | default |
//! |---|---|---|---|---|
//! | bind address | `--listen` | `RAG_BIND_ADDR` | `rag.bindAddr` | `127.0.0.1:7878` |
//! | chat API base URL | `--llm-base-url` | `LLM_BASE_URL` | `llm.baseURL` | none: chat answers 503 |
//! | chat API key | `--llm-api-key` | `LLM_API_KEY` | `llm.apiKey` | none |
//! | chat model | `--llm-model` | `LLM_MODEL` | `llm.model` | `gpt-4o-mini` |
//! | embeddings base URL | `--embedding-base-url` | `EMBEDDING_BASE_URL` | `embedding.baseURL` | the chat base URL |
//! | embeddings key | `--embedding-api-key` | `EMBEDDING_API_KEY` | `embedding.apiKey` | the chat key |
//! | embedding model | `--embedding-model` | `EMBEDDING_MODEL` | `topicClustering.embeddingModel` | each archive's own model |
//! | chat top-k | `--top-k` | `RAG_TOP_K` | `rag.topK` | 6 |
//! | chat context limit | `--max-context-chars` | `RAG_MAX_CONTEXT_CHARS` | `rag.maxContextChars` | 24000 |
//! | chat token | `--auth-token` | `RAG_AUTH_TOKEN` | `rag.authToken` | none (open) |
//! | stats token | `--stats-auth-token` | `RAG_STATS_AUTH_TOKEN` | `rag.statsAuthToken` | none (open) |
//! | CORS origins | `--cors-origin` | `PODMAP_CORS_ORIGINS` (comma-separated) | `rag.corsOrigins` | any origin |
//! | requests in flight | `--max-in-flight` | `PODMAP_MAX_IN_FLIGHT` | `rag.maxInFlight` | 256 |
//! | trusted proxies | `--trusted-proxies` | `TRUSTED_PROXIES` (comma-separated CIDRs or addresses, or `none`) | `rag.trustedProxies` (string or array) | `127.0.0.0/8,::1/128` |
//! | chat rate limit | `--rate-limit-chat` | `RATE_LIMIT_CHAT` | `rag.rateLimit.chat` | `10/min` per client |
//! | search rate limit | `--rate-limit-search` | `RATE_LIMIT_SEARCH` | `rag.rateLimit.search` | `120/min` per client |
//! | other API rate limit | `--rate-limit-other` | `RATE_LIMIT_OTHER` | `rag.rateLimit.other` | `600/min` per client |
//! | latest, speakers, podcasts deadline | `--timeout-short` | `REQUEST_TIMEOUT_SHORT` | `rag.timeout.short` | `5s` |
//! | search deadline | `--timeout-search` | `REQUEST_TIMEOUT_SEARCH` | `rag.timeout.search` | `15s` |
//! | chat deadline (until the answer starts) | `--timeout-chat` | `REQUEST_TIMEOUT_CHAT` | `rag.timeout.chat` | `120s` |
//! | embeddings calls in flight | `--embedding-max-concurrency` | `EMBEDDING_MAX_CONCURRENCY` | `embedding.maxConcurrency` | 16 |
//! | LLM calls in flight | `--llm-max-concurrency` | `LLM_MAX_CONCURRENCY` | `llm.maxConcurrency` | 8 |
//! | search's wait for an embedding | `--search-embedding-wait-ms` | `PODMAP_SEARCH_EMBEDDING_WAIT_MS` | `rag.searchEmbeddingWaitMs` | 2000 (then lexical) |
//! | failures that open a breaker | `--breaker-failures` | `PODMAP_BREAKER_FAILURES` | `rag.breakerFailures` | 5 consecutive |
//! | breaker cool-down | `--breaker-cool-down-ms` | `PODMAP_BREAKER_COOL_DOWN_MS` | `rag.breakerCoolDownMs` | 10000 |
//! | Redis for state shared between replicas | `--redis-url` | `REDIS_URL` | `redis.url` | none: each replica on its own |
//! | prefix of every Redis key | `--redis-key-prefix` | `REDIS_KEY_PREFIX` | `redis.keyPrefix` | `podmap:` |
//! | bound of one Redis call | `--redis-timeout-ms` | `REDIS_TIMEOUT_MS` | `redis.timeoutMs` | 50 |
//! | lifetime of a shared query embedding | `--redis-embedding-ttl-secs` | `REDIS_EMBEDDING_TTL_SECS` | `redis.embeddingTtlSecs` | 604800 (7 days) |
//! | vector search mode | `--search-mode` | `SEARCH_MODE` (`exact`, `int8` or `binary`) | `rag.searchMode` | `binary` (see below) |
//! | read matrices in at load | `--preload` | `PODMAP_PRELOAD` (`true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`) | `rag.preload` | off |
//! | log format | `--log-format` | `PODMAP_LOG_FORMAT` (`text` or `json`) | `rag.logFormat` | `text` |
//! | chat prompt templates | `--prompts` | `PROMPTS_FILE` | `rag.promptsFile` | built-in wording (see [`super::prompts`]) |
//! | web front end's files | `--static` | `PODMAP_STATIC_DIR` | `rag.staticDir` | none: API only |
//! | podcasts' static files | `--static-podcasts` | `PODMAP_STATIC_PODCASTS_DIR` | `rag.staticPodcastsDir` | `<static dir>/podcasts` |
//! | analytics on or off | `--analytics` | `ANALYTICS` (`on`/`off`) | `analytics.enabled` | on |
//! | analytics database | `--database-url` | `DATABASE_URL` (`sqlite://FILE` or `postgres://…`) | `analytics.databaseUrl` | `sqlite://analytics.db` |
//! | stats cache TTL | `--analytics-stats-ttl-secs` | `ANALYTICS_STATS_TTL_SECS` | `analytics.statsTtlSecs` | 10 (0: no cache) |
//! | address key | `--analytics-ip-secret` | `ANALYTICS_IP_SECRET` | `analytics.ipSecret` | generated once into `analytics.secret` beside the database |
//! | raw addresses | `--analytics-store-raw-ip` | `ANALYTICS_STORE_RAW_IP` | `analytics.storeRawIp` | false (HMAC stored) |
//! | analytics retention | `--analytics-retention-days` | `ANALYTICS_RETENTION_DAYS` | `analytics.retentionDays` | 395 (0: kept) |
//! | analytics queue | `--analytics-queue` | `ANALYTICS_QUEUE_CAPACITY` | `analytics.queueCapacity` | 10000 events |
//! | GeoIP database | `--geoip-db` | `GEOIP_DB_PATH` | `analytics.geoipDbPath` | `GeoLite2-City.mmdb` (missing: no places) |
//! | city coordinates | `--world-cities` | `WORLD_CITIES_PATH` | `analytics.worldCitiesPath` | `worldcities.csv` (missing: no coordinates) |
//!
//! **Search mode** ([`crate::search::SearchMode`]): `binary` scans the archive's sign bits
//! for 20 candidates per result (at least a 32nd of the rows), narrows them on their int8
//! codes and rescores the best with the f32 rows, so scores are exact; `int8` scans the int8
//! codes for 4 candidates per result. Both meet the recall floors (recall@10 as served: int8
//! 1.000, binary 0.988–1.000 on the corpus and the benchmark report's generated podcasts),
//! and binary is the faster from 1,000 × 3,072 items on (docs/BENCHMARKS.md, on an AMD EPYC:
//! 2.7–14.7× faster than `exact`, int8 2.3–8.3×; on an Intel Xeon 3.6–24× and 2.9–7.1×), so
//! it is the default. Matrices under 0.5 M floats (podcasts
//! of up to about 1,300 items at 384 dims) are scanned exactly in every mode, and under 2 M a
//! binary search scans the int8 codes, where each is the quickest. A request may name its own
//! mode (`mode`).
//!
//! Tokens and keys are trimmed; empty values and the original's placeholders
//! (`YOUR_API_KEY_HERE`, `CHANGE_ME`) count as unset.
//!
//! **Admission** (see [`admission`](super::admission)): a client is its socket address, or
//! behind a trusted proxy the address the proxies name ([`client`](super::client)). Rates are
//! `N/s`, `N/min`, `N/h` or `off`, per client and route class; a client may spend its whole
//! quota at once (burst = N), then gets one request back every period/N. The defaults: chat
//! `10/min`, because every answer is a paid LLM call and a person asks a question every few
//! seconds at most; search `120/min`, because each costs an embeddings call and a scan, and
//! paging through results or typing a query a word at a time makes a few a second in short
//! bursts; other `600/min`, because listings are cheap reads of the mapped archives and the
//! front end loads several at once. A client behind a shared address (an office NAT) shares
//! its quota, so the defaults leave room for a few people. Deadlines are seconds (`15`,
//! `15s`, `0.5s`), `500ms` or `2min`; a timeout answers 504. Malformed values stop the server
//! with an error naming the setting and the value.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::search::SearchMode;
use serde_json::Value;

use super::admission::{Admission, AdmissionArgs};
use super::analytics::{AnalyticsArgs, AnalyticsSettings};
use super::breaker::BreakerConfig;
use super::prompts::{Prompts, PromptsError};
use super::shared::{self, RedisSettings};

pub mod redact;

impl std::fmt::Debug for SettingsArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SettingsArgs").finish_non_exhaustive()
    }
}

/// `podmap serve` flags; each falls back to its environment variable (via clap). `Debug`
/// names the type only: the flags hold API keys, tokens and database passwords as typed.
#[derive(Clone, Default, Args)]
// The field docs are `--help` text, where a URL example reads better bare than in <…>.
#[allow(rustdoc::bare_urls)]
pub struct SettingsArgs {
    /// Address to listen on [default: 127.0.0.1:7878].
    #[arg(long, env = "RAG_BIND_ADDR", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// JSON config file in the original settings.json layout (lowest precedence).
    #[arg(long, env = "PODMAP_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// OpenAI-compatible API base URL for chat (e.g. https://api.openai.com/v1).
    #[arg(long, env = "LLM_BASE_URL", value_name = "URL")]
    pub llm_base_url: Option<String>,
    /// API key for chat.
    #[arg(long, env = "LLM_API_KEY", value_name = "KEY", hide_env_values = true)]
    pub llm_api_key: Option<String>,
    /// Chat model [default: gpt-4o-mini].
    #[arg(long, env = "LLM_MODEL", value_name = "MODEL")]
    pub llm_model: Option<String>,
    /// OpenAI-compatible API base URL for embeddings [default: the chat base URL].
    #[arg(long, env = "EMBEDDING_BASE_URL", value_name = "URL")]
    pub embedding_base_url: Option<String>,
    /// API key for embeddings [default: the chat key].
    #[arg(
        long,
        env = "EMBEDDING_API_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub embedding_api_key: Option<String>,
    /// Embedding model; podcasts whose archive names another model get lexical search only
    /// [default: each archive's own model].
    #[arg(long, env = "EMBEDDING_MODEL", value_name = "MODEL")]
    pub embedding_model: Option<String>,
    /// Sources per chat answer [default: 6].
    #[arg(long, env = "RAG_TOP_K", value_name = "K")]
    pub top_k: Option<usize>,
    /// Limit of the chat context in bytes [default: 24000].
    #[arg(long, env = "RAG_MAX_CONTEXT_CHARS", value_name = "N")]
    pub max_context_chars: Option<usize>,
    /// Token required by /api/chat (x-auth-token or Authorization: Bearer).
    #[arg(
        long,
        env = "RAG_AUTH_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub auth_token: Option<String>,
    /// Token required by the analytics stats routes.
    #[arg(
        long,
        env = "RAG_STATS_AUTH_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub stats_auth_token: Option<String>,
    /// Allowed CORS origin (repeatable) [default: any origin].
    #[arg(
        long = "cors-origin",
        env = "PODMAP_CORS_ORIGINS",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    pub cors_origins: Vec<String>,
    /// Requests handled at once; further requests get 503 at once instead of queueing
    /// [default: 256].
    #[arg(long, env = "PODMAP_MAX_IN_FLIGHT", value_name = "N")]
    pub max_in_flight: Option<usize>,
    /// Trusted proxies, rate limits and deadlines.
    #[command(flatten)]
    pub admission: AdmissionArgs,
    /// Embeddings API calls in flight at once; a call that finds none free within 250 ms is
    /// refused and the search answers lexically [default: 16].
    #[arg(long, env = "EMBEDDING_MAX_CONCURRENCY", value_name = "N")]
    pub embedding_max_concurrency: Option<usize>,
    /// LLM API calls (chat answers) in flight at once; more are answered 503 [default: 8].
    #[arg(long, env = "LLM_MAX_CONCURRENCY", value_name = "N")]
    pub llm_max_concurrency: Option<usize>,
    /// How long a search waits for its query embedding before it answers lexically
    /// [default: 2000].
    #[arg(long, env = "PODMAP_SEARCH_EMBEDDING_WAIT_MS", value_name = "MS")]
    pub search_embedding_wait_ms: Option<u64>,
    /// Consecutive transient failures (timeouts, dropped connections, 5xx, 429) of an upstream
    /// API after which it is not called until its cool-down has passed [default: 5].
    #[arg(long, env = "PODMAP_BREAKER_FAILURES", value_name = "N")]
    pub breaker_failures: Option<u32>,
    /// How long an upstream API with an open breaker is not called before one probe call
    /// tries it again [default: 10000].
    #[arg(long, env = "PODMAP_BREAKER_COOL_DOWN_MS", value_name = "MS")]
    pub breaker_cool_down_ms: Option<u64>,
    /// Redis shared by the replicas of one deployment (redis://[:password@]host[:port][/db]):
    /// a second level of the query-embedding cache and rate limits counted across replicas.
    /// Without it each replica caches and limits on its own.
    #[arg(long, env = "REDIS_URL", value_name = "URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Prefix of every key podmap writes in Redis [default: podmap:].
    #[arg(long, env = "REDIS_KEY_PREFIX", value_name = "PREFIX")]
    pub redis_key_prefix: Option<String>,
    /// Bound of one Redis call, connecting included; past it the replica answers from its
    /// local cache and limits [default: 50].
    #[arg(long, env = "REDIS_TIMEOUT_MS", value_name = "MS")]
    pub redis_timeout_ms: Option<u64>,
    /// How long a query embedding stays in Redis [default: 604800, 7 days].
    #[arg(long, env = "REDIS_EMBEDDING_TTL_SECS", value_name = "SECS")]
    pub redis_embedding_ttl_secs: Option<u64>,
    /// How vector searches scan: `exact` (every f32 row), `int8` or `binary` (codes scanned
    /// for candidates, rescored exactly) [default: binary].
    #[arg(long, env = "SEARCH_MODE", value_name = "MODE", value_parser = parse_search_mode)]
    pub search_mode: Option<SearchMode>,
    /// Read every archive's vector matrix into the page cache when it is loaded (at start,
    /// before the server listens, and after a reload swaps an archive in), so the first
    /// searches after a reboot or a deploy do not wait for the disk [default: off].
    #[arg(
        long,
        env = "PODMAP_PRELOAD",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub preload: bool,
    /// Log lines on stderr: `text` for people, `json` (one object a line, with the request's
    /// id, method, path and route) for log shippers [default: text].
    #[arg(long, env = "PODMAP_LOG_FORMAT", value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// JSON file of chat prompt templates (see docs/prompts.example.json); missing keys keep
    /// the built-in wording [default: built in].
    #[arg(long = "prompts", env = "PROMPTS_FILE", value_name = "FILE")]
    pub prompts_file: Option<PathBuf>,
    /// The web front end's built files (e.g. its `dist/`), served beside the API on the same
    /// origin: any path that is not an API route is a file there, else `index.html` (the
    /// front end's own routes) [default: API only].
    #[arg(long = "static", env = "PODMAP_STATIC_DIR", value_name = "DIR")]
    pub static_dir: Option<PathBuf>,
    /// The podcasts' static files the front end reads under `/podcasts/` (episodes, live
    /// transcripts, speakers), e.g. the data root's `podcasts/` [default: `podcasts/` in the
    /// --static directory].
    #[arg(
        long = "static-podcasts",
        env = "PODMAP_STATIC_PODCASTS_DIR",
        value_name = "DIR"
    )]
    pub static_podcasts_dir: Option<PathBuf>,
    /// Analytics: database, privacy, retention.
    #[command(flatten)]
    pub analytics: AnalyticsArgs,
}

/// How `podmap serve` writes its log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, with the fields of the request's span.
    Json,
}

impl LogFormat {
    /// `text` or `json`, as in the flag and the config file.
    fn parse(name: &str) -> Option<LogFormat> {
        LogFormat::from_str(name.trim(), true).ok()
    }
}

/// Why the settings cannot be loaded: the config file named, and the reason as the source.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {} is not valid JSON", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid {setting} value '{value}'")]
    Invalid {
        setting: &'static str,
        value: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The prompts file (`--prompts`) cannot be read or holds a bad template.
    #[error(transparent)]
    Prompts(#[from] PromptsError),
}

/// The settings in force. `Debug` (in [`redact`]) prints no secret.
#[derive(Clone, PartialEq)]
pub struct Settings {
    pub listen: SocketAddr,
    pub llm_base_url: Option<String>,
    pub llm_api_key: Option<String>,
    pub llm_model: String,
    pub embedding_base_url: Option<String>,
    pub embedding_api_key: Option<String>,
    pub embedding_model: Option<String>,
    pub top_k: usize,
    pub max_context_chars: usize,
    pub auth_token: Option<String>,
    pub stats_auth_token: Option<String>,
    /// Empty: any origin.
    pub cors_origins: Vec<String>,
    pub max_in_flight: usize,
    /// Time a client has to send a request's whole body (408 after it); fixed, not a flag.
    pub body_timeout: std::time::Duration,
    /// Largest request body (413 above it); the API's bodies are a few hundred bytes.
    pub max_body_bytes: usize,
    /// Trusted proxies, rate limits and deadlines.
    pub admission: Admission,
    pub embedding_max_concurrency: usize,
    pub llm_max_concurrency: usize,
    /// How long a search (or a chat's retrieval) waits for its query embedding before it is
    /// answered lexically.
    pub search_embedding_wait: Duration,
    /// When each upstream's circuit breaker opens, and for how long.
    pub breaker: BreakerConfig,
    pub log_format: LogFormat,
    /// How vector searches scan unless a request says otherwise.
    pub search_mode: SearchMode,
    /// Whether archives are read into the page cache when loaded ([`crate::index::MmapIndex::warm`]).
    pub preload: bool,
    /// Where the prompt templates came from; `None`: the built-in wording.
    pub prompts_file: Option<PathBuf>,
    /// The chat's prompt templates, checked at start-up.
    pub prompts: Prompts,
    /// The web front end's files served beside the API (see [`super::site`]); `None`: API only.
    pub static_dir: Option<PathBuf>,
    /// Where `/podcasts/` is served from; `None`: `podcasts/` in [`Settings::static_dir`].
    pub static_podcasts_dir: Option<PathBuf>,
    /// Where analytics events go, and how they are kept (see [`super::analytics`]).
    pub analytics: AnalyticsSettings,
    /// Redis for state shared between replicas; `None`: each replica on its own.
    pub redis: Option<RedisSettings>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings::resolve(SettingsArgs::default(), &Value::Null)
    }
}

impl Settings {
    /// Flags (with their environment variables), then the config file, then defaults.
    pub fn load(args: SettingsArgs) -> Result<Settings, ConfigError> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                serde_json::from_str(&text).map_err(|source| ConfigError::Json {
                    path: path.clone(),
                    source,
                })?
            }
            None => Value::Null,
        };
        // The admission settings are the ones that can be malformed; `resolve` takes their
        // defaults and they are checked here.
        let admission = Admission::resolve(&args.admission, &file)?;
        let analytics = AnalyticsSettings::resolve(&args.analytics, &file)?;
        let file_mode = match file.pointer("/rag/searchMode").and_then(Value::as_str) {
            Some(name) if args.search_mode.is_none() => Some(name.parse::<SearchMode>().map_err(
                |e| ConfigError::Invalid {
                    setting: "SEARCH_MODE",
                    value: name.to_owned(),
                    source: Box::new(e),
                },
            )?),
            _ => None,
        };
        let mut settings = Settings {
            admission,
            analytics,
            ..Settings::resolve(args, &file)
        };
        if let Some(redis) = &settings.redis {
            shared::check_url(&redis.url).map_err(|e| ConfigError::Invalid {
                setting: "REDIS_URL",
                value: redact::url(&redis.url),
                source: Box::new(e),
            })?;
        }
        if let Some(mode) = file_mode {
            settings.search_mode = mode;
        }
        if let Some(path) = &settings.prompts_file {
            settings.prompts = Prompts::load(path)?;
        }
        Ok(settings)
    }

    fn resolve(args: SettingsArgs, file: &Value) -> Settings {
        let text = |path: &[&str]| {
            path.iter()
                .try_fold(file, |v, key| v.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let number = |path: &[&str]| {
            path.iter()
                .try_fold(file, |v, key| v.get(key))
                .and_then(Value::as_u64)
                .map(|n| n as usize)
        };
        let llm_base_url = clean(args.llm_base_url.or_else(|| text(&["llm", "baseURL"])))
            .map(|u| u.trim_end_matches('/').to_owned());
        let llm_api_key = clean(args.llm_api_key.or_else(|| text(&["llm", "apiKey"])));
        let embedding_base_url = clean(
            args.embedding_base_url
                .or_else(|| text(&["embedding", "baseURL"])),
        )
        .map(|u| u.trim_end_matches('/').to_owned())
        .or_else(|| llm_base_url.clone());
        let embedding_api_key = clean(
            args.embedding_api_key
                .or_else(|| text(&["embedding", "apiKey"])),
        )
        .or_else(|| llm_api_key.clone());
        let cors_origins = if args.cors_origins.is_empty() {
            file.pointer("/rag/corsOrigins")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        } else {
            args.cors_origins
        };
        Settings {
            listen: args
                .listen
                .or_else(|| text(&["rag", "bindAddr"]).and_then(|a| a.parse().ok()))
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7878))),
            llm_base_url,
            llm_api_key,
            llm_model: clean(args.llm_model.or_else(|| text(&["llm", "model"])))
                .unwrap_or_else(|| "gpt-4o-mini".to_owned()),
            embedding_base_url,
            embedding_api_key,
            embedding_model: clean(
                args.embedding_model
                    .or_else(|| text(&["embedding", "model"]))
                    .or_else(|| text(&["topicClustering", "embeddingModel"])),
            ),
            top_k: args
                .top_k
                .or_else(|| number(&["rag", "topK"]))
                .unwrap_or(6)
                .clamp(1, 20),
            max_context_chars: args
                .max_context_chars
                .or_else(|| number(&["rag", "maxContextChars"]))
                .unwrap_or(24_000),
            auth_token: clean(args.auth_token.or_else(|| text(&["rag", "authToken"]))),
            stats_auth_token: clean(
                args.stats_auth_token
                    .or_else(|| text(&["rag", "statsAuthToken"])),
            ),
            cors_origins,
            max_in_flight: args
                .max_in_flight
                .or_else(|| number(&["rag", "maxInFlight"]))
                .unwrap_or(256)
                .max(1),
            body_timeout: std::time::Duration::from_secs(10),
            max_body_bytes: 64 * 1024,
            admission: Admission::default(),
            embedding_max_concurrency: args
                .embedding_max_concurrency
                .or_else(|| number(&["embedding", "maxConcurrency"]))
                .unwrap_or(16)
                .max(1),
            llm_max_concurrency: args
                .llm_max_concurrency
                .or_else(|| number(&["llm", "maxConcurrency"]))
                .unwrap_or(8)
                .max(1),
            search_embedding_wait: Duration::from_millis(
                args.search_embedding_wait_ms
                    .or_else(|| number(&["rag", "searchEmbeddingWaitMs"]).map(|n| n as u64))
                    .unwrap_or(2_000),
            ),
            breaker: BreakerConfig {
                failures: args
                    .breaker_failures
                    .or_else(|| number(&["rag", "breakerFailures"]).map(|n| n as u32))
                    .unwrap_or(super::breaker::DEFAULT_FAILURES)
                    .max(1),
                cool_down: args
                    .breaker_cool_down_ms
                    .or_else(|| number(&["rag", "breakerCoolDownMs"]).map(|n| n as u64))
                    .map_or(super::breaker::DEFAULT_COOL_DOWN, Duration::from_millis),
            },
            log_format: args
                .log_format
                .or_else(|| text(&["rag", "logFormat"]).and_then(|f| LogFormat::parse(&f)))
                .unwrap_or_default(),
            search_mode: args.search_mode.unwrap_or(DEFAULT_SEARCH_MODE),
            preload: args.preload
                || file
                    .pointer("/rag/preload")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            prompts_file: args
                .prompts_file
                .or_else(|| text(&["rag", "promptsFile"]).map(PathBuf::from)),
            prompts: Prompts::default(),
            static_dir: args
                .static_dir
                .or_else(|| text(&["rag", "staticDir"]).map(PathBuf::from)),
            static_podcasts_dir: args
                .static_podcasts_dir
                .or_else(|| text(&["rag", "staticPodcastsDir"]).map(PathBuf::from)),
            analytics: AnalyticsSettings::default(),
            redis: clean(args.redis_url.or_else(|| text(&["redis", "url"]))).map(|url| {
                RedisSettings {
                    url,
                    key_prefix: args
                        .redis_key_prefix
                        .or_else(|| text(&["redis", "keyPrefix"]))
                        .unwrap_or_else(|| shared::DEFAULT_KEY_PREFIX.to_owned()),
                    timeout: args
                        .redis_timeout_ms
                        .or_else(|| number(&["redis", "timeoutMs"]).map(|n| n as u64))
                        .map_or(shared::DEFAULT_TIMEOUT, |ms| {
                            Duration::from_millis(ms.max(1))
                        }),
                    embedding_ttl: args
                        .redis_embedding_ttl_secs
                        .or_else(|| number(&["redis", "embeddingTtlSecs"]).map(|n| n as u64))
                        .map_or(shared::DEFAULT_EMBEDDING_TTL, |s| {
                            Duration::from_secs(s.max(1))
                        }),
                }
            }),
        }
    }
}

/// The mode of vector searches when none is configured: the fastest that meets the recall
/// floors (see the module documentation).
pub const DEFAULT_SEARCH_MODE: SearchMode = SearchMode::Binary {
    oversample: crate::search::quant::BINARY_OVERSAMPLE,
};

fn parse_search_mode(s: &str) -> Result<SearchMode, String> {
    s.parse()
        .map_err(|e: crate::search::UnknownMode| e.to_string())
}

/// Trimmed; `None` when empty or one of the original's placeholders.
fn clean(value: Option<String>) -> Option<String> {
    let value = value?.trim().to_owned();
    match value.as_str() {
        "" | "YOUR_API_KEY_HERE" | "CHANGE_ME" => None,
        _ => Some(value),
    }
}

#[cfg(test)]
mod tests;
