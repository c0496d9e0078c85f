//! Short parallel passes that the calling thread joins.
//!
//! A search is called from a thread outside rayon's pool (a blocking task of the server, a
//! command's main thread). Handing a whole pass to the pool makes that thread sleep until a
//! worker has woken, done the work and woken it again: two wake-ups, tens of microseconds,
//! which is more than a code scan or a rescoring of a few thousand rows takes. Here the
//! calling thread starts on the work at once and the pool's threads join as they wake.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Runs `task(t, acc)` for every `t < tasks` on the calling thread and the pool's other
/// threads, each thread folding the tasks it takes into its own accumulator, and merges them.
///
/// The calling thread works from the start instead of handing the whole job to the pool and
/// sleeping until it is done: a short scan (a code scan of a few thousand rows takes tens of
/// microseconds) would otherwise wait for a worker to wake, and then be woken itself. Tasks
/// are taken from a shared counter, so a helper that wakes late finds less to do, not more.
pub(crate) fn on_every_core<A: Send>(
    tasks: usize,
    init: impl Fn() -> A + Sync,
    task: impl Fn(usize, &mut A) + Sync,
    merge: impl Fn(A, A) -> A,
) -> A {
    let next = AtomicUsize::new(0);
    let work = || {
        let mut acc = init();
        loop {
            let t = next.fetch_add(1, Ordering::Relaxed);
            if t >= tasks {
                return acc;
            }
            task(t, &mut acc);
        }
    };
    let helpers = rayon::current_num_threads()
        .saturating_sub(1)
        .min(tasks.saturating_sub(1));
    let theirs = Mutex::new(Vec::with_capacity(helpers));
    let mine = rayon::in_place_scope(|scope| {
        for _ in 0..helpers {
            scope.spawn(|_| {
                let acc = work();
                theirs.lock().unwrap_or_else(|e| e.into_inner()).push(acc);
            });
        }
        work()
    });
    theirs
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .fold(mine, merge)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every task runs exactly once, whichever thread takes it, inside or outside the pool.
    #[test]
    fn every_task_runs_once() {
        for tasks in [0, 1, 2, 3, 17, 1000] {
            let run = || {
                let mut seen = on_every_core(
                    tasks,
                    Vec::new,
                    |t, seen: &mut Vec<usize>| seen.push(t),
                    |mut a, b| {
                        a.extend(b);
                        a
                    },
                );
                seen.sort_unstable();
                seen
            };
            let want: Vec<usize> = (0..tasks).collect();
            assert_eq!(run(), want, "{tasks} tasks from outside the pool");
            assert_eq!(rayon::scope(|_| run()), want, "{tasks} tasks from a worker");
        }
    }
}
