//! `db/<podcast>/rag-embeddings.json`, read as a stream.
//!
//! The file reaches 300 MB of pretty-printed JSON with one float per
//! line. [`stream_rag_file`] walks it with serde_json's streaming deserializer and hands each item
//! to an [`ItemSink`] as soon as it is parsed, so memory stays bounded by one item, whatever the
//! file's size. The top-level keys that precede `items` (model, dimensions) reach the sink first;
//! `stats`, which follows `items`, is returned at the end.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// The top-level fields of a RAG file other than `items` and `stats`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RagHeader {
    pub schema_version: Option<u64>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub embedding_model: Option<String>,
    /// `embeddingDimensions`; 0 (or absent) when the file was built without embeddings.
    pub embedding_dimensions: Option<u64>,
    pub embedding_info: Option<Value>,
    pub source: Option<Value>,
}

/// `subject` of an item.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RawSubject {
    pub coarse: Option<String>,
    pub fine: Option<String>,
}

/// One element of `items`, with every field the original writer produces.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawItem {
    pub id: u32,
    #[serde(default)]
    pub key: Option<String>,
    pub episode_number: u32,
    #[serde(default)]
    pub episode_title: Option<String>,
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub subject: Option<RawSubject>,
    pub start_sec: f64,
    pub end_sec: f64,
    #[serde(default)]
    pub start_hms: Option<String>,
    #[serde(default)]
    pub end_hms: Option<String>,
    #[serde(default)]
    pub duration_sec: Option<f64>,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub source: Option<Value>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub embedding: Option<Vec<f32>>,
}

/// Receives a RAG file's parts in file order.
pub trait ItemSink {
    /// Called once, before the first item (or at the end if the file has no `items`).
    fn begin(&mut self, header: &RagHeader) -> Result<()>;
    /// Called for each item, in file order. An error stops the stream.
    fn item(&mut self, item: RawItem) -> Result<()>;
}

/// What remains after streaming: the header and `stats`.
#[derive(Debug, Clone, Default)]
pub struct RagTail {
    pub header: RagHeader,
    pub stats: Option<Value>,
    pub item_count: u64,
}

/// Streams `path` into `sink`, with `wrap` applied to the raw file reader (for progress).
pub fn stream_rag_file<S: ItemSink>(
    path: &Path,
    sink: &mut S,
    wrap: impl FnOnce(File) -> Box<dyn Read>,
) -> Result<RagTail> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    stream_rag_reader(path, wrap(file), sink)
}

/// Streams RAG JSON from any reader; `path` only names the source in errors.
pub fn stream_rag_reader<R: Read, S: ItemSink>(
    path: &Path,
    reader: R,
    sink: &mut S,
) -> Result<RagTail> {
    let mut reader = BufReader::with_capacity(256 * 1024, reader);
    // Editors may start a JSON file with a UTF-8 byte order mark; it is not JSON.
    let head = io::BufRead::fill_buf(&mut reader).map_err(|e| Error::io(path, e))?;
    if head.starts_with(b"\xEF\xBB\xBF") {
        io::BufRead::consume(&mut reader, 3);
    }
    let mut de = serde_json::Deserializer::from_reader(reader);
    let mut failure: Option<Error> = None;
    let seed = RootSeed {
        sink,
        failure: &mut failure,
    };
    let outcome = seed.deserialize(&mut de).and_then(|tail| {
        de.end()?;
        Ok(tail)
    });
    match outcome {
        Ok(tail) => Ok(tail),
        // The sink's own error is the real cause; serde only carried the abort upwards.
        Err(_) if failure.is_some() => Err(failure.expect("checked")),
        Err(err) if err.is_io() => Err(Error::io(path, io::Error::other(err.to_string()))),
        Err(err) => Err(Error::json(path, &err)),
    }
}

struct RootSeed<'a, S> {
    sink: &'a mut S,
    failure: &'a mut Option<Error>,
}

