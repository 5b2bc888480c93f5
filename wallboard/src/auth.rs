//! `--token`: every request must carry it, as `Authorization: Bearer <token>`
//! or `?token=<token>` (an EventSource cannot set headers, and a wall TV's
//! browser can only be given a URL).

use axum::extract::{Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

/// The expected token, kept as its SHA-256 only.
pub struct Token([u8; 32]);

impl Token {
    pub fn new(token: &str) -> Token {
        Token(Sha256::digest(token.as_bytes()).into())
    }

    /// Compares in constant time: both sides are hashed to 32 bytes first,
    /// so neither the length nor the first differing byte shows in the time.
    pub fn matches(&self, candidate: &str) -> bool {
        let c: [u8; 32] = Sha256::digest(candidate.as_bytes()).into();
        let diff = self.0.iter().zip(c).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

/// The token a request presents, from the header or the query string.
fn presented(req: &Request) -> Option<String> {
    if let Some(v) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(t) = v.strip_prefix("Bearer ") {
            return Some(t.trim().to_string());
        }
    }
    let Query(q) = Query::<HashMap<String, String>>::try_from_uri(req.uri()).ok()?;
    q.get("token").cloned()
}

/// Middleware: passes every request when no token is configured, else only
/// those that present it.
pub async fn require(
    State(token): State<Option<Arc<Token>>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(token) = token else {
        return next.run(req).await;
    };
    if presented(&req).is_some_and(|t| token.matches(&t)) {
        return next.run(req).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer realm=\"cc-wallboard\"")],
        "cc-wallboard needs its token: open the page as /?token=<token>, or send Authorization: Bearer <token>\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_matches() {
        let t = Token::new("s3cret-token");
        assert!(t.matches("s3cret-token"));
        for wrong in [
            "",
            "s3cret-toke",
            "s3cret-token ",
            "S3cret-token",
            "s3cret-tokenx",
        ] {
            assert!(!t.matches(wrong), "{wrong:?}");
        }
    }

    #[test]
    fn the_token_comes_from_the_header_or_the_query() {
        let req = |uri: &str, auth: Option<&str>| {
            let mut b = Request::builder().uri(uri);
            if let Some(a) = auth {
                b = b.header(header::AUTHORIZATION, a);
            }
            b.body(axum::body::Body::empty()).unwrap()
        };
        assert_eq!(
            presented(&req("/", Some("Bearer abc"))).as_deref(),
            Some("abc")
        );
        assert_eq!(
            presented(&req("/events?token=a%2Bb%20c", None)).as_deref(),
            Some("a+b c")
        );
        assert_eq!(presented(&req("/?x=1", Some("Basic abc"))), None);
    }
}
