//! The search modes and their default oversampling.

use std::fmt;
use std::str::FromStr;

/// Default oversampling of the int8 mode: recall@10 is 1.000 from 2 on the corpus; 4 leaves
/// a margin for other data at a negligible rescoring cost.
pub const INT8_OVERSAMPLE: u32 = 4;
/// Default oversampling of the binary mode: recall@10 0.992 on the corpus and 0.994 on the
/// benchmark's generated podcast; at 10 the corpus still gives 0.965 but the generated podcast
/// only 0.881 (see `tests/quant.rs`). The 200 candidates of a top-10 are narrowed to 20 on
/// their int8 codes before the f32 rows are read ([`super::NARROW_OVERSAMPLE`]), so the
/// oversampling costs mostly int8 reads.
/// [`super::top_k`] keeps more on large matrices ([`super::BINARY_MIN_SHARE`]).
pub const BINARY_OVERSAMPLE: u32 = 20;
/// How a vector search scans: the f32 matrix, or one of the code sections with rescoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchMode {
    /// Every row scored exactly.
    #[default]
    Exact,
    /// int8 codes scanned for `k × oversample` candidates, rescored exactly.
    Int8 { oversample: u32 },
    /// Sign bits scanned for `k × oversample` candidates, rescored exactly.
    Binary { oversample: u32 },
}

impl SearchMode {
    /// The mode's name: `exact`, `int8` or `binary`.
    pub fn name(self) -> &'static str {
        match self {
            SearchMode::Exact => "exact",
            SearchMode::Int8 { .. } => "int8",
            SearchMode::Binary { .. } => "binary",
        }
    }

    /// The mode named `name` with `oversample` (its default when `None`). Oversampling below
    /// 1 is taken as 1; it means nothing for `exact`.
    pub fn named(name: &str, oversample: Option<u32>) -> std::result::Result<Self, UnknownMode> {
        let mode: SearchMode = name.parse()?;
        Ok(match oversample {
            Some(o) => mode.with_oversample(o),
            None => mode,
        })
    }

    /// This mode with another oversampling (at least 1).
    pub fn with_oversample(self, oversample: u32) -> Self {
        let oversample = oversample.max(1);
        match self {
            SearchMode::Exact => SearchMode::Exact,
            SearchMode::Int8 { .. } => SearchMode::Int8 { oversample },
            SearchMode::Binary { .. } => SearchMode::Binary { oversample },
        }
    }

    /// Candidates per result kept by the code scan (1 for `exact`).
    pub fn oversample(self) -> u32 {
        match self {
            SearchMode::Exact => 1,
            SearchMode::Int8 { oversample } | SearchMode::Binary { oversample } => oversample,
        }
    }
}

impl fmt::Display for SearchMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A search mode name that is not `exact`, `int8` or `binary`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown search mode {0:?}: expected exact, int8 or binary")]
pub struct UnknownMode(pub String);

impl FromStr for SearchMode {
    type Err = UnknownMode;

    /// A mode with its default oversampling.
    fn from_str(s: &str) -> std::result::Result<Self, UnknownMode> {
        match s {
            "exact" => Ok(SearchMode::Exact),
            "int8" => Ok(SearchMode::Int8 {
                oversample: INT8_OVERSAMPLE,
            }),
            "binary" => Ok(SearchMode::Binary {
                oversample: BINARY_OVERSAMPLE,
            }),
            other => Err(UnknownMode(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_with_their_defaults() {
        assert_eq!("exact".parse::<SearchMode>().unwrap(), SearchMode::Exact);
        assert_eq!(
            SearchMode::named("int8", None).unwrap(),
            SearchMode::Int8 {
                oversample: INT8_OVERSAMPLE
            }
        );
        assert_eq!(
            SearchMode::named("binary", Some(0)).unwrap(),
            SearchMode::Binary { oversample: 1 }
        );
        let err = SearchMode::named("fast", None).unwrap_err();
        assert!(err.to_string().contains("exact, int8 or binary"), "{err}");
    }
}
