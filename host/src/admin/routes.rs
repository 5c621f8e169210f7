//! The admin endpoint's answers: status, metrics, reload, taps and
//! dashboards (server-sent events for the live ones).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use futures_util::Stream;
use tokio::sync::{broadcast, oneshot};
use tokio_util::sync::CancellationToken;

use super::AdminState;
use crate::engine::ReloadRequest;

pub(super) async fn index() -> &'static str {
    "weir admin endpoint: GET /status, GET /metrics, POST /reload, GET /tap/STAGE, GET /dashboard/\n"
}

pub(super) async fn metrics(State(state): State<AdminState>) -> Response {
    let text = state.telemetry.prometheus();
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
pub(super) struct TapQuery {
    /// End the stream after this many events.
    pub(super) limit: Option<u64>,
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

pub(super) async fn tap(
    State(state): State<AdminState>,
    Path(stage): Path<String>,
    Query(q): Query<TapQuery>,
) -> Response {
    let tap = state
        .telemetry
        .has_stage(&stage)
        .then(|| state.telemetry.find_tap(&stage))
        .flatten();
    let Some(tap) = tap else {
        return not_found("stage", &stage, &state.telemetry.stage_names());
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

pub(super) async fn dashboards(State(state): State<AdminState>, request: Request) -> Response {
    // Links keep the page's query, so a token given as ?token= carries on.
    let query = request
        .uri()
        .query()
        .map_or(String::new(), |q| format!("?{}", html_escape(q)));
    let list = state.telemetry.dashboards().list();
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
const DASHBOARD_PAGE: &str = include_str!("../../assets/dashboard.html");

/// The 404 for an unknown dashboard, listing the known ones.
fn no_dashboard(state: &AdminState, name: &str) -> Response {
    let known: Vec<String> = state
        .telemetry
        .dashboards()
        .list()
        .into_iter()
        .map(|d| d.0)
        .collect();
    not_found("dashboard", name, &known)
}

pub(super) async fn dashboard_page(
    State(state): State<AdminState>,
    Path(name): Path<String>,
) -> Response {
    let Some(d) = state.telemetry.dashboards().find(&name) else {
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

pub(super) async fn dashboard_events(
    State(state): State<AdminState>,
    Path(name): Path<String>,
) -> Response {
    let Some(d) = state.telemetry.dashboards().find(&name) else {
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

pub(super) async fn status(State(state): State<AdminState>) -> Response {
    axum::Json(state.telemetry.status()).into_response()
}

pub(super) async fn reload(State(state): State<AdminState>) -> Response {
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
