//! The analytics stores, SQLite and PostgreSQL, through the same suite: a database with the
//! original's schema and rows in it is adopted as it is and gives the original's stats; the
//! schema is versioned; old rows are pruned.

#[macro_use]
mod analytics_support;

use chrono::{Duration, Utc};
use podmap::server::analytics::event::{days_ago, now, Event, PageView};
use podmap::server::analytics::store::{self, EpisodeRow, LocationRow, PageRow, PodcastRow};

both!(
    an_original_database_gives_the_original_stats,
    the_schema_is_versioned_and_migrated_once,
    old_events_are_pruned,
    a_batch_is_written_whole,
    a_database_is_copied_whole_and_a_stopped_copy_resumed,
);

/// The original's tables as its `AnalyticsDb::new` created them (types mapped for
/// PostgreSQL), with its indexes under its own names.
fn original_schema(postgres: bool) -> Vec<String> {
    let id = if postgres {
        "id BIGSERIAL PRIMARY KEY"
    } else {
        "id INTEGER PRIMARY KEY AUTOINCREMENT"
    };
    vec![
        format!(
            "CREATE TABLE page_views ({id}, user_fingerprint TEXT NOT NULL, path TEXT NOT NULL, \
             route_name TEXT, podcast TEXT, episode TEXT, country TEXT, city TEXT, referrer TEXT, \
             user_agent TEXT, ip_address TEXT, created_at TEXT NOT NULL)"
        ),
        format!(
            "CREATE TABLE episode_plays ({id}, user_fingerprint TEXT NOT NULL, podcast TEXT NOT NULL, \
             episode TEXT NOT NULL, user_agent TEXT, ip_address TEXT, created_at TEXT NOT NULL)"
        ),
        "CREATE INDEX idx_pv_fp ON page_views(user_fingerprint)".into(),
        "CREATE INDEX idx_pv_created ON page_views(created_at)".into(),
        "CREATE INDEX idx_ep_created ON episode_plays(created_at)".into(),
    ]
}

fn ago(days: i64) -> String {
    (Utc::now() - Duration::days(days) + Duration::minutes(5)).to_rfc3339()
}

fn view(
    fp: &str,
    path: &str,
    route: &str,
    pe: Option<(&str, &str)>,
    place: Option<(&str, &str)>,
    days: i64,
) -> String {
    let q = |v: Option<&str>| v.map_or("NULL".to_owned(), |v| format!("'{v}'"));
    format!(
        "INSERT INTO page_views (user_fingerprint, path, route_name, podcast, episode, country, city, \
         referrer, user_agent, ip_address, created_at) VALUES ('{fp}', '{path}', '{route}', {}, {}, {}, {}, \
         NULL, 'Mozilla/5.0', '198.51.100.1', '{}')",
        q(pe.map(|p| p.0)),
        q(pe.map(|p| p.1)),
        q(place.map(|p| p.0)),
        q(place.map(|p| p.1)),
        ago(days)
    )
}

fn play(fp: &str, podcast: &str, episode: &str, days: i64) -> String {
    format!(
        "INSERT INTO episode_plays (user_fingerprint, podcast, episode, user_agent, ip_address, created_at) \
         VALUES ('{fp}', '{podcast}', '{episode}', 'Mozilla/5.0', '198.51.100.1', '{}')",
        ago(days)
    )
}

fn page(path: &str, route: &str, views: i64, unique_users: i64) -> PageRow {
    PageRow {
        path: path.into(),
        route_name: Some(route.into()),
        views,
        unique_users,
    }
}

fn podcast(name: &str, views: i64, unique_users: i64) -> PodcastRow {
    PodcastRow {
        podcast: name.into(),
        views,
        unique_users,
    }
}

fn episode(podcast: &str, episode: &str, views: i64, unique_users: i64) -> EpisodeRow {
    EpisodeRow {
        podcast: podcast.into(),
        episode: episode.into(),
        views,
        unique_users,
    }
}

fn place(country: &str, city: &str, views: i64, unique_users: i64) -> LocationRow {
    LocationRow {
        country: country.into(),
        city: Some(city.into()),
        views,
        unique_users,
        latitude: None,
        longitude: None,
    }
}

