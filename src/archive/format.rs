//! The archive header: a fixed 4096-byte block, little-endian, hand-encoded.
//!
//! The header is deliberately not rkyv: it must be readable before anything else is trusted,
//! by any version of podmap, so that a newer or foreign file is refused with a precise reason.
//! All multi-byte fields are little-endian; offsets are from the start of the file.
//!
//! | offset | size | field                                              |
//! |-------:|-----:|----------------------------------------------------|
//! | 0      | 8    | magic `\x89PODMAP\n`                               |
//! | 8      | 4    | format version                                     |
//! | 12     | 4    | header size (4096)                                 |
//! | 16     | 4    | rkyv format features (see [`RKYV_FEATURES`])       |
//! | 20     | 4    | flags (reserved, 0)                                |
//! | 24     | 8    | schema hash of the rkyv records                    |
//! | 32     | 4    | dimensions (0 without embeddings)                  |
//! | 36     | 4    | section count                                      |
//! | 40     | 8    | item count                                         |
//! | 48     | 8    | items with an embedding                            |
//! | 56     | 8    | total length of the input files in bytes           |
//! | 64     | 8    | input fingerprint: xxh3 of every input's name, length and mtime |
//! | 72     | 4    | model name length (≤ 256)                          |
//! | 76     | 4    | reserved, 0                                        |
//! | 80     | 256  | model name, UTF-8, zero-padded                     |
//! | 336    | 512  | section table: 16 entries × 32 bytes               |
//! | 4088   | 8    | xxh3-64 of bytes 0..4088                           |
//!
//! A section entry is `kind u32, align u32, offset u64, length u64, xxh3-64 u64`.

use crate::error::ArchiveFault;

pub const MAGIC: [u8; 8] = *b"\x89PODMAP\n";
/// Version of the layout described here. Bump it on any change a reader must know about.
pub const FORMAT_VERSION: u32 = 3;
/// Oldest version this build still reads. Version 1 had no episodes, transcripts or
/// speakers, version 2 no quantized codes; archives are derived data, so those are converted
/// again rather than upgraded.
pub const MIN_FORMAT_VERSION: u32 = 3;
pub const HEADER_SIZE: usize = 4096;
pub const MAX_MODEL_LEN: usize = 256;
/// Largest embedding dimension accepted. Real models use up to a few thousand; the cap stops a
/// hostile `embeddingDimensions` from sizing rows of gigabytes.
pub const MAX_DIMS: usize = 65_536;
pub const MAX_SECTIONS: usize = 16;
/// Alignment of the matrix section: a page, so it can be advised separately and every
/// SIMD load of a row start is aligned.
pub const MATRIX_ALIGN: u64 = 4096;
/// Alignment of the code sections: a page, like the matrix, for the same reasons.
pub const CODES_ALIGN: u64 = 4096;
/// Alignment of rkyv sections (rkyv's `aligned` feature needs 16; 64 is a cache line).
pub const META_ALIGN: u64 = 64;
/// Alignment of each item's archive inside the items section (rkyv's `aligned` feature).
pub const ITEM_ALIGN: u64 = 16;

const CHECKSUM_AT: usize = HEADER_SIZE - 8;
const SECTIONS_AT: usize = 336;

/// The rkyv format this build writes and reads, as bits: little-endian (1), aligned (2),
/// 32-bit relative pointers (4). Must agree with the rkyv features in `Cargo.toml`.
pub const RKYV_FEATURES: u32 = 1 | 2 | 4;

/// What a section holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum SectionKind {
    /// Row-major f32 matrix of L2-normalised embeddings.
    Matrix = 1,
    /// rkyv archive of `PodcastRecord`.
    Meta = 2,
    /// One rkyv archive of `ItemRecord` per item, 16-aligned, located by `Slot`s.
    Items = 3,
    /// One rkyv archive of `EpisodeRecord` per episode.
    Episodes = 4,
    /// One rkyv archive of `TranscriptRecord` per episode with a transcript.
    Transcripts = 5,
    /// One rkyv archive of `SpeakersRecord` (or nothing).
    Speakers = 6,
    /// int8 codes of the matrix rows, then one f32 scale per row (see [`super::codes`]).
    Int8Codes = 7,
    /// Sign bits of the rows centered on the corpus mean, then that mean (see
    /// [`super::codes`]).
    BinaryCodes = 8,
}

impl SectionKind {
    /// The sections every archive of this version has, in file order.
    pub const ALL: [SectionKind; 8] = [
        SectionKind::Matrix,
        SectionKind::Int8Codes,
        SectionKind::BinaryCodes,
        SectionKind::Items,
        SectionKind::Transcripts,
        SectionKind::Episodes,
        SectionKind::Speakers,
        SectionKind::Meta,
    ];
}

