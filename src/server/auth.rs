//! Who may ask: `/api/chat` (which costs LLM calls) can require a shared token, as in the
//! original. Without a configured token every route is open.

use axum::http::{header, HeaderMap};
use subtle::ConstantTimeEq;

use super::error::ApiError;

/// `Ok` when the request may proceed, else [`ApiError::Forbidden`].
pub fn require_token(headers: &HeaderMap, token: Option<&str>) -> Result<(), ApiError> {
    if authorized(headers, token) {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}

/// Whether the request carries the token, compared in constant time. As in the original,
/// a non-empty `x-auth-token` is preferred; an empty or absent one falls back to
/// `Authorization: Bearer <token>` (or `bearer`). No token configured: open, as in the
/// original.
pub fn authorized(headers: &HeaderMap, token: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let given = headers
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .and_then(non_empty)
        .or_else(|| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    let v = v.trim();
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .and_then(non_empty)
        })
        .unwrap_or("");
    given.len() == token.len() && bool::from(given.as_bytes().ct_eq(token.as_bytes()))
}

/// `value` trimmed, unless nothing is left.
fn non_empty(value: &str) -> Option<&str> {
    Some(value.trim()).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn tokens_from_either_header_in_constant_time() {
        let mut headers = HeaderMap::new();
        assert!(authorized(&headers, None));
        assert!(!authorized(&headers, Some("s3cret")));
        headers.insert("authorization", HeaderValue::from_static("Bearer s3cret"));
        assert!(authorized(&headers, Some("s3cret")));
        headers.insert("x-auth-token", HeaderValue::from_static("wrong!"));
        assert!(
            !authorized(&headers, Some("s3cret")),
            "x-auth-token is preferred"
        );
        headers.insert("x-auth-token", HeaderValue::from_static(" s3cret "));
        assert!(authorized(&headers, Some("s3cret")));
    }

    #[test]
    fn an_empty_x_auth_token_falls_back_to_the_bearer_token() {
        let mut headers = HeaderMap::new();
        headers.insert("x-auth-token", HeaderValue::from_static(""));
        assert!(!authorized(&headers, Some("s3cret")), "nothing given");
        headers.insert("authorization", HeaderValue::from_static("Bearer s3cret"));
        assert!(authorized(&headers, Some("s3cret")));
        headers.insert("x-auth-token", HeaderValue::from_static("   "));
        assert!(
            authorized(&headers, Some("s3cret")),
            "blank counts as empty"
        );
        headers.insert("authorization", HeaderValue::from_static("bearer wrong"));
        assert!(!authorized(&headers, Some("s3cret")));
        headers.insert("authorization", HeaderValue::from_static("Bearer "));
        assert!(
            !authorized(&headers, Some("s3cret")),
            "an empty bearer token"
        );
    }
}
