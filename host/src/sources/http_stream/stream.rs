//! One `http_stream` source instance at work: connecting, reading and
//! framing the body, turning messages into events, and reconnecting with
//! the waits of [`super::backoff`].

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::backoff::{self, Backoff, Failure};
use super::framing::{Format, Framer, Message};
use super::oauth1;
use super::settings::{Credentials, HttpStreamConfig, Method};
use crate::event::{Acks, Batch, Event, Marker};
use crate::stage::{Action, BoxError, SourceContext};
use crate::telemetry::StageMetrics;
use crate::util::now_ms;

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
pub(super) struct Stream {
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
    pub(super) fn new(
        config: HttpStreamConfig,
        token: Option<Credentials>,
    ) -> Result<Stream, BoxError> {
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

    pub(super) async fn run(mut self, mut ctx: SourceContext) -> Result<(), BoxError> {
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
    fn batches_are_cut_to_size() {
        let events: Vec<Event> = (0..5).map(|i| Event::new(vec![i], 0)).collect();
        let sizes: Vec<usize> = chunks(events, 2).iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 2, 1]);
    }
}
