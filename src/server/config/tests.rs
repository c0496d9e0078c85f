//! Settings precedence, defaults and config errors.

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
    let invalid = dir.path().join("limits.json");
    std::fs::write(&invalid, r#"{"rag": {"rateLimit": {"chat": "10/day"}}}"#).unwrap();
    let e = load(&invalid).unwrap_err();
    assert_eq!(e.to_string(), "invalid RATE_LIMIT_CHAT value '10/day'");
    assert!(std::error::Error::source(&e).is_some());
    let fine = dir.path().join("settings.json");
    std::fs::write(&fine, r#"{"rag": {"topK": 3}}"#).unwrap();
    assert_eq!(load(&fine).unwrap().top_k, 3);
}

#[test]
fn upstream_limits_from_flags_file_and_defaults() {
    let defaults = Settings::default();
    assert_eq!(
        (
            defaults.embedding_max_concurrency,
            defaults.llm_max_concurrency
        ),
        (16, 8)
    );
    assert_eq!(defaults.search_embedding_wait, Duration::from_secs(2));
    assert_eq!(defaults.breaker, BreakerConfig::default());
    assert_eq!(
        (defaults.breaker.failures, defaults.breaker.cool_down),
        (5, Duration::from_secs(10))
    );
    let file = json!({
        "embedding": {"maxConcurrency": 3},
        "llm": {"maxConcurrency": 0},
        "rag": {"searchEmbeddingWaitMs": 500, "breakerFailures": 2, "breakerCoolDownMs": 250}
    });
    let from_file = Settings::resolve(SettingsArgs::default(), &file);
    assert_eq!(from_file.embedding_max_concurrency, 3);
    assert_eq!(from_file.llm_max_concurrency, 1, "at least one call");
    assert_eq!(from_file.search_embedding_wait, Duration::from_millis(500));
    assert_eq!(
        from_file.breaker,
        BreakerConfig {
            failures: 2,
            cool_down: Duration::from_millis(250)
        }
    );
    let args = SettingsArgs {
        embedding_max_concurrency: Some(7),
        llm_max_concurrency: Some(2),
        search_embedding_wait_ms: Some(0),
        breaker_failures: Some(9),
        breaker_cool_down_ms: Some(1),
        ..SettingsArgs::default()
    };
    let flagged = Settings::resolve(args, &file);
    assert_eq!(
        (
            flagged.embedding_max_concurrency,
            flagged.llm_max_concurrency
        ),
        (7, 2)
    );
    assert_eq!(flagged.search_embedding_wait, Duration::ZERO);
    assert_eq!(flagged.breaker.failures, 9);
    assert_eq!(flagged.breaker.cool_down, Duration::from_millis(1));
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
    assert_eq!(s.log_format, LogFormat::Text);
}

#[test]
fn log_format_from_flag_then_file() {
    let file = json!({"rag": {"logFormat": "JSON"}});
    let from_file = Settings::resolve(SettingsArgs::default(), &file);
    assert_eq!(from_file.log_format, LogFormat::Json);
    let flagged = Settings::resolve(
        SettingsArgs {
            log_format: Some(LogFormat::Text),
            ..SettingsArgs::default()
        },
        &file,
    );
    assert_eq!(flagged.log_format, LogFormat::Text);
    let unknown = json!({"rag": {"logFormat": "xml"}});
    assert_eq!(
        Settings::resolve(SettingsArgs::default(), &unknown).log_format,
        LogFormat::Text,
        "an unknown format in the file falls back to the default"
    );
}

#[test]
fn the_flags_print_no_secret_in_debug() {
    let mut args = SettingsArgs {
        llm_api_key: Some("sk-llm-secret".into()),
        embedding_api_key: Some("sk-embedding-secret".into()),
        auth_token: Some("chat-token-secret".into()),
        stats_auth_token: Some("stats-token-secret".into()),
        ..SettingsArgs::default()
    };
    args.analytics.database_url = Some("postgres://u:db-password-secret@host/db".into());
    args.analytics.ip_secret = Some("ip-key-secret".into());
    let printed = format!("{args:?} {:?}", args.analytics);
    assert!(!printed.contains("secret"), "{printed}");
    assert!(printed.starts_with("SettingsArgs"), "{printed}");
}

#[test]
fn redis_is_off_by_default_and_set_by_flag_or_file() {
    assert_eq!(Settings::default().redis, None);
    let file = json!({"redis": {"url": "redis://cache:6379", "keyPrefix": "a:", "timeoutMs": 20}});
    let from_file = Settings::resolve(SettingsArgs::default(), &file)
        .redis
        .unwrap();
    assert_eq!(from_file.url, "redis://cache:6379");
    assert_eq!(from_file.key_prefix, "a:");
    assert_eq!(from_file.timeout, Duration::from_millis(20));
    assert_eq!(from_file.embedding_ttl, shared::DEFAULT_EMBEDDING_TTL);
    let args = SettingsArgs {
        redis_url: Some("redis://127.0.0.1:6380/2".into()),
        redis_embedding_ttl_secs: Some(60),
        ..SettingsArgs::default()
    };
    let flagged = Settings::resolve(args, &file).redis.unwrap();
    assert_eq!(flagged.url, "redis://127.0.0.1:6380/2");
    assert_eq!(flagged.key_prefix, "a:", "the file's prefix still applies");
    assert_eq!(flagged.embedding_ttl, Duration::from_secs(60));
    let defaults = Settings::resolve(
        SettingsArgs {
            redis_url: Some("redis://h".into()),
            ..SettingsArgs::default()
        },
        &Value::Null,
    )
    .redis
    .unwrap();
    assert_eq!(defaults.key_prefix, "podmap:");
    assert_eq!(defaults.timeout, Duration::from_millis(50));
}

#[test]
fn a_malformed_redis_url_stops_the_server_without_its_password() {
    let e = Settings::load(SettingsArgs {
        redis_url: Some("http://:hunter2@cache:6379".into()),
        ..SettingsArgs::default()
    })
    .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("REDIS_URL"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn search_mode_from_flag_then_file_then_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("settings.json");
    std::fs::write(&file, r#"{"rag": {"searchMode": "int8"}}"#).unwrap();
    let load = |search_mode: Option<SearchMode>| {
        Settings::load(SettingsArgs {
            config: Some(file.clone()),
            search_mode,
            ..SettingsArgs::default()
        })
    };
    assert_eq!(load(None).unwrap().search_mode.name(), "int8");
    assert_eq!(
        load(Some(SearchMode::Exact)).unwrap().search_mode,
        SearchMode::Exact
    );
    assert_eq!(Settings::default().search_mode, DEFAULT_SEARCH_MODE);
    assert_eq!(parse_search_mode("binary"), Ok(DEFAULT_SEARCH_MODE));
    assert!(parse_search_mode("fast").is_err());
    std::fs::write(&file, r#"{"rag": {"searchMode": "fast"}}"#).unwrap();
    let e = load(None).unwrap_err();
    assert_eq!(e.to_string(), "invalid SEARCH_MODE value 'fast'");
}
