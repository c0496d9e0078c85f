//! The analytics routes over real HTTP on loopback, on SQLite and on PostgreSQL: events from
//! many clients at once all land, every event answered with success is stored once the server
//! has shut down gracefully, the token rules, bad bodies, the stats cache and what is stored
//! about a client.

#[macro_use]
mod analytics_support;
mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use analytics_support::Db;
use podmap::server::analytics::Analytics;
use podmap::server::catalog::load_mmap;
use podmap::server::listener::{serve_connections, ConnectionLimits};
use podmap::server::{router, AppState, Settings};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

both!(
    events_from_32_concurrent_clients_all_land,
    accepted_events_are_stored_by_a_graceful_shutdown,
    tokens_guard_stats_and_test_data,
    bad_bodies_answer_4xx_json,
    stats_are_cached_per_days_and_not_flushed_by_inserts,
    an_event_shows_in_the_stats_within_the_ttl,
    addresses_are_keyed_and_text_is_bounded,
    a_failing_store_keeps_the_events_and_retries,
    a_dead_store_does_not_hold_the_shutdown,
);

const TOKEN: &str = "stats-s3cret";

/// A server on a loopback port with analytics on `db`.
struct Running {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<()>,
    state: Arc<AppState>,
}

async fn start(db: &Db, tweak: impl FnOnce(&mut Settings)) -> Running {
    let mut settings = common::unlimited(Settings::default());
    settings.analytics.database_url = db.url.clone();
    if db.is_postgres() {
        // Without a SQLite file the key file would go to the working directory.
        settings.analytics.ip_secret = Some("test key".into());
    }
    tweak(&mut settings);
    let analytics = Analytics::open(&settings.analytics).await.unwrap();
    let catalog = load_mmap(common::fixtures_index()).unwrap();
    let state = Arc::new(AppState::new(catalog, settings).with_analytics(analytics));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let limits = ConnectionLimits {
        drain_timeout: Duration::from_secs(5),
        ..ConnectionLimits::default()
    };
    let serving = tokio::spawn(serve_connections(
        listener,
        router(state.clone()),
        limits,
        async {
            let _ = stopped.await;
        },
    ));
    Running {
        addr,
        stop,
        serving,
        state,
    }
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// As `podmap serve` stops: the listener drains, then the analytics queue.
    async fn shut_down(self) {
        let _ = self.stop.send(());
        self.serving.await.unwrap();
        self.state.analytics.shutdown().await;
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .user_agent("analytics-test/1.0")
        .build()
        .unwrap()
}

async fn post(c: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let r = c.post(url).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn stats(c: &reqwest::Client, server: &Running, query: &str) -> (u16, Value) {
    let r = c
        .get(server.url(&format!("/api/analytics/stats{query}")))
        .header("x-auth-token", TOKEN)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn with_token(s: &mut Settings) {
    s.stats_auth_token = Some(TOKEN.into());
}

/// Polls the stats (fresh each time: TTL 0) until `total_page_views` is `want`, or 60 s.
async fn await_page_views(c: &reqwest::Client, server: &Running, query: &str, want: i64) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = stats(c, server, query).await;
        assert_eq!(status, 200, "{body}");
        if body["total_page_views"] == want || tokio::time::Instant::now() > deadline {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// 20,000 events from 32 clients at once: every one answered with success is stored.
async fn events_from_32_concurrent_clients_all_land(db: Db) {
    const CLIENTS: usize = 32;
    const EACH: usize = 625;
    // Every 25th event of a client is an episode play, the rest page views.
    const PLAYS: usize = CLIENTS * EACH / 25;
    const VIEWS: usize = CLIENTS * EACH - PLAYS;
    let server = start(&db, |s| {
        with_token(s);
        s.analytics.stats_ttl = Duration::ZERO;
    })
    .await;
    let clients = (0..CLIENTS).map(|n| {
        let (track, play) = (server.url("/api/analytics/track"), server.url("/api/analytics/track-episode-play"));
        tokio::spawn(async move {
            let c = client();
            for i in 0..EACH {
                let (url, body) = if i % 25 == 0 {
                    (play.clone(), json!({"podcast": "raumzeit", "episode": (i % 7).to_string()}))
                } else {
                    (track.clone(), json!({"path": format!("/c{n}/{i}"), "podcast": "raumzeit", "episode": (i % 5).to_string()}))
                };
                assert_eq!(post(&c, url, body).await, (200, json!({"success": true})));
            }
        })
    });
    for task in clients.collect::<Vec<_>>() {
        task.await.unwrap();
    }
    let c = client();
    await_page_views(&c, &server, "", VIEWS as i64).await;
    // Plays may land in a later batch than the last page view: wait for them too.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let body = loop {
        let (_, body) = stats(&c, &server, "").await;
        if body["total_episode_plays"] == PLAYS || tokio::time::Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(body["total_page_views"], VIEWS, "{body}");
    assert_eq!(body["total_episode_plays"], PLAYS);
    assert_eq!(
        body["top_podcasts"][0],
        json!({"podcast": "raumzeit", "views": VIEWS, "unique_users": 1})
    );
    server.shut_down().await;
    assert_eq!(
        db.count("SELECT COUNT(*) AS n FROM page_views").await,
        VIEWS as i64
    );
    assert_eq!(
        db.count("SELECT COUNT(*) AS n FROM episode_plays").await,
        PLAYS as i64
    );
}

async fn accepted_events_are_stored_by_a_graceful_shutdown(db: Db) {
    let server = start(&db, |_| {}).await;
    let c = client();
    for i in 0..300 {
        let body = json!({"path": format!("/p/{i}"), "route_name": "p"});
        assert_eq!(
            post(&c, server.url("/api/analytics/track"), body).await.0,
            200
        );
    }
    let play = json!({"podcast": "forschergeist", "episode": "7", "user_agent": "Player"});
    assert_eq!(
        post(&c, server.url("/api/analytics/track-episode-play"), play)
            .await
            .0,
        200
    );
    server.shut_down().await;
    assert_eq!(db.count("SELECT COUNT(*) AS n FROM page_views").await, 300);
    let play = db
        .texts(
            "SELECT podcast, episode, user_agent FROM episode_plays",
            &["podcast", "episode", "user_agent"],
        )
        .await;
    assert_eq!(play, ["forschergeist", "7", "Player"]);
}

async fn tokens_guard_stats_and_test_data(db: Db) {
    // No stats token: stats are open (as in the original), test-data is refused.
    let open = start(&db, |_| {}).await;
    let c = client();
    let r = c
        .get(open.url("/api/analytics/stats?days=7"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .get(open.url("/api/analytics/test-data"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "permission denied"})
    );
    open.shut_down().await;

    let server = start(&db, with_token).await;
    for (header, value) in [
        ("x-auth-token", "wrong"),
        ("authorization", "Bearer wrong"),
        ("x-other", TOKEN),
    ] {
        for path in ["/api/analytics/stats", "/api/analytics/test-data"] {
            let r = c
                .get(server.url(path))
                .header(header, value)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403, "{path} {header}");
            assert_eq!(
                r.json::<Value>().await.unwrap(),
                json!({"error": "permission denied"})
            );
        }
    }
    let r = c
        .get(server.url("/api/analytics/test-data?count=50"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (body["success"].clone(), body["count"].clone()),
        (json!(true), json!(50))
    );
    assert!(body["message"].is_string());
    let (status, stats) = stats(&c, &server, "?days=31").await;
    assert_eq!(status, 200);
    let keys: Vec<&str> = stats
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "unique_users",
            "total_page_views",
            "total_episode_plays",
            "top_pages",
            "top_podcasts",
            "top_played_podcasts",
            "top_episodes",
            "top_played_episodes",
            "locations"
        ]
    );
    assert_eq!(stats["total_page_views"], 50);
    assert_eq!(stats["locations"][0]["country"], "DE");
    assert!(stats["top_pages"][0]["route_name"].is_string());
    let r = c
        .get(server.url("/api/analytics/stats?days=x"))
        .header("x-auth-token", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    server.shut_down().await;
}

async fn bad_bodies_answer_4xx_json(db: Db) {
    let server = start(&db, |_| {}).await;
    let track = server.url("/api/analytics/track");
    let play = server.url("/api/analytics/track-episode-play");
    let big = format!("{{\"path\": \"{}\"}}", "x".repeat(1 << 20));
    let cases = [
        (
            track.clone(),
            "application/json",
            "{\"path\": ".to_owned(),
            400,
        ),
        (
            track.clone(),
            "application/json",
            "{\"route_name\": \"home\"}".to_owned(),
            422,
        ),
        (
            track.clone(),
            "application/json",
            "{\"path\": 5}".to_owned(),
            422,
        ),
        (
            track.clone(),
            "text/plain",
            "{\"path\": \"/\"}".to_owned(),
            415,
        ),
        (track.clone(), "application/json", big, 413),
        (
            play.clone(),
            "application/json",
            "{\"podcast\": \"raumzeit\"}".to_owned(),
            422,
        ),
        (play.clone(), "application/json", "[]".to_owned(), 422),
    ];
    for (url, content_type, body, want) in cases {
        let shown = body.chars().take(40).collect::<String>();
        // A connection of its own: the server closes a connection whose body it refused.
        let r = client()
            .post(url)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want, "{shown}");
        let answer: Value = r.json().await.unwrap();
        assert!(answer["error"].is_string(), "{shown}: {answer}");
    }
    server.shut_down().await;
    assert_eq!(db.count("SELECT COUNT(*) AS n FROM page_views").await, 0);
}

async fn stats_are_cached_per_days_and_not_flushed_by_inserts(db: Db) {
    let server = start(&db, |s| {
        with_token(s);
        s.analytics.stats_ttl = Duration::from_secs(600);
    })
    .await;
    let c = client();
    assert_eq!(stats(&c, &server, "").await.1["total_page_views"], 0);
    assert_eq!(
        post(&c, server.url("/api/analytics/track"), json!({"path": "/"}))
            .await
            .0,
        200
    );
    // Written, as the database itself shows...
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while db.count("SELECT COUNT(*) AS n FROM page_views").await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the event was not written"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ...yet the cached answer stands until its TTL, while another `days` is fresh.
    assert_eq!(stats(&c, &server, "").await.1["total_page_views"], 0);
    assert_eq!(stats(&c, &server, "?days=7").await.1["total_page_views"], 1);
    server.shut_down().await;
}

async fn an_event_shows_in_the_stats_within_the_ttl(db: Db) {
    let server = start(&db, |s| {
        with_token(s);
        s.analytics.stats_ttl = Duration::from_secs(1);
    })
    .await;
    let c = client();
    assert_eq!(stats(&c, &server, "?days=1").await.1["total_page_views"], 0);
    assert_eq!(
        post(
            &c,
            server.url("/api/analytics/track"),
            json!({"path": "/new"})
        )
        .await
        .0,
        200
    );
    let body = await_page_views(&c, &server, "?days=1", 1).await;
    assert_eq!(body["total_page_views"], 1, "{body}");
    assert_eq!(body["top_pages"][0]["path"], "/new");
    server.shut_down().await;
}

async fn addresses_are_keyed_and_text_is_bounded(db: Db) {
    let server = start(&db, |_| {}).await;
    let c = client();
    let long_ua = "é".repeat(400);
    let body = json!({"path": format!("/{}", "p".repeat(5000)), "user_agent": long_ua, "referrer": "https://example.org/"});
    assert_eq!(
        post(&c, server.url("/api/analytics/track"), body).await.0,
        200
    );
    let body = json!({"path": "/from-header"});
    assert_eq!(
        post(&c, server.url("/api/analytics/track"), body).await.0,
        200
    );
    server.shut_down().await;

    let columns = [
        "path",
        "user_agent",
        "ip_address",
        "user_fingerprint",
        "referrer",
    ];
    let first = db
        // By path, not id: two writers may store events out of their order of arrival.
        .texts(
            "SELECT * FROM page_views WHERE path <> '/from-header' LIMIT 1",
            &columns,
        )
        .await;
    let (path, ua, ip, fp) = (&first[0], &first[1], &first[2], &first[3]);
    assert_eq!(path.len(), 2048);
    assert_eq!(ua.len(), 512, "cut on a character boundary");
    assert_eq!(ip.len(), 64, "an HMAC, not the address: {ip}");
    assert!(!ip.contains("127.0.0.1"));
    let expected = Sha256::digest(format!("127.0.0.1:{}", "é".repeat(256)).as_bytes());
    let hex: String = expected[..16].iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(fp, &hex, "the original's fingerprint over the real address");
    assert_eq!(first[4], "https://example.org/");
    let second = db
        .texts(
            "SELECT user_agent, ip_address FROM page_views WHERE path = '/from-header'",
            &["user_agent", "ip_address"],
        )
        .await;
    assert_eq!(second, ["analytics-test/1.0", ip.as_str()]);
    if !db.is_postgres() {
        let secret = db.dir.path().join("analytics.secret");
        assert!(secret.is_file(), "the key is kept beside the database");
    }

    // Raw addresses only when asked for.
    let raw = start(&db, |s| s.analytics.store_raw_ip = true).await;
    assert_eq!(
        post(&c, raw.url("/api/analytics/track"), json!({"path": "/raw"}))
            .await
            .0,
        200
    );
    raw.shut_down().await;
    let stored = db
        .texts(
            "SELECT ip_address FROM page_views WHERE path = '/raw'",
            &["ip_address"],
        )
        .await;
    assert_eq!(stored, ["127.0.0.1"]);
}

async fn a_failing_store_keeps_the_events_and_retries(db: Db) {
    let server = start(&db, |_| {}).await;
    // The table goes away under the writer: every insert fails until it is back.
    db.execute(&["ALTER TABLE page_views RENAME TO page_views_away"])
        .await;
    let c = client();
    for i in 0..20 {
        let body = json!({"path": format!("/during/{i}")});
        let answer = post(&c, server.url("/api/analytics/track"), body).await;
        assert_eq!(
            answer,
            (200, json!({"success": true})),
            "requests keep answering"
        );
    }
    db.execute(&["ALTER TABLE page_views_away RENAME TO page_views"])
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while db.count("SELECT COUNT(*) AS n FROM page_views").await < 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the events held back were not written after the store came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.shut_down().await;
    assert_eq!(db.count("SELECT COUNT(*) AS n FROM page_views").await, 20);
}

async fn a_dead_store_does_not_hold_the_shutdown(db: Db) {
    let server = start(&db, |_| {}).await;
    db.execute(&["ALTER TABLE page_views RENAME TO page_views_away"])
        .await;
    let c = client();
    for i in 0..5 {
        let body = json!({"path": format!("/lost/{i}")});
        assert_eq!(
            post(&c, server.url("/api/analytics/track"), body).await.0,
            200
        );
    }
    // Bounded for liveness only: the writer gives up after a few attempts once stopping.
    tokio::time::timeout(Duration::from_secs(120), server.shut_down())
        .await
        .expect("the shutdown finished although the store never came back");
    db.execute(&["ALTER TABLE page_views_away RENAME TO page_views"])
        .await;
    assert_eq!(db.count("SELECT COUNT(*) AS n FROM page_views").await, 0);
}

#[tokio::test]
async fn analytics_off_answers_success_and_stores_nothing() {
    let db = Db::sqlite().await;
    let server = start(&db, |s| {
        with_token(s);
        s.analytics.enabled = false;
    })
    .await;
    let c = client();
    assert_eq!(
        post(&c, server.url("/api/analytics/track"), json!({"path": "/"})).await,
        (200, json!({"success": true}))
    );
    let play = json!({"podcast": "a", "episode": "1"});
    assert_eq!(
        post(&c, server.url("/api/analytics/track-episode-play"), play)
            .await
            .0,
        200
    );
    assert_eq!(stats(&c, &server, "").await.0, 503);
    server.shut_down().await;
    assert!(
        !db.dir.path().join("analytics.db").exists(),
        "no database is created"
    );
}
