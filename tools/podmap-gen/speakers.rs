//! Speakers (`podcasts/<id>/speakers/`): statistics counted from the transcripts, and the
//! profiles and metadata of the most talkative ones.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::files::{self, write_pretty};
use crate::rng::{mix, Rng};
use crate::text::{slugify, text};
use crate::transcripts::TranscriptFile;

/// What the transcripts of a podcast say about its speakers, by name.
#[derive(Default)]
pub struct Tally(BTreeMap<String, SpeakerStat>);

#[derive(Default)]
struct SpeakerStat {
    episodes: Vec<u32>,
    utterances: u64,
    words: u64,
}

impl Tally {
    /// Counts the utterances and words of the transcript of episode `number`.
    pub fn count(&mut self, number: u32, ts: &TranscriptFile) {
        for u in &ts.transcript {
            let st = self.0.entry(u.speaker.clone()).or_default();
            if st.episodes.last() != Some(&number) {
                st.episodes.push(number);
            }
            st.utterances += 1;
            st.words += u.text.split_whitespace().count() as u64;
        }
    }
}

/// Writes `dir/index.json`, the profiles `<slug>.md` of the two most talkative speakers and
/// the metadata `<slug>-meta.json` of the most talkative one.
pub fn write(dir: &Path, tally: Tally, seed: u64) -> Result<()> {
    // Sorted by total words (desc), ties by name.
    let mut index: Vec<SpeakerEntry> = tally
        .0
        .into_iter()
        .map(|(name, st)| SpeakerEntry {
            slug: slugify(&name),
            speaker: name,
            episodes_count: st.episodes.len() as u64,
            utterances_count: st.utterances,
            total_words: st.words,
            episodes: st.episodes,
        })
        .collect();
    index.sort_by_key(|e| std::cmp::Reverse(e.total_words));
    write_pretty(&dir.join("index.json"), &index, true)?;
    let mut md_rng = Rng::new(mix(seed, 3));
    for e in index.iter().take(2) {
        let md = speaker_markdown(e, &mut md_rng);
        files::write(&dir.join(format!("{}.md", e.slug)), md)?;
    }
    if let Some(e) = index.first() {
        let meta = SpeakerMeta {
            name: &e.speaker,
            slug: &e.slug,
            image: format!("https://example.org/{}.jpg", e.slug),
        };
        write_pretty(&dir.join(format!("{}-meta.json", e.slug)), &meta, false)?;
    }
    Ok(())
}

/// One speaker in `index.json` (field order = JSON key order).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpeakerEntry {
    speaker: String,
    slug: String,
    episodes_count: u64,
    utterances_count: u64,
    total_words: u64,
    episodes: Vec<u32>,
}

/// `<slug>-meta.json`.
#[derive(Serialize)]
struct SpeakerMeta<'a> {
    name: &'a str,
    slug: &'a str,
    image: String,
}

/// The profile `<slug>.md` of a speaker.
fn speaker_markdown(e: &SpeakerEntry, rng: &mut Rng) -> String {
    let confidence = if e.total_words > 10_000 {
        "hoch"
    } else if e.total_words > 1_000 {
        "mittel"
    } else {
        "niedrig"
    };
    let mut md = format!(
        "# Speaker Profile: {}\n\n## Data coverage\n\n- **Episodes**: {}\n- **Utterances**: {}\n\
         - **Words (approx.)**: {}\n- **Confidence**: {confidence}\n\n## Essence\n\n{}\n\n\
         ## Style fingerprint\n\n",
        e.speaker,
        e.episodes_count,
        e.utterances_count,
        e.total_words,
        text(rng, 80, 400, 0)
    );
    for _ in 0..3 {
        md.push_str(&format!("- {}\n", text(rng, 10, 200, 0)));
    }
    md.push_str(
        "\n## Language & register\n\n- **Language**: de\n- **Register**: informell, akademisch\n",
    );
    md
}
