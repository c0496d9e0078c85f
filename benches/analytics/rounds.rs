//! The search rounds of the analytics bench: closed-loop searches for a while, alone or
//! beside the open-loop track load, with who used the CPU meanwhile.

use std::time::{Duration, Instant};

use crate::load::{http_client, percentile_ms, send, Kind, LoadChild, Report, Spec};
use crate::measure::{cpu_time, machine_cpu};
use crate::process::Server;
use crate::Config;

/// What runs beside the searches of a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    Alone,
    /// The track load, sent to a server with analytics off: the HTTP requests alone.
    BesideOff,
    /// The track load, stored in SQLite: what the requirement is about.
    BesideSqlite,
}

impl Setting {
    pub const ALL: [Setting; 3] = [Setting::Alone, Setting::BesideOff, Setting::BesideSqlite];

    pub fn name(self) -> &'static str {
        match self {
            Setting::Alone => "alone",
            Setting::BesideOff => "beside, analytics off",
            Setting::BesideSqlite => "beside, SQLite",
        }
    }
}

/// One round of searches: closed loops for a while, with or without the load.
pub struct Round {
    pub setting: Setting,
    /// Sorted latencies of the searches.
    pub latencies: Vec<Duration>,
    pub server_cores: f64,
    /// This process: the search clients.
    pub client_cores: f64,
    pub load_cores: f64,
    /// Cores busy with anything else than the server, the load child and this process.
    pub other_cores: f64,
    pub load: Option<Report>,
}

impl Round {
    pub fn p(&self, p: f64) -> f64 {
        percentile_ms(&self.latencies, p)
    }
}

/// `config.search_clients` closed loops of searches on `server` for `config.round_secs`,
/// with the track load sent to the same server unless `setting` is `Alone`.
pub async fn search_round(server: &Server, config: &Config, setting: Setting) -> Round {
    let secs = Duration::from_secs_f64(config.round_secs);
    let mut child = (setting != Setting::Alone).then(|| {
        LoadChild::spawn(&Spec {
            addr: server.addr(),
            kind: Kind::Track,
            rate: Some(config.rate),
            clients: None,
            secs: config.round_secs,
        })
    });
    let load_pid = child.as_ref().map(LoadChild::pid);
    let load_before = load_pid.map(cpu_time).unwrap_or_default();
    let (server_before, self_before) = (cpu_time(server.pid()), cpu_time(std::process::id()));
    let (machine_before, _) = machine_cpu();
    let start = Instant::now();
    if let Some(child) = &mut child {
        child.go();
    }
    let until = start + secs;
    let client = http_client(config.search_clients);
    let tasks: Vec<_> = (0..config.search_clients)
        .map(|c| {
            let (client, addr) = (client.clone(), server.addr());
            tokio::spawn(async move {
                let (mut latencies, mut errors) = (Vec::new(), 0usize);
                let mut i = c;
                while Instant::now() < until {
                    match send(&client, addr, Kind::Search, i).await {
                        Some(latency) => latencies.push(latency),
                        None => errors += 1,
                    }
                    i += 1;
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        let (l, errors) = task.await.unwrap();
        assert_eq!(errors, 0, "searches failed");
        latencies.extend(l);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let server_cpu = cpu_time(server.pid()) - server_before;
    let self_cpu = cpu_time(std::process::id()) - self_before;
    // The child's time read while it still runs (it waits to be asked for its report).
    let load_cpu = load_pid.map(cpu_time).unwrap_or_default() - load_before;
    let machine = machine_cpu().0 - machine_before;
    let load = child.map(LoadChild::finish);
    latencies.sort_unstable();
    Round {
        setting,
        latencies,
        server_cores: server_cpu.as_secs_f64() / elapsed,
        client_cores: self_cpu.as_secs_f64() / elapsed,
        load_cores: load_cpu.as_secs_f64() / elapsed,
        other_cores: machine
            .saturating_sub(server_cpu + self_cpu + load_cpu)
            .as_secs_f64()
            / elapsed,
        load,
    }
}
