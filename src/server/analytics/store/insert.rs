//! The INSERT statements both backends run: a batch (or a page of a copy) as one multi-row
//! statement per table, with the bind style each backend reads fastest, and what a copy
//! needs afterwards to keep the id sequence ahead of the copied rows.

use super::Table;

/// The columns an insert writes, besides `id`.
const PAGE_VIEW_COLUMNS: &str = "user_fingerprint, path, route_name, podcast, episode, country, \
    city, referrer, user_agent, ip_address, created_at";
const PLAY_COLUMNS: &str = "user_fingerprint, podcast, episode, user_agent, ip_address, created_at";

/// Rows one INSERT statement carries at most: one statement per batch and table, not one per
/// row, which on PostgreSQL is a network round trip each. 256 page views bind 2,816 values,
/// far below the bind limits of both databases (65,535 and 32,766).
pub(super) const ROWS_PER_INSERT: usize = 256;

/// Splits `rows` into the row counts of the statements that insert them: powers of two, the
/// largest first, at most [`ROWS_PER_INSERT`] each (50 rows are 32 + 16 + 2).
///
/// A batch's length is whatever arrived while the writer gathered, so one statement per batch
/// would be a statement of a new shape nearly every time, parsed and planned anew (for
/// SQLite, the parse was most of a small batch's cost). With power-of-two shapes a table has
/// nine, each prepared once per connection and kept; a batch costs at most nine statements.
pub(super) fn statement_sizes(rows: usize) -> impl Iterator<Item = usize> {
    let mut left = rows;
    std::iter::from_fn(move || {
        (left > 0).then(|| {
            let size = 1 << left.min(ROWS_PER_INSERT).ilog2();
            left -= size;
            size
        })
    })
}

/// How a backend's statements name their binds.
#[derive(Clone, Copy)]
pub(super) enum Binds {
    /// `$1, $2, …`: PostgreSQL's only form.
    Numbered,
    /// `?`: SQLite takes `$1` too, but as a *named* parameter that it looks up by name for
    /// every bind, which makes a 5,500-bind insert take ~200 ms instead of ~5 ms.
    Positional,
}

/// `head` followed by `rows` groups of `columns` binds: `($1, $2), ($3, $4)` or `(?, ?), (?, ?)`.
fn multi_row_insert(head: &str, columns: usize, rows: usize, binds: Binds) -> String {
    use std::fmt::Write;
    let mut sql = String::with_capacity(head.len() + rows * columns * 6);
    sql.push_str(head);
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            match binds {
                Binds::Numbered => {
                    let _ = write!(sql, "${}", row * columns + column + 1);
                }
                Binds::Positional => sql.push('?'),
            }
        }
        sql.push(')');
    }
    sql
}

/// The INSERT of `rows` rows into `table`. With `ids` the rows carry their `id` first (as
/// `podmap analytics copy` writes them) and a row whose id is present already is skipped.
pub(super) fn insert_sql(table: Table, rows: usize, ids: bool, binds: Binds) -> String {
    let columns = match table {
        Table::PageViews => PAGE_VIEW_COLUMNS,
        Table::EpisodePlays => PLAY_COLUMNS,
    };
    let id = if ids { "id, " } else { "" };
    let head = format!("INSERT INTO {} ({id}{columns}) VALUES ", table.name());
    let count = columns.split(',').count() + usize::from(ids);
    let mut sql = multi_row_insert(&head, count, rows, binds);
    if ids {
        sql.push_str(" ON CONFLICT (id) DO NOTHING");
    }
    sql
}

/// What moves the id sequence past rows inserted with explicit ids. SQLite's AUTOINCREMENT
/// does it by itself; a PostgreSQL `BIGSERIAL` would hand out the copied ids again.
pub(super) fn sqlite_after_import(_table: Table) -> Option<String> {
    None
}

pub(super) fn postgres_after_import(table: Table) -> Option<String> {
    let table = table.name();
    Some(format!(
        "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
         (SELECT COALESCE(MAX(id), 1) FROM {table}))"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multi_row_insert_numbers_its_binds_row_by_row() {
        assert_eq!(
            multi_row_insert("INSERT INTO t (a, b) VALUES ", 2, 3, Binds::Numbered),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4), ($5, $6)"
        );
        assert_eq!(multi_row_insert("V ", 1, 1, Binds::Numbered), "V ($1)");
        assert_eq!(
            multi_row_insert("V ", 2, 2, Binds::Positional),
            "V (?, ?), (?, ?)"
        );
    }

    #[test]
    fn statements_are_powers_of_two_that_add_up_to_the_batch() {
        let sizes = |n| statement_sizes(n).collect::<Vec<_>>();
        assert_eq!(sizes(0), Vec::<usize>::new());
        assert_eq!(sizes(1), [1]);
        assert_eq!(sizes(50), [32, 16, 2]);
        assert_eq!(sizes(500), [256, 128, 64, 32, 16, 4]);
        assert_eq!(sizes(600), [256, 256, 64, 16, 8]);
        for n in 0..=2_000 {
            let all = sizes(n);
            assert_eq!(all.iter().sum::<usize>(), n, "{n}");
            assert!(all
                .iter()
                .all(|s| s.is_power_of_two() && *s <= ROWS_PER_INSERT));
            assert!(all.windows(2).all(|w| w[0] >= w[1]), "{n}: largest first");
        }
    }

    #[test]
    fn an_import_carries_ids_and_skips_rows_already_there() {
        assert_eq!(
            insert_sql(Table::EpisodePlays, 1, true, Binds::Positional),
            "INSERT INTO episode_plays (id, user_fingerprint, podcast, episode, user_agent, \
             ip_address, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
        );
        assert_eq!(
            insert_sql(Table::PageViews, 1, false, Binds::Numbered)
                .matches('$')
                .count(),
            11
        );
    }
}
