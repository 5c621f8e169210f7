//! `type = "http_stream"`: a long-lived HTTP response read as a stream of
//! messages: newline-delimited JSON, Server-Sent Events or plain lines, as
//! social networks' filtered streams and public feeds (Wikimedia's recent
//! changes) serve them.
//!
//! ```toml
//! [sources.posts]
//! type = "http_stream"
//! url = "https://api.example.com/2/tweets/search/stream"
//! query = { track = "rust,kafka", language = "en" }
//! auth = { bearer_env = "STREAM_TOKEN" }   # the token, from the environment
//! # or auth = { oauth1 = { consumer_key_env = "K", consumer_secret_env = "KS",
//! #                        token_env = "T", token_secret_env = "TS" } }
//! format = "ndjson"                          # or "sse", "lines"
//! timestamp = "created_at"                   # or "arrival" (the default)
//! dedupe = "id"                              # drop messages a server resends
//! stall_timeout = "90s"
//! ```
//!
//! Each message is one event (JSON checked for `ndjson` and `sse`; an
//! invalid one goes to the dead-letter output with the reason). The
//! connection is made again when it drops, stalls or fails, with the
//! waits of [`backoff`]; 401, 403 and 404 stop the source with an error
//! naming the URL (never the token). While downstream is slow the source
//! does not read the socket, so the server sees a slow reader and nothing
//! piles up here; the time spent so is counted
//! (`weir_source_backpressure_ms_total`), as are reconnects and dropped
//! duplicates.

pub mod backoff;
pub mod framing;
pub mod oauth1;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use serde::Deserialize;

use crate::event::{Acks, Batch, Event, Marker};
use crate::stage::{Action, BoxError, Component, Source, SourceContext, StageTask};
use crate::telemetry::StageMetrics;
use crate::units::{ByteSize, Duration as Setting};
use crate::util::now_ms;

use backoff::{Backoff, Failure, Policy};
use framing::{Format, Framer, Message};

/// GET or POST.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// The default.
    #[default]
    Get,
    /// With `body`.
    Post,
}

/// A query parameter: a text, or a list joined with commas
/// (`track = ["rust", "kafka"]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum QueryValue {
    /// One value.
    One(String),
    /// Values joined with `,`.
    Many(Vec<String>),
}

impl QueryValue {
    fn text(&self) -> String {
        match self {
            QueryValue::One(v) => v.clone(),
            QueryValue::Many(v) => v.join(","),
        }
    }
}

/// How the source authenticates: one of the two. The secrets themselves
/// come from environment variables, so they are never in a pipeline file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// Environment variable holding a bearer token (sent as
    /// `Authorization: Bearer ...`).
    #[serde(default)]
    pub bearer_env: Option<String>,
    /// OAuth 1.0a request signing (HMAC-SHA1), as the older streaming APIs
    /// need.
    #[serde(default)]
    pub oauth1: Option<OAuth1Env>,
}

/// The environment variables holding the four OAuth 1.0a credentials.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth1Env {
    /// The consumer (API) key.
    pub consumer_key_env: String,
    /// The consumer secret.
    pub consumer_secret_env: String,
    /// The access token.
    pub token_env: String,
    /// The access token secret.
    pub token_secret_env: String,
}

/// The credentials the source signs its requests with.
#[derive(Debug, Clone)]
enum Credentials {
    Bearer(Secret),
    OAuth1(oauth1::Credentials),
}

fn env_secret(setting: &str, var: &str) -> Result<String, String> {
    std::env::var(var)
        .map_err(|_| format!("`auth.{setting}`: environment variable {var} is not set"))
}

