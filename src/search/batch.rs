//! Concurrent searches of one matrix share a pass over it.
//!
//! A full scan is bound by memory bandwidth: reading the rows costs more than scoring them.
//! When several searches of one archive arrive together, one pass that scores every row
//! against all of them costs little more than a pass for one. A batcher shares passes of one
//! kind: every score ([`ScanBatcher::score_all`]) or the best hits of each episode
//! ([`ScanBatcher::best_per_episode`], what the HTTP search scans for).

use std::sync::{Arc, Condvar, Mutex};

use super::best::EpisodeBest;
use super::scan::{self, Matrix};
use super::{Filter, Hit};
use crate::error::{Error, Result};

/// Lets concurrent full scans of one archive share a pass over its matrix.
///
/// A search that finds no scan running starts one for itself and every search that queued
/// meanwhile; a search that finds one running waits for it to end and then joins (or starts)
/// the next. Under load each pass serves several searches, so memory is read once for all of
/// them; alone, a search scans at once, as without batching. Callers block: they run on the
/// blocking pool. A pass that panics fails the searches it served and nothing after it.
/// `T` is what a search gets: its hits, or its episodes' best hits.
pub struct ScanBatcher<T = Vec<Hit>> {
    state: Mutex<BatchState<T>>,
    scanned: Condvar,
}

impl<T> Default for ScanBatcher<T> {
    fn default() -> Self {
        ScanBatcher {
            state: Mutex::new(BatchState {
                waiting: Vec::new(),
                scanning: false,
            }),
            scanned: Condvar::new(),
        }
    }
}

struct BatchState<T> {
    waiting: Vec<Arc<Ticket<T>>>,
    scanning: bool,
}

struct Ticket<T> {
    query: Vec<f32>,
    result: Mutex<Option<Result<T>>>,
}

impl ScanBatcher<Vec<Hit>> {
    /// [`scan::score_all`] of `query` over `matrix` (always the same matrix for one batcher),
    /// computed in a pass shared with the searches queued meanwhile.
    ///
    /// If the pass panics, the panic goes on in the search that ran it, as it would without
    /// batching; every other search of that pass gets [`Error::ScanFailed`], and the next
    /// search starts a new pass.
    pub fn score_all<M: Matrix + ?Sized>(&self, matrix: &M, query: &[f32]) -> Result<Vec<Hit>> {
        self.shared(
            matrix,
            query,
            |matrix, queries| scan::score_all_batch(matrix, queries, &Filter::all()),
            |matrix, query| scan::score_all(matrix, query, &Filter::all()),
        )
    }
}

impl ScanBatcher<Vec<EpisodeBest>> {
    /// [`scan::best_per_episode`] of `query` over `matrix` (always the same matrix for one
    /// batcher), computed in a pass shared with the searches queued meanwhile; a pass that
    /// panics fails as in [`ScanBatcher::score_all`].
    pub fn best_per_episode<M: Matrix + ?Sized>(
        &self,
        matrix: &M,
        query: &[f32],
    ) -> Result<Vec<EpisodeBest>> {
        self.shared(
            matrix,
            query,
            scan::best_per_episode_batch,
            scan::best_per_episode,
        )
    }
}

impl<T> ScanBatcher<T> {
    /// `query` answered by a pass of `together` (several queries at once, results in query
    /// order) shared with the searches queued meanwhile; `alone` answers each query of a
    /// pass that `together` refused.
    fn shared<M: Matrix + ?Sized>(
        &self,
        matrix: &M,
        query: &[f32],
        together: impl Fn(&M, &[&[f32]]) -> Result<Vec<T>>,
        alone: impl Fn(&M, &[f32]) -> Result<T>,
    ) -> Result<T> {
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
            // No pass runs, so every ticket is either answered or waiting: this search's
            // own is in the batch it now takes.
            state.scanning = true;
            let batch = std::mem::take(&mut state.waiting);
            drop(state);
            // Answers the batch and ends the pass even if scoring panics, so no search of
            // it is stranded.
            let mut pass = Pass {
                batcher: self,
                batch,
                answered: false,
            };
            let results = run(matrix, &pass.batch, &together, &alone);
            pass.answer(results);
            drop(pass);
            state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Every query of `tickets` scored in one pass, in their order.
fn run<M: Matrix + ?Sized, T>(
    matrix: &M,
    tickets: &[Arc<Ticket<T>>],
    batch: impl Fn(&M, &[&[f32]]) -> Result<Vec<T>>,
    alone: impl Fn(&M, &[f32]) -> Result<T>,
) -> Vec<Result<T>> {
    let queries: Vec<&[f32]> = tickets.iter().map(|t| t.query.as_slice()).collect();
    match batch(matrix, &queries) {
        Ok(results) => results.into_iter().map(Ok).collect(),
        // A query the batch refused (none should reach here: they are checked before) is
        // answered alone, so one bad query fails only itself.
        Err(_) => tickets.iter().map(|t| alone(matrix, &t.query)).collect(),
    }
}

/// A pass in progress. Dropped, it answers its searches ([`Error::ScanFailed`] when the pass
/// did not, i.e. it panicked), then marks the pass ended and wakes the searches waiting.
struct Pass<'a, T> {
    batcher: &'a ScanBatcher<T>,
    batch: Vec<Arc<Ticket<T>>>,
    answered: bool,
}

impl<T> Pass<'_, T> {
    /// Hands each search its result; `results` are in batch order (one missing would be an
    /// error). Nothing here can panic, so either every search of the pass gets its result or
    /// none does.
    fn answer(&mut self, results: Vec<Result<T>>) {
        let mut results = results.into_iter();
        for t in &self.batch {
            let result = results.next().unwrap_or(Err(Error::ScanFailed));
            *t.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
        }
        self.answered = true;
    }
}

