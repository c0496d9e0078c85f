//! The SQL both backends run, one implementation for both pools: migrating (the schema is in
//! [`schema`](super::schema)), writing (statements in [`insert`](super::insert)), the stats
//! aggregates, exporting and pruning. The queries are the same text for SQLite and
//! PostgreSQL (`$1` binds, which sqlx's SQLite driver also takes).

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use sqlx::Row;

use super::insert::{
    insert_sql, postgres_after_import, sqlite_after_import, statement_sizes, Binds,
};
use super::schema::{CREATE_MIGRATIONS, INDEXES, MIGRATIONS};
use super::{
    EpisodeRow, LocationRow, PageRow, PodcastRow, Stats, Store, StoreError, Table, LOCATION_ROWS,
    TOP_ROWS,
};
use crate::server::analytics::event::{EpisodePlay, Event, PageView};

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
    ($store:ident, $backend:ident, $after_import:ident, $binds:expr) => {
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
                let rows: Vec<_> = batch.iter().map(|e| (None, e)).collect();
                self.write_rows(&rows, None).await.map(drop)
            }

            /// Writes `rows` in one transaction, as multi-row INSERTs of the sizes
            /// [`statement_sizes`] gives, each kept prepared. Rows `imported` from another store carry their ids
            /// and skip an id already present; returns how many rows were new.
            async fn write_rows(
                &self,
                rows: &[(Option<i64>, &Event)],
                imported: Option<Table>,
            ) -> Result<u64, sqlx::Error> {
                let with_ids = imported.is_some();
                let mut views = Vec::new();
                let mut plays = Vec::new();
                for &(id, event) in rows {
                    match event {
                        Event::PageView(v) => views.push((id, v)),
                        Event::EpisodePlay(p) => plays.push((id, p)),
                    }
                }
                let mut tx = self.0.begin().await?;
                let mut new = 0;
                let mut views = views.as_slice();
                for size in statement_sizes(views.len()) {
                    let (chunk, rest) = views.split_at(size);
                    views = rest;
                    let sql = insert_sql(Table::PageViews, size, with_ids, $binds);
                    let mut query = sqlx::query(&sql);
                    for &(id, v) in chunk {
                        if with_ids {
                            query = query.bind(id);
                        }
                        query = query
                            .bind(&v.user_fingerprint)
                            .bind(&v.path)
                            .bind(&v.route_name)
                            .bind(&v.podcast)
                            .bind(&v.episode)
                            .bind(&v.country)
                            .bind(&v.city)
                            .bind(&v.referrer)
                            .bind(&v.user_agent)
                            .bind(&v.ip_address)
                            .bind(&v.created_at);
                    }
                    new += query.execute(&mut *tx).await?.rows_affected();
                }
                let mut plays = plays.as_slice();
                for size in statement_sizes(plays.len()) {
                    let (chunk, rest) = plays.split_at(size);
                    plays = rest;
                    let sql = insert_sql(Table::EpisodePlays, size, with_ids, $binds);
                    let mut query = sqlx::query(&sql);
                    for &(id, p) in chunk {
                        if with_ids {
                            query = query.bind(id);
                        }
                        query = query
                            .bind(&p.user_fingerprint)
                            .bind(&p.podcast)
                            .bind(&p.episode)
                            .bind(&p.user_agent)
                            .bind(&p.ip_address)
                            .bind(&p.created_at);
                    }
                    new += query.execute(&mut *tx).await?.rows_affected();
                }
                if let Some(sql) = imported.and_then($after_import) {
                    sqlx::query(&sql).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(new)
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

            async fn import_rows(
                &self,
                table: Table,
                rows: &[(i64, Event)],
            ) -> Result<u64, sqlx::Error> {
                let rows: Vec<_> = rows.iter().map(|(id, e)| (Some(*id), e)).collect();
                self.write_rows(&rows, Some(table)).await
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

            fn import<'a>(
                &'a self,
                table: Table,
                rows: &'a [(i64, Event)],
            ) -> BoxFuture<'a, Result<u64, StoreError>> {
                async move { Ok(self.import_rows(table, rows).await?) }.boxed()
            }

            fn last_id(&self, table: Table) -> BoxFuture<'_, Result<Option<i64>, StoreError>> {
                async move {
                    let sql = format!("SELECT MAX(id) AS id FROM {}", table.name());
                    let row = sqlx::query(&sql).fetch_one(&self.0).await?;
                    Ok(row.try_get::<Option<i64>, _>("id")?)
                }
                .boxed()
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

sql_store!(SqliteStore, sqlite, sqlite_after_import, Binds::Positional);
sql_store!(PgStore, postgres, postgres_after_import, Binds::Numbered);
