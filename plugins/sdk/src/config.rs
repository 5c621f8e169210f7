//! Reading a plugin's `config` table.
//!
//! The host passes the stage's `config` table as JSON. [`parse`] turns it
//! into a typed struct with an error an operator can act on, and
//! [`Duration`] reads durations such as `"1s"`, `"250ms"` or `"2m"`.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

/// Parses the JSON config into `T`. Use `#[serde(deny_unknown_fields)]` on
/// `T` so typos are reported instead of ignored.
pub fn parse<T: DeserializeOwned>(json: &str) -> Result<T, String> {
    let json = if json.trim().is_empty() { "{}" } else { json };
    serde_json::from_str(json).map_err(|e| {
        // serde_json appends " at line 1 column N"; the position in the
        // re-serialised JSON means nothing to the author of the TOML file.
        let msg = e.to_string();
        match msg.find(" at line ") {
            Some(i) => msg[..i].to_owned(),
            None => msg,
        }
    })
}

/// A duration in milliseconds, read from `"1s"`, `"500ms"`, `"2m"`, `"1h"`,
/// `"1d"` or a plain integer of milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Duration(pub i64);

impl Duration {
    /// Milliseconds.
    pub fn ms(self) -> i64 {
        self.0
    }
}

/// Parses a duration such as `1s`, `250ms`, `1.5s`, `2m`, `1h` or `1d` into
/// milliseconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| {
        format!("invalid duration {text:?}: expected a number and a unit like \"1s\"")
    })?;
    let scale = match unit.trim() {
        "ms" => 1.0,
        "s" | "" => 1000.0,
        "m" | "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        other => {
            return Err(format!(
                "invalid duration {text:?}: unknown unit {other:?} (use ms, s, m, h or d)"
            ));
        }
    };
    Ok((n * scale).round() as i64)
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Ms(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Ms(ms) => Ok(Duration(ms)),
            Raw::Text(t) => parse_duration(&t)
                .map(Duration)
                .map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1s"), Ok(1000));
        assert_eq!(parse_duration("250ms"), Ok(250));
        assert_eq!(parse_duration("1.5s"), Ok(1500));
        assert_eq!(parse_duration("2m"), Ok(120_000));
        assert!(parse_duration("fast").is_err());
        assert!(
            parse_duration("3 weeks")
                .unwrap_err()
                .contains("unknown unit")
        );
    }

    #[test]
    fn parse_reports_unknown_fields_without_positions() {
        #[derive(Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct C {
            window: Duration,
        }
        let e = parse::<C>(r#"{"windw":"1s"}"#).unwrap_err();
        assert!(e.starts_with("unknown field `windw`"), "{e}");
        assert!(!e.contains("line"));
        assert_eq!(
            parse::<C>(r#"{"window":"2s"}"#).unwrap().window,
            Duration(2000)
        );
    }
}
