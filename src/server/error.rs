//! The API's one error type. Each variant is a kind of failure; [`ApiError::status`] maps the
//! kind to its HTTP status and `Display` gives the message the client sees, always as
//! `{"error": "…"}`. Statuses are chosen here and nowhere else.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::chat::ChatError;
use super::deadline::Timeout;
use super::embeddings::EmbedError;

/// Why a request was not answered.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request names nothing usable (400).
    #[error("{0}")]
    BadRequest(&'static str),
    /// An extractor refused the body or query: axum's status (400, 415, 422) and text.
    #[error("{message}")]
    Rejected { status: StatusCode, message: String },
    /// The chat token is missing or wrong (403).
    #[error("permission denied")]
    Forbidden,
    /// No podcast by this id (404); the id is shortened to 64 characters.
    #[error("unknown podcast: {0:?}")]
    UnknownPodcast(String),
    /// No route at this path (404).
    #[error("no such route")]
    NoRoute,
    /// Analytics is off (`ANALYTICS=off`), so there are no stats to give (503).
    #[error("analytics is off on this server")]
    Analytics,
    /// The embeddings API failed (502).
    #[error(transparent)]
    Embeddings(#[from] EmbedError),
    /// The embedding model's vectors do not fit the podcast's index (502).
    #[error("the embedding model {model} returns {returned} dimensions, the index of {podcast} has {dims}")]
    Dimensions {
        model: String,
        returned: usize,
        podcast: String,
        dims: usize,
    },
    /// The LLM API failed (502).
    #[error(transparent)]
    Chat(#[from] ChatError),
    /// Chat needs an LLM endpoint and none is configured (503).
    #[error("chat is not configured: set LLM_BASE_URL (and LLM_API_KEY)")]
    ChatNotConfigured,
    /// Every request slot is taken (503).
    #[error("the server is busy; try again shortly")]
    Overloaded,
    /// A handler panicked (500); the panic is in the log, not in the answer.
    #[error("internal error; the server log has the details under this response's x-request-id")]
    Panicked,
    /// The client did not send its body in time (408).
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    /// The body is larger than any request of the API (413).
    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    /// A search or chat query longer than any question (400), counted in characters.
    #[error("query must be at most {limit} characters long")]
    QueryTooLong { limit: usize },
    /// The route exists but not for this method (405); the `Allow` header lists the methods.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The client used up its quota for this route class (429, with `Retry-After`).
    #[error("too many requests; retry after {seconds} s")]
    RateLimited { seconds: u64 },
    /// The route's deadline passed before its answer started (504).
    #[error("no answer within {after}; try again later")]
    TimedOut { after: Timeout },
    /// The podcast's speaker index cannot be read (500).
    #[error("Failed to load speakers: {0}")]
    Speakers(crate::Error),
    /// An archive or transcript cannot be read (500).
    #[error(transparent)]
    Archive(#[from] crate::Error),
    /// A fault of the server itself: a task that panicked, an event not encoded (500).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// Keeps at most 64 characters of a name the client sent, for the message.
    pub fn shown(name: &str) -> String {
        name.chars().take(64).collect()
    }

    /// A fault of the server itself, from anything that can say what it is.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        ApiError::Internal(e.to_string())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Rejected { status, .. } => *status,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::UnknownPodcast(_) | ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::Analytics => StatusCode::SERVICE_UNAVAILABLE,
            // Not called at all (breaker open, every slot taken): unavailable, not failed.
            ApiError::Embeddings(EmbedError::Refused(_))
            | ApiError::Chat(ChatError::Refused(_)) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Embeddings(_) | ApiError::Dimensions { .. } | ApiError::Chat(_) => {
                StatusCode::BAD_GATEWAY
            }
            ApiError::ChatNotConfigured | ApiError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::QueryTooLong { .. } => StatusCode::BAD_REQUEST,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::TimedOut { .. } => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Speakers(_)
            | ApiError::Archive(_)
            | ApiError::Internal(_)
            | ApiError::Panicked => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        // A 500's details (file paths, causes) go to the log, in the request's span with its
        // id; the client gets a message that names no internals.
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("{self}");
            ApiError::Panicked.to_string()
        } else {
            self.to_string()
        };
        let body = Json(serde_json::json!({ "error": message }));
        (status, body).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::upstream::Refusal;

    #[test]
    fn kinds_answer_with_their_status_and_message() {
        let cases = [
            (ApiError::BadRequest("query must not be empty"), 400),
            (ApiError::Forbidden, 403),
            (ApiError::UnknownPodcast("x".into()), 404),
            (ApiError::NoRoute, 404),
            (ApiError::Analytics, 503),
            (ApiError::Chat(ChatError::Transport("down".into())), 502),
            (ApiError::Chat(Refusal::Open("llm").into()), 503),
            (ApiError::Chat(Refusal::Busy("llm").into()), 503),
            (ApiError::ChatNotConfigured, 503),
            (ApiError::Overloaded, 503),
            (ApiError::BodyTimeout, 408),
            (ApiError::BodyTooLarge { limit: 1 }, 413),
            (ApiError::QueryTooLong { limit: 2000 }, 400),
            (ApiError::MethodNotAllowed, 405),
            (ApiError::RateLimited { seconds: 3 }, 429),
            (
                ApiError::TimedOut {
                    after: Timeout(std::time::Duration::from_secs(15)),
                },
                504,
            ),
            (ApiError::internal("task panicked"), 500),
            (ApiError::Archive(crate::Error::ScanFailed), 500),
        ];
        for (error, status) in cases {
            assert_eq!(error.status().as_u16(), status, "{error}");
        }
        let long = ApiError::UnknownPodcast(ApiError::shown(&"x".repeat(100))).to_string();
        assert_eq!(long, format!("unknown podcast: {:?}", "x".repeat(64)));
        assert_eq!(ApiError::Forbidden.to_string(), "permission denied");
        assert_eq!(
            ApiError::RateLimited { seconds: 3 }.to_string(),
            "too many requests; retry after 3 s"
        );
    }
}
