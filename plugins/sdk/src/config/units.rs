//! Durations and byte sizes as people write them: `"1s"`, `"250ms"`,
//! `"64MiB"`. The `weir` host reads its pipeline files with these same
//! types, so a plugin's `window = "1.5s"` means what `timeout = "1.5s"`
//! means to the host, and both report a typo the same way.

use std::fmt;
use std::time::Duration as StdDuration;

use serde::{Deserialize, Deserializer, Serialize};

/// A duration written as `"1s"`, `"250ms"`, `"1.5s"`, `"2m"`, `"1h"`, `"1d"`,
/// or an integer number of milliseconds.
///
/// ```
/// use weir_plugin::config::Duration;
/// let d: Duration = serde_json::from_str(r#""1.5s""#).unwrap();
/// assert_eq!((d.ms(), d.to_string()), (1500, "1500ms".to_owned()));
/// let d: Duration = serde_json::from_str("250").unwrap();
/// assert_eq!(d, Duration::from_millis(250));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Duration(pub StdDuration);

impl Duration {
    /// From milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Duration(StdDuration::from_millis(ms))
    }

    /// As a standard duration.
    pub fn get(self) -> StdDuration {
        self.0
    }

    /// Whole milliseconds, rounded to the nearest (the unit of event
    /// timestamps and windows).
    pub fn ms(self) -> i64 {
        i64::try_from((self.0.as_nanos() + 500_000) / 1_000_000).unwrap_or(i64::MAX)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

/// Splits `"1.5 s"` into the number and the unit; `what` names the quantity
/// in the error, `example` shows a valid value.
fn number_and_unit<'t>(text: &'t str, what: &str, example: &str) -> Result<(f64, &'t str), String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n = num.parse().map_err(|_| {
        format!("invalid {what} {text:?}: expected a number and a unit, like {example}")
    })?;
    Ok((n, unit.trim()))
}

/// Parses a duration; see [`Duration`].
pub fn parse_duration(text: &str) -> Result<StdDuration, String> {
    let (n, unit) = number_and_unit(text, "duration", r#""1s" or "250ms""#)?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        other => {
            return Err(format!(
                "invalid duration {text:?}: unknown unit {other:?} (use ms, s, m, h or d)"
            ));
        }
    };
    StdDuration::try_from_secs_f64(secs).map_err(|_| format!("invalid duration {text:?}: too long"))
}

/// A size in bytes written as `"64MiB"`, `"512KiB"`, `"1GB"`, `"10MB"`, or an
/// integer number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ByteSize(pub u64);

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MIB: u64 = 1 << 20;
        if self.0 >= MIB && self.0.is_multiple_of(MIB) {
            write!(f, "{} MiB", self.0 / MIB)
        } else {
            write!(f, "{} bytes", self.0)
        }
    }
}

/// Parses a byte size; see [`ByteSize`].
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let (n, unit) = number_and_unit(text, "size", r#""64MiB""#)?;
    let scale: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "invalid size {text:?}: unknown unit {other:?} (use B, KiB, MiB, GiB, KB, MB or GB)"
            ));
        }
    };
    Ok((n * scale).round() as u64)
}

/// Reads an integer (`whole`) or a text with a unit (`parse`); anything
/// else is refused with `expected`.
fn whole_or_text<'de, D: Deserializer<'de>, T>(
    d: D,
    expected: &'static str,
    whole: impl FnOnce(u64) -> T,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Whole(u64),
        Text(String),
    }
    match Raw::deserialize(d).map_err(|_| serde::de::Error::custom(expected))? {
        Raw::Whole(n) => Ok(whole(n)),
        Raw::Text(t) => parse(&t).map_err(serde::de::Error::custom),
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        whole_or_text(
            d,
            r#"expected a duration such as "1s" or "250ms""#,
            Duration::from_millis,
            |t| parse_duration(t).map(Duration),
        )
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        whole_or_text(d, r#"expected a size such as "64MiB""#, ByteSize, |t| {
            parse_bytes(t).map(ByteSize)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ms = |t: &str| parse_duration(t).map(|d| Duration(d).ms());
        assert_eq!(ms("1s"), Ok(1000));
        assert_eq!(ms("250ms"), Ok(250));
        assert_eq!(ms("1.5s"), Ok(1500));
        assert_eq!(ms("2m"), Ok(120_000));
        assert_eq!(ms("0.5ms"), Ok(1), "rounded to the nearest millisecond");
        assert_eq!(
            parse_duration("1d").unwrap(),
            StdDuration::from_secs(86_400)
        );
        assert_eq!(
            parse_duration("fast").unwrap_err(),
            r#"invalid duration "fast": expected a number and a unit, like "1s" or "250ms""#
        );
        assert_eq!(
            parse_duration("1 fortnight").unwrap_err(),
            r#"invalid duration "1 fortnight": unknown unit "fortnight" (use ms, s, m, h or d)"#
        );
        assert!(parse_duration("1e999999999999999999999999d").is_err());
        assert!(parse_duration("99999999999999999999999999999d").is_err());
        assert_eq!(Duration::from_millis(1500).to_string(), "1500ms");
        assert_eq!(Duration::from_millis(60_000).to_string(), "60s");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("10MB"), Ok(10_000_000));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("1.5 kib"), Ok(1536));
        assert!(
            parse_bytes("3 parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(
            parse_bytes("MiB")
                .unwrap_err()
                .contains("expected a number")
        );
        assert_eq!(ByteSize(64 << 20).to_string(), "64 MiB");
        assert_eq!(ByteSize(1000).to_string(), "1000 bytes");
    }

    #[test]
    fn integers_and_text_deserialise_and_other_types_are_refused() {
        let d = |j: &str| serde_json::from_str::<Duration>(j).map_err(|e| e.to_string());
        assert_eq!(d("1500"), Ok(Duration::from_millis(1500)));
        assert_eq!(d(r#""2s""#), Ok(Duration::from_millis(2000)));
        assert!(
            d("true")
                .unwrap_err()
                .starts_with("expected a duration such as")
        );
        assert!(
            d("-5")
                .unwrap_err()
                .starts_with("expected a duration such as")
        );
        let b = |j: &str| serde_json::from_str::<ByteSize>(j).map_err(|e| e.to_string());
        assert_eq!(b(r#""1KiB""#), Ok(ByteSize(1024)));
        assert_eq!(b("7"), Ok(ByteSize(7)));
        assert!(b("[1]").unwrap_err().starts_with("expected a size such as"));
    }
}
