//! The admin endpoint: a small HTTP server beside the pipeline.
//!
//! | route                        | method | what                                            |
//! |------------------------------|--------|-------------------------------------------------|
//! | `/status`                    | GET    | stages, instances, counters, last reload (JSON) |
//! | `/metrics`                   | GET    | Prometheus text: counters, latency, memory, lag |
//! | `/reload`                    | POST   | reload the pipeline file; waits for the outcome |
//! | `/tap/STAGE[?limit=N]`       | GET    | server-sent events: a sample of STAGE's output  |
//! | `/dashboard/`                | GET    | the list of dashboards                          |
//! | `/dashboard/NAME`            | GET    | a dashboard sink's live page                    |
//! | `/dashboard/NAME/events`     | GET    | its points, as server-sent events               |
//!
//! It listens on loopback unless told otherwise; binding any other address
//! requires `admin_token`, and then every request must carry
//! `Authorization: Bearer TOKEN` (browsers, which cannot set the header on
//! a link, may pass `?token=TOKEN` instead).

use std::net::SocketAddr;

use axum::Router;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::Stream;
use tokio::sync::broadcast;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::metrics::Registry;
use crate::status::Board;
use crate::topology::ReloadRequest;

/// Why the admin endpoint cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A non-loopback address without a token.
    #[error(
        "refusing to serve the admin endpoint on {0} without `admin_token`: it can reload the pipeline and shows its data; bind it to 127.0.0.1, or set admin_token (e.g. admin_token = \"${{WEIR_ADMIN_TOKEN}}\")"
    )]
    NeedsToken(SocketAddr),
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What the handlers share.
#[derive(Clone)]
pub struct AdminState {
    /// The running pipeline's status.
    pub board: Board,
    /// Its counters.
    pub registry: Registry,
    /// Where reload requests go.
    pub reloads: mpsc::UnboundedSender<ReloadRequest>,
    /// Required bearer token, if any.
    pub token: Option<String>,
    /// Cancelled when the endpoint stops: ends open event streams.
    pub shutdown: CancellationToken,
}

/// A bound admin endpoint, not yet serving.
pub struct Admin {
    listener: tokio::net::TcpListener,
    router: Router,
}

impl Admin {
    /// Checks the address and binds it. A non-loopback address needs a
    /// token.
    pub async fn bind(addr: SocketAddr, state: AdminState) -> Result<Admin, AdminError> {
        if !addr.ip().is_loopback() && state.token.is_none() {
            return Err(AdminError::NeedsToken(addr));
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| AdminError::Bind { addr, source })?;
        state.board.hub().set_served();
        let router = Router::new()
            .route("/", get(index))
            .route("/status", get(status))
            .route("/metrics", get(metrics))
            .route("/reload", post(reload))
            .route("/tap/{stage}", get(tap))
            .route("/dashboard", get(dashboards))
            .route("/dashboard/", get(dashboards))
            .route("/dashboard/{name}", get(dashboard_page))
            .route("/dashboard/{name}/events", get(dashboard_events))
            .layer(middleware::from_fn_with_state(state.clone(), authorize))
            .layer(middleware::from_fn_with_state(state.clone(), same_origin))
            .with_state(state);
        Ok(Admin { listener, router })
    }

    /// The address it listens on (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` (also in [`AdminState`]) is cancelled;
    /// open event streams end then too.
    pub async fn serve(self, shutdown: CancellationToken) {
        let result = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "admin endpoint stopped");
        }
    }
}