impl<'de, S: ItemSink> DeserializeSeed<'de> for RootSeed<'_, S> {
    type Value = RagTail;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<RagTail, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, S: ItemSink> Visitor<'de> for RootSeed<'_, S> {
    type Value = RagTail;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a RAG database object with an `items` array")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RagTail, A::Error> {
        let mut tail = RagTail::default();
        let mut begun = false;
        let mut saw_items = false;
        while let Some(key) = map.next_key::<String>()? {
            let h = &mut tail.header;
            match key.as_str() {
                "schemaVersion" => h.schema_version = map.next_value()?,
                "createdAt" => h.created_at = map.next_value()?,
                "updatedAt" => h.updated_at = map.next_value()?,
                "embeddingModel" => h.embedding_model = map.next_value()?,
                "embeddingDimensions" => h.embedding_dimensions = map.next_value()?,
                "embeddingInfo" => h.embedding_info = map.next_value()?,
                "source" => h.source = map.next_value()?,
                "stats" => tail.stats = map.next_value()?,
                "items" => {
                    if saw_items {
                        return Err(de::Error::duplicate_field("items"));
                    }
                    saw_items = true;
                    if !begun {
                        begun = true;
                        if let Err(e) = self.sink.begin(&tail.header) {
                            *self.failure = Some(e);
                            return Err(de::Error::custom("aborted by sink"));
                        }
                    }
                    tail.item_count = map.next_value_seed(ItemsSeed {
                        sink: &mut *self.sink,
                        failure: &mut *self.failure,
                    })?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !saw_items {
            return Err(de::Error::missing_field("items"));
        }
        Ok(tail)
    }
}

struct ItemsSeed<'a, S> {
    sink: &'a mut S,
    failure: &'a mut Option<Error>,
}

impl<'de, S: ItemSink> DeserializeSeed<'de> for ItemsSeed<'_, S> {
    type Value = u64;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, S: ItemSink> Visitor<'de> for ItemsSeed<'_, S> {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of RAG items")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
        let mut count = 0u64;
        while let Some(item) = seq.next_element::<RawItem>()? {
            if let Err(e) = self.sink.item(item) {
                *self.failure = Some(e);
                return Err(de::Error::custom("aborted by sink"));
            }
            count += 1;
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect {
        header: Option<RagHeader>,
        ids: Vec<u32>,
    }

    impl ItemSink for Collect {
        fn begin(&mut self, header: &RagHeader) -> Result<()> {
            self.header = Some(header.clone());
            Ok(())
        }
        fn item(&mut self, item: RawItem) -> Result<()> {
            self.ids.push(item.id);
            Ok(())
        }
    }

    const ITEM: &str =
        r#"{"id":0,"episodeNumber":3,"startSec":0,"endSec":0,"embedding":[1.0,0.5]}"#;

    #[test]
    fn header_reaches_sink_before_items_and_stats_after() {
        let json = format!(
            r#"{{"schemaVersion":1,"embeddingModel":"m","embeddingDimensions":2,"items":[{ITEM}],"stats":{{"totalItems":1}}}}"#
        );
        let mut sink = Collect::default();
        let tail = stream_rag_reader(Path::new("x.json"), json.as_bytes(), &mut sink).unwrap();
        assert_eq!(sink.ids, vec![0]);
        let header = sink.header.unwrap();
        assert_eq!(header.embedding_model.as_deref(), Some("m"));
        assert_eq!(header.embedding_dimensions, Some(2));
        assert_eq!(tail.item_count, 1);
        assert_eq!(tail.stats.unwrap()["totalItems"], 1);
    }

    #[test]
    fn malformed_json_names_file_line_and_column() {
        let json = "{\n  \"items\": [\n    {\"id\": 0,, }\n  ]\n}";
        let err = stream_rag_reader(
            Path::new("db/p/rag.json"),
            json.as_bytes(),
            &mut Collect::default(),
        )
        .unwrap_err();
        match &err {
            Error::Json {
                path, line, column, ..
            } => {
                assert_eq!(path, Path::new("db/p/rag.json"));
                assert_eq!((*line, *column), (3, 14));
            }
            other => panic!("unexpected error {other:?}"),
        }
        assert!(
            err.to_string()
                .starts_with("db/p/rag.json:3:14: malformed JSON"),
            "{err}"
        );
    }

    #[test]
    fn truncated_file_is_an_error() {
        let json = format!(r#"{{"items":[{ITEM},"#);
        let err = stream_rag_reader(
            Path::new("t.json"),
            json.as_bytes(),
            &mut Collect::default(),
        )
        .unwrap_err();
        assert!(matches!(err, Error::Json { .. }), "{err:?}");
    }

    #[test]
    fn missing_items_is_an_error() {
        let err = stream_rag_reader(
            Path::new("t.json"),
            &b"{\"schemaVersion\":1}"[..],
            &mut Collect::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("items"), "{err}");
    }

    #[test]
    fn sink_error_is_returned_as_is() {
        struct Refuse;
        impl ItemSink for Refuse {
            fn begin(&mut self, _: &RagHeader) -> Result<()> {
                Ok(())
            }
            fn item(&mut self, item: RawItem) -> Result<()> {
                Err(Error::EmbeddingDimension {
                    path: "f".into(),
                    id: item.id,
                    found: 2,
                    expected: 3,
                })
            }
        }
        let json = format!(r#"{{"items":[{ITEM}]}}"#);
        let err = stream_rag_reader(Path::new("f"), json.as_bytes(), &mut Refuse).unwrap_err();
        assert!(
            matches!(err, Error::EmbeddingDimension { id: 0, .. }),
            "{err:?}"
        );
    }
}
