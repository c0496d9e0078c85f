//! The process's own memory figures, for reports and benchmarks.
//!
//! Resident memory splits into anonymous pages (heap: what the JSON path fills) and file pages
//! (mapped archives: shared with the page cache, dropped under pressure, not the process's own).

use serde::Serialize;

/// Memory of this process in KiB, from `/proc/self/status` (Linux); zeros elsewhere.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ProcessMemory {
    /// Peak resident set (`VmHWM`).
    pub peak_rss_kib: u64,
    /// Resident set now (`VmRSS`): anonymous, file-backed and shared memory.
    pub rss_kib: u64,
    /// Resident anonymous memory (`RssAnon`).
    pub rss_anon_kib: u64,
    /// Resident file-backed memory (`RssFile`), mapped archives included.
    pub rss_file_kib: u64,
}

impl ProcessMemory {
    pub fn current() -> Self {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        Self::parse(&status)
    }

    fn parse(status: &str) -> Self {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        ProcessMemory {
            peak_rss_kib: field("VmHWM:"),
            rss_kib: field("VmRSS:"),
            rss_anon_kib: field("RssAnon:"),
            rss_file_kib: field("RssFile:"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_status() {
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1536 kB\nRssAnon:\t  1024 kB\nRssFile:\t   512 kB\n";
        assert_eq!(
            ProcessMemory::parse(status),
            ProcessMemory {
                peak_rss_kib: 2048,
                rss_kib: 1536,
                rss_anon_kib: 1024,
                rss_file_kib: 512
            }
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let now = ProcessMemory::current();
        assert!(now.peak_rss_kib > 0 && now.rss_kib > 0);
    }
}
