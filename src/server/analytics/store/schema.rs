//! The analytics schema as versioned migrations: version 1 is the original's two tables and
//! indexes (`IF NOT EXISTS`, so a database the original wrote is adopted unchanged); anything
//! added later comes as a new version, recorded in `schema_migrations`. Column types are
//! mapped per backend; everything else is the same text on SQLite and PostgreSQL.

/// The table that records which migrations a database has had.
pub const MIGRATIONS_TABLE: &str = "schema_migrations";

/// One schema change, applied once, in a transaction with its `schema_migrations` row.
pub(super) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sqlite: &'static [&'static str],
    pub postgres: &'static [&'static str],
}

/// The original's indexes; `IF NOT EXISTS` leaves an original database's own in place.
pub(super) const INDEXES: &[&str] = &[
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
pub(super) const MIGRATIONS: &[Migration] = &[Migration {
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

pub(super) const CREATE_MIGRATIONS: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL
)";
