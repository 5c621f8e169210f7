//! The admin endpoint's request handling: any method, path, query,
//! headers and body get an HTTP answer, never a panic; with a token set,
//! nothing succeeds without it.

use axum::body::Body;
use axum::http::{Method, Request};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use weir::admin::{AdminState, router};
use weir::telemetry::Telemetry;

const METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::OPTIONS,
];

/// Decodes `bytes` as libFuzzer's `arbitrary` would and checks them.
pub fn run(bytes: &[u8]) {
    if let Some(input) = super::decode(bytes) {
        check(input);
    }
}

fn check(input: (u8, bool, String, Vec<(String, String)>, Vec<u8>)) {
    let (method, with_token, uri, headers, body) = input;
    let mut request = Request::builder()
        .method(METHODS[usize::from(method) % METHODS.len()].clone())
        .uri(uri.as_str());
    for (k, v) in &headers {
        request = request.header(k.as_str(), v.as_str());
    }
    let Ok(request) = request.body(Body::from(body)) else {
        return;
    };
    let (reloads, _) = tokio::sync::mpsc::unbounded_channel();
    let state = AdminState {
        telemetry: Telemetry::new(std::path::Path::new("/fuzz/pipeline.toml")),
        reloads,
        token: with_token.then(|| "s3cret-token".to_owned()),
        shutdown: CancellationToken::new(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let authorized = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("authorization") && v.contains("s3cret-token"))
        || uri.contains("s3cret-token");
    let response = runtime.block_on(router(state).oneshot(request)).unwrap();
    let status = response.status();
    assert!(
        !status.is_server_error() || status == 503,
        "{status} for {uri}"
    );
    assert!(
        !(with_token && !authorized && status.is_success()),
        "{uri} answered {status} without the token"
    );
}
