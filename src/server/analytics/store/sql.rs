//! The SQL both backends run: the original's schema as versioned migrations, the inserts, the
//! stats aggregates and the pruning. The statements are the same text for SQLite and
//! PostgreSQL (`$1` binds, which sqlx's SQLite driver also takes) except the table
//! definitions, whose column types are mapped per backend.

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use sqlx::Row;

use super::{
    EpisodeRow, LocationRow, PageRow, PodcastRow, Stats, Store, StoreError, Table, LOCATION_ROWS,
    TOP_ROWS,
};
use crate::server::analytics::event::{EpisodePlay, Event, PageView};

/// The table that records which migrations a database has had.
pub const MIGRATIONS_TABLE: &str = "schema_migrations";

/// One schema change, applied once, in a transaction with its `schema_migrations` row.
struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static [&'static str],
    postgres: &'static [&'static str],
}

/// The original's indexes; `IF NOT EXISTS` leaves an original database's own in place.
const INDEXES: &[&str] = &[
    "CREATE INDEX IF NOT EXISTS idx_page_views_fingerprint ON page_views(user_fingerprint)",
    "CREATE INDEX IF NOT EXISTS idx_page_views_path ON page_views(path)",
    "CREATE INDEX IF NOT EXISTS idx_page_views_podcast ON page_views(podcast)",
    "CREATE INDEX IF NOT EXISTS idx_page_views_episode ON page_views(episode)",
    "CREATE INDEX IF NOT EXISTS idx_page_views_created_at ON page_views(created_at)",
    "CREATE INDEX IF NOT EXISTS idx_page_views_created_podcast_episode ON page_views(created_at, podcast, episode)",
    "CREATE INDEX IF NOT EXISTS idx_episode_plays_fingerprint ON episode_plays(user_fingerprint)",
    "CREATE INDEX IF NOT EXISTS idx_episode_plays_podcast ON episode_plays(podcast)",
    "CREATE INDEX IF NOT EXISTS idx_episode_plays_episode ON episode_plays(episode)",
    "CREATE INDEX IF NOT EXISTS idx_episode_plays_created_at ON episode_plays(created_at)",
    "CREATE INDEX IF NOT EXISTS idx_episode_plays_created_podcast_episode ON episode_plays(created_at, podcast, episode)",
];

/// Every migration, oldest first. Version 1 is the original's schema: `IF NOT EXISTS`, so a
/// database the original wrote is adopted unchanged.
const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "the original schema",
    sqlite: &[
        "CREATE TABLE IF NOT EXISTS page_views (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            user_fingerprint TEXT NOT NULL,
            path TEXT NOT NULL,
            route_name TEXT,
            podcast TEXT,
            episode TEXT,
            country TEXT,
            city TEXT,
            referrer TEXT,
            user_agent TEXT,
            ip_address TEXT,
            created_at TEXT NOT NULL
        )",
        "CREATE TABLE IF NOT EXISTS episode_plays (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            user_fingerprint TEXT NOT NULL,
            podcast TEXT NOT NULL,
            episode TEXT NOT NULL,
            user_agent TEXT,
            ip_address TEXT,
            created_at TEXT NOT NULL
        )",
    ],
    postgres: &[
        "CREATE TABLE IF NOT EXISTS page_views (
            id BIGSERIAL PRIMARY KEY,
            user_fingerprint TEXT NOT NULL,
            path TEXT NOT NULL,
            route_name TEXT,
            podcast TEXT,
            episode TEXT,
            country TEXT,
            city TEXT,
            referrer TEXT,
            user_agent TEXT,
            ip_address TEXT,
            created_at TEXT NOT NULL
        )",
        "CREATE TABLE IF NOT EXISTS episode_plays (
            id BIGSERIAL PRIMARY KEY,
            user_fingerprint TEXT NOT NULL,
            podcast TEXT NOT NULL,
            episode TEXT NOT NULL,
            user_agent TEXT,
            ip_address TEXT,
            created_at TEXT NOT NULL
        )",
    ],
}];

/// The version the newest migration brings a database to.
pub const SCHEMA_VERSION: i64 = 1;

const CREATE_MIGRATIONS: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL
)";

const INSERT_PAGE_VIEW: &str = "INSERT INTO page_views (user_fingerprint, path, route_name, \
    podcast, episode, country, city, referrer, user_agent, ip_address, created_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
const INSERT_PLAY: &str = "INSERT INTO episode_plays (user_fingerprint, podcast, episode, \
    user_agent, ip_address, created_at) VALUES ($1, $2, $3, $4, $5, $6)";

/// Page views that count for visitors: the stats page's own views do not.
const COUNTED: &str = "created_at >= $1 AND path NOT LIKE '/stats%'";

