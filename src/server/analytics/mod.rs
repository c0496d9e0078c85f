//! The original's analytics API, off the request path: handlers turn a request into an
//! [`Event`] and put it on a bounded queue, answering at once; the writers ([`writer`]: one
//! at the lowest priority, one for backlogs) store the queue in batches. A full queue drops the event and counts it
//! (`podmap_analytics_dropped_total`) rather than slowing requests down. Stats come from the
//! store ([`store`]: SQLite or PostgreSQL) and are cached per `days` for a short TTL that
//! inserts do not reset (the original flushed its cache on every page view, so it almost
//! never hit).
//!
//! Privacy: `ip_address` holds an HMAC of the address (see [`event::AddressPolicy`]), user
//! agents and paths are bounded, events older than the retention are deleted hourly, and
//! `ANALYTICS=off` stores nothing while the track routes still answer success.

pub mod api;
pub mod copy;
pub mod event;
pub mod geo;
pub mod settings;
pub mod store;
pub mod writer;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use metrics::{counter, describe_counter, describe_gauge, gauge};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use event::{EpisodePlay, Event, PageView};
pub use settings::{AnalyticsArgs, AnalyticsSettings};
pub use store::{Stats, Store, StoreError};

use event::{fingerprint, AddressPolicy};

/// Why analytics could not start.
#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot read or create the address key {}", path.display())]
    Secret {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the analytics writer")]
    Writer(#[source] std::io::Error),
}

/// The analytics of a server: on (a store, its writer and its stats cache) or off.
pub struct Analytics {
    active: Option<Active>,
}

struct Active {
    queue: writer::Queue,
    store: Arc<dyn Store>,
    stats: moka::future::Cache<u32, Arc<Stats>>,
    cache_stats: bool,
    addresses: AddressPolicy,
    geo: Arc<geo::Geo>,
    /// Fires when the background writer's thread has drained the queue and closed its store.
    background: tokio::sync::Mutex<Option<oneshot::Receiver<()>>>,
    backlog: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    pruner: Option<JoinHandle<()>>,
}

/// `e` and its sources, joined by `: `.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// HELP text of the analytics metrics, registered at zero so that they are scraped (and a
/// dashboard has a series) before the first event.
pub fn describe_metrics() {
    describe_counter!(writer::WRITTEN, "Analytics events written to the store");
    describe_counter!(
        writer::DROPPED,
        "Analytics events dropped: the queue was full, or the store failed at shutdown"
    );
    describe_gauge!(
        writer::QUEUE_DEPTH,
        "Analytics events waiting to be written"
    );
    counter!(writer::WRITTEN).increment(0);
    counter!(writer::DROPPED).increment(0);
    gauge!(writer::QUEUE_DEPTH).set(0.0);
}

impl Analytics {
    /// Analytics off: the track routes answer success and nothing is stored.
    pub fn off() -> Analytics {
        Analytics { active: None }
    }

    /// Opens the store `settings` name and starts its writer (and pruner); off when
    /// `settings.enabled` is false. Call inside a tokio runtime.
    pub async fn open(settings: &AnalyticsSettings) -> Result<Analytics, AnalyticsError> {
        if !settings.enabled {
            return Ok(Analytics::off());
        }
        let store: Arc<dyn Store> = Arc::from(store::open(&settings.database_url).await?);
        let addresses = if settings.store_raw_ip {
            AddressPolicy::Raw
        } else if let Some(secret) = &settings.ip_secret {
            AddressPolicy::Keyed(secret.as_bytes().to_vec())
        } else {
            let path = secret_path(&settings.database_url);
            let key = event::load_or_create_secret(&path)
                .map_err(|source| AnalyticsError::Secret { path, source })?;
            AddressPolicy::Keyed(key)
        };
        let (geoip, cities) = (
            settings.geoip_db_path.clone(),
            settings.world_cities_path.clone(),
        );
        // The GeoIP database is read whole (tens of MB): off the async workers.
        let geo = tokio::task::spawn_blocking(move || geo::Geo::load(&geoip, &cities))
            .await
            .unwrap_or_default();
        let (queue, receiver) = writer::Queue::new(settings.queue_capacity);
        let background = writer::start_background(
            settings.database_url.clone(),
            store.clone(),
            receiver.clone(),
        )
        .await?;
        let backlog = tokio::spawn(writer::backlog(store.clone(), receiver));
        let pruner = (settings.retention_days > 0)
            .then(|| tokio::spawn(writer::prune(store.clone(), settings.retention_days)));
        let stats = moka::future::Cache::builder()
            .max_capacity(64)
            .time_to_live(settings.stats_ttl.max(std::time::Duration::from_millis(1)))
            .build();
        Ok(Analytics {
            active: Some(Active {
                queue,
                store,
                stats,
                cache_stats: !settings.stats_ttl.is_zero(),
                addresses,
                geo: Arc::new(geo),
                background: tokio::sync::Mutex::new(Some(background)),
                backlog: tokio::sync::Mutex::new(Some(backlog)),
                pruner,
            }),
        })
    }

    pub fn is_on(&self) -> bool {
        self.active.is_some()
    }

    /// Queues a page view; never waits.
    pub fn page_view(&self, client: IpAddr, header_ua: Option<&str>, body: api::TrackIn) {
        let Some(active) = &self.active else { return };
        let user_agent = api::user_agent(body.user_agent, header_ua);
        let clean = |v: Option<String>| v.map(api::text);
        let (country, city) = active.geo.locate(client);
        active.enqueue(Event::PageView(PageView {
            user_fingerprint: fingerprint(client, &user_agent),
            path: api::text(body.path),
            route_name: clean(body.route_name),
            podcast: clean(body.podcast),
            episode: clean(body.episode),
            country,
            city,
            referrer: clean(body.referrer),
            ip_address: active.addresses.stored(client),
            user_agent,
            created_at: event::now(),
        }));
    }

    /// Queues an episode play; never waits.
    pub fn play(&self, client: IpAddr, header_ua: Option<&str>, body: api::PlayIn) {
        let Some(active) = &self.active else { return };
        let user_agent = api::user_agent(body.user_agent, header_ua);
        active.enqueue(Event::EpisodePlay(EpisodePlay {
            user_fingerprint: fingerprint(client, &user_agent),
            podcast: api::text(body.podcast),
            episode: api::text(body.episode),
            ip_address: active.addresses.stored(client),
            user_agent,
            created_at: event::now(),
        }));
    }

    /// The stats over the last `days` days (all when `None`), from the cache while fresh;
    /// `None` when analytics is off.
    pub async fn stats(&self, days: Option<u32>) -> Option<Result<Arc<Stats>, Arc<StoreError>>> {
        let active = self.active.as_ref()?;
        let compute = async {
            let since = days.map(event::days_ago);
            let mut stats = active.store.stats(since).await?;
            for place in &mut stats.locations {
                let found = place
                    .city
                    .as_deref()
                    .and_then(|city| active.geo.coordinates(&place.country, city));
                if let Some((lat, lng)) = found {
                    place.latitude = Some(lat);
                    place.longitude = Some(lng);
                }
            }
            Ok::<_, StoreError>(Arc::new(stats))
        };
        Some(if active.cache_stats {
            active
                .stats
                .try_get_with(days.unwrap_or(u32::MAX), compute)
                .await
        } else {
            compute.await.map_err(Arc::new)
        })
    }

    /// Writes `count` synthetic page views spread over the last 30 days, in one
    /// transaction; `None` when analytics is off.
    pub async fn test_data(&self, count: u32) -> Option<Result<(), StoreError>> {
        let active = self.active.as_ref()?;
        let now = chrono::Utc::now();
        let events: Vec<Event> = (0..count)
            .map(|i| {
                let n = u64::from(i).wrapping_mul(2_654_435_761) ^ 0x9e37_79b9;
                let client = IpAddr::from([10, 0, (n >> 8) as u8, n as u8]);
                let user_agent = format!("Mozilla/5.0 (test {})", n % 7);
                let (path, route) = api::TEST_ROUTES[(n % 5) as usize];
                let city = api::TEST_CITIES[(n / 5 % api::TEST_CITIES.len() as u64) as usize];
                let age = chrono::Duration::seconds((n % (30 * 86_400)) as i64);
                Event::PageView(PageView {
                    user_fingerprint: fingerprint(client, &user_agent),
                    path: path.to_owned(),
                    route_name: Some(route.to_owned()),
                    podcast: None,
                    episode: None,
                    country: Some("DE".to_owned()),
                    city: Some(city.to_owned()),
                    referrer: None,
                    ip_address: active.addresses.stored(client),
                    user_agent,
                    created_at: (now - age).to_rfc3339(),
                })
            })
            .collect();
        Some(active.store.insert(&events).await)
    }

    /// Stops taking events, writes what is queued and closes the store. Later events are
    /// dropped and counted.
    pub async fn shutdown(&self) {
        let Some(active) = &self.active else { return };
        active.queue.close();
        if let Some(background) = active.background.lock().await.take() {
            if background.await.is_err() {
                tracing::error!("analytics: the background writer's thread failed");
            }
        }
        if let Some(backlog) = active.backlog.lock().await.take() {
            if let Err(e) = backlog.await {
                tracing::error!("analytics: the backlog writer failed: {e}");
            }
        }
        if let Some(pruner) = &active.pruner {
            pruner.abort();
        }
        active.store.close().await;
    }
}

impl Active {
    fn enqueue(&self, event: Event) {
        self.queue.push(event);
    }
}

/// `analytics.secret` beside the SQLite file, or in the working directory.
fn secret_path(url: &str) -> PathBuf {
    let dir = store::sqlite_file(url)
        .and_then(|f| f.parent().map(PathBuf::from))
        .unwrap_or_default();
    dir.join("analytics.secret")
}