impl<T> Drop for Pass<'_, T> {
    fn drop(&mut self) {
        if !self.answered {
            for t in &self.batch {
                *t.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(Err(Error::ScanFailed));
            }
        }
        let mut state = self.batcher.state.lock().unwrap_or_else(|e| e.into_inner());
        state.scanning = false;
        drop(state);
        self.batcher.scanned.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::thread;
    use std::time::{Duration, Instant};

    use super::*;

    /// How long anything in these tests may take before it counts as stuck.
    const BOUND: Duration = Duration::from_secs(20);

    /// Unit rows of two floats whose passes can be held and made to panic.
    struct Faulty {
        rows: Vec<f32>,
        /// Passes begun (calls of `rows()`).
        passes: AtomicUsize,
        /// While set, a pass waits (up to [`BOUND`]) before it reads, so searches queue.
        hold: AtomicBool,
        /// The pass (counted from 0) that panics.
        panic_pass: AtomicUsize,
        /// Every third pass before this one panics as well. Bounded, so that a search left
        /// starting empty passes (as once happened) is not freed by a panic of its own.
        every_third_before: AtomicUsize,
    }

    impl Faulty {
        fn new(n: usize) -> Self {
            let rows = (0..n)
                .flat_map(|i| {
                    let angle = i as f32 * 0.1;
                    [angle.cos(), angle.sin()]
                })
                .collect();
            Faulty {
                rows,
                passes: AtomicUsize::new(0),
                hold: AtomicBool::new(false),
                panic_pass: AtomicUsize::new(usize::MAX),
                every_third_before: AtomicUsize::new(0),
            }
        }
    }

    impl Matrix for Faulty {
        fn row_len(&self) -> usize {
            2
        }

        fn rows(&self) -> &[f32] {
            let pass = self.passes.fetch_add(1, Ordering::SeqCst);
            let deadline = Instant::now() + BOUND;
            while self.hold.load(Ordering::SeqCst) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(1));
            }
            let due = self.panic_pass.load(Ordering::SeqCst) == pass;
            if due || (pass % 3 == 2 && pass < self.every_third_before.load(Ordering::SeqCst)) {
                panic!("injected fault in pass {pass}");
            }
            &self.rows
        }

        fn embedded_rows(&self) -> usize {
            self.rows.len() / 2
        }

        fn columns(&self) -> impl Fn(usize) -> (bool, u32) + Send + Sync + '_ {
            |i| (true, i as u32)
        }
    }

    /// How one search ended.
    #[derive(Debug)]
    enum Outcome {
        Hits(Vec<Hit>),
        /// Hits that differ from a scan of its own.
        Wrong,
        Failed(Error),
        Panicked,
    }

    /// Starts a search on its own thread; its outcome arrives on `done`. Not a scoped thread:
    /// a search that never ends must fail the test, not hang it at the end of a scope.
    fn search(
        batcher: &Arc<ScanBatcher>,
        matrix: &Arc<Faulty>,
        query: [f32; 2],
        done: &mpsc::Sender<Outcome>,
    ) {
        let (batcher, matrix, done) = (batcher.clone(), matrix.clone(), done.clone());
        thread::spawn(move || {
            let outcome = match catch_unwind(AssertUnwindSafe(|| {
                batcher.score_all(matrix.as_ref(), &query)
            })) {
                Ok(Ok(hits)) => Outcome::Hits(hits),
                Ok(Err(e)) => Outcome::Failed(e),
                Err(_) => Outcome::Panicked,
            };
            let _ = done.send(outcome);
        });
    }

    fn outcomes(done: &mpsc::Receiver<Outcome>, n: usize) -> Vec<Outcome> {
        (0..n)
            .map(|i| {
                done.recv_timeout(BOUND)
                    .unwrap_or_else(|_| panic!("search {i} of {n} got no answer"))
            })
            .collect()
    }

    fn wait_until(what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + BOUND;
        while !condition() {
            assert!(Instant::now() < deadline, "never happened: {what}");
            thread::sleep(Duration::from_millis(1));
        }
    }

    fn queued(batcher: &ScanBatcher) -> usize {
        batcher.state.lock().unwrap().waiting.len()
    }

    fn query(i: usize) -> [f32; 2] {
        let angle = i as f32 * 0.37;
        [angle.cos(), angle.sin()]
    }

    fn expected(matrix: &Faulty, query: &[f32]) -> Vec<Hit> {
        let rows = Faulty::new(matrix.embedded_rows());
        scan::score_all(&rows, query, &Filter::all()).unwrap()
    }

    #[test]
    fn searches_of_a_pass_that_panics_get_an_error_and_later_ones_a_result() {
        let batcher = Arc::new(ScanBatcher::default());
        let matrix = Arc::new(Faulty::new(600));
        let (done, answers) = mpsc::channel();

        // One search runs a pass that is held while four queue behind it; the next pass,
        // which serves the four, panics.
        matrix.hold.store(true, Ordering::SeqCst);
        search(&batcher, &matrix, query(0), &done);
        wait_until("the first pass begins", || {
            matrix.passes.load(Ordering::SeqCst) == 1
        });
        for i in 1..5 {
            search(&batcher, &matrix, query(i), &done);
        }
        wait_until("four searches queue", || queued(&batcher) == 4);
        matrix.panic_pass.store(1, Ordering::SeqCst);
        matrix.hold.store(false, Ordering::SeqCst);
        let first = outcomes(&answers, 5);
        let count = |f: fn(&Outcome) -> bool| first.iter().filter(|o| f(o)).count();
        let hits = count(|o| matches!(o, Outcome::Hits(_)));
        let panicked = count(|o| matches!(o, Outcome::Panicked));
        let failed = count(|o| matches!(o, Outcome::Failed(Error::ScanFailed)));
        // The held pass answered its search; of the four, the one that ran the pass that
        // panicked panics, the three others get the error.
        assert_eq!((hits, panicked, failed), (1, 1, 3), "{first:?}");
        assert_eq!(matrix.passes.load(Ordering::SeqCst), 2);

        // The batcher recovered: concurrent searches get their exact results.
        for i in 0..6 {
            search(&batcher, &matrix, query(i), &done);
        }
        for outcome in outcomes(&answers, 6) {
            let Outcome::Hits(hits) = outcome else {
                panic!("a search after the panic failed: {outcome:?}");
            };
            assert_eq!(hits.len(), 600);
        }
        assert_eq!(queued(&batcher), 0);
        assert!(!batcher.state.lock().unwrap().scanning);
    }

    #[test]
    fn every_search_ends_while_passes_panic_under_load() {
        let batcher = Arc::new(ScanBatcher::default());
        let matrix = Arc::new(Faulty::new(2000));
        matrix.every_third_before.store(30, Ordering::SeqCst);
        let (done, answers) = mpsc::channel();
        let (threads, rounds) = (6, 15);
        for t in 0..threads {
            let (batcher, matrix, done) = (batcher.clone(), matrix.clone(), done.clone());
            thread::spawn(move || {
                for r in 0..rounds {
                    let q = query(t * rounds + r);
                    let outcome = match catch_unwind(AssertUnwindSafe(|| {
                        batcher.score_all(matrix.as_ref(), &q)
                    })) {
                        Ok(Ok(hits)) if hits == expected(&matrix, &q) => Outcome::Hits(hits),
                        Ok(Ok(_)) => Outcome::Wrong,
                        Ok(Err(e)) => Outcome::Failed(e),
                        Err(_) => Outcome::Panicked,
                    };
                    if done.send(outcome).is_err() {
                        return;
                    }
                }
            });
        }
        let all = outcomes(&answers, threads * rounds);
        assert!(
            all.iter().any(|o| matches!(o, Outcome::Panicked)),
            "no pass panicked"
        );
        for outcome in &all {
            assert!(
                matches!(
                    outcome,
                    Outcome::Hits(_) | Outcome::Failed(Error::ScanFailed) | Outcome::Panicked
                ),
                "{outcome:?}"
            );
        }

        matrix.every_third_before.store(0, Ordering::SeqCst);
        let q = query(1);
        assert_eq!(
            batcher.score_all(matrix.as_ref(), &q).unwrap(),
            expected(&matrix, &q)
        );
    }
}
