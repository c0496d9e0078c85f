//! Transcripts (`podcasts/<id>/episodes/<n>-ts.json`): who says what when, in German-like
//! text.

use serde::Serialize;

use crate::episodes::{Episode, HOST};
use crate::rng::{mix, Rng};
use crate::text::text;
use crate::time::ts_time;

/// The name of the transcript file of episode `number`.
pub fn file_name(number: u32) -> String {
    format!("{number}-ts.json")
}

/// `<n>-ts.json` (field order = JSON key order).
#[derive(Serialize)]
pub struct TranscriptFile {
    pub transcript: Vec<Utterance>,
}

#[derive(Serialize)]
pub struct Utterance {
    pub speaker: String,
    pub time: String,
    pub text: String,
}

/// The transcript of `ep`: `entries` utterances, the host first; without time stamps unless
/// `timed`.
pub fn generate(ep: &Episode, seed: u64, entries: u32, timed: bool) -> TranscriptFile {
    let mut rng = Rng::new(mix(seed, 1_000_000 + u64::from(ep.number)));
    let short_times = rng.percent(20);
    let mut t = rng.range(15, 45);
    let step = (ep.duration_sec / u64::from(entries.max(1))).max(1);
    let mut transcript = Vec::with_capacity(entries as usize);
    let mut prev_host = false;
    for i in 0..entries {
        let speaker = if i == 0 || (!prev_host && rng.percent(75)) {
            HOST.to_string()
        } else {
            rng.pick(&ep.guests).clone()
        };
        prev_host = speaker == HOST;
        let target = if rng.percent(30) {
            rng.range(20, 80)
        } else {
            rng.range(80, 600)
        } as usize;
        let body = text(&mut rng, target, 600, 15);
        let time = if timed {
            ts_time(t, short_times)
        } else {
            String::new()
        };
        transcript.push(Utterance {
            speaker,
            time,
            text: body,
        });
        if !rng.percent(8) {
            t = (t + rng.range(1, step * 2)).min(ep.duration_sec);
        }
    }
    TranscriptFile { transcript }
}
