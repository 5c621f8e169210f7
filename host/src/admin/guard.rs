//! Who may use the admin endpoint: without a token only this machine's
//! own pages (Host and Origin checks against DNS rebinding and cross-origin
//! posts); with a token, requests that carry it.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AdminState;

/// Without a token the endpoint is only on loopback, where browsers are
/// the threat: a page elsewhere must not reach it through DNS rebinding (a
/// name that resolves to 127.0.0.1: refused by the Host check) nor post to
/// it across origins (refused by the Origin check).
pub(super) async fn same_origin(
    State(state): State<AdminState>,
    request: Request,
    next: Next,
) -> Response {
    if state.token.is_some() {
        return next.run(request).await;
    }
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !is_local_host(host) {
        return (
            StatusCode::FORBIDDEN,
            format!(
                "the admin endpoint answers only to localhost or IP addresses, not Host: {host}\n"
            ),
        )
            .into_response();
    }
    if request.method() != axum::http::Method::GET {
        let origin = request
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok());
        if let Some(origin) = origin
            && origin != format!("http://{host}")
        {
            return (
                StatusCode::FORBIDDEN,
                format!("cross-origin request from {origin} refused\n"),
            )
                .into_response();
        }
    }
    next.run(request).await
}

/// Whether a Host header names this machine: `localhost` or an IP address
/// (with an optional port).
fn is_local_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        // [::1]:7470
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

pub(super) async fn authorize(
    State(state): State<AdminState>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = &state.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned)
            .or_else(|| query_token(request.uri().query()));
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "missing or wrong bearer token\n",
            )
                .into_response();
        }
    }
    next.run(request).await
}

/// The `token` query parameter, decoded.
fn query_token(query: Option<&str>) -> Option<String> {
    let url = reqwest::Url::parse(&format!("http://x/?{}", query?)).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

/// Compares without leaking, through timing, how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_by_content() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret!"));
    }

    #[test]
    fn browsers_may_pass_the_token_in_the_query() {
        assert_eq!(query_token(Some("a=1&token=s%2Fx+y")), Some("s/x y".into()));
        assert_eq!(query_token(Some("limit=3")), None);
        assert_eq!(query_token(None), None);
    }

    #[test]
    fn only_local_host_names_are_answered_without_a_token() {
        for ok in [
            "127.0.0.1:7470",
            "localhost:7470",
            "[::1]:7470",
            "LOCALHOST",
            "10.0.0.5:80",
        ] {
            assert!(is_local_host(ok), "{ok}");
        }
        for bad in ["evil.example:7470", "", "127.0.0.1.nip.io:7470"] {
            assert!(!is_local_host(bad), "{bad}");
        }
    }
}
