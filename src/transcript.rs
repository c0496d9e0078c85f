//! Transcript times and excerpts, with the original server's rules.
//!
//! An excerpt is the text of a time window `[start, end]` of one episode, as chat sources show
//! it: entries with `start − 1 ms ≤ t ≤ end + 1 ms` (entries whose time is empty or does not
//! parse are skipped), optionally only one speaker's (trimmed, ASCII case ignored), each line
//! `[<time as written>] <speaker, or "unknown" when blank>: <trimmed text>`, lines joined with
//! `\n`. Once the text reaches `max_chars` bytes it is cut to at most `max_chars` bytes on a
//! char boundary and `\n…` is appended. When nothing matches, a placeholder names the window.
//!
//! The original walks the whole transcript and re-parses every time string on each call; an
//! archived transcript ([`crate::index::Transcript::excerpt`]) has its times parsed at
//! conversion and finds the window's first entry by binary search (when the times never
//! decrease, as in all real data; otherwise by the same linear walk, so the result is the same
//! either way). Both paths build their lines with the rules kept here.

use std::fmt::Write as _;

/// Tolerance of the window bounds, in seconds.
pub(crate) const EPSILON: f64 = 0.001;

/// Seconds of a transcript time: `H:MM:SS`, `M:SS` or a bare number of seconds, each part an
/// integer. Empty or anything else is `None` (untimed).
pub fn parse_time(time: &str) -> Option<f64> {
    let time = time.trim();
    if time.is_empty() {
        return None;
    }
    let mut parts = [0i64; 3];
    let mut count = 0;
    for part in time.split(':') {
        if count == 3 {
            return None;
        }
        parts[count] = part.parse().ok()?;
        count += 1;
    }
    let [a, b, c] = parts.map(|p| p as f64);
    Some(match count {
        1 => a,
        2 => a * 60.0 + b,
        _ => a * 3600.0 + b * 60.0 + c,
    })
}

/// `M:SS` below an hour, `H:MM:SS` from an hour; `0:00` for negative or non-finite input.
pub fn format_hms(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "0:00".to_owned();
    }
    let s = seconds.floor() as u64;
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// What an excerpt covers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window<'a> {
    pub start: f64,
    pub end: f64,
    /// Only this speaker's lines (compared trimmed, ignoring ASCII case).
    pub speaker: Option<&'a str>,
    /// Length limit in bytes.
    pub max_chars: usize,
}

impl Window<'_> {
    /// Whether a line of `speaker` (`None`: the entry names none) belongs in the excerpt:
    /// always without a speaker filter; else when the trimmed name equals the filter, ignoring
    /// ASCII case (an unnamed entry counts as the empty name). The one speaker rule of both
    /// the archive and the JSON path.
    pub fn accepts_speaker(&self, speaker: Option<&str>) -> bool {
        self.speaker
            .is_none_or(|filter| speaker.unwrap_or("").trim().eq_ignore_ascii_case(filter))
    }
}

/// The placeholder excerpt for a window with no matching entries.
pub fn placeholder(window: &Window) -> String {
    let filter = window
        .speaker
        .map(|s| format!(" (filtered by speaker: {s})"))
        .unwrap_or_default();
    format!(
        "[no transcript entries found in window {} - {}{filter}]",
        format_hms(window.start),
        format_hms(window.end)
    )
}

/// An excerpt being written: lines in the original's format under its length rule.
pub(crate) struct Lines<'w> {
    out: String,
    window: &'w Window<'w>,
}

impl<'w> Lines<'w> {
    pub(crate) fn new(window: &'w Window<'w>) -> Self {
        Lines {
            out: String::new(),
            window,
        }
    }

    /// Appends `[<time>] <speaker or "unknown">: <trimmed text>`. Returns true when the
    /// excerpt has reached its length limit (it is then cut and closed with `\n…`).
    pub(crate) fn push(&mut self, time: &str, speaker: Option<&str>, text: &str) -> bool {
        if !self.out.is_empty() {
            self.out.push('\n');
        }
        let who = speaker
            .filter(|s| !s.trim().is_empty())
            .unwrap_or("unknown");
        let _ = write!(self.out, "[{time}] {who}: {}", text.trim());
        if self.out.len() < self.window.max_chars {
            return false;
        }
        let mut cut = self.window.max_chars;
        while !self.out.is_char_boundary(cut) {
            cut -= 1;
        }
        self.out.truncate(cut);
        self.out.push_str("\n…");
        true
    }

    /// The excerpt, or the placeholder when nothing was written.
    pub(crate) fn finish(self) -> String {
        if self.out.trim().is_empty() {
            placeholder(self.window)
        } else {
            self.out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_times_like_the_original() {
        assert_eq!(parse_time("0:00:11"), Some(11.0));
        assert_eq!(parse_time("1:02:03"), Some(3723.0));
        assert_eq!(parse_time("12:34"), Some(754.0));
        assert_eq!(parse_time(" 42 "), Some(42.0));
        for bad in ["", "  ", "1:2:3:4", "1.5", "a:00", "1::2", "1: 2"] {
            assert_eq!(parse_time(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn formats_hms() {
        assert_eq!(format_hms(0.0), "0:00");
        assert_eq!(format_hms(59.9), "0:59");
        assert_eq!(format_hms(754.0), "12:34");
        assert_eq!(format_hms(3723.0), "1:02:03");
        assert_eq!(format_hms(-1.0), "0:00");
        assert_eq!(format_hms(f64::NAN), "0:00");
    }

    #[test]
    fn placeholder_names_window_and_filter() {
        let w = Window {
            start: 60.0,
            end: 3600.0,
            speaker: Some("Tim"),
            max_chars: 10,
        };
        assert_eq!(
            placeholder(&w),
            "[no transcript entries found in window 1:00 - 1:00:00 (filtered by speaker: Tim)]"
        );
    }
}

/// The original data path for transcripts, kept on purpose as the baseline: the whole
/// `<n>-ts.json` parsed into entries, and a linear walk that parses each time on every call.
/// Tests hold the archived excerpts against it; benchmarks measure against it.
pub mod json {
    use std::path::Path;

    use serde::Deserialize;

    use super::{parse_time, Lines, Window, EPSILON};
    use crate::error::{Error, Result};

    #[derive(Debug, Clone, Deserialize)]
    struct TranscriptFile {
        transcript: Vec<Entry>,
    }

    /// A transcript entry as the original server deserializes it.
    #[derive(Debug, Clone, Deserialize)]
    pub struct Entry {
        pub speaker: Option<String>,
        pub time: String,
        pub text: String,
    }

    /// Parses a whole transcript file.
    pub fn load(path: &Path) -> Result<Vec<Entry>> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let file: TranscriptFile =
            serde_json::from_slice(&bytes).map_err(|e| Error::json(path, &e))?;
        Ok(file.transcript)
    }

    /// The excerpt by a plain walk over every entry.
    pub fn excerpt(entries: &[Entry], window: &Window) -> String {
        let mut lines = Lines::new(window);
        for e in entries {
            let Some(t) = parse_time(&e.time) else {
                continue;
            };
            if t + EPSILON < window.start {
                continue;
            }
            if t - EPSILON > window.end {
                break;
            }
            let speaker = e.speaker.as_deref();
            if !window.accepts_speaker(speaker) {
                continue;
            }
            if lines.push(&e.time, speaker, &e.text) {
                break;
            }
        }
        lines.finish()
    }
}
