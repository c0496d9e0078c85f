//! How a query is searched in one podcast: semantically, when an embeddings endpoint is
//! configured and the podcast's archive was embedded with the model it serves, else lexically.
//! Search and chat both plan their podcasts here, and `/api/podcasts` reports the outcome.

use std::sync::Arc;

use super::catalog::Podcast;
use super::error::ApiError;
use super::AppState;
use crate::search::{Filter, Hit};

/// A podcast to search, with the query's embedding when its search is semantic.
pub type Plan = (Arc<dyn Podcast>, Option<Arc<Vec<f32>>>);

/// The embedding model to query for `podcast`, when semantic search is possible: an
/// embeddings endpoint is configured, the podcast has embeddings, and the configured model
/// (if any) is the one its archive was built with.
pub fn semantic_model(state: &AppState, podcast: &dyn Podcast) -> Option<String> {
    state.embedder.as_ref()?;
    let index = podcast.index();
    if index.embedded_count() == 0 {
        return None;
    }
    match (&state.settings.embedding_model, index.model()) {
        (Some(configured), Some(built)) if configured != built => None,
        (Some(configured), _) => Some(configured.clone()),
        (None, Some(built)) => Some(built.to_owned()),
        (None, None) => Some("default".to_owned()),
    }
}

/// The query's embedding for `podcast`, when its search is semantic (see [`semantic_model`]).
/// A model that answers with another dimension than the index's is an error, and its answer
/// is not kept in the cache.
pub async fn embedding_for(
    state: &AppState,
    podcast: &Arc<dyn Podcast>,
    query: &str,
) -> Result<Option<Arc<Vec<f32>>>, ApiError> {
    let Some(model) = semantic_model(state, podcast.as_ref()) else {
        return Ok(None);
    };
    let embedder = state.embedder.as_ref().expect("checked by semantic_model");
    let v = embedder.embed_query(&model, query).await?;
    let dims = podcast.index().dims();
    if v.len() != dims {
        embedder.forget(&model, query).await;
        return Err(ApiError::Dimensions {
            model,
            returned: v.len(),
            podcast: podcast.id().to_owned(),
            dims,
        });
    }
    Ok(Some(v))
}

/// Every scored item of a podcast, best first: by cosine with `embedding`, or lexically.
pub fn score(
    podcast: &dyn Podcast,
    embedding: Option<&[f32]>,
    query: &str,
) -> crate::Result<Vec<Hit>> {
    let index = podcast.index();
    match embedding {
        Some(v) => podcast.score_all(v),
        None => index.search_text(query, index.len(), &Filter::all()),
    }
}