async fn an_original_database_gives_the_original_stats(db: analytics_support::Db) {
    let mut sql = original_schema(db.is_postgres());
    let berlin = Some(("DE", "Berlin"));
    sql.extend([
        view("a", "/", "home", None, berlin, 1),
        view("a", "/", "home", None, berlin, 2),
        view(
            "b",
            "/episode/1",
            "episode",
            Some(("raumzeit", "1")),
            Some(("DE", "Hamburg")),
            1,
        ),
        // The stats page: not a visitor, not a top page, but still a place.
        view("c", "/stats", "stats", None, berlin, 1),
        // Outside a 30-day window.
        view("d", "/", "home", Some(("raumzeit", "2")), None, 40),
        play("a", "raumzeit", "1", 1),
        play("b", "raumzeit", "1", 1),
        play("b", "forschergeist", "5", 3),
        play("a", "raumzeit", "2", 60),
    ]);
    db.execute(&sql.iter().map(String::as_str).collect::<Vec<_>>())
        .await;

    let store = store::open(&db.url).await.unwrap();
    let month = store.stats(Some(days_ago(30))).await.unwrap();
    assert_eq!(month.unique_users, 2, "{month:?}");
    assert_eq!(month.total_page_views, 3);
    assert_eq!(month.total_episode_plays, 3);
    assert_eq!(
        month.top_pages,
        [page("/", "home", 2, 1), page("/episode/1", "episode", 1, 1)]
    );
    assert_eq!(month.top_podcasts, [podcast("raumzeit", 1, 1)]);
    assert_eq!(
        month.top_played_podcasts,
        [podcast("raumzeit", 2, 2), podcast("forschergeist", 1, 1)]
    );
    assert_eq!(month.top_episodes, [episode("raumzeit", "1", 1, 1)]);
    assert_eq!(
        month.top_played_episodes,
        [
            episode("raumzeit", "1", 2, 2),
            episode("forschergeist", "5", 1, 1)
        ]
    );
    assert_eq!(
        month.locations,
        [place("DE", "Berlin", 3, 2), place("DE", "Hamburg", 1, 1)]
    );

    let all = store.stats(None).await.unwrap();
    assert_eq!(
        (
            all.unique_users,
            all.total_page_views,
            all.total_episode_plays
        ),
        (3, 4, 4)
    );
    assert_eq!(all.top_pages[0], page("/", "home", 3, 2));
    assert_eq!(
        all.top_podcasts,
        [podcast("raumzeit", 2, 2)],
        "both raumzeit views"
    );
    // The original's rows are untouched and new rows land beside them.
    store.insert(&[sample("e", &now())]).await.unwrap();
    assert_eq!(db.count("SELECT COUNT(*) AS n FROM page_views").await, 6);
    store.close().await;
}

fn sample(fp: &str, created_at: &str) -> Event {
    Event::PageView(PageView {
        user_fingerprint: fp.into(),
        path: "/x".into(),
        route_name: None,
        podcast: Some("raumzeit".into()),
        episode: None,
        country: None,
        city: None,
        referrer: None,
        user_agent: "ua".into(),
        ip_address: "hash".into(),
        created_at: created_at.into(),
    })
}

async fn the_schema_is_versioned_and_migrated_once(db: analytics_support::Db) {
    let first = store::open(&db.url).await.unwrap();
    assert_eq!(first.schema_version().await.unwrap(), store::SCHEMA_VERSION);
    first.close().await;
    // Opening again applies nothing twice.
    let second = store::open(&db.url).await.unwrap();
    assert_eq!(
        second.schema_version().await.unwrap(),
        store::SCHEMA_VERSION
    );
    second.close().await;
    let applied = db
        .count(&format!(
            "SELECT COUNT(*) AS n FROM {}",
            store::MIGRATIONS_TABLE
        ))
        .await;
    assert_eq!(applied, store::SCHEMA_VERSION);
}

async fn old_events_are_pruned(db: analytics_support::Db) {
    let store = store::open(&db.url).await.unwrap();
    store
        .insert(&[sample("old", &ago(400)), sample("new", &ago(1))])
        .await
        .unwrap();
    assert_eq!(store.prune(days_ago(395)).await.unwrap(), 1);
    let left = db
        .texts(
            "SELECT user_fingerprint FROM page_views",
            &["user_fingerprint"],
        )
        .await;
    assert_eq!(left, ["new"]);
    store.close().await;
}

async fn a_batch_is_written_whole(db: analytics_support::Db) {
    let store = store::open(&db.url).await.unwrap();
    let batch: Vec<Event> = (0..300).map(|i| sample(&format!("f{i}"), &now())).collect();
    store.insert(&batch).await.unwrap();
    assert_eq!(db.count("SELECT COUNT(*) AS n FROM page_views").await, 300);
    let stats = store.stats(None).await.unwrap();
    assert_eq!((stats.unique_users, stats.total_page_views), (300, 300));
    store.close().await;
}

