//! The closing Markdown summary: both servers side by side, with ratios and targets. Split
//! from `main.rs` by concern.

use std::time::Duration;

use crate::load::Load;
use crate::{Outcome, QUERIES};

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

pub fn summary(json: &Outcome, mmap: &Outcome, clients: usize, duration: Duration) {
    let faster = |j: Duration, m: Duration| j.as_secs_f64() / m.as_secs_f64().max(1e-9);
    let smaller = |j: u64, m: u64| j as f64 / m.max(1) as f64;
    let first_ratio = faster(json.first_answer, mmap.first_answer);
    let throughput_ratio = mmap.load.per_second() / json.load.per_second();
    println!(
        "\n## podmap serve bench summary ({clients} clients, {:.0} s per server, \
         `POST /api/episodes/search`, cached embeddings)\n",
        duration.as_secs_f64()
    );
    println!("| measure | JSON server | mmap server | ratio |");
    println!("|---|---:|---:|---:|");
    println!(
        "| process start → first answer | {} | {} | **{first_ratio:.0}× faster** |",
        ms(json.first_answer),
        ms(mmap.first_answer)
    );
    println!(
        "| … of which the first request itself | {} | {} | |",
        ms(json.first_request),
        ms(mmap.first_request)
    );
    println!(
        "| throughput | {:.1} req/s | {:.1} req/s | **{throughput_ratio:.2}×** |",
        json.load.per_second(),
        mmap.load.per_second()
    );
    for p in [50.0, 90.0, 99.0] {
        let (j, m) = (json.load.percentile(p), mmap.load.percentile(p));
        println!(
            "| latency p{p:.0} | {} | {} | {:.2}× lower |",
            ms(j),
            ms(m),
            faster(j, m)
        );
    }
    let (j, m) = (json.load.cpu_per_request(), mmap.load.cpu_per_request());
    println!(
        "| server CPU per request (user + sys) | {} | {} | {:.2}× less |",
        ms(j),
        ms(m),
        faster(j, m)
    );
    let cores = |l: &Load| {
        format!(
            "{:.2} / {:.2} / {:.2}",
            l.cores(l.server_cpu),
            l.cores(l.client_cpu),
            l.others()
        )
    };
    println!(
        "| cores busy: server / load generator / other processes | {} | {} | |",
        cores(&json.load),
        cores(&mmap.load)
    );
    println!(
        "| requests measured (errors) | {} ({}) | {} ({}) | |",
        json.load.requests, json.load.errors, mmap.load.requests, mmap.load.errors
    );
    let (jm, mm) = (&json.memory, &mmap.memory);
    println!(
        "| VmRSS after the run | {} | {} | {:.1}× smaller |",
        mib(jm.vm_rss_kib),
        mib(mm.vm_rss_kib),
        smaller(jm.vm_rss_kib, mm.vm_rss_kib)
    );
    println!(
        "| RssAnon after the run | {} | {} | {:.1}× smaller |",
        mib(jm.rss_anon_kib),
        mib(mm.rss_anon_kib),
        smaller(jm.rss_anon_kib, mm.rss_anon_kib)
    );
    println!(
        "| RssFile after the run (page cache) | {} | {} | |",
        mib(jm.rss_file_kib),
        mib(mm.rss_file_kib)
    );
    println!(
        "| embedding calls: warm-up / measured | {} / {} | {} / {} | |",
        json.warmup_calls, json.measured_calls, mmap.warmup_calls, mmap.measured_calls
    );
    let same = json
        .top10
        .iter()
        .zip(&mmap.top10)
        .filter(|(a, b)| a == b)
        .count();
    for outcome in [json, mmap] {
        if outcome.load.others() > 0.2 {
            println!(
                "\n**Warning:** other processes kept {:.2} of the {} cores busy during the {} \
                 server's run; its throughput and latencies are understated (CPU per request is \
                 the steadier figure).",
                outcome.load.others(),
                std::thread::available_parallelism().map_or(0, |n| n.get()),
                outcome.name
            );
        }
    }
    println!("\nSame top-10 episodes from both servers: {same} of {QUERIES} queries.");
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "Targets: throughput ≥ 3× — {} ({throughput_ratio:.2}×); first answer ≥ 100× — {} \
         ({first_ratio:.0}×); p50 and p99 lower on mmap — {}.",
        verdict(throughput_ratio >= 3.0),
        verdict(first_ratio >= 100.0),
        verdict(
            mmap.load.percentile(50.0) < json.load.percentile(50.0)
                && mmap.load.percentile(99.0) < json.load.percentile(99.0)
        )
    );
}
