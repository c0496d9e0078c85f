//! Places, as the original stored them: a page view from an address the GeoIP database knows
//! is stored with its country and city, and the stats' locations get the coordinates of
//! `worldcities.csv`. The GeoIP database is written here in the MaxMind DB format (a one-
//! network IPv4 tree), since no GeoLite2 file may be shipped with the tests.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use podmap::server::analytics::Analytics;
use podmap::server::catalog::load_mmap;
use podmap::server::{router, AppState, Settings};
use serde_json::{json, Value};
use tower::ServiceExt;

/// MaxMind DB data-section encodings (type in the top 3 bits, size in the low 5).
fn string(s: &str) -> Vec<u8> {
    assert!(s.len() < 29);
    let mut out = vec![0x40 | s.len() as u8];
    out.extend_from_slice(s.as_bytes());
    out
}

fn map(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = vec![0xE0 | entries.len() as u8];
    for (key, value) in entries {
        out.extend(string(key));
        out.extend_from_slice(value);
    }
    out
}

fn uint16(v: u16) -> Vec<u8> {
    let mut out = vec![0xA0 | 2];
    out.extend_from_slice(&v.to_be_bytes());
    out
}

fn uint32(v: u32) -> Vec<u8> {
    let mut out = vec![0xC0 | 4];
    out.extend_from_slice(&v.to_be_bytes());
    out
}

fn uint64(v: u64) -> Vec<u8> {
    // Extended type 9: type bits 0, then 9 - 7 in the next byte.
    let mut out = vec![8, 2];
    out.extend_from_slice(&v.to_be_bytes());
    out
}

fn array_of_strings(items: &[&str]) -> Vec<u8> {
    // Extended type 11.
    let mut out = vec![items.len() as u8, 4];
    for item in items {
        out.extend(string(item));
    }
    out
}

/// An IPv4 GeoIP2-City database in which `network`/24 has `record`.
fn mmdb(network: [u8; 3], record: Vec<u8>) -> Vec<u8> {
    let node_count: u32 = 24;
    let no_data = node_count;
    let data = node_count + 16;
    let mut tree = Vec::new();
    for i in 0..24 {
        let bit = (network[i / 8] >> (7 - i % 8)) & 1;
        let next = if i == 23 { data } else { i as u32 + 1 };
        let (left, right) = if bit == 0 {
            (next, no_data)
        } else {
            (no_data, next)
        };
        tree.extend_from_slice(&left.to_be_bytes()[1..]);
        tree.extend_from_slice(&right.to_be_bytes()[1..]);
    }
    let mut file = tree;
    file.extend_from_slice(&[0; 16]);
    file.extend(record);
    file.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    file.extend(map(&[
        ("node_count", uint32(node_count)),
        ("record_size", uint16(24)),
        ("ip_version", uint16(4)),
        ("database_type", string("GeoIP2-City")),
        ("languages", array_of_strings(&["en"])),
        ("binary_format_major_version", uint16(2)),
        ("binary_format_minor_version", uint16(0)),
        ("build_epoch", uint64(1_700_000_000)),
        ("description", map(&[("en", string("podmap test"))])),
    ]));
    file
}

#[tokio::test]
async fn page_views_get_their_place_and_locations_their_coordinates() {
    let dir = tempfile::tempdir().unwrap();
    let record = map(&[
        ("country", map(&[("iso_code", string("DE"))])),
        (
            "city",
            map(&[(
                "names",
                map(&[("en", string("Cologne")), ("de", string("Köln"))]),
            )]),
        ),
    ]);
    std::fs::write(dir.path().join("City.mmdb"), mmdb([203, 0, 113], record)).unwrap();
    std::fs::write(
        dir.path().join("worldcities.csv"),
        "city,city_ascii,lat,lng,country,iso2\n\"Cologne\",\"Cologne\",50.9422,6.9578,Germany,DE\n",
    )
    .unwrap();
    let mut settings = common::unlimited(Settings::default());
    settings.stats_auth_token = Some("t".into());
    let a = &mut settings.analytics;
    a.database_url = format!("sqlite://{}", dir.path().join("analytics.db").display());
    a.geoip_db_path = dir.path().join("City.mmdb");
    a.world_cities_path = dir.path().join("worldcities.csv");
    a.stats_ttl = Duration::ZERO;
    let analytics = Analytics::open(&settings.analytics).await.unwrap();
    let catalog = load_mmap(common::fixtures_index()).unwrap();
    let state = Arc::new(AppState::new(catalog, settings).with_analytics(analytics));
    let app = router(state.clone());

    // Through the router there is no peer: the address comes from a connection's extension,
    // as the accept loop gives it.
    for (client, path) in [("203.0.113.9", "/known"), ("198.51.100.4", "/unknown")] {
        let mut request = Request::post("/api/analytics/track")
            .header("content-type", "application/json")
            .body(Body::from(json!({"path": path}).to_string()))
            .unwrap();
        let peer: std::net::SocketAddr = format!("{client}:4000").parse().unwrap();
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200);
    }
    state.analytics.shutdown().await;

    let store = podmap::server::analytics::store::open(&format!(
        "sqlite://{}",
        dir.path().join("analytics.db").display()
    ))
    .await
    .unwrap();
    let stats = store.stats(None).await.unwrap();
    store.close().await;
    assert_eq!(stats.total_page_views, 2);
    assert_eq!(stats.locations.len(), 1, "{:?}", stats.locations);
    let place = &stats.locations[0];
    assert_eq!(
        (place.country.as_str(), place.city.as_deref()),
        ("DE", Some("Cologne"))
    );

    // The stats route adds the coordinates (a fresh server over the same database).
    let mut settings = common::unlimited(Settings::default());
    settings.stats_auth_token = Some("t".into());
    let a = &mut settings.analytics;
    a.database_url = format!("sqlite://{}", dir.path().join("analytics.db").display());
    a.world_cities_path = dir.path().join("worldcities.csv");
    let analytics = Analytics::open(&settings.analytics).await.unwrap();
    let catalog = load_mmap(common::fixtures_index()).unwrap();
    let state = Arc::new(AppState::new(catalog, settings).with_analytics(analytics));
    let request = Request::get("/api/analytics/stats")
        .header("x-auth-token", "t")
        .body(Body::empty())
        .unwrap();
    let response = router(state.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body["locations"],
        json!([{"country": "DE", "city": "Cologne", "views": 1, "unique_users": 1,
                "latitude": 50.9422, "longitude": 6.9578}])
    );
    state.analytics.shutdown().await;
}
