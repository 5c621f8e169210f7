//! `type = "thingsboard"`: device telemetry over ThingsBoard's HTTP device
//! API.
//!
//! ```toml
//! [sinks.dashboard]
//! type = "thingsboard"
//! inputs = ["predict"]
//! url = "http://thingsboard.local:8080"
//! device_field = "device"                      # which device an event belongs to
//! tokens = { "pi-kitchen" = "${TB_KITCHEN_TOKEN}", "S11" = "${TB_COUNTER_TOKEN}" }
//! # token = "${TB_TOKEN}"                      # or one token for every event
//! fields = ["temperature", "humidity", "p_rain"]   # default: every numeric field
//! batch = 100                                  # readings per request (one device)
//! ```
//!
//! Each event becomes `{"ts": MS, "values": {...}}` (an array of them per
//! request) posted to `{url}/api/v1/{token}/telemetry`, `ts` being the
//! event time. Connection errors, timeouts, 429 and 5xx (ThingsBoard
//! answers rate limiting with 500) are retried with exponential backoff
//! for up to `retry_for` (default 10 minutes); 413 splits the request in
//! halves; 400, 401, 403 and 404 are not retried: those events go to the
//! dead-letter output. Upstream is acknowledged only after a 2xx. Tokens
//! never appear in logs or error messages: devices are named instead.

use std::collections::BTreeMap;
use std::time::{Duration as StdDuration, Instant};

use futures_util::FutureExt;
use serde::Deserialize;

use crate::event::Event;
use crate::stage::{BoxError, Component, Sink, SinkContext, StageTask};
use crate::telemetry::StageMetrics;
use crate::units::Duration;

/// Settings of the `thingsboard` sink.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThingsboardConfig {
    /// Base URL of the ThingsBoard server.
    pub url: String,
    /// One access token for every event.
    #[serde(default)]
    pub token: Option<String>,
    /// Access token per device.
    #[serde(default)]
    pub tokens: BTreeMap<String, String>,
    /// JSON field naming the device (with `tokens`).
    #[serde(default)]
    pub device_field: Option<String>,
    /// Fields to send (default: every numeric field).
    #[serde(default)]
    pub fields: Option<Vec<String>>,
    /// Readings per request (default 100).
    #[serde(default)]
    pub batch: Option<usize>,
    /// Per-request timeout (default 10 s).
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// How long to keep retrying a request (default 10 min).
    #[serde(default)]
    pub retry_for: Option<Duration>,
}

/// One reading, ready to post.
struct Reading {
    index: usize,
    telemetry: serde_json::Value,
}

/// Outcome of posting one request.
enum Posted {
    Accepted,
    /// Not retried: these events go to the dead-letter output.
    Refused(String),
    TooLarge,
    /// Gave up retrying.
    Failed(String),
}

impl Sink for ThingsboardConfig {
    fn build(&self, ctx: SinkContext) -> Result<StageTask, BoxError> {
        if self.token.is_none() && self.tokens.is_empty() {
            return Err("set `token`, or `tokens` with `device_field`".into());
        }
        if !self.tokens.is_empty() && self.device_field.is_none() {
            return Err(
                "`tokens` needs `device_field`, the field that names each event's device".into(),
            );
        }
        let url = self.url.trim_end_matches('/').to_owned();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("url must start with http:// or https://, got {url:?}").into());
        }
        let client = reqwest::Client::builder()
            .timeout(
                self.timeout
                    .map_or(StdDuration::from_secs(10), Duration::get),
            )
            .build()
            .map_err(|e| format!("cannot create the HTTP client: {}", e.without_url()))?;
        let sink = Poster {
            config: self.clone(),
            url,
            client,
            retry_for: self
                .retry_for
                .map_or(StdDuration::from_secs(600), Duration::get),
        };
        Ok(sink.run(ctx).boxed())
    }
}

impl Component for ThingsboardConfig {}

/// Posts batches of telemetry, retrying what ThingsBoard may take later.
struct Poster {
    config: ThingsboardConfig,
    url: String,
    client: reqwest::Client,
    retry_for: StdDuration,
}

