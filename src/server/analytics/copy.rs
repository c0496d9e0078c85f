//! `podmap analytics copy --from URL --to URL`: moves an analytics database to another store,
//! for example the original's `analytics.db` into PostgreSQL. Rows are read a page at a time
//! by id and written one transaction per page, so memory stays flat whatever the size; the
//! destination gets new ids and keeps every column.

use super::store::{self, Store, StoreError, Table};

/// Rows read and written per transaction.
const PAGE: i64 = 1_000;

/// Why a copy did not happen or stopped.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("cannot open {role} database")]
    Open {
        role: &'static str,
        #[source]
        source: StoreError,
    },
    #[error("the destination already holds {rows} {table} row(s); copy into an empty database")]
    NotEmpty { table: &'static str, rows: i64 },
    #[error("the source and the destination are the same database")]
    Same,
    #[error("copying {table} failed after {copied} row(s)")]
    Copy {
        table: &'static str,
        copied: u64,
        #[source]
        source: StoreError,
    },
}

/// How many rows were copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Copied {
    pub page_views: u64,
    pub episode_plays: u64,
}

/// Copies every row of `from` into `to`, which must hold none (its schema is created).
pub async fn copy(from: &str, to: &str) -> Result<Copied, CopyError> {
    if from == to {
        return Err(CopyError::Same);
    }
    let source = store::open(from).await.map_err(|source| CopyError::Open {
        role: "the source",
        source,
    })?;
    let destination = store::open(to).await.map_err(|source| CopyError::Open {
        role: "the destination",
        source,
    })?;
    let result = copy_between(&*source, &*destination).await;
    source.close().await;
    destination.close().await;
    result
}

async fn copy_between(from: &dyn Store, to: &dyn Store) -> Result<Copied, CopyError> {
    for table in [Table::PageViews, Table::EpisodePlays] {
        let rows = to.rows(table).await.map_err(|source| CopyError::Open {
            role: "the destination",
            source,
        })?;
        if rows > 0 {
            return Err(CopyError::NotEmpty {
                table: table.name(),
                rows,
            });
        }
    }
    let mut copied = Copied::default();
    for table in [Table::PageViews, Table::EpisodePlays] {
        let mut count = 0u64;
        let mut after = 0;
        let failed = |copied, source| CopyError::Copy {
            table: table.name(),
            copied,
            source,
        };
        loop {
            let page = from
                .export(table, after, PAGE)
                .await
                .map_err(|e| failed(count, e))?;
            let Some((last, _)) = page.last() else { break };
            after = *last;
            let events: Vec<_> = page.into_iter().map(|(_, event)| event).collect();
            to.insert(&events).await.map_err(|e| failed(count, e))?;
            count += events.len() as u64;
        }
        match table {
            Table::PageViews => copied.page_views = count,
            Table::EpisodePlays => copied.episode_plays = count,
        }
    }
    Ok(copied)
}