impl Auth {
    fn credentials(&self) -> Result<Credentials, String> {
        match (&self.bearer_env, &self.oauth1) {
            (Some(var), None) => Ok(Credentials::Bearer(Secret(env_secret("bearer_env", var)?))),
            (None, Some(o)) => Ok(Credentials::OAuth1(oauth1::Credentials {
                consumer_key: env_secret("oauth1.consumer_key_env", &o.consumer_key_env)?,
                consumer_secret: env_secret("oauth1.consumer_secret_env", &o.consumer_secret_env)?,
                token: env_secret("oauth1.token_env", &o.token_env)?,
                token_secret: env_secret("oauth1.token_secret_env", &o.token_secret_env)?,
            })),
            _ => Err("`auth` takes one of `bearer_env` or `oauth1`".into()),
        }
    }
}

/// Settings of the `http_stream` source.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpStreamConfig {
    /// The stream's URL (`http` or `https`).
    pub url: String,
    /// `GET` (default) or `POST`.
    #[serde(default)]
    pub method: Method,
    /// Request body, for `POST`.
    #[serde(default)]
    pub body: Option<String>,
    /// Request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Query parameters (for example the keywords to track).
    #[serde(default)]
    pub query: BTreeMap<String, QueryValue>,
    /// `ndjson` (default), `sse` or `lines`.
    #[serde(default)]
    pub format: Format,
    /// Whether each message must be JSON (default: true for `ndjson` and
    /// `sse`, false for `lines`).
    #[serde(default)]
    pub json: Option<bool>,
    /// Authentication; the secret itself comes from the environment.
    #[serde(default)]
    pub auth: Option<Box<Auth>>,
    /// `arrival` (default) or the JSON field holding the event time (Unix
    /// ms, RFC 3339).
    #[serde(default)]
    pub timestamp: Option<String>,
    /// A JSON field identifying a message: a message whose id was seen
    /// among the last `dedupe_window` ones is dropped and counted.
    #[serde(default)]
    pub dedupe: Option<String>,
    /// How many recent ids `dedupe` remembers (default 100000).
    #[serde(default)]
    pub dedupe_window: Option<usize>,
    /// Reconnect when nothing, not even a keep-alive, arrives for this long
    /// (default 90 s).
    #[serde(default)]
    pub stall_timeout: Option<Setting>,
    /// Limit on connecting (default 10 s).
    #[serde(default)]
    pub connect_timeout: Option<Setting>,
    /// Longest message; a longer one is dead-lettered (default 1 MiB).
    #[serde(default)]
    pub max_message: Option<ByteSize>,
    /// Reconnect waits.
    #[serde(default)]
    pub backoff: Box<Policy>,
}

impl HttpStreamConfig {
    fn json(&self) -> bool {
        self.json.unwrap_or(self.format != Format::Lines)
    }

    /// The URL as logs and errors show it: without its query, which may
    /// hold credentials.
    pub fn shown_url(&self) -> String {
        shown_url(&self.url)
    }
}

/// `url` without query or fragment, and without user info.
fn shown_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            u.set_query(None);
            u.set_fragment(None);
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => {
            let base = url.split(['?', '#']).next().unwrap_or("");
            match (base.find("://"), base.rfind('@')) {
                (Some(s), Some(at)) if at > s => format!("{}{}", &base[..s + 3], &base[at + 1..]),
                _ => base.to_owned(),
            }
        }
    }
}

impl Source for HttpStreamConfig {
    fn build(&self, ctx: SourceContext) -> Result<StageTask, BoxError> {
        let url = reqwest::Url::parse(&self.url)
            .map_err(|e| format!("`url` {:?} is not a URL: {e}", self.shown_url()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("`url` must be http or https, not {}", url.scheme()).into());
        }
        for (k, v) in &self.headers {
            if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err()
                || reqwest::header::HeaderValue::from_str(v).is_err()
            {
                return Err(
                    format!("`headers`: {k:?} is not a valid header name and value").into(),
                );
            }
        }
        if self.body.is_some() && self.method != Method::Post {
            return Err("`body` needs method = \"POST\"".into());
        }
        if !self.json() && (self.dedupe.is_some() || self.timestamp_field().is_some()) {
            return Err("`dedupe` and `timestamp` read JSON fields: they need json = true".into());
        }
        let token = match &self.auth {
            None => None,
            Some(a) => Some(a.credentials()?),
        };
        let stream = Stream::new(self.clone(), token)?;
        Ok(stream.run(ctx).boxed())
    }
}

