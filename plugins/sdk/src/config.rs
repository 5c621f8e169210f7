//! Reading a plugin's `config` table.
//!
//! The host passes the stage's `config` table as JSON. [`parse`] turns it
//! into a typed struct, with errors that name the key at fault, and
//! [`Duration`] and [`ByteSize`] read `"1s"`, `"250ms"`, `"64MiB"` and the
//! like exactly as the host reads its own pipeline files (they are the same
//! types).
//!
//! ```
//! use weir_plugin::config::{self, Duration};
//!
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Config {
//!     window: Duration,
//!     #[serde(default)]
//!     labels: Vec<String>,
//! }
//!
//! let c: Config = config::parse(r#"{"window":"2s"}"#).unwrap();
//! assert_eq!(c.window.ms(), 2000);
//! let e = config::parse::<Config>(r#"{"window":"2 weeks"}"#).err().unwrap();
//! assert_eq!(e, r#"`window`: invalid duration "2 weeks": unknown unit "weeks" (use ms, s, m, h or d)"#);
//! let e = config::parse::<Config>(r#"{"window":"1s","labels":[1]}"#).err().unwrap();
//! assert!(e.starts_with("`labels[0]`: invalid type: integer `1`"), "{e}");
//! ```

mod units;

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

pub use units::{ByteSize, Duration, parse_bytes, parse_duration};

/// Parses the JSON config into `T`; an empty config is `{}`. An error names
/// the key it is about (`` `stats[2].fn`: unknown variant `median`, … ``),
/// except for unknown keys, which name themselves. Use
/// `#[serde(deny_unknown_fields)]` on `T` so typos are reported instead of
/// ignored.
pub fn parse<T: DeserializeOwned>(json: &str) -> Result<T, String> {
    let json = if json.trim().is_empty() { "{}" } else { json };
    let mut de = serde_json::Deserializer::from_str(json);
    let value = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| message(e.inner(), e.path().iter().collect()))?;
    de.end().map_err(|e| message(&e, Vec::new()))?;
    Ok(value)
}

/// `` `key`: `` and serde_json's message, without the " at line 1 column N"
/// it appends (the position in the re-serialised JSON means nothing to the
/// author of the TOML file). An unknown key is named by the message, so the
/// path stops at the table it is in.
fn message(e: &serde_json::Error, mut segments: Vec<&Segment>) -> String {
    let msg = e.to_string();
    let msg = msg.find(" at line ").map_or(&*msg, |i| &msg[..i]);
    if let Some(Segment::Map { key }) = segments.last()
        && msg.starts_with(&format!("unknown field `{key}`"))
    {
        segments.pop();
    }
    let mut key = String::new();
    for segment in segments {
        match segment {
            Segment::Seq { index } => key.push_str(&format!("[{index}]")),
            Segment::Map { key: k } | Segment::Enum { variant: k } => {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(k);
            }
            Segment::Unknown => key.push('?'),
        }
    }
    if key.is_empty() {
        msg.to_owned()
    } else {
        format!("`{key}`: {msg}")
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Stat {
        name: String,
        #[serde(rename = "fn")]
        func: Func,
    }

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "lowercase")]
    enum Func {
        Mean,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct C {
        window: Duration,
        #[serde(default)]
        stats: Vec<Stat>,
    }

    #[test]
    fn unknown_keys_are_reported_without_positions() {
        let e = parse::<C>(r#"{"windw":"1s"}"#).unwrap_err();
        assert!(e.starts_with("unknown field `windw`, expected"), "{e}");
        assert!(!e.contains("line"));
        assert_eq!(
            parse::<C>(r#"{"window":"2s"}"#).unwrap().window,
            Duration::from_millis(2000)
        );
    }

    #[test]
    fn errors_name_the_key() {
        let e = parse::<C>(r#"{"window":"1s","stats":[{"name":"a","fn":"median"}]}"#).unwrap_err();
        assert!(
            e.starts_with("`stats[0].fn`: unknown variant `median`"),
            "{e}"
        );
        let e = parse::<C>(r#"{"window":"fast"}"#).unwrap_err();
        assert!(e.starts_with("`window`: invalid duration \"fast\""), "{e}");
        let e =
            parse::<C>(r#"{"window":"1s","stats":[{"name":"a","fn":"mean","x":1}]}"#).unwrap_err();
        assert!(
            e.starts_with("`stats[0]`: unknown field `x`, expected"),
            "{e}"
        );
        assert!(parse::<C>(r#"{"stats":[]}"#).is_err());
        assert!(parse::<C>(r#"{"window":"1s"} x"#).is_err());
    }
}
