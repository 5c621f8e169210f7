//! The `http_stream` source's settings (config is data: serde, unknown
//! keys refused) and the credentials they name, read from the environment.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::backoff::Policy;
use super::framing::Format;
use super::oauth1;
use crate::units::{ByteSize, Duration as Setting};

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
    pub(super) fn text(&self) -> String {
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
pub(super) enum Credentials {
    Bearer(Secret),
    OAuth1(oauth1::Credentials),
}

fn env_secret(setting: &str, var: &str) -> Result<String, String> {
    crate::util::env_setting(&format!("auth.{setting}"), var)
}

impl Auth {
    pub(super) fn credentials(&self) -> Result<Credentials, String> {
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
    pub(super) fn json(&self) -> bool {
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

impl HttpStreamConfig {
    pub(super) fn timestamp_field(&self) -> Option<&str> {
        self.timestamp.as_deref().filter(|t| *t != "arrival")
    }
}

pub(super) use crate::util::Secret;

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
        assert_eq!(c.backoff.http_initial.0, std::time::Duration::from_secs(1));
        assert_eq!(c.backoff.network_max.0, std::time::Duration::from_secs(16));
        let e = toml::from_str::<HttpStreamConfig>("url = \"x\"\nformat = \"xml\"").unwrap_err();
        assert!(e.to_string().contains("unknown variant `xml`"), "{e}");
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret("abc".into())), "<secret>");
    }
}