const UNIQUE_USERS: &str = "SELECT COUNT(DISTINCT user_fingerprint) AS n FROM page_views \
    WHERE created_at >= $1 AND path NOT LIKE '/stats%'";
const TOTAL_PAGE_VIEWS: &str =
    "SELECT COUNT(*) AS n FROM page_views WHERE created_at >= $1 AND path NOT LIKE '/stats%'";
const TOTAL_PLAYS: &str = "SELECT COUNT(*) AS n FROM episode_plays WHERE created_at >= $1";

fn top_pages() -> String {
    format!(
        "SELECT path, route_name, COUNT(*) AS views, COUNT(DISTINCT user_fingerprint) AS unique_users \
         FROM page_views WHERE {COUNTED} GROUP BY path, route_name \
         ORDER BY views DESC, path, route_name LIMIT {TOP_ROWS}"
    )
}

fn top_podcasts(table: &str) -> String {
    format!(
        "SELECT podcast, COUNT(*) AS views, COUNT(DISTINCT user_fingerprint) AS unique_users \
         FROM {table} WHERE created_at >= $1 AND podcast IS NOT NULL AND podcast <> '' \
         GROUP BY podcast ORDER BY views DESC, podcast LIMIT {TOP_ROWS}"
    )
}

fn top_episodes(table: &str) -> String {
    format!(
        "SELECT podcast, episode, COUNT(*) AS views, COUNT(DISTINCT user_fingerprint) AS unique_users \
         FROM {table} WHERE created_at >= $1 AND podcast IS NOT NULL AND podcast <> '' \
         AND episode IS NOT NULL AND episode <> '' \
         GROUP BY podcast, episode ORDER BY views DESC, podcast, episode LIMIT {TOP_ROWS}"
    )
}

fn locations() -> String {
    format!(
        "SELECT country, city, COUNT(*) AS views, COUNT(DISTINCT user_fingerprint) AS unique_users \
         FROM page_views WHERE created_at >= $1 AND country IS NOT NULL AND country <> '' \
         GROUP BY country, city ORDER BY views DESC, country, city LIMIT {LOCATION_ROWS}"
    )
}

const EXPORT_PAGE_VIEWS: &str = "SELECT id, user_fingerprint, path, route_name, podcast, \
    episode, country, city, referrer, user_agent, ip_address, created_at FROM page_views \
    WHERE id > $1 ORDER BY id LIMIT $2";
const EXPORT_PLAYS: &str = "SELECT id, user_fingerprint, podcast, episode, user_agent, \
    ip_address, created_at FROM episode_plays WHERE id > $1 ORDER BY id LIMIT $2";

/// The SQLite store.
pub struct SqliteStore(pub sqlx::SqlitePool);
/// The PostgreSQL store.
pub struct PgStore(pub sqlx::PgPool);

