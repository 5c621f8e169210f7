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
pub mod settings;
mod stream;

use futures_util::FutureExt;

use crate::stage::{BoxError, Component, Source, SourceContext, StageTask};

pub use settings::{Auth, HttpStreamConfig, Method, OAuth1Env, QueryValue};
use stream::Stream;

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

impl Component for HttpStreamConfig {
    fn resumes_where_stopped(&self) -> bool {
        true
    }
}
