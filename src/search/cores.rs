//! Short parallel passes that the calling thread joins, on helper threads that stay awake
//! between passes.
//!
//! A search is a few passes of tens to hundreds of microseconds each (a code scan, a
//! narrowing, a rescoring), and each pass ends when every thread that took part has finished.
//! A thread that sleeps between passes has to be woken for each one, and on a virtual machine
//! waking a thread on an idle core costs 25–40 µs (measured on a 2-vCPU KVM guest: a pass
//! of 20 µs of work per core took 47 µs on rayon's pool, whose idle workers sleep, and 21.5 µs
//! on helpers that spin). BLAS and OpenMP runtimes keep their threads spinning between calls
//! for the same reason; here a helper spins for [`SPIN`] after each pass, then parks.
//!
//! The calling thread starts on the work at once, and a helper that has not started when the
//! work is done is taken back ([`Helper::retract`]) instead of waited for: a pass never waits
//! for a thread to wake. Under concurrent searches a helper busy with another caller's pass is
//! simply not used; the callers are then the parallelism, and the helpers stop spinning
//! ([`CONTENDED_FOR`]): on a loaded server every core has a request to run, and a spinning
//! helper only takes turns from them.

use std::any::Any;
use std::cell::UnsafeCell;
use std::panic;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long a helper spins after a pass before it parks: long enough to bridge the few
/// microseconds between the passes of one search (and between searches a caller runs back to
/// back), short enough that a helper parks soon after a search, so that it takes little from
/// whatever else wants the core. While it spins, a helper offers its core to any other ready
/// thread every few microseconds (`yield_now`).
///
/// Measured on 2 cores of an AMD EPYC of family 25 (a KVM guest), one search at a time in one
/// process, the spins taken in turns (top-10 medians, 1,000 / 4,000 × 3,072): binary 40.3 /
/// 89.9–93.3 µs after 50 µs of spinning, 40.2–40.4 / 90.6–93.3 after 200 µs, and 54–57 /
/// 120–122 with no spinning; int8 45.7–45.9 / 145–146, 45.9–46.2 / 145–148 and 61–62 / 162–167.
/// Under load (see [`CONTENDED_FOR`]) the shorter spin also costs less.
pub(crate) const SPIN: Duration = Duration::from_micros(50);

/// Helpers do not spin for this long after a pass started while another was running. Under
/// load, searches overlap and each runs on its own caller, so helpers add little, and while
/// they spin (yielding or not) they take turns from the threads that serve requests.
///
/// Measured with `cargo bench --bench serve` (8 clients, `POST /api/episodes/search` in binary
/// mode over 4,400 × 3,072, same machine as [`SPIN`]), requests/s and server CPU per request,
/// runs of each variant:
///
/// | helpers | requests/s | CPU per request |
/// |---|---:|---:|
/// | spin 200 µs after every pass | 883, 974 | 1.85–2.06 ms |
/// | spin 200 µs, not while contended | 1,079, 1,092 | 1.69–1.70 ms |
/// | spin 50 µs after every pass | 1,020, 1,153 | 1.59–1.84 ms |
/// | never spin | 1,157, 1,229, 1,231 | 1.48–1.58 ms |
/// | spin 50 µs, not while contended | 1,211, 1,372 | 1.34–1.52 ms |
///
/// Searches one at a time never overlap, so they keep the spinning helpers and their latency.
/// Two threads searching at once in one process, with nothing else to run, lose a little:
/// 5,815 int8 and 9,962 binary queries/s at 4,000 × 3,072 against 6,088 and 11,228 with
/// helpers that spun 200 µs after every pass (taken in turns in one process).
pub(crate) const CONTENDED_FOR: Duration = Duration::from_millis(10);

/// Passes in flight in this process.
static PASSES: AtomicUsize = AtomicUsize::new(0);
/// When a pass last started while another was in flight: microseconds since [`epoch`], plus
/// one (0: never).
static CONTENDED_AT: AtomicU64 = AtomicU64::new(0);

/// The time [`CONTENDED_AT`] counts from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Microseconds since [`epoch`], plus one.
fn clock() -> u64 {
    u64::try_from(epoch().elapsed().as_micros()).unwrap_or(u64::MAX - 1) + 1
}

/// Whether a pass started beside another within [`CONTENDED_FOR`].
fn contended() -> bool {
    within_window(CONTENDED_AT.load(Ordering::Relaxed), clock())
}

