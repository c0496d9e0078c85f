//! `POST /api/episodes/search`: one podcast or all of them, each searched semantically or
//! lexically (see [`plan`](crate::server::plan)), ranked into episodes by
//! [`search::rank_lists`], a page of them with their metadata.
//!
//! Vector searches scan as the request's `mode` says (`exact`, `int8`, `binary`; an unknown
//! one is answered 400), else as the server's `SEARCH_MODE`; see [`score`]. An exact search
//! of archives keeps only the best hits of each episode while it scans
//! ([`search::best`]), never a hit per item; the archives of a cross-podcast search are
//! scanned in one parallel pass ([`scan::best_per_episode_across`]), or in a quantized mode
//! their codes in one code scan across them ([`quant::top_k_across`]).
//!
//! When the query embedding cannot be had in time (the embeddings API down, failing, busy, or
//! its breaker open), the search is answered lexically within the wait, and says so
//! (`searchMode` and the `x-podmap-search-mode` header). A cross-podcast search whose podcasts
//! were searched in different modes (`mixed`) ranks by reciprocal-rank fusion
//! ([`search::fusion`]), since lexical counts and cosines are not on one scale.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{episode_out, podcast, query_text, Shared};
use crate::index::MmapIndex;
use crate::search::{self, quant, scan, EpisodeList, Fusion, SearchMode};
use crate::server::api::{EpisodeOut, EpisodesOut, SearchRequest};
use crate::server::catalog::Podcast;
use crate::server::error::ApiError;
use crate::server::extract::ApiJson;
use crate::server::plan::{embedding_deadline, mode, score, score_across, Plan};

/// The response header saying how a search was answered (`semantic`, `lexical`, `mixed`).
pub const SEARCH_MODE_HEADER: &str = "x-podmap-search-mode";

pub async fn search(
    State(state): Shared,
    ApiJson(req): ApiJson<SearchRequest>,
) -> Result<Response, ApiError> {
    let query = query_text(&req.query)?;
    let page_size = req.limit.or(req.top_k).unwrap_or(10).clamp(1, 50);
    let offset = req.offset.unwrap_or(0);
    let cross = req.cross_podcast.unwrap_or(false);
    let how: SearchMode = match req.mode.as_deref() {
        None => state.settings.search_mode,
        Some(name) => name
            .parse()
            .map_err(|_| ApiError::BadRequest("unknown mode: expected exact, int8 or binary"))?,
    };
    let podcasts: Vec<Arc<dyn Podcast>> = if cross {
        state.catalog.load().podcasts.values().cloned().collect()
    } else {
        vec![podcast(&state, req.podcast_id.as_deref())?]
    };
    if podcasts.is_empty() {
        return Err(ApiError::BadRequest("no podcasts are loaded"));
    }
    let mut plans = Vec::with_capacity(podcasts.len());
    let mut degraded = None;
    // One wait for the whole request, however many podcasts it searches.
    let deadline = embedding_deadline(&state);
    for podcast in podcasts {
        match mode(&state, &podcast, &query, deadline).await {
            Ok(mode) => {
                degraded = degraded.or(mode.degraded());
                plans.push((podcast, mode.embedding()));
            }
            Err(e) if cross => {
                tracing::warn!(
                    podcast = podcast.id(),
                    "left out of a cross-podcast search: {e}"
                );
            }
            Err(e) => return Err(e),
        }
    }
    let semantic = plans.iter().filter(|(_, e)| e.is_some()).count();
    let mode = match (semantic, plans.len() - semantic) {
        (_, 0) => "semantic",
        (0, _) => "lexical",
        _ => "mixed",
    };
    if let Some(why) = degraded {
        why.count();
    }
    let fusion = match mode {
        "mixed" => Fusion::reciprocal_rank(),
        _ => Fusion::Scores,
    };
    let (episodes, total) =
        tokio::task::spawn_blocking(move || rank(&plans, fusion, &query, how, offset, page_size))
            .await
            .map_err(ApiError::internal)??;
    let body = EpisodesOut {
        episodes,
        has_more: offset.saturating_add(page_size) < total,
        total,
        search_mode: Some(mode),
    };
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(SEARCH_MODE_HEADER, HeaderValue::from_static(mode));
    Ok(response)
}

/// The `total` a full scan would give, when the podcasts searched by vector were scored in
/// a quantized mode (only their best candidates): each of those counts every episode that
/// has an embedded item, as the exact mode's hits do, instead of the episodes among its
/// candidates. Grouping keeps the podcasts apart, so the counts add up.
fn full_total(lists: &[EpisodeList], plans: &[Plan], total: usize) -> usize {
    lists
        .iter()
        .zip(plans)
        .filter(|(list, (_, embedding))| embedding.is_some() && !list.scanned_every_row())
        .fold(total, |total, (list, _)| {
            total - list.len() + list.index.episodes_with_embeddings()
        })
}