/// Without a token the endpoint is only on loopback, where browsers are
/// the threat: a page elsewhere must not reach it through DNS rebinding (a
/// name that resolves to 127.0.0.1: refused by the Host check) nor post to
/// it across origins (refused by the Origin check).
async fn same_origin(State(state): State<AdminState>, request: Request, next: Next) -> Response {
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

async fn authorize(State(state): State<AdminState>, request: Request, next: Next) -> Response {
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

async fn index() -> &'static str {
    "weir admin endpoint: GET /status, GET /metrics, POST /reload, GET /tap/STAGE, GET /dashboard/\n"
}

async fn metrics(State(state): State<AdminState>) -> Response {
    let text = crate::metrics::render_prometheus(
        &state.board.metrics(&state.registry),
        state.board.reload_counts(),
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Query of `/tap/STAGE`.
#[derive(serde::Deserialize)]
struct TapQuery {
    /// End the stream after this many events.
    limit: Option<u64>,
}

/// Server-sent events from a broadcast receiver: each message as one
/// `data:` event, after `first`; a viewer that falls behind is told how
/// many it missed (event `lagged`) and goes on.
fn sse_stream(
    first: Vec<std::sync::Arc<str>>,
    rx: broadcast::Receiver<std::sync::Arc<str>>,
    limit: Option<u64>,
    shutdown: CancellationToken,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    use futures_util::StreamExt as _;
    let first: std::collections::VecDeque<_> = first.into();
    let events = futures_util::stream::unfold(
        (first, rx, limit.unwrap_or(u64::MAX)),
        |(mut first, mut rx, left)| async move {
            if left == 0 {
                return None;
            }
            if let Some(m) = first.pop_front() {
                return Some((Ok(SseEvent::default().data(&*m)), (first, rx, left - 1)));
            }
            match rx.recv().await {
                Ok(m) => Some((Ok(SseEvent::default().data(&*m)), (first, rx, left - 1))),
                Err(broadcast::error::RecvError::Lagged(n)) => Some((
                    Ok(SseEvent::default().event("lagged").data(n.to_string())),
                    (first, rx, left),
                )),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        },
    );
    events.take_until(shutdown.cancelled_owned())
}

fn not_found(what: &str, name: &str, known: &[String]) -> Response {
    (
        StatusCode::NOT_FOUND,
        format!("no {what} `{name}`; known: {}\n", known.join(", ")),
    )
        .into_response()
}

async fn tap(
    State(state): State<AdminState>,
    Path(stage): Path<String>,
    Query(q): Query<TapQuery>,
) -> Response {
    let tap = state
        .board
        .has_stage(&stage)
        .then(|| state.board.hub().find_tap(&stage))
        .flatten();
    let Some(tap) = tap else {
        return not_found("stage", &stage, &state.board.stage_names());
    };
    Sse::new(sse_stream(
        Vec::new(),
        tap.subscribe(),
        q.limit,
        state.shutdown.clone(),
    ))
    .keep_alive(KeepAlive::new().interval(Duration::from_secs(5)))
    .into_response()
}

async fn dashboards(State(state): State<AdminState>, request: Request) -> Response {
    // Links keep the page's query, so a token given as ?token= carries on.
    let query = request
        .uri()
        .query()
        .map_or(String::new(), |q| format!("?{}", html_escape(q)));
    let list = state.board.hub().dashboards();
    let mut html = String::from(
        "<!doctype html><meta charset=utf-8><title>weir dashboards</title><h1>Dashboards</h1><ul>",
    );
    for (name, title) in &list {
        let name = html_escape(name);
        html.push_str(&format!(
            "<li><a href=\"/dashboard/{name}{query}\">{}</a> ({name})</li>",
            html_escape(title)
        ));
    }
    if list.is_empty() {
        html.push_str("<li>none: add a sink with <code>type = \"dashboard\"</code></li>");
    }
    html.push_str("</ul>");
    Html(html).into_response()
}

/// The dashboard page: one HTML file with its script and styles inline.
const DASHBOARD_PAGE: &str = include_str!("../assets/dashboard.html");

/// The 404 for an unknown dashboard, listing the known ones.
fn no_dashboard(state: &AdminState, name: &str) -> Response {
    let known: Vec<String> = state
        .board
        .hub()
        .dashboards()
        .into_iter()
        .map(|d| d.0)
        .collect();
    not_found("dashboard", name, &known)
}

async fn dashboard_page(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    let Some(d) = state.board.hub().find_dashboard(&name) else {
        return no_dashboard(&state, &name);
    };
    let config = serde_json::json!({
        "name": name,
        "title": d.title,
        "settings": d.settings,
    });
    // Inlined as JSON inside a script element: `<` is escaped so no value
    // can close it.
    let config = config.to_string().replace('<', "\\u003c");
    let page = DASHBOARD_PAGE
        .replace("{{TITLE}}", &html_escape(&d.title))
        .replace("{{CONFIG}}", &config);
    ([(header::CACHE_CONTROL, "no-store")], Html(page)).into_response()
}

async fn dashboard_events(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    let Some(d) = state.board.hub().find_dashboard(&name) else {
        return no_dashboard(&state, &name);
    };
    let (recent, rx) = d.subscribe();
    Sse::new(sse_stream(recent, rx, None, state.shutdown.clone()))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(5)))
        .into_response()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

async fn status(State(state): State<AdminState>) -> Response {
    axum::Json(state.board.read(&state.registry)).into_response()
}

async fn reload(State(state): State<AdminState>) -> Response {
    let (tx, rx) = oneshot::channel();
    let request = ReloadRequest {
        trigger: "admin".into(),
        reply: Some(tx),
    };
    if state.reloads.send(request).is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the pipeline has stopped\n",
        )
            .into_response();
    }
    match rx.await {
        Ok(report) => {
            let code = if report.ok {
                StatusCode::OK
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            (code, axum::Json(report)).into_response()
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the pipeline stopped before the reload finished\n",
        )
            .into_response(),
    }
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