impl Poster {
    async fn run(self, mut ctx: SinkContext) -> Result<(), BoxError> {
        while let Some(batch) = ctx.next_batch().await {
            StageMetrics::add(&ctx.metrics.events_in, batch.events.len() as u64);
            let started = Instant::now();
            let mut dead: Vec<(usize, String)> = Vec::new();
            // device -> (token, readings)
            let mut by_device: BTreeMap<String, (String, Vec<Reading>)> = BTreeMap::new();
            for (index, e) in batch.events.iter().enumerate() {
                match self.prepare(e) {
                    Ok((device, token, telemetry)) => by_device
                        .entry(device)
                        .or_insert_with(|| (token, Vec::new()))
                        .1
                        .push(Reading { index, telemetry }),
                    Err(reason) => dead.push((index, reason)),
                }
            }
            let per_request = self.config.batch.unwrap_or(100).max(1);
            let mut delivered = 0u64;
            for (device, (token, readings)) in by_device {
                for chunk in readings.chunks(per_request) {
                    let mut pending: Vec<&[Reading]> = vec![chunk];
                    while let Some(part) = pending.pop() {
                        match self.post(&device, &token, part).await {
                            Posted::Accepted => delivered += part.len() as u64,
                            Posted::TooLarge if part.len() > 1 => {
                                let (a, b) = part.split_at(part.len() / 2);
                                pending.push(b);
                                pending.push(a);
                            }
                            Posted::TooLarge => dead.push((
                                part[0].index,
                                format!("ThingsBoard refused a single reading of device {device} as too large (413)"),
                            )),
                            Posted::Refused(reason) | Posted::Failed(reason) => {
                                StageMetrics::add(&ctx.metrics.errors, 1);
                                dead.extend(part.iter().map(|r| (r.index, reason.clone())));
                            }
                        }
                    }
                }
            }
            StageMetrics::add(&ctx.metrics.events_out, delivered);
            if !dead.is_empty() {
                let events: Vec<(Event, String)> = dead
                    .into_iter()
                    .map(|(i, reason)| (batch.events[i].clone(), reason))
                    .collect();
                ctx.dead_letters.send(events, batch.acks.clone()).await;
            }
            ctx.metrics.record_batch(started.elapsed());
            drop(batch); // every reading accepted or dead-lettered
        }
        Ok(())
    }

    /// The device, its token and the telemetry object of one event.
    fn prepare(&self, e: &Event) -> Result<(String, String, serde_json::Value), String> {
        let obj: serde_json::Map<String, serde_json::Value> = match serde_json::from_slice(&e.value)
        {
            Ok(serde_json::Value::Object(o)) => o,
            Ok(_) => return Err("value is not a JSON object".into()),
            Err(err) => return Err(format!("invalid JSON: {err}")),
        };
        let (device, token) = match &self.config.device_field {
            Some(field) => {
                let device = match obj.get(field) {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(v @ serde_json::Value::Number(_)) => v.to_string(),
                    _ => return Err(format!("field {field:?} (the device) is missing")),
                };
                match self
                    .config
                    .tokens
                    .get(&device)
                    .or(self.config.token.as_ref())
                {
                    Some(t) => (device, t.clone()),
                    None => return Err(format!("no access token for device {device:?}")),
                }
            }
            None => (
                "default".to_owned(),
                self.config.token.clone().expect("checked at build"),
            ),
        };
        let mut values = serde_json::Map::new();
        match &self.config.fields {
            Some(fields) => {
                for f in fields {
                    if let Some(v) = obj.get(f) {
                        values.insert(f.clone(), v.clone());
                    }
                }
            }
            None => {
                for (k, v) in &obj {
                    if v.is_number() && Some(k) != self.config.device_field.as_ref() {
                        values.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        if values.is_empty() {
            return Err("no fields to send".into());
        }
        Ok((
            device,
            token,
            serde_json::json!({ "ts": e.timestamp_ms, "values": values }),
        ))
    }

    /// Posts readings of one device, retrying what retrying can fix.
    async fn post(&self, device: &str, token: &str, readings: &[Reading]) -> Posted {
        let body = if readings.len() == 1 {
            readings[0].telemetry.clone()
        } else {
            serde_json::Value::Array(readings.iter().map(|r| r.telemetry.clone()).collect())
        };
        let url = format!("{}/api/v1/{token}/telemetry", self.url);
        let started = Instant::now();
        let mut delay = StdDuration::from_millis(100);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let outcome = self.client.post(&url).json(&body).send().await;
            let retry_reason = match outcome {
                Ok(resp) => {
                    let status = resp.status();
                    if status.is_success() {
                        return Posted::Accepted;
                    }
                    match status.as_u16() {
                        413 => return Posted::TooLarge,
                        400 | 401 | 403 | 404 => {
                            return Posted::Refused(format!(
                                "ThingsBoard refused the telemetry of device {device}: {status}{}",
                                if status.as_u16() == 401 {
                                    " (wrong or unknown access token)"
                                } else {
                                    ""
                                }
                            ));
                        }
                        _ => format!("HTTP {status}"),
                    }
                }
                // Without the URL: it contains the token.
                Err(e) => format!("{}", e.without_url()),
            };
            if started.elapsed() >= self.retry_for {
                return Posted::Failed(format!(
                    "gave up posting telemetry of device {device} after {attempt} attempts in {:?}: {retry_reason}",
                    started.elapsed()
                ));
            }
            tracing::warn!(
                device,
                attempt,
                reason = retry_reason,
                retry_in_ms = delay.as_millis() as u64,
                "ThingsBoard post failed; retrying"
            );
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(StdDuration::from_secs(10));
        }
    }
}
