//! Where analytics events are kept: one [`Store`] trait, with SQLite (the original's
//! `analytics.db`, the default) and PostgreSQL behind it, chosen by the `DATABASE_URL` scheme.
//!
//! Both hold the original's two tables with its columns, so a database file written by the
//! original is opened as it is. Anything added later (columns, indexes) comes only through the
//! versioned migrations in [`schema`], recorded in `schema_migrations`.
//!
//! All calls are async on sqlx's pools: a SQLite connection does its work on its own worker
//! thread, so neither inserts nor the stats aggregates run on the server's async workers.

mod insert;
mod schema;
mod sql;

use std::str::FromStr;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::event::Event;

pub use schema::{MIGRATIONS_TABLE, SCHEMA_VERSION};

/// Why the store failed: opening, migrating or a query, with the database's own reason.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("DATABASE_URL must start with sqlite: or postgres:// (got {0:?})")]
    Scheme(String),
    #[error("cannot open the analytics database")]
    Open(#[source] sqlx::Error),
    #[error("cannot bring the analytics schema to version {version}")]
    Migrate {
        version: i64,
        #[source]
        source: sqlx::Error,
    },
    #[error("analytics query failed")]
    Query(#[from] sqlx::Error),
}

/// The stats answer, field for field as the original returns it (snake_case).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub unique_users: i64,
    pub total_page_views: i64,
    pub total_episode_plays: i64,
    pub top_pages: Vec<PageRow>,
    pub top_podcasts: Vec<PodcastRow>,
    pub top_played_podcasts: Vec<PodcastRow>,
    pub top_episodes: Vec<EpisodeRow>,
    pub top_played_episodes: Vec<EpisodeRow>,
    pub locations: Vec<LocationRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageRow {
    pub path: String,
    pub route_name: Option<String>,
    pub views: i64,
    pub unique_users: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodcastRow {
    pub podcast: String,
    pub views: i64,
    pub unique_users: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpisodeRow {
    pub podcast: String,
    pub episode: String,
    pub views: i64,
    pub unique_users: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocationRow {
    pub country: String,
    pub city: Option<String>,
    pub views: i64,
    pub unique_users: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
}

/// Top lists hold at most this many rows, as in the original.
pub const TOP_ROWS: i64 = 20;
/// The locations list holds at most this many rows, as in the original.
pub const LOCATION_ROWS: i64 = 50;

/// An analytics database.
pub trait Store: Send + Sync + 'static {
    /// Writes `batch` in one transaction: all of it or, on error, none of it.
    fn insert<'a>(&'a self, batch: &'a [Event]) -> BoxFuture<'a, Result<(), StoreError>>;
    /// The original's aggregates over the rows created at or after `since` (all rows when
    /// `None`).
    fn stats(&self, since: Option<String>) -> BoxFuture<'_, Result<Stats, StoreError>>;
    /// Deletes the rows created before `before`; returns how many.
    fn prune(&self, before: String) -> BoxFuture<'_, Result<u64, StoreError>>;
    /// Up to `limit` rows of `table` with an id above `after`, by id, with their ids: how
    /// `podmap analytics copy` reads a whole store a page at a time.
    fn export(
        &self,
        table: Table,
        after: i64,
        limit: i64,
    ) -> BoxFuture<'_, Result<Vec<(i64, Event)>, StoreError>>;
    /// Writes rows [`export`](Store::export)ed from another store under their own ids, in one
    /// transaction; a row whose id is already present is left as it is, so writing a page
    /// twice changes nothing. Later inserts get ids after the highest one. Returns how many
    /// rows were new.
    fn import<'a>(
        &'a self,
        table: Table,
        rows: &'a [(i64, Event)],
    ) -> BoxFuture<'a, Result<u64, StoreError>>;
    /// How many rows `table` holds.
    fn rows(&self, table: Table) -> BoxFuture<'_, Result<i64, StoreError>>;
    /// The highest id in `table`, `None` when it is empty.
    fn last_id(&self, table: Table) -> BoxFuture<'_, Result<Option<i64>, StoreError>>;
    /// The schema version recorded in `schema_migrations`.
    fn schema_version(&self) -> BoxFuture<'_, Result<i64, StoreError>>;
    /// Closes the connections, after which every call fails.
    fn close(&self) -> BoxFuture<'_, ()>;
}

/// The original's two tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    PageViews,
    EpisodePlays,
}

impl Table {
    pub fn name(self) -> &'static str {
        match self {
            Table::PageViews => "page_views",
            Table::EpisodePlays => "episode_plays",
        }
    }
}

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend of `url` by its scheme.
    pub fn of(url: &str) -> Result<Backend, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::Scheme(url.chars().take(40).collect()))
        }
    }
}

/// The SQLite file a `sqlite:` URL names (`None` for an in-memory database).
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    if is_in_memory(url) {
        return None;
    }
    let options = SqliteConnectOptions::from_str(url).ok()?;
    Some(options.get_filename().to_path_buf())
}

/// Whether `url` names an in-memory SQLite database (`sqlite::memory:`, `sqlite://:memory:`
/// or `mode=memory`): one that lives only in the pool that opened it.
pub fn is_in_memory(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return false;
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    path.trim_start_matches('/') == ":memory:" || query.split('&').any(|pair| pair == "mode=memory")
}

/// Opens (creating a SQLite file when missing) and migrates the database `url` names.
pub async fn open(url: &str) -> Result<Box<dyn Store>, StoreError> {
    match Backend::of(url)? {
        Backend::Sqlite => {
            // As the original set it up: WAL so the stats reads do not wait for writes,
            // NORMAL sync (safe with WAL), a 64 MB page cache and a 5 s busy timeout.
            let options = SqliteConnectOptions::from_str(url)
                .map_err(StoreError::Open)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5))
                .pragma("cache_size", "-65536");
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(options)
                .await
                .map_err(StoreError::Open)?;
            let store = sql::SqliteStore(pool);
            store.migrate().await?;
            Ok(Box::new(store))
        }
        Backend::Postgres => {
            // A connection is pinged before each use, so after an outage the broken ones are
            // replaced instead of failing a batch each; an acquire gives up after 10 s, so
            // the writer's retry loop (not a hung connect) decides when to try again.
            let pool = PgPoolOptions::new()
                .max_connections(4)
                .test_before_acquire(true)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await
                .map_err(StoreError::Open)?;
            let store = sql::PgStore(pool);
            store.migrate().await?;
            Ok(Box::new(store))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_memory_urls_name_no_file() {
        for url in [
            "sqlite::memory:",
            "sqlite://:memory:",
            "sqlite::memory:?cache=shared",
            "sqlite://a.db?mode=memory",
        ] {
            assert!(is_in_memory(url), "{url}");
            assert_eq!(sqlite_file(url), None, "{url}");
        }
        for url in [
            "sqlite://a.db",
            "sqlite:///tmp/x/a.db?mode=rwc",
            "postgres://h/db",
        ] {
            assert!(!is_in_memory(url), "{url}");
        }
        assert_eq!(
            sqlite_file("sqlite:///tmp/x/a.db?mode=rwc"),
            Some(std::path::PathBuf::from("/tmp/x/a.db"))
        );
    }
}