/// Whether a contention marked at `at` (0: never) is within [`CONTENDED_FOR`] of `now`.
fn within_window(at: u64, now: u64) -> bool {
    at != 0 && now.saturating_sub(at) < CONTENDED_FOR.as_micros() as u64
}

/// A pass in flight, counted in [`PASSES`] from its start to its end (or unwinding).
struct InFlight;

impl InFlight {
    fn enter() -> Self {
        if PASSES.fetch_add(1, Ordering::Relaxed) > 0 {
            CONTENDED_AT.store(clock(), Ordering::Relaxed);
        }
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        PASSES.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs `task(t, acc)` for every `t < tasks` on the calling thread and the helpers, each
/// thread folding the tasks it takes into its own accumulator, and merges them.
///
/// Tasks are taken from a shared counter, so a helper that starts late finds less to do, not
/// more, and one that has not started by the end is not waited for. A panic in a task is
/// raised again on the calling thread, after every helper has let go of the pass.
pub(crate) fn on_every_core<A: Send>(
    tasks: usize,
    init: impl Fn() -> A + Sync,
    task: impl Fn(usize, &mut A) + Sync,
    merge: impl Fn(A, A) -> A,
) -> A {
    let _in_flight = InFlight::enter();
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
    let theirs = Mutex::new(Vec::new());
    let help = || {
        let acc = work();
        theirs.lock().unwrap_or_else(|e| e.into_inner()).push(acc);
    };
    let wanted = tasks.saturating_sub(1);
    let mine = if wanted == 0 {
        work()
    } else {
        let pass = Pass::start(&help, wanted);
        let mine = work();
        pass.finish();
        mine
    };
    theirs
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .fold(mine, merge)
}

/// The helpers: one fewer than rayon's thread count (`RAYON_NUM_THREADS`, else the logical
/// CPUs), so the calling thread and the helpers fill the cores rayon would. Started on first
/// use and never stopped (they park when idle).
fn helpers() -> &'static [Helper] {
    static HELPERS: OnceLock<&'static [Helper]> = OnceLock::new();
    HELPERS.get_or_init(|| {
        let count = rayon::current_num_threads().saturating_sub(1);
        let helpers: &'static [Helper] =
            Box::leak((0..count).map(|_| Helper::new()).collect::<Box<[Helper]>>());
        for (i, helper) in helpers.iter().enumerate() {
            let spawned = std::thread::Builder::new()
                .name(format!("podmap-scan-{i}"))
                .spawn(move || helper.run());
            match spawned {
                Ok(handle) => {
                    let _ = helper.thread.set(handle.thread().clone());
                }
                // Without the thread the helper stays closed: passes run on fewer threads.
                Err(_) => helper.state.store(CLOSED, Ordering::Relaxed),
            }
        }
        helpers
    })
}

/// A helper's state. `IDLE → CLAIMED` by a caller, which writes the job and posts it
/// (`POSTED`); the helper takes it (`TAKEN`) and marks it `DONE`, or the caller takes it back
/// (`POSTED → IDLE`); after `DONE` the caller sets `IDLE` again.
const IDLE: u32 = 0;
const CLAIMED: u32 = 1;
const POSTED: u32 = 2;
const TAKEN: u32 = 3;
const DONE: u32 = 4;
/// A helper whose thread could not be started: never claimed.
const CLOSED: u32 = 5;

/// A job as the helper sees it: the address of a caller's closure and the function that calls
/// it, so that closures of any type (and any lifetime, see [`Pass`]) fit in one slot.
#[derive(Clone, Copy)]
struct Job {
    data: *const (),
    call: unsafe fn(*const ()),
}

struct Helper {
    state: AtomicU32,
    /// Written by the caller that claimed the helper, before it posts; read by the helper after
    /// it has taken the job. The state's release and acquire order the two.
    job: UnsafeCell<Option<Job>>,
    /// A panic of the job, handed to the caller.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    /// Set while the helper is parked or about to park, so that a caller unparks it.
    parked: AtomicBool,
    thread: OnceLock<Thread>,
}

// SAFETY: `job` is the only field that is not `Sync`. It is written only by the one caller
// that moved the state from IDLE to CLAIMED, before its release store of POSTED, and read only
// by the helper after its acquire exchange of POSTED for TAKEN: the two never overlap, and
// the state's ordering makes the write visible to the read.
unsafe impl Sync for Helper {}

impl Helper {
    fn new() -> Self {
        Helper {
            state: AtomicU32::new(IDLE),
            job: UnsafeCell::new(None),
            panic: Mutex::new(None),
            parked: AtomicBool::new(false),
            thread: OnceLock::new(),
        }
    }