/// The same code over each backend's pool type: sqlx's generic bounds over `Database` are
/// long and add nothing the two concrete expansions do not check.
macro_rules! sql_store {
    ($store:ident, $backend:ident) => {
        impl $store {
            /// Applies the migrations this database has not had, each in its transaction.
            pub async fn migrate(&self) -> Result<(), StoreError> {
                let failed = |version| move |source| StoreError::Migrate { version, source };
                sqlx::query(CREATE_MIGRATIONS)
                    .execute(&self.0)
                    .await
                    .map_err(failed(0))?;
                let current = self.version().await.map_err(failed(0))?;
                for m in MIGRATIONS.iter().filter(|m| m.version > current) {
                    let mut tx = self.0.begin().await.map_err(failed(m.version))?;
                    for statement in m.$backend.iter().chain(INDEXES) {
                        sqlx::query(statement)
                            .execute(&mut *tx)
                            .await
                            .map_err(failed(m.version))?;
                    }
                    sqlx::query(
                        "INSERT INTO schema_migrations (version, name, applied_at) \
                         VALUES ($1, $2, $3)",
                    )
                    .bind(m.version)
                    .bind(m.name)
                    .bind(crate::server::analytics::event::now())
                    .execute(&mut *tx)
                    .await
                    .map_err(failed(m.version))?;
                    tx.commit().await.map_err(failed(m.version))?;
                }
                Ok(())
            }

            async fn version(&self) -> Result<i64, sqlx::Error> {
                let row =
                    sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations")
                        .fetch_one(&self.0)
                        .await?;
                row.try_get::<i64, _>("v")
            }

            async fn count(&self, sql: &str, since: &str) -> Result<i64, sqlx::Error> {
                let row = sqlx::query(sql).bind(since).fetch_one(&self.0).await?;
                row.try_get::<i64, _>("n")
            }

            async fn podcasts(
                &self,
                table: &str,
                since: &str,
            ) -> Result<Vec<PodcastRow>, sqlx::Error> {
                let rows = sqlx::query(&top_podcasts(table))
                    .bind(since)
                    .fetch_all(&self.0)
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok(PodcastRow {
                            podcast: r.try_get("podcast")?,
                            views: r.try_get("views")?,
                            unique_users: r.try_get("unique_users")?,
                        })
                    })
                    .collect()
            }

            async fn episodes(
                &self,
                table: &str,
                since: &str,
            ) -> Result<Vec<EpisodeRow>, sqlx::Error> {
                let rows = sqlx::query(&top_episodes(table))
                    .bind(since)
                    .fetch_all(&self.0)
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok(EpisodeRow {
                            podcast: r.try_get("podcast")?,
                            episode: r.try_get("episode")?,
                            views: r.try_get("views")?,
                            unique_users: r.try_get("unique_users")?,
                        })
                    })
                    .collect()
            }

            async fn all_stats(&self, since: Option<String>) -> Result<Stats, sqlx::Error> {
                // Every RFC 3339 time sorts after the empty string: no `days`, every row.
                let since = since.unwrap_or_default();
                let since = since.as_str();
                let pages = sqlx::query(&top_pages())
                    .bind(since)
                    .fetch_all(&self.0)
                    .await?;
                let places = sqlx::query(&locations())
                    .bind(since)
                    .fetch_all(&self.0)
                    .await?;
                Ok(Stats {
                    unique_users: self.count(UNIQUE_USERS, since).await?,
                    total_page_views: self.count(TOTAL_PAGE_VIEWS, since).await?,
                    total_episode_plays: self.count(TOTAL_PLAYS, since).await?,
                    top_pages: pages
                        .iter()
                        .map(|r| {
                            Ok(PageRow {
                                path: r.try_get("path")?,
                                route_name: r.try_get("route_name")?,
                                views: r.try_get("views")?,
                                unique_users: r.try_get("unique_users")?,
                            })
                        })
                        .collect::<Result<_, sqlx::Error>>()?,
                    top_podcasts: self.podcasts("page_views", since).await?,
                    top_played_podcasts: self.podcasts("episode_plays", since).await?,
                    top_episodes: self.episodes("page_views", since).await?,
                    top_played_episodes: self.episodes("episode_plays", since).await?,
                    locations: places
                        .iter()
                        .map(|r| {
                            Ok(LocationRow {
                                country: r.try_get("country")?,
                                city: r.try_get("city")?,
                                views: r.try_get("views")?,
                                unique_users: r.try_get("unique_users")?,
                                latitude: None,
                                longitude: None,
                            })
                        })
                        .collect::<Result<_, sqlx::Error>>()?,
                })
            }

            async fn insert_all(&self, batch: &[Event]) -> Result<(), sqlx::Error> {
                // Rows go out as multi-row INSERTs, not one statement each: every statement is
                // a round trip (to SQLite's worker thread, or over the network to PostgreSQL),
                // and one per row made the round trips most of a batch's cost and capped what
                // PostgreSQL took below what the server answers. A batch is cut into chunks of
                // these sizes (its binary digits, largest first), so each connection prepares
                // and caches a few statements per table instead of one per batch length.
                const CHUNKS: [usize; 8] = [128, 64, 32, 16, 8, 4, 2, 1];
                fn chunks<T>(mut rows: &[T]) -> impl Iterator<Item = &[T]> {
                    std::iter::from_fn(move || {
                        let n = CHUNKS.into_iter().find(|&n| n <= rows.len())?;
                        let (chunk, rest) = rows.split_at(n);
                        rows = rest;
                        Some(chunk)
                    })
                }
                // `INSERT INTO table (columns)`: the one-row statements' text up to VALUES.
                let head = |one_row: &'static str| {
                    one_row.split_once(" VALUES").expect("an INSERT … VALUES").0
                };
                let (mut views, mut plays) = (Vec::new(), Vec::new());
                for event in batch {
                    match event {
                        Event::PageView(v) => views.push(v),
                        Event::EpisodePlay(p) => plays.push(p),
                    }
                }
                let mut tx = self.0.begin().await?;
                for chunk in chunks(&views) {
                    let mut insert = sqlx::QueryBuilder::new(head(INSERT_PAGE_VIEW));
                    insert.push(" ");
                    insert.push_values(chunk, |mut row, v| {
                        row.push_bind(&v.user_fingerprint)
                            .push_bind(&v.path)
                            .push_bind(&v.route_name)
                            .push_bind(&v.podcast)
                            .push_bind(&v.episode)
                            .push_bind(&v.country)
                            .push_bind(&v.city)
                            .push_bind(&v.referrer)
                            .push_bind(&v.user_agent)
                            .push_bind(&v.ip_address)
                            .push_bind(&v.created_at);
                    });
                    insert.build().execute(&mut *tx).await?;
                }
                for chunk in chunks(&plays) {
                    let mut insert = sqlx::QueryBuilder::new(head(INSERT_PLAY));
                    insert.push(" ");
                    insert.push_values(chunk, |mut row, p| {
                        row.push_bind(&p.user_fingerprint)
                            .push_bind(&p.podcast)
                            .push_bind(&p.episode)
                            .push_bind(&p.user_agent)
                            .push_bind(&p.ip_address)
                            .push_bind(&p.created_at);
                    });
                    insert.build().execute(&mut *tx).await?;
                }
                tx.commit().await
            }

            async fn export_rows(
                &self,
                table: Table,
                after: i64,
                limit: i64,
            ) -> Result<Vec<(i64, Event)>, sqlx::Error> {
                let sql = match table {
                    Table::PageViews => EXPORT_PAGE_VIEWS,
                    Table::EpisodePlays => EXPORT_PLAYS,
                };
                let rows = sqlx::query(sql)
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&self.0)
                    .await?;
                rows.iter()
                    .map(|r| {
                        // The original's user_agent and ip_address allow NULL; such rows are
                        // carried over with an empty value there.
                        let user_agent: Option<String> = r.try_get("user_agent")?;
                        let ip_address: Option<String> = r.try_get("ip_address")?;
                        let (user_agent, ip_address) = (
                            user_agent.unwrap_or_default(),
                            ip_address.unwrap_or_default(),
                        );
                        let event = match table {
                            Table::PageViews => Event::PageView(PageView {
                                user_fingerprint: r.try_get("user_fingerprint")?,
                                path: r.try_get("path")?,
                                route_name: r.try_get("route_name")?,
                                podcast: r.try_get("podcast")?,
                                episode: r.try_get("episode")?,
                                country: r.try_get("country")?,
                                city: r.try_get("city")?,
                                referrer: r.try_get("referrer")?,
                                user_agent,
                                ip_address,
                                created_at: r.try_get("created_at")?,
                            }),
                            Table::EpisodePlays => Event::EpisodePlay(EpisodePlay {
                                user_fingerprint: r.try_get("user_fingerprint")?,
                                podcast: r.try_get("podcast")?,
                                episode: r.try_get("episode")?,
                                user_agent,
                                ip_address,
                                created_at: r.try_get("created_at")?,
                            }),
                        };
                        Ok((r.try_get::<i64, _>("id")?, event))
                    })
                    .collect()
            }

            async fn prune_before(&self, before: &str) -> Result<u64, sqlx::Error> {
                let mut tx = self.0.begin().await?;
                let mut n = 0;
                for table in ["page_views", "episode_plays"] {
                    n += sqlx::query(&format!("DELETE FROM {table} WHERE created_at < $1"))
                        .bind(before)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                }
                tx.commit().await?;
                Ok(n)
            }
        }

        impl Store for $store {
            fn insert<'a>(&'a self, batch: &'a [Event]) -> BoxFuture<'a, Result<(), StoreError>> {
                async move { Ok(self.insert_all(batch).await?) }.boxed()
            }

            fn stats(&self, since: Option<String>) -> BoxFuture<'_, Result<Stats, StoreError>> {
                async move { Ok(self.all_stats(since).await?) }.boxed()
            }

            fn prune(&self, before: String) -> BoxFuture<'_, Result<u64, StoreError>> {
                async move { Ok(self.prune_before(&before).await?) }.boxed()
            }

            fn export(
                &self,
                table: Table,
                after: i64,
                limit: i64,
            ) -> BoxFuture<'_, Result<Vec<(i64, Event)>, StoreError>> {
                async move { Ok(self.export_rows(table, after, limit).await?) }.boxed()
            }

            fn rows(&self, table: Table) -> BoxFuture<'_, Result<i64, StoreError>> {
                async move {
                    let sql = format!("SELECT COUNT(*) AS n FROM {}", table.name());
                    let row = sqlx::query(&sql).fetch_one(&self.0).await?;
                    Ok(row.try_get::<i64, _>("n")?)
                }
                .boxed()
            }

            fn schema_version(&self) -> BoxFuture<'_, Result<i64, StoreError>> {
                async move { Ok(self.version().await?) }.boxed()
            }

            fn close(&self) -> BoxFuture<'_, ()> {
                self.0.close().boxed()
            }
        }
    };
}

sql_store!(SqliteStore, sqlite);
sql_store!(PgStore, postgres);