impl HttpStreamConfig {
    fn timestamp_field(&self) -> Option<&str> {
        self.timestamp.as_deref().filter(|t| *t != "arrival")
    }
}

impl Component for HttpStreamConfig {
    fn resumes_where_stopped(&self) -> bool {
        true
    }
}

/// A secret that never prints.
#[derive(Clone)]
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

/// Why a connection ended.
enum Ended {
    /// Reconnect after waiting for this kind of failure; the text says why.
    Retry(Failure, String),
    /// The pipeline asked the source to stop.
    Stop,
    /// Downstream has gone.
    Closed,
}

/// One source instance: its client, settings and what it has seen.
struct Stream {
    config: HttpStreamConfig,
    client: reqwest::Client,
    token: Option<Credentials>,
    url: String,
    framer: Framer,
    backoff: Backoff,
    seen: VecDeque<String>,
    seen_set: HashSet<String>,
    messages: u64,
    last_message: Option<Instant>,
}

impl Stream {
    fn new(config: HttpStreamConfig, token: Option<Credentials>) -> Result<Stream, BoxError> {
        let client = reqwest::Client::builder()
            .connect_timeout(
                config
                    .connect_timeout
                    .map_or(Duration::from_secs(10), |d| d.0),
            )
            .user_agent(concat!("weir/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
        let max = config.max_message.map_or(1 << 20, |b| b.0 as usize);
        Ok(Stream {
            framer: Framer::new(config.format, max, None),
            backoff: Backoff::new(*config.backoff),
            url: config.shown_url(),
            client,
            token,
            config,
            seen: VecDeque::new(),
            seen_set: HashSet::new(),
            messages: 0,
            last_message: None,
        })
    }

    fn position(&self) -> serde_json::Value {
        serde_json::json!({ "messages": self.messages, "last_event_id": self.framer.last_id })
    }

    async fn run(mut self, mut ctx: SourceContext) -> Result<(), BoxError> {
        if let Some(resume) = &ctx.control.resume {
            self.messages = resume["messages"].as_u64().unwrap_or(0);
            if let Some(id) = resume["last_event_id"].as_str() {
                tracing::info!(
                    last_event_id = id,
                    "http_stream resumes after the saved event id"
                );
                self.framer.last_id = Some(id.to_owned());
            }
        }
        loop {
            let ended = self.connection(&mut ctx).await?;
            let (failure, why) = match ended {
                Ended::Stop | Ended::Closed => return Ok(()),
                Ended::Retry(f, why) => (f, why),
            };
            let wait = match (failure, self.framer.retry_ms) {
                // The server asked for its own reconnection time (SSE).
                (Failure::Network, Some(ms)) => {
                    Duration::from_millis(ms).max(self.backoff.next(failure))
                }
                _ => self.backoff.next(failure),
            };
            StageMetrics::add(&ctx.metrics.reconnects, 1);
            tracing::warn!(
                url = %self.url,
                reason = %why,
                wait_ms = wait.as_millis() as u64,
                "http_stream reconnecting"
            );
            let sleep = tokio::time::sleep(wait);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    () = &mut sleep => break,
                    action = ctx.control.next() => {
                        if self.act(&ctx, action).await {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }

    /// Handles a control action; true when the source must stop.
    async fn act(&self, ctx: &SourceContext, action: Action) -> bool {
        match action {
            Action::Stop => {
                if let Some(slot) = &ctx.control.stopped_at {
                    *slot.lock().expect("position lock") = Some(self.position());
                }
                true
            }
            Action::Checkpoint { id, last } => {
                ctx.control.reporter.position(id, self.position());
                let _ = ctx
                    .out
                    .send(Batch::marker(Marker::Barrier { id, last }))
                    .await;
                last
            }
        }
    }

    fn request(&self) -> Result<reqwest::RequestBuilder, BoxError> {
        let c = &self.config;
        let method = match c.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
        };
        let mut url = reqwest::Url::parse(&c.url)?;
        {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in &c.query {
                pairs.append_pair(k, &v.text());
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        // A POST body without a type is a form, as the streaming APIs take
        // their parameters.
        let content_type = c
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.as_str());
        let form = c.body.is_some()
            && content_type.is_none_or(|t| {
                t.split(';').next().unwrap_or("").trim() == "application/x-www-form-urlencoded"
            });
        let mut req = self.client.request(method.clone(), url.clone());
        for (k, v) in &c.headers {
            req = req.header(k, v);
        }
        if form && content_type.is_none() {
            req = req.header("Content-Type", "application/x-www-form-urlencoded");
        }
        match &self.token {
            None => {}
            Some(Credentials::Bearer(token)) => req = req.bearer_auth(&token.0),
            Some(Credentials::OAuth1(creds)) => {
                let body: Vec<(String, String)> = match (&c.body, form) {
                    (Some(b), true) => {
                        // The form read as a query string (set_query keeps
                        // a `#` as data).
                        let mut u = reqwest::Url::parse("http://form.invalid/")?;
                        u.set_query(Some(b));
                        u.query_pairs()
                            .map(|(k, v)| (k.into_owned(), v.into_owned()))
                            .collect()
                    }
                    _ => Vec::new(),
                };
                let now = u64::try_from(now_ms() / 1000).unwrap_or(0);
                let header = oauth1::authorization(
                    method.as_str(),
                    &url,
                    &body,
                    creds,
                    &oauth1::nonce(),
                    now,
                );
                req = req.header(reqwest::header::AUTHORIZATION, header);
            }
        }
        if c.format == Format::Sse {
            req = req.header("Accept", "text/event-stream");
            if let Some(id) = &self.framer.last_id
                && reqwest::header::HeaderValue::from_str(id).is_ok()
            {
                req = req.header("Last-Event-ID", id);
            }
        }
        if let Some(body) = &c.body {
            req = req.body(body.clone());
        }
        Ok(req)
    }

    /// One connection, from the request to its end.
    async fn connection(&mut self, ctx: &mut SourceContext) -> Result<Ended, BoxError> {
        self.framer.reset();
        let stall = self
            .config
            .stall_timeout
            .map_or(Duration::from_secs(90), |d| d.0);
        // One deadline, moved only by bytes from the server (not by
        // checkpoints or other control actions), for the answer too.
        let deadline = tokio::time::sleep(stall);
        tokio::pin!(deadline);
        let send = self.request()?.send();
        tokio::pin!(send);
        let response = loop {
            tokio::select! {
                r = &mut send => break r,
                () = &mut deadline => {
                    return Ok(Ended::Retry(
                        Failure::Network,
                        format!("no answer within {} ms", stall.as_millis()),
                    ));
                }
                action = ctx.control.next() => {
                    if self.act(ctx, action).await {
                        return Ok(Ended::Stop);
                    }
                }
            }
        };
        let mut response = match response {
            Ok(r) => r,
            Err(e) => return Ok(Ended::Retry(Failure::Network, describe(&e))),
        };
        let status = response.status();
        if matches!(status.as_u16(), 420 | 429) {
            let after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| backoff::retry_after(v, now_ms()));
            return Ok(Ended::Retry(
                Failure::RateLimited(after),
                format!("rate limited ({status})"),
            ));
        }
        if matches!(status.as_u16(), 401 | 403 | 404) {
            return Err(format!(
                "{} answered {status}: {}",
                self.url,
                match status.as_u16() {
                    401 => match &self.token {
                        Some(Credentials::OAuth1(_)) =>
                            "the credentials were refused; check the OAuth 1.0a credentials `auth.oauth1` names",
                        Some(Credentials::Bearer(_)) =>
                            "the credentials were refused; check the token in `auth.bearer_env`",
                        None => "the stream needs credentials; set `auth`",
                    },
                    403 => "access to this stream is forbidden for these credentials",
                    _ => "no such stream; check `url`",
                }
            )
            .into());
        }
        if !status.is_success() {
            return Ok(Ended::Retry(Failure::Http, format!("HTTP status {status}")));
        }
        let connected = Instant::now();
        tracing::info!(url = %self.url, "http_stream connected");
        let mut first = true;
        loop {
            let chunk = tokio::select! {
                action = ctx.control.next() => {
                    if self.act(ctx, action).await {
                        return Ok(Ended::Stop);
                    }
                    continue;
                }
                () = &mut deadline => Err(()),
                c = response.chunk() => Ok(c),
            };
            let chunk = match chunk {
                Err(()) => {
                    return Ok(Ended::Retry(
                        Failure::Network,
                        format!("stalled: nothing received for {} ms", stall.as_millis()),
                    ));
                }
                Ok(Err(e)) => return Ok(Ended::Retry(Failure::Network, describe(&e))),
                Ok(Ok(None)) => {
                    return Ok(Ended::Retry(
                        Failure::Network,
                        format!(
                            "the server closed the stream after {} ms",
                            connected.elapsed().as_millis()
                        ),
                    ));
                }
                Ok(Ok(Some(c))) => {
                    deadline.as_mut().reset(tokio::time::Instant::now() + stall);
                    c
                }
            };
            let mut messages = Vec::new();
            let mut too_long = Vec::new();
            self.framer.push(&chunk, &mut messages, &mut too_long);
            let mut rejected: Vec<(Event, String)> = too_long
                .into_iter()
                .map(|t| {
                    (
                        Event::new(t.head, now_ms()),
                        format!("message longer than max_message ({} bytes)", t.limit),
                    )
                })
                .collect();
            if messages.is_empty() && rejected.is_empty() {
                continue;
            }
            let events = self.events(messages, &mut rejected, &ctx.metrics);
            if !rejected.is_empty() {
                ctx.dead_letters.send(rejected, Acks::none()).await;
            }
            if events.is_empty() {
                continue;
            }
            // A connection that brings something new resets the waits (one
            // that only repeats what was seen does not: a server replaying
            // a file on every connection is not hammered).
            if first {
                first = false;
                self.backoff.reset();
                if let Some(last) = self.last_message {
                    tracing::info!(
                        url = %self.url,
                        gap_ms = last.elapsed().as_millis() as u64,
                        "http_stream resumed; gap since the last message before the reconnect"
                    );
                }
            }
            self.last_message = Some(Instant::now());
            StageMetrics::add(&ctx.metrics.events_in, events.len() as u64);
            let waited = Instant::now();
            for chunk in chunks(events, ctx.batch_size) {
                if ctx.out.send(Batch::new(chunk)).await.is_err() {
                    return Ok(Ended::Closed);
                }
            }
            StageMetrics::add(
                &ctx.metrics.backpressure_ms,
                waited.elapsed().as_millis() as u64,
            );
        }
    }

    /// Turns messages into events: JSON checked, time read, duplicates
    /// dropped; refusals to `rejected`.
    fn events(
        &mut self,
        messages: Vec<Message>,
        rejected: &mut Vec<(Event, String)>,
        metrics: &StageMetrics,
    ) -> Vec<Event> {
        let json = self.config.json();
        let arrival = now_ms();
        let mut events = Vec::with_capacity(messages.len());
        for m in messages {
            let mut event = Event::new(m.data, arrival);
            if let Some(kind) = m.event {
                event.headers.push(("sse.event".into(), Bytes::from(kind)));
            }
            if let Some(id) = m.id {
                event.headers.push(("sse.id".into(), Bytes::from(id)));
            }
            if json {
                if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&event.value) {
                    rejected.push((event, format!("invalid JSON: {e}")));
                    continue;
                }
                if let Some(field) = self.config.timestamp_field() {
                    match read_time(&event.value, field) {
                        Ok(ts) => event.timestamp_ms = ts,
                        Err(why) => {
                            rejected.push((event, why));
                            continue;
                        }
                    }
                }
                if let Some(field) = self.config.dedupe.clone()
                    && let Some(id) = read_text(&event.value, &field)
                    && !self.remember(id)
                {
                    StageMetrics::add(&metrics.duplicates, 1);
                    continue;
                }
            }
            self.messages += 1;
            events.push(event);
        }
        events
    }

    /// Remembers a message id; false when it was already among the recent.
    fn remember(&mut self, id: String) -> bool {
        if self.seen_set.contains(&id) {
            return false;
        }
        let window = self.config.dedupe_window.unwrap_or(100_000).max(1);
        while self.seen.len() >= window {
            if let Some(old) = self.seen.pop_front() {
                self.seen_set.remove(&old);
            }
        }
        self.seen.push_back(id.clone());
        self.seen_set.insert(id);
        true
    }
}

/// A reqwest error without the URL (its query may hold credentials), with
/// its causes.
fn describe(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else if e.is_body() || e.is_decode() {
        "the connection broke".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

fn read_text(value: &[u8], field: &str) -> Option<String> {
    match weir_plugin::json::field(value, field).ok()?? {
        weir_plugin::json::Scalar::Null => None,
        s => Some(s.into_text().into_owned()),
    }
}

fn read_time(value: &[u8], field: &str) -> Result<i64, String> {
    let text = read_text(value, field).ok_or_else(|| format!("no timestamp field {field:?}"))?;
    weir_plugin::time::parse_timestamp(&text).map_err(|e| format!("timestamp field {field:?}: {e}"))
}

fn chunks(mut events: Vec<Event>, size: usize) -> Vec<Vec<Event>> {
    let size = size.max(1);
    if events.len() <= size {
        return vec![events];
    }
    let mut out = Vec::new();
    while events.len() > size {
        let rest = events.split_off(size);
        out.push(std::mem::replace(&mut events, rest));
    }
    out.push(events);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_query_or_user() {
        assert_eq!(
            shown_url("https://u:p@api.example.com/2/stream?token=abc&track=x#f"),
            "https://api.example.com/2/stream"
        );
        assert_eq!(
            shown_url("https://u:p@host:99999/x?k=1"),
            "https://host:99999/x"
        );
    }

    #[test]
    fn settings_read_from_toml() {
        let c: HttpStreamConfig = toml::from_str(
            r#"
url = "http://127.0.0.1:1/stream"
query = { track = ["rust", "kafka"], language = "en" }
auth = { bearer_env = "T" }
format = "sse"
backoff = { http_initial = "1s" }
"#,
        )
        .unwrap();
        assert_eq!(c.query["track"].text(), "rust,kafka");
        assert!(c.json());
        assert_eq!(c.backoff.http_initial.0, Duration::from_secs(1));
        assert_eq!(c.backoff.network_max.0, Duration::from_secs(16));
        let e = toml::from_str::<HttpStreamConfig>("url = \"x\"\nformat = \"xml\"").unwrap_err();
        assert!(e.to_string().contains("unknown variant `xml`"), "{e}");
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret("abc".into())), "<secret>");
    }

    #[test]
    fn batches_are_cut_to_size() {
        let events: Vec<Event> = (0..5).map(|i| Event::new(vec![i], 0)).collect();
        let sizes: Vec<usize> = chunks(events, 2).iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 2, 1]);
    }
}
