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

/// Whether the request carries the token (`x-auth-token`, or `Authorization: Bearer`),
/// compared in constant time. No token configured: open, as in the original.
pub fn authorized(headers: &HeaderMap, token: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let given = headers
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .or_else(|| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .map(str::trim)
        })
        .unwrap_or("");
    given.len() == token.len() && bool::from(given.as_bytes().ct_eq(token.as_bytes()))
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
}
