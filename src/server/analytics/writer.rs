//! The one task that writes events: it takes what the handlers queued, in batches of up to
//! [`BATCH`], one transaction per batch. A failed batch is kept and retried with backoff
//! while the handlers go on answering (new events wait in the queue, or are dropped and
//! counted when it is full). On shutdown the queue is closed and drained into the store.

use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, gauge};
use tokio::sync::{mpsc, oneshot};

use super::event::{days_ago, Event};
use super::store::Store;

/// Events written in one transaction at most.
pub const BATCH: usize = 500;
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
pub async fn run(
    store: Arc<dyn Store>,
    mut queue: mpsc::Receiver<Event>,
    stop: oneshot::Receiver<()>,
) {
    let mut stop = Some(stop);
    let mut batch = Vec::with_capacity(BATCH);
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
        }
        while batch.len() < BATCH {
            match queue.try_recv() {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        gauge!(QUEUE_DEPTH).set(queue.len() as f64);
        write(&*store, &mut batch, &mut stop, &mut queue).await;
    }
    gauge!(QUEUE_DEPTH).set(0.0);
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
