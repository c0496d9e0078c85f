//! The one task that writes events: it takes what the handlers queued, in batches of up to
//! [`BATCH`], one transaction per batch. Events that find the writer idle are let gather for
//! [`GATHER`] before their batch is written (see there). A failed batch is kept and retried
//! with backoff while the handlers go on answering (new events wait in the queue, or are
//! dropped and counted when it is full). On shutdown the queue is closed and drained into the
//! store.

use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, gauge};
use tokio::sync::{mpsc, oneshot};

use super::event::{days_ago, Event};
use super::store::Store;

/// Events written in one transaction at most.
pub const BATCH: usize = 500;
/// How long the first event of a batch waits for others before the batch is written, unless a
/// full batch is queued sooner. A transaction costs the same server CPU whatever it holds (for
/// SQLite: hand-offs to its worker thread and back, page reads, a WAL append): written as they
/// came, at a few hundred events a second each event was a transaction of its own, and the
/// writer cost more CPU than answering the requests. Gathering makes that a few transactions
/// a second; the rows land this much later, well within the stats' cache TTL. The writer is
/// not woken by the events that arrive meanwhile.
pub const GATHER: Duration = Duration::from_millis(100);
/// Gathering needs room: events that come while the writer waits must fit in the queue. A
/// queue of this length holds what 10,000 events a second bring in one [`GATHER`] (the
/// default, 10,000, what 100,000 bring); with a shorter one (`--analytics-queue`) every batch
/// is written at once, as it comes.
const GATHER_MIN_QUEUE: usize = 2 * BATCH;
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

/// Writes what arrives on `queue` until `stop` fires (or its sender is gone), then drains
/// what is still queued.
pub async fn run(store: Arc<dyn Store>, queue: mpsc::Receiver<Event>, stop: oneshot::Receiver<()>) {
    write_queue(store, queue, stop, GATHER).await;
}

/// [`run`], gathering for `gather` instead of [`GATHER`].
async fn write_queue(
    store: Arc<dyn Store>,
    mut queue: mpsc::Receiver<Event>,
    stop: oneshot::Receiver<()>,
    gather: Duration,
) {
    let mut stop = Some(stop);
    let mut batch = Vec::with_capacity(BATCH);
    let gather = (queue.max_capacity() >= GATHER_MIN_QUEUE).then_some(gather);
    loop {
        if batch.is_empty() {
            let next = match stop.as_mut() {
                Some(signal) => tokio::select! {
                    event = queue.recv() => event,
                    _ = signal => {
                        stop = None;
                        // Later sends fail; what is queued is still received.
                        queue.close();
                        continue;
                    }
                },
                None => queue.recv().await,
            };
            match next {
                Some(event) => batch.push(event),
                None => break,
            }
            fill(&mut batch, &mut queue);
            if let (Some(gather), true) = (gather, batch.len() < BATCH) {
                // Not woken by each event meanwhile: only by the time or the stop signal.
                if let Some(signal) = stop.as_mut() {
                    tokio::select! {
                        _ = tokio::time::sleep(gather) => {}
                        _ = signal => {
                            stop = None;
                            queue.close();
                        }
                    }
                }
            }
        }
        fill(&mut batch, &mut queue);
        gauge!(QUEUE_DEPTH).set(queue.len() as f64);
        write(&*store, &mut batch, &mut stop, &mut queue).await;
    }
    gauge!(QUEUE_DEPTH).set(0.0);
}

/// Moves queued events into `batch` until it holds [`BATCH`] or the queue is empty.
fn fill(batch: &mut Vec<Event>, queue: &mut mpsc::Receiver<Event>) {
    while batch.len() < BATCH {
        match queue.try_recv() {
            Ok(event) => batch.push(event),
            Err(_) => break,
        }
    }
}

/// Writes `batch` and empties it, retrying with backoff; once shutting down (also when the
/// signal comes during the retries), gives up after [`ATTEMPTS_AT_SHUTDOWN`] attempts and
/// counts the batch as dropped, so a dead database cannot hold the exit.
async fn write(
    store: &dyn Store,
    batch: &mut Vec<Event>,
    stop: &mut Option<oneshot::Receiver<()>>,
    queue: &mut mpsc::Receiver<Event>,
) {
    let mut backoff = FIRST_BACKOFF;
    let mut attempts = 0;
    loop {
        let shutting_down = stop.is_none();
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
                let pause = tokio::time::sleep(backoff);
                match stop.as_mut() {
                    Some(signal) => tokio::select! {
                        _ = pause => {}
                        _ = signal => {
                            *stop = None;
                            queue.close();
                            // The last attempts come quickly: the process is exiting.
                            attempts = 0;
                            backoff = FIRST_BACKOFF / 2;
                        }
                    },
                    None => pause.await,
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

    /// A SQLite store in `dir`, and a writer on a queue of `capacity` that gathers for an
    /// hour: whatever it writes before the test stops it, it wrote without gathering.
    async fn writer(
        dir: &tempfile::TempDir,
        capacity: usize,
    ) -> (
        Arc<dyn Store>,
        mpsc::Sender<Event>,
        oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let url = format!("sqlite://{}", dir.path().join("a.db").display());
        let store: Arc<dyn Store> = Arc::from(store::open(&url).await.unwrap());
        let (queue, receiver) = mpsc::channel(capacity);
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(write_queue(
            store.clone(),
            receiver,
            stopped,
            Duration::from_secs(3600),
        ));
        (store, queue, stop, task)
    }

    /// Fails the test instead of waiting for the hour of gathering.
    async fn within_a_minute<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(60), f)
            .await
            .unwrap_or_else(|_| panic!("{what} waited for the gathering time"))
    }

    #[tokio::test]
    async fn events_gather_until_the_stop_signal_writes_them_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (store, queue, stop, task) = writer(&dir, 10_000).await;
        queue.try_send(view(0)).unwrap();
        // Time enough for a writer that does not gather to store the first event.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(store.rows(Table::PageViews).await.unwrap(), 0);
        for i in 1..10 {
            queue.try_send(view(i)).unwrap();
        }
        stop.send(()).unwrap();
        within_a_minute("the shutdown", task).await.unwrap();
        assert_eq!(store.rows(Table::PageViews).await.unwrap(), 10);
    }

    #[tokio::test]
    async fn a_short_queue_is_written_as_it_comes() {
        let dir = tempfile::tempdir().unwrap();
        let (store, queue, stop, task) = writer(&dir, GATHER_MIN_QUEUE - 1).await;
        queue.try_send(view(0)).unwrap();
        within_a_minute("the first event", async {
            while store.rows(Table::PageViews).await.unwrap() < 1 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        stop.send(()).unwrap();
        task.await.unwrap();
    }
}
