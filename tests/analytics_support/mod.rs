//! The databases the analytics tests run against, one suite for both backends: SQLite in a
//! temporary folder, and PostgreSQL (`cfg(podmap_postgres)`, from `PODMAP_POSTGRES_URL`) in a
//! database of its own, `podmap_test_<random>`, dropped when the test ends. [`both!`] writes
//! each test once per backend.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{Connection, Row};

/// `$body` with `$conn` a connection of the database's own driver, closed afterwards.
macro_rules! on_db {
    ($db:ident, |$conn:ident| $body:block) => {
        if $db.is_postgres() {
            let mut $conn = sqlx::PgConnection::connect(&$db.url).await.unwrap();
            let out = $body;
            $conn.close().await.unwrap();
            out
        } else {
            let url = format!("{}?mode=rwc", $db.url);
            let mut $conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            let out = $body;
            $conn.close().await.unwrap();
            out
        }
    };
}

/// One empty database for one test.
pub struct Db {
    pub url: String,
    pub dir: tempfile::TempDir,
    postgres: Option<(String, String)>,
}

impl Db {
    pub async fn sqlite() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("analytics.db").display());
        Db {
            url,
            dir,
            postgres: None,
        }
    }

    /// A new database on the server `PODMAP_POSTGRES_URL` names.
    pub async fn postgres() -> Db {
        static N: AtomicU32 = AtomicU32::new(0);
        let admin = std::env::var("PODMAP_POSTGRES_URL")
            .expect("PODMAP_POSTGRES_URL names a PostgreSQL server (see build.rs)");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "podmap_test_{}_{nanos}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        let base = admin.rsplit_once('/').expect("a URL with a database").0;
        Db {
            url: format!("{base}/{name}"),
            dir: tempfile::tempdir().unwrap(),
            postgres: Some((admin, name)),
        }
    }

    /// Runs `sql` statements on the database, outside podmap (creating a SQLite file).
    pub async fn execute(&self, statements: &[&str]) {
        on_db!(self, |conn| {
            for sql in statements {
                sqlx::query(sql).execute(&mut conn).await.unwrap();
            }
        })
    }

    /// The number `sql` (one row, one integer column `n`) counts.
    pub async fn count(&self, sql: &str) -> i64 {
        on_db!(self, |conn| {
            let row = sqlx::query(sql).fetch_one(&mut conn).await.unwrap();
            row.try_get::<i64, _>("n").unwrap()
        })
    }

    /// The text columns of the first row `sql` returns.
    pub async fn texts(&self, sql: &str, columns: &[&str]) -> Vec<String> {
        on_db!(self, |conn| {
            let row = sqlx::query(sql).fetch_one(&mut conn).await.unwrap();
            columns
                .iter()
                .map(|c| row.try_get::<String, _>(*c).unwrap())
                .collect::<Vec<_>>()
        })
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let Some((admin, name)) = self.postgres.take() else {
            return;
        };
        // Dropping needs its own runtime: the test's may be gone or be the one dropping this.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&admin).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await?;
                conn.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the test database: {dropped:?}");
        }
    }
}

/// `both!(name, body_fn)`: `body_fn(Db)` as a test on SQLite and one on PostgreSQL.
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::analytics_support::Db::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(
                    not(podmap_postgres),
                    ignore = "needs a PostgreSQL server: set PODMAP_POSTGRES_URL (tools/test.sh does when pg_isready answers)"
                )]
                async fn $name() {
                    super::$name($crate::analytics_support::Db::postgres().await).await;
                }
            )*
        }
    };
}