impl SectionKind {
    pub fn name(self) -> &'static str {
        match self {
            SectionKind::Matrix => "matrix",
            SectionKind::Meta => "meta",
            SectionKind::Items => "items",
            SectionKind::Episodes => "episodes",
            SectionKind::Transcripts => "transcripts",
            SectionKind::Speakers => "speakers",
            SectionKind::Int8Codes => "int8 codes",
            SectionKind::BinaryCodes => "binary codes",
        }
    }

    fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(SectionKind::Matrix),
            2 => Some(SectionKind::Meta),
            3 => Some(SectionKind::Items),
            4 => Some(SectionKind::Episodes),
            5 => Some(SectionKind::Transcripts),
            6 => Some(SectionKind::Speakers),
            7 => Some(SectionKind::Int8Codes),
            8 => Some(SectionKind::BinaryCodes),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    pub kind: SectionKind,
    pub align: u32,
    pub offset: u64,
    pub len: u64,
    pub checksum: u64,
}

impl Section {
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// The decoded header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub rkyv_features: u32,
    pub schema_hash: u64,
    pub dims: u32,
    pub item_count: u64,
    pub embedded_count: u64,
    pub input_len: u64,
    pub input_fingerprint: u64,
    pub model: String,
    pub sections: Vec<Section>,
}

impl Header {
    pub fn section(&self, kind: SectionKind) -> Option<&Section> {
        self.sections.iter().find(|s| s.kind == kind)
    }

