//! Batches of mixed events go into the store as multi-row INSERTs: every
//! field lands in its own column, in the order of the batch, whatever the batch's length, on
//! SQLite and on PostgreSQL (`cfg(podmap_postgres)`, from `PODMAP_POSTGRES_URL`).

use podmap::server::analytics::event::{EpisodePlay, Event, PageView};
use podmap::server::analytics::store::{self, Table};
use sqlx::Connection;

/// Event `i`: every third an episode play, the others page views with their optional fields
/// set or left empty by `i`, so that a value bound to the wrong column shows.
fn event(i: usize) -> Event {
    let some = |every: usize, text: String| i.is_multiple_of(every).then_some(text);
    if i % 3 == 2 {
        Event::EpisodePlay(EpisodePlay {
            user_fingerprint: format!("play-fp-{i}"),
            podcast: format!("podcast-{}", i % 5),
            episode: format!("episode-{i}"),
            user_agent: format!("agent-{i}"),
            ip_address: format!("address-{i}"),
            created_at: format!("2026-01-01T00:00:{:02}.{i:06}+00:00", i % 60),
        })
    } else {
        Event::PageView(PageView {
            user_fingerprint: format!("view-fp-{i}"),
            path: format!("/path/{i}"),
            route_name: some(2, format!("route-{i}")),
            podcast: some(4, format!("podcast-{i}")),
            episode: some(5, format!("episode-{i}")),
            country: some(2, format!("C{i}")),
            city: some(3, format!("city-{i}")),
            referrer: some(7, format!("https://example.org/{i}")),
            user_agent: format!("agent-{i}"),
            ip_address: format!("address-{i}"),
            created_at: format!("2026-01-01T00:00:{:02}.{i:06}+00:00", i % 60),
        })
    }
}

async fn batches_round_trip(url: &str) {
    let store = store::open(url).await.unwrap();
    // 300 is 128 + 128 + 32 + 8 + 4 rows, in two tables; then a second, shorter batch that
    // reuses the prepared statements, and a batch of one.
    let events: Vec<Event> = (0..452).map(event).collect();
    store.insert(&events[..300]).await.unwrap();
    store.insert(&events[300..451]).await.unwrap();
    store.insert(&events[451..]).await.unwrap();
    let mut stored = Vec::new();
    for table in [Table::PageViews, Table::EpisodePlays] {
        let rows = store.export(table, 0, 10_000).await.unwrap();
        stored.extend(rows.into_iter().map(|(_, event)| event));
    }
    let (views, plays): (Vec<Event>, Vec<Event>) = events
        .into_iter()
        .partition(|e| matches!(e, Event::PageView(_)));
    assert_eq!(stored.len(), views.len() + plays.len());
    assert_eq!(stored[..views.len()], views[..], "page views, by id");
    assert_eq!(stored[views.len()..], plays[..], "episode plays, by id");
    store.close().await;
}

#[tokio::test]
async fn batches_round_trip_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    batches_round_trip(&format!("sqlite://{}", dir.path().join("a.db").display())).await;
}

#[tokio::test]
#[cfg_attr(
    not(podmap_postgres),
    ignore = "needs a PostgreSQL server: set PODMAP_POSTGRES_URL (tools/test.sh does when pg_isready answers)"
)]
async fn batches_round_trip_on_postgres() {
    let admin = std::env::var("PODMAP_POSTGRES_URL")
        .expect("PODMAP_POSTGRES_URL names a PostgreSQL server (see build.rs)");
    let name = format!("podmap_test_batches_{}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let base = admin.rsplit_once('/').expect("a URL with a database").0;
    // Dropped also when the round trip fails.
    let result = tokio::spawn({
        let url = format!("{base}/{name}");
        async move { batches_round_trip(&url).await }
    })
    .await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .unwrap();
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}