    /// Posts `job` if the helper is idle. `true`: the caller must later [`Helper::retract`] it
    /// or wait for it ([`Helper::wait`]).
    fn post(&self, job: Job) -> bool {
        if self
            .state
            .compare_exchange(IDLE, CLAIMED, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        // SAFETY: CLAIMED is ours alone, and the helper reads the slot only after it takes a
        // POSTED job, which the store below publishes.
        unsafe { *self.job.get() = Some(job) };
        self.state.store(POSTED, Ordering::SeqCst);
        // Paired with `run`'s SeqCst store of `parked` and load of `state`: either the helper
        // sees POSTED before it parks, or this sees `parked` and unparks it.
        if self.parked.load(Ordering::SeqCst) {
            if let Some(thread) = self.thread.get() {
                thread.unpark();
            }
        }
        true
    }

    /// Takes a posted job back if the helper has not started it. `true`: it never will.
    fn retract(&self) -> bool {
        self.state
            .compare_exchange(POSTED, IDLE, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Waits for a taken job to finish, frees the helper and returns the job's panic, if any.
    fn wait(&self) -> Option<Box<dyn Any + Send>> {
        let mut spins = 0u32;
        while self.state.load(Ordering::Acquire) != DONE {
            // The helper is running its last task: it is usually done within microseconds,
            // but if the system has taken its core, this thread gives its own away.
            spins = spins.saturating_add(1);
            if spins < 1 << 12 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        let panic = self.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.state.store(IDLE, Ordering::Release);
        panic
    }

    /// The helper thread: spins for a posted job for [`SPIN`] after the last one, then parks.
    fn run(&self) {
        let mut awake_since = Instant::now();
        let mut polls = 0u32;
        loop {
            if self.state.load(Ordering::Relaxed) == POSTED
                && self
                    .state
                    .compare_exchange(POSTED, TAKEN, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                // SAFETY: TAKEN is ours; the caller wrote the job before posting it and waits
                // for DONE before it lets the job's closure go (see `Pass`).
                if let Some(job) = unsafe { *self.job.get() } {
                    // SAFETY: `job.call` is the caller's matching function for `job.data`, and
                    // the closure behind it lives until the caller sees DONE.
                    let result = panic::catch_unwind(|| unsafe { (job.call)(job.data) });
                    if let Err(payload) = result {
                        *self.panic.lock().unwrap_or_else(|e| e.into_inner()) = Some(payload);
                    }
                }
                self.state.store(DONE, Ordering::Release);
                awake_since = Instant::now();
                polls = 0;
                continue;
            }
            polls = polls.wrapping_add(1);
            if !polls.is_multiple_of(64) {
                std::hint::spin_loop();
            } else if awake_since.elapsed() <= SPIN && !contended() {
                // Every few microseconds the core is offered to any other thread that is
                // ready to run (request threads, other processes): spinning must not take a
                // core from work when the machine is busy.
                std::thread::yield_now();
            } else {
                self.parked.store(true, Ordering::SeqCst);
                if self.state.load(Ordering::SeqCst) != POSTED {
                    std::thread::park();
                }
                self.parked.store(false, Ordering::SeqCst);
                awake_since = Instant::now();
            }
        }
    }
}

/// A closure posted to helpers for the length of one pass. Its helpers are released (taken
/// back, or waited for) by [`Pass::finish`], or by `Drop` when the caller's own share panics,
/// so no helper can call the closure after the caller's frame is gone.
struct Pass<'a> {
    posted: Vec<&'static Helper>,
    _closure: std::marker::PhantomData<&'a ()>,
}

impl<'a> Pass<'a> {
    /// Posts `help` to at most `wanted` idle helpers.
    fn start<F: Fn() + Sync + 'a>(help: &'a F, wanted: usize) -> Self {
        /// Calls the closure at `data`.
        ///
        /// # Safety
        /// `data` is a `&F` that is alive for the call.
        unsafe fn call<F: Fn()>(data: *const ()) {
            // SAFETY: see the function's contract; `Pass` keeps `F` alive while posted.
            unsafe { (*data.cast::<F>())() }
        }
        let job = Job {
            data: std::ptr::from_ref(help).cast(),
            call: call::<F>,
        };
        let posted = helpers()
            .iter()
            .filter(|helper| helper.post(job))
            .take(wanted)
            .collect();
        Pass {
            posted,
            _closure: std::marker::PhantomData,
        }
    }

    /// Releases the helpers; raises a helper's panic on the calling thread.
    fn finish(mut self) {
        if let Some(payload) = self.release() {
            panic::resume_unwind(payload);
        }
    }

    fn release(&mut self) -> Option<Box<dyn Any + Send>> {
        let mut first = None;
        for helper in self.posted.drain(..) {
            if !helper.retract() {
                let panic = helper.wait();
                first = first.or(panic);
            }
        }
        first
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        // Unwinding from the caller's own share: the helpers must still let go of the closure
        // before the frame that holds it is gone. Their panics, if any, yield to the caller's.
        let _ = self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::AssertUnwindSafe;
    use std::sync::atomic::AtomicU64;

    fn collect(tasks: usize) -> Vec<usize> {
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
    }

    /// Every task runs exactly once, whichever thread takes it, inside or outside rayon's
    /// pool, and from several callers at once (helpers busy with one caller are not used by
    /// another).
    #[test]
    fn every_task_runs_once() {
        for tasks in [0, 1, 2, 3, 17, 1000] {
            let want: Vec<usize> = (0..tasks).collect();
            assert_eq!(collect(tasks), want, "{tasks} tasks from outside the pool");
            assert_eq!(
                rayon::scope(|_| collect(tasks)),
                want,
                "{tasks} from a worker"
            );
        }
        std::thread::scope(|s| {
            let callers: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..200).all(|_| collect(257) == (0..257).collect::<Vec<_>>())))
                .collect();
            for caller in callers {
                assert!(caller.join().unwrap(), "a concurrent caller lost a task");
            }
        });
    }

