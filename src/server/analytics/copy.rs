//! `podmap analytics copy --from URL --to URL`: moves an analytics database to another store,
//! for example the original's `analytics.db` into PostgreSQL.
//!
//! Rows are read a page at a time by id and written one transaction per page under their
//! source ids, so memory stays flat whatever the size, and a copy that stopped part-way (a
//! killed process, a lost connection) is simply run again: it goes on after the highest id
//! the destination holds, and a page written twice changes nothing. A destination that holds
//! rows of its own (not a prefix of the source) is refused rather than mixed.

use super::event::Event;
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
    #[error(
        "the destination's {table} row {id} is not the source's: it holds rows of its own; \
         copy into an empty database or one an earlier copy from this source wrote"
    )]
    Diverged { table: &'static str, id: i64 },
    #[error("the source and the destination are the same database")]
    Same,
    #[error("copying {table} failed after {copied} row(s); run the copy again to go on")]
    Copy {
        table: &'static str,
        copied: u64,
        #[source]
        source: StoreError,
    },
}

/// What a copy did, per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Copied {
    /// Rows written by this run.
    pub page_views: u64,
    pub episode_plays: u64,
    /// Rows an earlier run had written already.
    pub page_views_before: u64,
    pub episode_plays_before: u64,
}

/// How far a copy is, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Copying `table` starts: the source holds `total` rows, `done` of them are there already.
    Table { table: Table, done: u64, total: u64 },
    /// `rows` more rows of the current table were written.
    Rows(u64),
}

/// Copies every row of `from` into `to` (its schema created or migrated), going on after what
/// an earlier copy from the same source wrote. `progress` hears of every page.
pub async fn copy(
    from: &str,
    to: &str,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<Copied, CopyError> {
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
    let result = copy_between(&*source, &*destination, progress).await;
    source.close().await;
    destination.close().await;
    result
}

async fn copy_between(
    from: &dyn Store,
    to: &dyn Store,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<Copied, CopyError> {
    // Both tables are checked before anything is written, so a refused copy writes nothing.
    let mut resume = Vec::new();
    for table in [Table::PageViews, Table::EpisodePlays] {
        resume.push(resume_point(from, to, table).await?);
    }
    let mut copied = Copied::default();
    for (table, after) in [Table::PageViews, Table::EpisodePlays]
        .into_iter()
        .zip(resume)
    {
        let failed = |copied, source| CopyError::Copy {
            table: table.name(),
            copied,
            source,
        };
        let total = from.rows(table).await.map_err(|e| failed(0, e))?;
        let before = to.rows(table).await.map_err(|e| failed(0, e))?;
        progress(Progress::Table {
            table,
            done: before as u64,
            total: total as u64,
        });
        let mut count = 0u64;
        let mut after = after;
        loop {
            let page = from
                .export(table, after, PAGE)
                .await
                .map_err(|e| failed(count, e))?;
            let Some((last, _)) = page.last() else { break };
            after = *last;
            let new = to
                .import(table, &page)
                .await
                .map_err(|e| failed(count, e))?;
            count += new;
            progress(Progress::Rows(page.len() as u64));
        }
        match table {
            Table::PageViews => {
                (copied.page_views, copied.page_views_before) = (count, before as u64)
            }
            Table::EpisodePlays => {
                (copied.episode_plays, copied.episode_plays_before) = (count, before as u64)
            }
        }
    }
    Ok(copied)
}

/// The id after which `table` is still to be copied: below every id for an empty destination, else its
/// highest id, once that row is found to be the source's row of the same id (pages are written
/// in id order, one transaction each, so everything below it is there too).
async fn resume_point(from: &dyn Store, to: &dyn Store, table: Table) -> Result<i64, CopyError> {
    let opened = |role| move |source| CopyError::Open { role, source };
    let Some(last) = to.last_id(table).await.map_err(opened("the destination"))? else {
        return Ok(i64::MIN);
    };
    let row = |rows: Vec<(i64, Event)>| rows.into_iter().find(|(id, _)| *id == last);
    let theirs = row(to
        .export(table, last.saturating_sub(1), 1)
        .await
        .map_err(opened("the destination"))?);
    let ours = row(from
        .export(table, last.saturating_sub(1), 1)
        .await
        .map_err(opened("the source"))?);
    match (ours, theirs) {
        (Some(a), Some(b)) if a == b => Ok(last),
        _ => Err(CopyError::Diverged {
            table: table.name(),
            id: last,
        }),
    }
}