async fn a_database_is_copied_whole_and_a_stopped_copy_resumed(db: analytics_support::Db) {
    // The source: an original SQLite database, with a row whose user agent is NULL. Its
    // page views span two pages of the copy.
    let source = analytics_support::Db::sqlite().await;
    let mut sql = original_schema(false);
    for i in 0..1_500 {
        sql.push(view(
            &format!("f{}", i % 40),
            "/",
            "home",
            Some(("raumzeit", "1")),
            Some(("DE", "Köln")),
            i % 20,
        ));
    }
    sql.push(play("a", "raumzeit", "1", 1));
    sql.push("INSERT INTO episode_plays (user_fingerprint, podcast, episode, created_at) VALUES ('b', 'raumzeit', '2', '2026-01-01T00:00:00+00:00')".into());
    source
        .execute(&sql.iter().map(String::as_str).collect::<Vec<_>>())
        .await;

    let copy = |from: &str, to: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_podmap"))
            .args(["analytics", "copy", "--from", from, "--to", to])
            .output()
            .unwrap()
    };
    let first = copy(&source.url, &db.url);
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(first.status.success(), "{first:?}");
    assert_eq!(
        stdout.trim(),
        "copied 1500 page view(s) and 2 episode play(s)"
    );
    let from = store::open(&source.url).await.unwrap();
    let to = store::open(&db.url).await.unwrap();
    assert_eq!(
        to.stats(None).await.unwrap(),
        from.stats(None).await.unwrap()
    );
    assert_eq!(
        to.stats(Some(days_ago(7))).await.unwrap(),
        from.stats(Some(days_ago(7))).await.unwrap()
    );
    from.close().await;
    to.close().await;
    let ua = db
        .texts(
            "SELECT user_agent FROM episode_plays WHERE episode = '2'",
            &["user_agent"],
        )
        .await;
    assert_eq!(ua, [""]);

    // Run again after it finished: nothing more is copied.
    let again = copy(&source.url, &db.url);
    assert!(again.status.success(), "{again:?}");
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).lines().next(),
        Some("copied 0 page view(s) and 0 episode play(s)")
    );
    assert_eq!(
        db.count("SELECT COUNT(*) AS n FROM page_views").await,
        1_500
    );

    // A copy that stopped part-way (the later rows missing) goes on where it stopped.
    db.execute(&[
        "DELETE FROM page_views WHERE id > 700",
        "DELETE FROM episode_plays",
    ])
    .await;
    let resumed = copy(&source.url, &db.url);
    assert!(resumed.status.success(), "{resumed:?}");
    let stdout = String::from_utf8_lossy(&resumed.stdout);
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some("copied 800 page view(s) and 2 episode play(s)")
    );
    assert_eq!(
        lines.next(),
        Some("the destination held 700 page view(s) and 0 episode play(s) of an earlier copy already")
    );
    let from = store::open(&source.url).await.unwrap();
    let to = store::open(&db.url).await.unwrap();
    assert_eq!(
        to.stats(None).await.unwrap(),
        from.stats(None).await.unwrap()
    );
    const IDS: &str = "SELECT CAST(COUNT(id) AS TEXT) AS n, CAST(MIN(id) AS TEXT) AS low, \
        CAST(MAX(id) AS TEXT) AS high, CAST(SUM(id) AS TEXT) AS sum FROM page_views";
    let columns = ["n", "low", "high", "sum"];
    assert_eq!(
        db.texts(IDS, &columns).await,
        source.texts(IDS, &columns).await,
        "the source's ids are kept"
    );

    // New events written after a copy get ids after the copied ones.
    to.insert(&[sample("after", &now())]).await.unwrap();
    let last = db
        .texts(
            "SELECT CAST(MAX(id) AS TEXT) AS id FROM page_views",
            &["id"],
        )
        .await;
    assert_eq!(last, ["1501"]);
    from.close().await;
    to.close().await;

    // That row is not the source's: the destination is no longer a copy, and is refused
    // before anything is written.
    db.execute(&["DELETE FROM episode_plays"]).await;
    let refused = copy(&source.url, &db.url);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("page_views row 1501 is not the source's"),
        "{stderr}"
    );
    assert_eq!(db.count("SELECT COUNT(*) AS n FROM episode_plays").await, 0);
}
