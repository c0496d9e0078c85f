//! The writers: they take what the handlers queued, in batches of up to [`BATCH`], one
//! transaction per batch. A failed batch is kept and retried with backoff while the handlers go
//! on answering (new events wait in the queue, or are dropped and counted when it is full). On
//! shutdown the queue is closed and drained into the store.
//!
//! Two writers share the queue:
//! - the **background writer**, on a thread of its own at the lowest priority, nice 19
//!   ([`start_background`]), writes everything while the server has CPU to spare. Its events
//!   gather for [`GATHER`] before their batch is written.
//! - the **backlog writer**, a task on the server's runtime at normal priority
//!   ([`backlog`]), writes only when the queue holds more than an eighth of its capacity: when
//!   the requests keep every core busy and the background writer gets no CPU, it takes the
//!   queue over and keeps it from filling up and dropping events. It also drains the queue at
//!   shutdown.
//!
//! Why the background writer runs at the lowest priority: its work comes in bursts (a batch every
//! [`GATHER`], a few milliseconds of CPU for SQLite), and a burst on the async workers, or on
//! threads at their priority, takes a core from the searches that happen to run meanwhile and
//! moves their tail latency. `cargo bench --bench analytics` measures it: with the writer at
//! normal priority, 500 events a second moved search p99 by +41 %; at `SCHED_IDLE` by no more
//! than the track requests alone did with analytics off (see [`lowest_priority`] for why not
//! that).

use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, gauge};
use tokio::sync::{oneshot, watch};

use super::event::{days_ago, Event};
use super::store::Store;
use super::AnalyticsError;

/// Events written in one transaction at most.
pub const BATCH: usize = 500;
/// Events the background writer writes in one transaction at most. Smaller than [`BATCH`]:
/// a transaction it has begun holds SQLite's write lock until it gets the CPU to finish, so
/// when the cores are busy this bounds how long the backlog writer may wait for the lock.
const BACKGROUND_BATCH: usize = 64;
/// How long the first event of a batch waits for others before the background writer writes
/// the batch, unless a full batch is queued sooner. A transaction costs the same server CPU
/// whatever it holds (for SQLite: hand-offs to its worker thread and back, page reads, a WAL
/// append): written as they came, at a few hundred events a second each event was a
/// transaction of its own, and the writer cost more CPU than answering the requests.
/// Gathering makes that a few transactions a second; the rows land this much later, well
/// within the stats' cache TTL. The writer is not woken by the events that arrive meanwhile.
pub const GATHER: Duration = Duration::from_millis(100);
/// Gathering needs room: events that come while the writer waits must fit in the queue. A
/// queue of this length holds what 10,000 events a second bring in one [`GATHER`] (the
/// default, 10,000, what 100,000 bring); with a shorter one (`--analytics-queue`) every batch
/// is written at once, as it comes.
const GATHER_MIN_QUEUE: usize = 2 * BATCH;
/// How often the backlog writer looks at the queue.
const BACKLOG_CHECK: Duration = GATHER;
/// The first wait after a failed batch; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Attempts a batch gets once shutdown has begun, so a dead database cannot hold the exit.
const ATTEMPTS_AT_SHUTDOWN: u32 = 5;
/// How often old events are deleted.
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);

pub const WRITTEN: &str = "podmap_analytics_written_total";
pub const DROPPED: &str = "podmap_analytics_dropped_total";
pub const QUEUE_DEPTH: &str = "podmap_analytics_queue_depth";

/// The bounded queue from the handlers to the writers.
pub struct Queue {
    /// `None` once closed: later events are dropped.
    sender: std::sync::RwLock<Option<flume::Sender<Event>>>,
    receiver: flume::Receiver<Event>,
    /// Tells the writers that shutdown has begun (also while a batch is being retried).
    closing: watch::Sender<bool>,
}

