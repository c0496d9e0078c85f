//! The PostgreSQL analytics database going away mid-run and coming back, through a TCP proxy
//! the test cuts: track requests keep answering success while it is gone, and once it is back
//! every event is written, by the same server, whose pool reconnects on its own.

#[allow(unused_macros)]
mod analytics_support;
mod common;
mod proxy;

use std::sync::Arc;
use std::time::Duration;

use analytics_support::Db;
use podmap::server::analytics::Analytics;
use podmap::server::catalog::load_mmap;
use podmap::server::listener::{serve_connections, ConnectionLimits};
use podmap::server::{router, AppState, Settings};
use proxy::Proxy;
use serde_json::{json, Value};
use tokio::net::TcpListener;

async fn track(http: &reqwest::Client, addr: std::net::SocketAddr, from: usize, n: usize) {
    for i in from..from + n {
        let r = http
            .post(format!("http://{addr}/api/analytics/track"))
            .json(&json!({"path": format!("/outage/{i}"), "route_name": "outage"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap(), json!({"success": true}));
    }
}

/// Polls the database itself (not through the proxy) until `want` rows, or 120 s.
async fn await_rows(db: &Db, want: i64) -> i64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let n = db
            .count("SELECT COUNT(*) AS n FROM page_views WHERE route_name = 'outage'")
            .await;
        if n >= want || tokio::time::Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(podmap_postgres),
    ignore = "needs a PostgreSQL server: set PODMAP_POSTGRES_URL (tools/test.sh does when pg_isready answers)"
)]
async fn a_database_outage_loses_no_events_and_needs_no_restart() {
    let db = Db::postgres().await;
    let mut direct = reqwest::Url::parse(&db.url).unwrap();
    let upstream = format!(
        "{}:{}",
        direct.host_str().unwrap(),
        direct.port().unwrap_or(5432)
    );
    let proxy = Proxy::start(upstream).await;
    direct.set_ip_host(proxy.addr.ip()).unwrap();
    direct.set_port(Some(proxy.addr.port())).unwrap();

    let mut settings = common::unlimited(Settings::default());
    settings.analytics.database_url = direct.to_string();
    settings.analytics.ip_secret = Some("test key".into());
    let analytics = Analytics::open(&settings.analytics).await.unwrap();
    let catalog = load_mmap(common::fixtures_index()).unwrap();
    let state = Arc::new(AppState::new(catalog, settings).with_analytics(analytics));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(serve_connections(
        listener,
        router(state.clone()),
        ConnectionLimits::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();

    track(&http, addr, 0, 100).await;
    assert_eq!(await_rows(&db, 100).await, 100, "written before the outage");

    proxy.cut();
    track(&http, addr, 100, 300).await;
    // Long enough for the writer to fail and back off at least once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        db.count("SELECT COUNT(*) AS n FROM page_views WHERE route_name = 'outage'")
            .await,
        100,
        "nothing can be written while the database is cut off"
    );

    proxy.restore();
    track(&http, addr, 400, 100).await;
    assert_eq!(
        await_rows(&db, 500).await,
        500,
        "every event is written once the database is back"
    );

    let _ = stop.send(());
    serving.await.unwrap();
    state.analytics.shutdown().await;
    assert_eq!(await_rows(&db, 500).await, 500, "and none twice");
}
