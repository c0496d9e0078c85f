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
//! | chat prompt templates | `--prompts` | `PROMPTS_FILE` | `rag.promptsFile` | built-in wording (see [`super::prompts`]) |
//!
//! Tokens and keys are trimmed; empty values and the original's placeholders
//! (`YOUR_API_KEY_HERE`, `CHANGE_ME`) count as unset.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use serde_json::Value;

use super::prompts::{Prompts, PromptsError};

/// `podmap serve` flags; each falls back to its environment variable (via clap).
#[derive(Debug, Clone, Default, Args)]
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
    /// JSON file of chat prompt templates (see docs/prompts.example.json); missing keys keep
    /// the built-in wording [default: built in].
    #[arg(long = "prompts", env = "PROMPTS_FILE", value_name = "FILE")]
    pub prompts_file: Option<PathBuf>,
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
    /// The prompts file (`--prompts`) cannot be read or holds a bad template.
    #[error(transparent)]
    Prompts(#[from] PromptsError),
}

/// The settings in force.
#[derive(Debug, Clone, PartialEq)]
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
    /// Where the prompt templates came from; `None`: the built-in wording.
    pub prompts_file: Option<PathBuf>,
    /// The chat's prompt templates, checked at start-up.
    pub prompts: Prompts,
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
        let mut settings = Settings::resolve(args, &file);
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
            prompts_file: args
                .prompts_file
                .or_else(|| text(&["rag", "promptsFile"]).map(PathBuf::from)),
            prompts: Prompts::default(),
        }
    }
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
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let file = json!({
            "rag": {"bindAddr": "0.0.0.0:9000", "authToken": " secret ", "statsAuthToken": "CHANGE_ME"},
            "llm": {"baseURL": "https://llm.example/v1/", "apiKey": "k", "model": "m"},
            "topicClustering": {"embeddingModel": "e"}
        });
        let from_file = Settings::resolve(SettingsArgs::default(), &file);
        assert_eq!(from_file.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(
            from_file.llm_base_url.as_deref(),
            Some("https://llm.example/v1")
        );
        assert_eq!(from_file.embedding_base_url, from_file.llm_base_url);
        assert_eq!(from_file.embedding_api_key.as_deref(), Some("k"));
        assert_eq!(from_file.embedding_model.as_deref(), Some("e"));
        assert_eq!(from_file.auth_token.as_deref(), Some("secret"));
        assert_eq!(
            from_file.stats_auth_token, None,
            "placeholder counts as unset"
        );
        let args = SettingsArgs {
            listen: Some("127.0.0.1:1".parse().unwrap()),
            embedding_base_url: Some("http://127.0.0.1:8000/v1".into()),
            top_k: Some(99),
            ..SettingsArgs::default()
        };
        let flagged = Settings::resolve(args, &file);
        assert_eq!(flagged.listen.to_string(), "127.0.0.1:1");
        assert_eq!(
            flagged.embedding_base_url.as_deref(),
            Some("http://127.0.0.1:8000/v1")
        );
        assert_eq!(
            flagged.llm_base_url.as_deref(),
            Some("https://llm.example/v1")
        );
        assert_eq!(flagged.top_k, 20, "clamped as the original clamps topK");
    }

    #[test]
    fn config_errors_name_the_file_and_keep_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.json");
        let load = |path: &std::path::Path| {
            Settings::load(SettingsArgs {
                config: Some(path.to_path_buf()),
                ..SettingsArgs::default()
            })
        };
        let e = load(&missing).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            format!("cannot read config file {}", missing.display())
        );
        assert!(std::error::Error::source(&e).is_some());
        let broken = dir.path().join("broken.json");
        std::fs::write(&broken, "{").unwrap();
        let e = load(&broken).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("config file {} is not valid JSON", broken.display())
        );
        let fine = dir.path().join("settings.json");
        std::fs::write(&fine, r#"{"rag": {"topK": 3}}"#).unwrap();
        assert_eq!(load(&fine).unwrap().top_k, 3);
    }

    #[test]
    fn prompts_come_from_the_flag_or_the_config_file_and_bad_ones_stop_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let (mine, theirs) = (dir.path().join("mine.json"), dir.path().join("theirs.json"));
        std::fs::write(&mine, r#"{"neutralUser": "F: {question}"}"#).unwrap();
        std::fs::write(&theirs, r#"{"neutralUser": "Q: {question}"}"#).unwrap();
        let config = dir.path().join("settings.json");
        let file = serde_json::json!({"rag": {"promptsFile": theirs}});
        std::fs::write(&config, file.to_string()).unwrap();
        let load = |prompts: Option<&std::path::Path>| {
            Settings::load(SettingsArgs {
                config: Some(config.clone()),
                prompts_file: prompts.map(|p| p.to_path_buf()),
                ..SettingsArgs::default()
            })
        };
        let from_file = load(None).unwrap();
        assert_eq!(from_file.prompts.neutral_user, "Q: {question}");
        assert_eq!(from_file.prompts_file.as_deref(), Some(theirs.as_path()));
        assert_eq!(
            load(Some(&mine)).unwrap().prompts.neutral_user,
            "F: {question}"
        );
        std::fs::write(&mine, r#"{"neutralUser": "{speaker}"}"#).unwrap();
        let e = load(Some(&mine)).unwrap_err();
        assert!(matches!(e, ConfigError::Prompts(_)), "{e:?}");
        assert!(e.to_string().contains(&*mine.to_string_lossy()), "{e}");
        assert_eq!(Settings::default().prompts, Prompts::default());
    }

    #[test]
    fn defaults() {
        let s = Settings::default();
        assert_eq!(s.listen.to_string(), "127.0.0.1:7878");
        assert_eq!(s.llm_model, "gpt-4o-mini");
        assert_eq!((s.top_k, s.max_context_chars), (6, 24_000));
        assert!(
            s.llm_base_url.is_none() && s.embedding_base_url.is_none() && s.cors_origins.is_empty()
        );
    }
}