/// What a writer takes its events from.
#[derive(Clone)]
pub struct Receiver {
    events: flume::Receiver<Event>,
    closing: watch::Receiver<bool>,
    capacity: usize,
    /// Set while the backlog writer writes: the background writer then takes no events.
    backlog: Arc<std::sync::atomic::AtomicBool>,
}

impl Queue {
    /// A queue of `capacity` events (at least 1), and what the writers receive from.
    pub fn new(capacity: usize) -> (Queue, Receiver) {
        let capacity = capacity.max(1);
        let (sender, events) = flume::bounded(capacity);
        let (closing, closing_rx) = watch::channel(false);
        let receiver = Receiver {
            events: events.clone(),
            closing: closing_rx,
            capacity,
            backlog: Arc::default(),
        };
        let queue = Queue {
            sender: std::sync::RwLock::new(Some(sender)),
            receiver: events,
            closing,
        };
        (queue, receiver)
    }

    /// Queues `event` without waiting; a full or closed queue drops it and counts it.
    pub fn push(&self, event: Event) {
        let sender = self.sender.read().expect("not poisoned");
        let queued = sender.as_ref().is_some_and(|s| s.try_send(event).is_ok());
        if queued {
            gauge!(QUEUE_DEPTH).set(self.receiver.len() as f64);
        } else {
            counter!(DROPPED).increment(1);
        }
    }

    /// Takes no more events; the writers drain what is queued and end.
    pub fn close(&self) {
        self.sender.write().expect("not poisoned").take();
        self.closing.send_replace(true);
    }
}

impl Receiver {
    /// Shutdown has begun (or the queue is gone).
    fn shutting_down(&self) -> bool {
        *self.closing.borrow() || self.closing.has_changed().is_err()
    }

