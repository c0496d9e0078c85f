//! Concurrent searches of one matrix share a pass over it.
//!
//! A full scan is bound by memory bandwidth: reading the rows costs more than scoring them.
//! When several searches of one archive arrive together, one pass that scores every row
//! against all of them costs little more than a pass for one.

use std::sync::{Arc, Condvar, Mutex};

use super::scan::{self, Matrix};
use super::{Filter, Hit};
use crate::error::Result;

/// Lets concurrent full scans of one archive share a pass over its matrix.
///
/// A search that finds no scan running starts one for itself and every search that queued
/// meanwhile; a search that finds one running waits for it to end and then joins (or starts)
/// the next. Under load each pass serves several searches, so memory is read once for all of
/// them; alone, a search scans at once, as without batching. Callers block: they run on the
/// blocking pool.
#[derive(Default)]
pub struct ScanBatcher {
    state: Mutex<BatchState>,
    scanned: Condvar,
}

#[derive(Default)]
struct BatchState {
    waiting: Vec<Arc<Ticket>>,
    scanning: bool,
}

struct Ticket {
    query: Vec<f32>,
    result: Mutex<Option<Result<Vec<Hit>>>>,
}

impl ScanBatcher {
    /// [`scan::score_all`] of `query` over `matrix` (always the same matrix for one batcher),
    /// computed in a pass shared with the searches queued meanwhile.
    pub fn score_all<M: Matrix + ?Sized>(&self, matrix: &M, query: &[f32]) -> Result<Vec<Hit>> {
        let ticket = Arc::new(Ticket {
            query: query.to_vec(),
            result: Mutex::new(None),
        });
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.waiting.push(ticket.clone());
        loop {
            if let Some(result) = ticket
                .result
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
            {
                return result;
            }
            if state.scanning {
                state = self.scanned.wait(state).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            state.scanning = true;
            let batch = std::mem::take(&mut state.waiting);
            drop(state);
            // Ends the pass even if scoring panics, so waiting searches are not stranded.
            let end = EndOfPass(self);
            let queries: Vec<&[f32]> = batch.iter().map(|t| t.query.as_slice()).collect();
            match scan::score_all_batch(matrix, &queries, &Filter::all()) {
                Ok(results) => {
                    for (t, hits) in batch.iter().zip(results) {
                        *t.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(Ok(hits));
                    }
                }
                // A query the batch refused (none should reach here: they are checked
                // before) is answered alone, so one bad query fails only itself.
                Err(_) => {
                    for t in &batch {
                        let alone = scan::score_all(matrix, &t.query, &Filter::all());
                        *t.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(alone);
                    }
                }
            }
            drop(end);
            state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Marks the end of a pass and wakes the searches waiting for it.
struct EndOfPass<'a>(&'a ScanBatcher);

impl Drop for EndOfPass<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        state.scanning = false;
        drop(state);
        self.0.scanned.notify_all();
    }
}
