//! German-like text: the vocabulary (with umlauts, ß and typographic quotes, as in the real
//! archives) and the sentences, texts and topic phrases made from it, plus the slugs of names.

use crate::rng::Rng;

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
pub const COARSE_SUBJECTS: &[&str] = &[
    "Raumfahrt", "Wissenschaft", "Gesellschaft", "Technik", "Politik", "Bildung", "Klima",
    "Astronomie", "Physik", "Medizin", "Science", "Geschichte",
];

#[rustfmt::skip]
pub const FIRST_NAMES: &[&str] = &[
    "Jörg", "Jürgen", "Günter", "Björn", "Sören", "Käthe", "Anna", "Lena", "Markus", "Stefan",
    "Annette", "Lavinia", "Jöran", "Ulrike", "Hans-Jörg", "Franz Josef", "Bärbel", "Jan", "Özlem",
    "Grete", "Matthias", "Ilse", "Tobias", "Maëlle",
];

#[rustfmt::skip]
pub const LAST_NAMES: &[&str] = &[
    "Müller", "Schäfer", "Köhler", "Weiß", "Groß", "Krämer", "Fuß", "Böhm", "Lösch", "Wörner",
    "Hüttner", "Schröder", "O'Brien", "D’Angelo", "Muuß-Merholz", "Vogt", "Heisenberg",
    "Dannerbauer", "Güntürkün", "Kröpelin", "Quaschning", "Lindner", "Zimmermann", "Öztürk",
];

fn capitalize(w: &str) -> String {
    let mut c = w.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

pub fn noun(rng: &mut Rng) -> String {
    (*rng.pick(NOUNS)).to_string()
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
            noun(rng)
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
pub fn text(rng: &mut Rng, target: usize, max: usize, newline_percent: u64) -> String {
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
pub fn topic_phrase(rng: &mut Rng) -> String {
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

/// Speaker slug: lowercase, drop ' and ’, runs of anything other than
/// [a-z0-9äöüß] become '-', dashes trimmed.
pub fn slugify(s: &str) -> String {
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
}
