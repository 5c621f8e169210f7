//! OAuth 1.0a request signing (RFC 5849, HMAC-SHA1), as the older
//! streaming APIs require: every request carries an `Authorization: OAuth
//! ...` header signed with the consumer secret and the token secret over
//! the method, the URL and every query and form parameter.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The four credentials, read from the environment.
#[derive(Clone)]
pub struct Credentials {
    /// Consumer (API) key; sent in the clear, as the protocol does.
    pub consumer_key: String,
    /// Consumer secret; only signs.
    pub consumer_secret: String,
    /// Access token; sent in the clear.
    pub token: String,
    /// Access token secret; only signs.
    pub token_secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<oauth1 credentials>")
    }
}

/// RFC 3986 percent-encoding: everything but `A-Z a-z 0-9 - . _ ~`.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `Authorization` header value for a request of `method` to `url`
/// (its query included) with form `body_params`, at `timestamp` (Unix
/// seconds) with `nonce`.
pub fn authorization(
    method: &str,
    url: &reqwest::Url,
    body_params: &[(String, String)],
    creds: &Credentials,
    nonce: &str,
    timestamp: u64,
) -> String {
    let timestamp = timestamp.to_string();
    let oauth = [
        ("oauth_consumer_key", creds.consumer_key.as_str()),
        ("oauth_nonce", nonce),
        ("oauth_signature_method", "HMAC-SHA1"),
        ("oauth_timestamp", timestamp.as_str()),
        ("oauth_token", creds.token.as_str()),
        ("oauth_version", "1.0"),
    ];
    let mut params: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (encode(&k), encode(&v)))
        .chain(body_params.iter().map(|(k, v)| (encode(k), encode(v))))
        .chain(oauth.iter().map(|(k, v)| (encode(k), encode(v))))
        .collect();
    params.sort();
    let normalized = params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut base_url = url.clone();
    base_url.set_query(None);
    base_url.set_fragment(None);
    let _ = base_url.set_username("");
    let _ = base_url.set_password(None);
    let base = format!(
        "{}&{}&{}",
        method.to_ascii_uppercase(),
        encode(base_url.as_str()),
        encode(&normalized)
    );
    let key = format!(
        "{}&{}",
        encode(&creds.consumer_secret),
        encode(&creds.token_secret)
    );
    let mut mac = Hmac::<Sha1>::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
    mac.update(base.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let mut fields: Vec<(&str, String)> =
        oauth.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    fields.push(("oauth_signature", signature));
    fields.sort();
    let fields: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}=\"{}\"", encode(k), encode(v)))
        .collect();
    format!("OAuth {}", fields.join(", "))
}

/// A fresh nonce: 32 letters and digits from the clock, the process and a
/// counter (unique, which is what the protocol needs).
pub fn nonce() -> String {
    use sha2::{Digest, Sha256};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = Sha256::new();
    h.update(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            .to_le_bytes(),
    );
    h.update(std::process::id().to_le_bytes());
    h.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    h.finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of Twitter's "Creating a signature" page.
    #[test]
    fn the_documented_example_signs_to_the_documented_signature() {
        let creds = Credentials {
            consumer_key: "xvz1evFS4wEEPTGEFPHBog".into(),
            consumer_secret: "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw".into(),
            token: "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb".into(),
            token_secret: "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE".into(),
        };
        let url = reqwest::Url::parse(
            "https://api.twitter.com/1.1/statuses/update.json?include_entities=true",
        )
        .unwrap();
        let body = [(
            "status".to_owned(),
            "Hello Ladies + Gentlemen, a signed OAuth request!".to_owned(),
        )];
        let header = authorization(
            "POST",
            &url,
            &body,
            &creds,
            "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg",
            1_318_622_958,
        );
        assert!(
            header.contains("oauth_signature=\"hCtSmYh%2BiHYCEqBWrE7C7hYmtUk%3D\""),
            "{header}"
        );
        assert!(header.starts_with("OAuth oauth_consumer_key=\"xvz1evFS4wEEPTGEFPHBog\""));
        assert!(!header.contains(&creds.consumer_secret) && !header.contains(&creds.token_secret));
        assert_eq!(format!("{creds:?}"), "<oauth1 credentials>");
    }

    #[test]
    fn encoding_keeps_only_unreserved_characters() {
        assert_eq!(encode("Ladies + Gentlemen"), "Ladies%20%2B%20Gentlemen");
        assert_eq!(encode("a-b.c_d~é"), "a-b.c_d~%C3%A9");
        assert_ne!(nonce(), nonce());
    }
}