    /// Moves queued events into `batch` until it holds `most` or the queue is empty.
    fn fill(&self, batch: &mut Vec<Event>, most: usize) {
        while batch.len() < most {
            match self.events.try_recv() {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
    }

    /// Queued events above which the backlog writer writes.
    fn high_water(&self) -> usize {
        (self.capacity / 8).max(1)
    }

    fn backlog(&self) -> bool {
        self.backlog.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Starts the background writer on a thread of its own at the lowest priority, with a store of its
/// own opened from that thread (SQLite's worker thread, started from it, inherits the
/// priority); an in-memory SQLite database cannot be opened twice, so `shared` is used for
/// it. Answers once the store is open, with the signal the thread gives when it ends.
pub async fn start_background(
    url: String,
    shared: Arc<dyn Store>,
    receiver: Receiver,
) -> Result<oneshot::Receiver<()>, AnalyticsError> {
    let (opened, is_open) = oneshot::channel();
    let (done, finished) = oneshot::channel();
    std::thread::Builder::new()
        .name("podmap-analytics".into())
        .spawn(move || {
            lowest_priority();
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = opened.send(Err(AnalyticsError::Writer(e)));
                    return;
                }
            };
            runtime.block_on(async move {
                let own = !super::store::is_in_memory(&url);
                let store: Arc<dyn Store> = if own {
                    match super::store::open(&url).await {
                        Ok(store) => Arc::from(store),
                        Err(e) => {
                            let _ = opened.send(Err(e.into()));
                            return;
                        }
                    }
                } else {
                    shared
                };
                let _ = opened.send(Ok(()));
                background(&*store, receiver, GATHER).await;
                if own {
                    store.close().await;
                }
            });
            let _ = done.send(());
        })
        .map_err(AnalyticsError::Writer)?;
    match is_open.await {
        Ok(result) => result.map(|()| finished),
        Err(_) => Err(AnalyticsError::Writer(std::io::Error::other(
            "the analytics writer thread ended before opening its store",
        ))),
    }
}

/// Gives the calling thread (and the threads it starts later) the lowest priority of the
/// normal scheduler, nice 19: on a busy core it gets about 1/70 of the time a nice-0 thread
/// gets. Not `SCHED_IDLE`: a thread in that class runs only when nothing else wants the core
/// (a weight of 3 against nice 0's 1,024), so on a host kept busy by another process the
/// events were written minutes late or not before the tests gave up, and shutdown would wait
/// for them. Best effort: on failure it stays as it was.
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `setpriority` with `PRIO_PROCESS` and id 0 changes only the calling thread's
        // nice value (threads have their own on Linux); no pointers are passed. Lowering
        // one's own priority needs no privilege.
        let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
        if r != 0 {
            tracing::debug!(
                "analytics: the background writer keeps its priority: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// The background writer: what arrives, in batches gathered for `gather` (not with a queue
/// shorter than [`GATHER_MIN_QUEUE`]), until the queue is closed and empty; it takes no events
/// while the backlog writer writes.
async fn background(store: &dyn Store, receiver: Receiver, gather: Duration) {
    let mut batch = Vec::with_capacity(BACKGROUND_BATCH);
    let gather = (receiver.capacity >= GATHER_MIN_QUEUE).then_some(gather);
    let mut closing = receiver.closing.clone();
    loop {
        // Two writers would wait for each other's write lock: the queue is the backlog
        // writer's until it is down again.
        while receiver.backlog() && !receiver.shutting_down() {
            tokio::time::sleep(BACKLOG_CHECK).await;
        }
        // Closed and empty: no event comes any more.
        let Ok(event) = receiver.events.recv_async().await else {
            break;
        };
        batch.push(event);
        receiver.fill(&mut batch, BACKGROUND_BATCH);
        if let (Some(gather), true) = (gather, batch.len() < BACKGROUND_BATCH) {
            // Not woken by each event meanwhile: only by the time or shutdown.
            if !receiver.shutting_down() {
                tokio::select! {
                    _ = tokio::time::sleep(gather) => {}
                    _ = closing.wait_for(|closing| *closing) => {}
                }
            }
            receiver.fill(&mut batch, BACKGROUND_BATCH);
        }
        gauge!(QUEUE_DEPTH).set(receiver.events.len() as f64);
        write(store, &mut batch, &receiver).await;
    }
    gauge!(QUEUE_DEPTH).set(0.0);
}

/// The backlog writer: every [`BACKLOG_CHECK`], when the queue holds more than an eighth of
/// its capacity, takes the queue from the background writer and writes batches until it holds
/// a sixteenth; once the queue is closed, drains it. Ends when the queue is closed and empty.
pub async fn backlog(store: Arc<dyn Store>, receiver: Receiver) {
    let mut batch = Vec::with_capacity(BATCH);
    let high = receiver.high_water();
    let mut closing = receiver.closing.clone();
    loop {
        if !receiver.shutting_down() {
            tokio::select! {
                _ = tokio::time::sleep(BACKLOG_CHECK) => {}
                _ = closing.wait_for(|closing| *closing) => {}
            }
        }
        let draining = receiver.shutting_down();
        if draining && receiver.events.is_empty() {
            break;
        }
        if !draining && receiver.events.len() <= high {
            continue;
        }
        // Down to a sixteenth of the capacity, or (shutting down) to the last event.
        let low = if draining { 0 } else { high / 2 };
        receiver
            .backlog
            .store(true, std::sync::atomic::Ordering::Relaxed);
        while receiver.events.len() > low {
            receiver.fill(&mut batch, BATCH);
            if batch.is_empty() {
                break;
            }
            gauge!(QUEUE_DEPTH).set(receiver.events.len() as f64);
            write(&*store, &mut batch, &receiver).await;
        }
        receiver
            .backlog
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Writes `batch` and empties it, retrying with backoff; once shutting down (also when
/// shutdown begins during the retries), gives up after [`ATTEMPTS_AT_SHUTDOWN`] attempts and
/// counts the batch as dropped, so a dead database cannot hold the exit.
async fn write(store: &dyn Store, batch: &mut Vec<Event>, receiver: &Receiver) {
    let mut backoff = FIRST_BACKOFF;
    let mut attempts = 0;
    let mut closing = receiver.closing.clone();
    loop {
        let shutting_down = receiver.shutting_down();
        attempts += 1;
        match store.insert(batch).await {
            Ok(()) => {
                counter!(WRITTEN).increment(batch.len() as u64);
                batch.clear();
                return;
            }
            Err(e) if shutting_down && attempts >= ATTEMPTS_AT_SHUTDOWN => {
                tracing::error!(
                    "analytics: {} event(s) lost at shutdown: {}",
                    batch.len(),
                    crate::server::analytics::chain(&e)
                );
                counter!(DROPPED).increment(batch.len() as u64);
                batch.clear();
                return;
            }
            Err(e) => {
                tracing::warn!(
                    "analytics: writing {} event(s) failed, retrying in {backoff:?}: {}",
                    batch.len(),
                    crate::server::analytics::chain(&e)
                );
                if shutting_down {
                    tokio::time::sleep(backoff).await;
                } else {
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = closing.wait_for(|closing| *closing) => {
                            // The last attempts come quickly: the process is exiting.
                            attempts = 0;
                            backoff = FIRST_BACKOFF / 2;
                        }
                    }
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Deletes events older than `days` every [`PRUNE_EVERY`], the first time at once.
pub async fn prune(store: Arc<dyn Store>, days: u32) {
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    loop {
        tick.tick().await;
        match store.prune(days_ago(days)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!("analytics: deleted {n} event(s) older than {days} days"),
            Err(e) => tracing::warn!(
                "analytics: pruning failed: {}",
                crate::server::analytics::chain(&e)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::analytics::event::{now, PageView};
    use crate::server::analytics::store::{self, Table};

    fn view(i: usize) -> Event {
        Event::PageView(PageView {
            user_fingerprint: format!("f{i}"),
            path: format!("/{i}"),
            route_name: None,
            podcast: None,
            episode: None,
            country: None,
            city: None,
            referrer: None,
            user_agent: "test".into(),
            ip_address: "x".into(),
            created_at: now(),
        })
    }

    async fn sqlite(dir: &tempfile::TempDir) -> Arc<dyn Store> {
        let url = format!("sqlite://{}", dir.path().join("a.db").display());
        Arc::from(store::open(&url).await.unwrap())
    }

    /// A background writer on a queue of `capacity` that gathers for an hour: whatever it
    /// writes before the test closes the queue, it wrote without gathering.
    async fn background_writer(
        store: &Arc<dyn Store>,
        capacity: usize,
    ) -> (Queue, tokio::task::JoinHandle<()>) {
        let (queue, receiver) = Queue::new(capacity);
        let store = store.clone();
        let task = tokio::spawn(async move {
            background(&*store, receiver, Duration::from_secs(3600)).await;
        });
        (queue, task)
    }

    /// Fails the test instead of waiting for the hour of gathering.
    async fn within_a_minute<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(60), f)
            .await
            .unwrap_or_else(|_| panic!("{what} waited for the gathering time"))
    }

    async fn rows(store: &Arc<dyn Store>) -> i64 {
        store.rows(Table::PageViews).await.unwrap()
    }

    /// Waits until `store` holds `n` page views.
    async fn rows_reach(store: &Arc<dyn Store>, n: i64, what: &str) {
        within_a_minute(what, async {
            while rows(store).await < n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }

    #[tokio::test]
    async fn events_gather_until_shutdown_writes_them_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(&dir).await;
        let (queue, task) = background_writer(&store, 10_000).await;
        queue.push(view(0));
        // Time enough for a writer that does not gather to store the first event.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(rows(&store).await, 0);
        for i in 1..10 {
            queue.push(view(i));
        }
        queue.close();
        within_a_minute("the shutdown", task).await.unwrap();
        assert_eq!(rows(&store).await, 10);
        // Closed: later events are dropped, not queued.
        queue.push(view(10));
        assert_eq!(queue.receiver.len(), 0);
    }

    #[tokio::test]
    async fn a_short_queue_is_written_as_it_comes() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(&dir).await;
        let (queue, task) = background_writer(&store, GATHER_MIN_QUEUE - 1).await;
        queue.push(view(0));
        rows_reach(&store, 1, "the first event").await;
        queue.close();
        task.await.unwrap();
    }

    /// What the backlog writer does when the background writer gets no CPU: here there is
    /// none at all.
    #[tokio::test]
    async fn the_backlog_writer_writes_only_past_an_eighth_of_the_queue_and_drains_at_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(&dir).await;
        let (queue, receiver) = Queue::new(80);
        let task = tokio::spawn(backlog(store.clone(), receiver));
        // An eighth of 80: left alone.
        for i in 0..10 {
            queue.push(view(i));
        }
        tokio::time::sleep(BACKLOG_CHECK * 4).await;
        assert_eq!(rows(&store).await, 0);
        // Past it: written down to a sixteenth.
        for i in 10..30 {
            queue.push(view(i));
        }
        within_a_minute("the backlog", async {
            while queue.receiver.len() > 5 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        // The events have left the queue; their batch may still be on its way to the store.
        rows_reach(&store, 25, "the backlog's rows").await;
        assert!(rows(&store).await >= 25);
        // Shutdown: the rest.
        queue.close();
        within_a_minute("the shutdown", task).await.unwrap();
        assert_eq!(rows(&store).await, 30);
    }

    #[tokio::test]
    async fn the_background_writer_leaves_the_queue_to_the_backlog_writer() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(&dir).await;
        // Short: written as it comes, no gathering.
        let (queue, receiver) = Queue::new(GATHER_MIN_QUEUE - 1);
        receiver
            .backlog
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let flag = receiver.backlog.clone();
        let writer_store = store.clone();
        let task = tokio::spawn(async move {
            background(&*writer_store, receiver, GATHER).await;
        });
        queue.push(view(0));
        tokio::time::sleep(BACKLOG_CHECK * 4).await;
        assert_eq!(rows(&store).await, 0);
        flag.store(false, std::sync::atomic::Ordering::Relaxed);
        rows_reach(&store, 1, "the background writer").await;
        queue.close();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn the_background_thread_writes_with_its_own_store() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("a.db").display());
        let store: Arc<dyn Store> = Arc::from(store::open(&url).await.unwrap());
        let (queue, receiver) = Queue::new(10_000);
        let done = start_background(url, store.clone(), receiver)
            .await
            .unwrap();
        for i in 0..3 {
            queue.push(view(i));
        }
        queue.close();
        within_a_minute("the writer thread", done).await.unwrap();
        assert_eq!(rows(&store).await, 3);
    }

    #[tokio::test]
    async fn an_in_memory_database_is_shared_with_the_background_thread() {
        let url = "sqlite::memory:".to_owned();
        let store: Arc<dyn Store> = Arc::from(store::open(&url).await.unwrap());
        let (queue, receiver) = Queue::new(10_000);
        let done = start_background(url, store.clone(), receiver)
            .await
            .unwrap();
        queue.push(view(0));
        queue.close();
        within_a_minute("the writer thread", done).await.unwrap();
        assert_eq!(rows(&store).await, 1);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_lowest_priority_holds_for_the_thread_and_the_threads_it_starts() {
        let nice = || {
            // SAFETY: reads the calling thread's nice value; no pointers.
            unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
        };
        let before = nice();
        let (mine, child) = std::thread::spawn(move || {
            lowest_priority();
            (nice(), std::thread::spawn(nice).join().unwrap())
        })
        .join()
        .unwrap();
        assert_eq!((mine, child), (19, 19));
        // This thread kept its own.
        assert_eq!(nice(), before);
    }
}