/// Scores every planned podcast into its ranked episodes, asks [`search::rank_lists`] for the
/// page, and adds each episode's metadata.
fn rank(
    plans: &[Plan],
    fusion: Fusion,
    query: &str,
    how: SearchMode,
    offset: usize,
    page_size: usize,
) -> crate::Result<(Vec<EpisodeOut>, usize)> {
    let lists = episode_lists(plans, query, how, fusion, offset.saturating_add(page_size))?;
    let mut page = search::rank_lists(&lists, fusion, offset, page_size)?;
    if how != SearchMode::Exact {
        page.total = full_total(&lists, plans, page.total);
    }
    let mut episodes = Vec::with_capacity(page.episodes.len());
    for ranked in page.episodes {
        let podcast = &plans[ranked.source].0;
        let info = podcast.episode(ranked.episode)?;
        let mut out = episode_out(podcast.id(), info, ranked.episode, ranked.score);
        (out.positions_sec, out.position_scores) = ranked.positions.into_iter().unzip();
        episodes.push(out);
    }
    Ok((episodes, page.total))
}

/// The ranked episodes of each plan, in plan order.
///
/// Several vector searches of archives are one pass where they can be. An exact search keeps
/// the best hits per episode while it scans: one archive in a pass shared with concurrent
/// searches of it, several in one pass over all their matrices. An archive too small for its
/// codes to pay ([`quant::served_mode`]) is scanned exactly whatever the mode, so it joins
/// that pass. A quantized search of several archives whose rows together are enough for the
/// codes to pay is one code scan across them all ([`quant::top_k_across`]). Every other
/// search (lexical, a quantized one of one archive, or of a podcast loaded from JSON) is
/// grouped from its hits; a quantized one asks for enough of them to cover `page_end`
/// episodes and one more.
///
/// The pass across archives ranks their items on one scale, so it runs only when every plan
/// is ranked by score: fused ranks need each podcast's own list.
fn episode_lists<'a>(
    plans: &'a [Plan],
    query: &str,
    how: SearchMode,
    fusion: Fusion,
    page_end: usize,
) -> crate::Result<Vec<EpisodeList<'a>>> {
    let episodes = page_end.saturating_add(1);
    let vectors: Vec<(usize, &MmapIndex, &[f32], SearchMode)> = plans
        .iter()
        .enumerate()
        .filter_map(|(i, (podcast, embedding))| {
            let index = podcast.mapped()?;
            let served = quant::served_mode(how, index.matrix().len());
            Some((i, index, embedding.as_deref()?.as_slice(), served))
        })
        .collect();
    let mut lists: Vec<Option<EpisodeList>> = plans.iter().map(|_| None).collect();
    let floats = vectors.iter().map(|v| v.1.matrix().len()).sum();
    if vectors.len() > 1
        && fusion == Fusion::Scores
        && quant::served_mode(how, floats) != SearchMode::Exact
    {
        let sources: Vec<(&MmapIndex, &[f32])> = vectors.iter().map(|v| (v.1, v.2)).collect();
        let hits = score_across(&sources, how, episodes)?;
        for (&(i, index, _, _), hits) in vectors.iter().zip(hits) {
            lists[i] = Some(EpisodeList::from_hits(index, hits));
        }
    } else {
        let exact: Vec<(usize, &MmapIndex, &[f32])> = vectors
            .iter()
            .filter(|v| v.3 == SearchMode::Exact)
            .map(|&(i, index, v, _)| (i, index, v))
            .collect();
        if let [(i, _, v)] = exact[..] {
            let podcast = &plans[i].0;
            let best = podcast.best_per_episode(v)?;
            lists[i] = Some(EpisodeList::from_scan(podcast.index(), best, v));
        } else if !exact.is_empty() {
            let sources: Vec<(&MmapIndex, &[f32])> =
                exact.iter().map(|&(_, m, v)| (m, v)).collect();
            let mut per_source = vec![Vec::new(); exact.len()];
            for best in scan::best_per_episode_across(&sources)? {
                per_source[best.source as usize].push(best);
            }
            for (&(i, _, v), best) in exact.iter().zip(per_source) {
                lists[i] = Some(EpisodeList::from_scan(plans[i].0.index(), best, v));
            }
        }
    }
    plans
        .iter()
        .zip(lists)
        .map(|((podcast, embedding), list)| match list {
            Some(list) => Ok(list),
            None => {
                let embedding = embedding.as_deref().map(Vec::as_slice);
                let hits = score(podcast.as_ref(), embedding, query, how, episodes)?;
                Ok(EpisodeList::from_hits(podcast.index(), hits))
            }
        })
        .collect()
}