    /// Total file length the header describes.
    pub fn file_len(&self) -> u64 {
        self.sections
            .iter()
            .map(Section::end)
            .max()
            .unwrap_or(HEADER_SIZE as u64)
    }

    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        assert!(
            self.model.len() <= MAX_MODEL_LEN,
            "model name checked by the writer"
        );
        assert!(self.sections.len() <= MAX_SECTIONS);
        let mut b = [0u8; HEADER_SIZE];
        b[0..8].copy_from_slice(&MAGIC);
        put_u32(&mut b, 8, self.version);
        put_u32(&mut b, 12, HEADER_SIZE as u32);
        put_u32(&mut b, 16, self.rkyv_features);
        put_u32(&mut b, 20, 0);
        put_u64(&mut b, 24, self.schema_hash);
        put_u32(&mut b, 32, self.dims);
        put_u32(&mut b, 36, self.sections.len() as u32);
        put_u64(&mut b, 40, self.item_count);
        put_u64(&mut b, 48, self.embedded_count);
        put_u64(&mut b, 56, self.input_len);
        put_u64(&mut b, 64, self.input_fingerprint);
        put_u32(&mut b, 72, self.model.len() as u32);
        b[80..80 + self.model.len()].copy_from_slice(self.model.as_bytes());
        for (i, s) in self.sections.iter().enumerate() {
            let at = SECTIONS_AT + i * 32;
            put_u32(&mut b, at, s.kind as u32);
            put_u32(&mut b, at + 4, s.align);
            put_u64(&mut b, at + 8, s.offset);
            put_u64(&mut b, at + 16, s.len);
            put_u64(&mut b, at + 24, s.checksum);
        }
        let sum = xxhash_rust::xxh3::xxh3_64(&b[..CHECKSUM_AT]);
        put_u64(&mut b, CHECKSUM_AT, sum);
        b
    }

    /// Decodes and checks a header. `file_len` is the real length of the file, so that every
    /// section is known to lie inside it before anyone slices the mapping.
    pub fn decode(bytes: &[u8], file_len: u64) -> Result<Header, ArchiveFault> {
        if bytes.len() < 8 || bytes[..8] != MAGIC {
            return Err(ArchiveFault::BadMagic);
        }
        if bytes.len() < HEADER_SIZE {
            return Err(ArchiveFault::Length {
                actual: file_len,
                expected: HEADER_SIZE as u64,
            });
        }
        let b = &bytes[..HEADER_SIZE];
        // The version comes before the checksum: a newer podmap may lay out its header
        // differently, and "newer version" is the useful message then.
        let version = get_u32(b, 8);
        if version > FORMAT_VERSION {
            return Err(ArchiveFault::NewerVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if version < MIN_FORMAT_VERSION {
            return Err(ArchiveFault::OlderVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if get_u64(b, CHECKSUM_AT) != xxhash_rust::xxh3::xxh3_64(&b[..CHECKSUM_AT]) {
            return Err(ArchiveFault::HeaderChecksum);
        }
        if get_u32(b, 12) as usize != HEADER_SIZE {
            return Err(ArchiveFault::Layout(format!(
                "header size {}",
                get_u32(b, 12)
            )));
        }
        let rkyv_features = get_u32(b, 16);
        if rkyv_features != RKYV_FEATURES {
            return Err(ArchiveFault::RkyvFeatures {
                found: rkyv_features,
                expected: RKYV_FEATURES,
            });
        }
        let model_len = get_u32(b, 72) as usize;
        if model_len > MAX_MODEL_LEN {
            return Err(ArchiveFault::Layout(format!(
                "model name length {model_len}"
            )));
        }
        let model = std::str::from_utf8(&b[80..80 + model_len])
            .map_err(|_| ArchiveFault::Layout("model name is not UTF-8".into()))?
            .to_owned();
        let section_count = get_u32(b, 36) as usize;
        if section_count > MAX_SECTIONS {
            return Err(ArchiveFault::Layout(format!("{section_count} sections")));
        }
        let mut sections = Vec::with_capacity(section_count);
        for i in 0..section_count {
            let at = SECTIONS_AT + i * 32;
            let raw_kind = get_u32(b, at);
            let kind = SectionKind::from_u32(raw_kind)
                .ok_or_else(|| ArchiveFault::Layout(format!("unknown section kind {raw_kind}")))?;
            let section = Section {
                kind,
                align: get_u32(b, at + 4),
                offset: get_u64(b, at + 8),
                len: get_u64(b, at + 16),
                checksum: get_u64(b, at + 24),
            };
            check_section(&section, file_len)?;
            sections.push(section);
        }
        let header = Header {
            version,
            rkyv_features,
            schema_hash: get_u64(b, 24),
            dims: get_u32(b, 32),
            item_count: get_u64(b, 40),
            embedded_count: get_u64(b, 48),
            input_len: get_u64(b, 56),
            input_fingerprint: get_u64(b, 64),
            model,
            sections,
        };
        if header.file_len() != file_len {
            return Err(ArchiveFault::Length {
                actual: file_len,
                expected: header.file_len(),
            });
        }
        Ok(header)
    }
}

fn check_section(s: &Section, file_len: u64) -> Result<(), ArchiveFault> {
    let name = s.kind.name();
    if !s.align.is_power_of_two() || !s.offset.is_multiple_of(u64::from(s.align)) {
        return Err(ArchiveFault::Layout(format!(
            "{name} section at offset {} is not aligned to {}",
            s.offset, s.align
        )));
    }
    if s.offset < HEADER_SIZE as u64 {
        return Err(ArchiveFault::Layout(format!(
            "{name} section overlaps the header"
        )));
    }
    match s.offset.checked_add(s.len) {
        Some(end) if end <= file_len => Ok(()),
        _ => Err(ArchiveFault::Length {
            actual: file_len,
            expected: s.offset.saturating_add(s.len),
        }),
    }
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn get_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Rounds `offset` up to a multiple of `align` (a power of two).
pub fn align_up(offset: u64, align: u64) -> u64 {
    offset.div_ceil(align) * align
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            version: FORMAT_VERSION,
            rkyv_features: RKYV_FEATURES,
            schema_hash: 7,
            dims: 4,
            item_count: 2,
            embedded_count: 2,
            input_len: 10,
            input_fingerprint: 11,
            model: "m".into(),
            sections: vec![
                Section {
                    kind: SectionKind::Matrix,
                    align: 4096,
                    offset: 4096,
                    len: 32,
                    checksum: 1,
                },
                Section {
                    kind: SectionKind::Meta,
                    align: 64,
                    offset: 4160,
                    len: 100,
                    checksum: 2,
                },
            ],
        }
    }

    #[test]
    fn round_trips() {
        let h = sample();
        assert_eq!(Header::decode(&h.encode(), 4260).unwrap(), h);
    }

    #[test]
    fn refuses_newer_version_with_that_reason() {
        let mut h = sample();
        h.version = FORMAT_VERSION + 1;
        let err = Header::decode(&h.encode(), 4260).unwrap_err();
        assert!(matches!(err, ArchiveFault::NewerVersion { .. }), "{err}");
    }

    #[test]
    fn refuses_older_versions_asking_to_convert_again() {
        for version in [1, 2] {
            let mut h = sample();
            h.version = version;
            let err = Header::decode(&h.encode(), 4260).unwrap_err();
            assert!(matches!(err, ArchiveFault::OlderVersion { .. }), "{err}");
            assert!(err.to_string().contains("convert the data again"), "{err}");
        }
    }

    #[test]
    fn refuses_wrong_length_and_bad_alignment() {
        let h = sample();
        assert!(matches!(
            Header::decode(&h.encode(), 4259),
            Err(ArchiveFault::Length { .. })
        ));
        let mut h = sample();
        h.sections[1].offset = 4161;
        assert!(matches!(
            Header::decode(&h.encode(), 4261),
            Err(ArchiveFault::Layout(_))
        ));
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let bytes = sample().encode();
        for at in 0..HEADER_SIZE {
            let mut b = bytes;
            b[at] ^= 0x40;
            assert!(Header::decode(&b, 4260).is_err(), "flip at {at} accepted");
        }
    }
}
