//! The second level of the query-embedding cache: what one replica paid an embeddings call
//! for, every other replica reads instead of paying again.
//!
//! Key: `{prefix}emb:{model}:{query}` with the normalised query, or `{prefix}emb:{model}:h:{sha256}`
//! when model and query together are longer than [`MAX_PLAIN_KEY`] (Redis takes long keys, but
//! they cost memory and every lookup sends them). Value: the vector as little-endian `f32`
//! bytes, 4 bytes a dimension, the layout the archives use too; anything whose length is not a
//! multiple of 4 is treated as a miss. Every entry lives `--redis-embedding-ttl-secs`.

use sha2::{Digest, Sha256};

use super::Redis;

/// `podmap_cache_*{cache}` of the shared level.
pub const SHARED_CACHE: &str = "query_embeddings_shared";
/// Operation labels of this module's calls.
pub const OP_GET: &str = "embedding_get";
pub const OP_SET: &str = "embedding_set";
pub const OP_DEL: &str = "embedding_del";

/// Model and query bytes above which the key holds a hash of the query instead.
pub const MAX_PLAIN_KEY: usize = 200;

/// The key of `query` (already normalised) under `model`, without the prefix.
pub fn key(model: &str, query: &str) -> String {
    if model.len() + query.len() <= MAX_PLAIN_KEY {
        return format!("emb:{model}:{query}");
    }
    let digest = Sha256::digest(query.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("emb:{model}:h:{hex}")
}

/// A vector as little-endian `f32` bytes.
pub fn encode(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Little-endian `f32` bytes as a vector; `None` when empty or not a multiple of 4 bytes.
pub fn decode(bytes: &[u8]) -> Option<Vec<f32>> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(4) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

impl Redis {
    /// The shared embedding of `query` under `model`, if Redis holds one and answers in time.
    /// Counts a shared-cache hit or miss (a call that failed counts as a miss).
    pub async fn embedding(&self, model: &str, query: &str) -> Option<Vec<f32>> {
        let key = self.key(&key(model, query));
        let found = self
            .run(OP_GET, |mut conn| async move {
                redis::cmd("GET")
                    .arg(&key)
                    .query_async::<Option<Vec<u8>>>(&mut conn)
                    .await
            })
            .await
            .flatten()
            .and_then(|bytes| decode(&bytes));
        super::super::metrics::cache_lookup(SHARED_CACHE, found.is_some());
        found
    }

    /// Stores `vector` for the other replicas, in a task of its own: the caller's answer does
    /// not wait for Redis.
    pub fn store_embedding(&self, model: &str, query: &str, vector: &[f32]) {
        let key = self.key(&key(model, query));
        let bytes = encode(vector);
        let ttl = self.settings().embedding_ttl.as_secs().max(1);
        let redis = self.clone();
        tokio::spawn(async move {
            redis
                .run(OP_SET, |mut conn| async move {
                    redis::cmd("SET")
                        .arg(&key)
                        .arg(bytes)
                        .arg("EX")
                        .arg(ttl)
                        .query_async::<()>(&mut conn)
                        .await
                })
                .await;
        });
    }
}

impl Redis {
    /// Drops a shared embedding the caller found unusable, in a task of its own.
    pub fn forget_embedding(&self, model: &str, query: &str) {
        let key = self.key(&key(model, query));
        let redis = self.clone();
        tokio::spawn(async move {
            redis
                .run(OP_DEL, |mut conn| async move {
                    redis::cmd("DEL")
                        .arg(&key)
                        .query_async::<()>(&mut conn)
                        .await
                })
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_round_trip_as_little_endian_f32() {
        let v = vec![1.0f32, -0.5, f32::MIN_POSITIVE, 3.25e7];
        let bytes = encode(&v);
        assert_eq!(bytes.len(), 16);
        assert_eq!(&bytes[..4], &1.0f32.to_le_bytes());
        assert_eq!(decode(&bytes), Some(v));
        assert_eq!(decode(&bytes[..15]), None, "not a multiple of 4");
        assert_eq!(decode(&[]), None, "empty");
    }

    #[test]
    fn long_queries_are_hashed_short_ones_kept() {
        assert_eq!(key("m", "Mars Mission"), "emb:m:Mars Mission");
        let long = "x".repeat(MAX_PLAIN_KEY);
        let hashed = key("model", &long);
        assert!(hashed.starts_with("emb:model:h:"), "{hashed}");
        assert_eq!(hashed.len(), "emb:model:h:".len() + 64);
        assert_ne!(hashed, key("model", &"y".repeat(MAX_PLAIN_KEY)));
        assert_ne!(key("a", "q"), key("b", "q"), "the model is part of the key");
    }
}