    /// Helpers that have parked are woken by the next pass, and a pass whose work is done
    /// before a helper starts does not wait for it: both edges of the spin.
    #[test]
    fn passes_after_the_helpers_parked_still_use_them() {
        let _ = collect(8);
        std::thread::sleep(SPIN * 20);
        let threads = Mutex::new(std::collections::HashSet::new());
        let runs = AtomicU64::new(0);
        for _ in 0..50 {
            on_every_core(
                64,
                || (),
                |_, _| {
                    runs.fetch_add(1, Ordering::Relaxed);
                    threads.lock().unwrap().insert(std::thread::current().id());
                    std::thread::sleep(Duration::from_micros(50));
                },
                |_, _| (),
            );
        }
        assert_eq!(runs.load(Ordering::Relaxed), 50 * 64);
        let expected = rayon::current_num_threads().min(2);
        assert!(
            threads.lock().unwrap().len() >= expected,
            "tasks ran on {} thread(s), {expected} expected",
            threads.lock().unwrap().len()
        );
    }

    /// Two passes in flight at once mark the process contended, and the mark lasts
    /// [`CONTENDED_FOR`]. (Other tests may run passes at the same time, so only the edge that
    /// they cannot cause to fail is asserted on the shared state; the window on its own.)
    #[test]
    fn overlapping_passes_stop_the_spinning_for_a_while() {
        let both = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    on_every_core(
                        1,
                        || (),
                        |_, _| {
                            both.wait();
                        },
                        |_, _| (),
                    )
                });
            }
        });
        assert!(contended(), "two passes at once left no mark");
        let window = CONTENDED_FOR.as_micros() as u64;
        assert!(!within_window(0, 5));
        assert!(within_window(7, 7));
        assert!(within_window(7, 7 + window - 1));
        assert!(!within_window(7, 7 + window));
        // A clock read before the mark (another thread's) is within it.
        assert!(within_window(7, 3));
    }

    /// A task that panics on a helper or on the caller panics the caller, after every helper
    /// has let go of the pass (the borrowed state is still alive while they run), and the
    /// helpers serve the next pass.
    #[test]
    fn a_panicking_task_panics_the_caller_and_leaves_the_helpers_usable() {
        for bad in [0, 5, 63] {
            let finished = AtomicU64::new(0);
            let result = panic::catch_unwind(AssertUnwindSafe(|| {
                on_every_core(
                    64,
                    || (),
                    |t, _| {
                        std::thread::sleep(Duration::from_micros(20));
                        if t == bad {
                            panic!("task {t} failed");
                        }
                        finished.fetch_add(1, Ordering::Relaxed);
                    },
                    |_, _| (),
                )
            }));
            assert!(result.is_err(), "task {bad}'s panic reached the caller");
            assert!(finished.load(Ordering::Relaxed) < 64);
            assert_eq!(collect(100), (0..100).collect::<Vec<_>>());
        }
    }
}
