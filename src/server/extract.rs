//! Extractors that answer like every other error: axum's `Json` and `Query`, whose rejections
//! keep axum's status codes (415, 400, 422) but come back as `{"error": "…"}`.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::Json;

use super::error::ApiError;

/// `Json<T>` with JSON rejections.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(ApiError::Rejected {
                status: rejection.status(),
                message: rejection.body_text(),
            }),
        }
    }
}

/// `Query<T>` with JSON rejections.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    Query<T>: FromRequestParts<S, Rejection = QueryRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // axum decodes invalid UTF-8 lossily (to U+FFFD); a client that sent it gets told.
        if !parts.uri.query().is_none_or(decodes_to_utf8) {
            return Err(ApiError::BadRequest("the query string is not valid UTF-8"));
        }
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(ApiError::Rejected {
                status: rejection.status(),
                message: rejection.body_text(),
            }),
        }
    }
}

/// Whether a query string's percent-decoded bytes are UTF-8. A `%` without two hex digits
/// after it stands for itself, as `application/x-www-form-urlencoded` decoding keeps it.
fn decodes_to_utf8(query: &str) -> bool {
    let raw = query.as_bytes();
    let mut bytes = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = |at: usize| raw.get(at).and_then(|&c| (c as char).to_digit(16));
        match (raw[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(high), Some(low)) => {
                bytes.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                bytes.push(byte);
                i += 1;
            }
        }
    }
    std::str::from_utf8(&bytes).is_ok()
}

#[cfg(test)]
mod tests {
    use super::decodes_to_utf8;

    #[test]
    fn query_strings_that_decode_to_utf8() {
        for ok in [
            "",
            "podcast_id=demo",
            "a=%C3%A4&b=%e2%82%ac",
            "a=100%",
            "a=%zz",
            "a=%E2%82%AC+x",
        ] {
            assert!(decodes_to_utf8(ok), "{ok}");
        }
        for bad in [
            "podcast_id=%FF",
            "a=%C3",
            "a=%C3%28",
            "a=%C3%A",
            "x=%ED%A0%80",
        ] {
            assert!(!decodes_to_utf8(bad), "{bad}");
        }
    }
}
