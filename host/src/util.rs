//! Small shared helpers.

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A short, printable preview of a payload for log lines.
pub fn preview(bytes: &[u8]) -> String {
    const MAX: usize = 80;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]);
    let mut s: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if bytes.len() > MAX {
        s.push('…');
    }
    s
}

/// Parses a timestamp: integer Unix milliseconds, RFC 3339
/// (`2015-02-04T17:51:00Z`, `...+01:00`, fractional seconds allowed) or a
/// naive `YYYY-MM-DD HH:MM:SS[.fff]` read as UTC. Returns Unix milliseconds.
pub fn parse_timestamp(text: &str) -> Result<i64, String> {
    let t = text.trim().trim_matches('"');
    if let Ok(ms) = t.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(f) = t.parse::<f64>()
        && f.is_finite()
    {
        return Ok(f.round() as i64);
    }
    parse_datetime(t).ok_or_else(|| {
        format!("cannot read timestamp {t:?}: expected Unix milliseconds, RFC 3339 or YYYY-MM-DD HH:MM:SS")
    })
}

fn parse_datetime(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b' ' || b[10] == b'T' || b[10] == b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = t.get(r)?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut rest = &t[19..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let ms_digits = &frac[..digits.min(3)];
        millis = ms_digits.parse::<i64>().ok()? * 10i64.pow(3 - ms_digits.len() as u32);
        rest = &frac[digits..];
    }
    let offset_min = match rest {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let r = &rest[1..];
            let (oh, om) = match r.len() {
                5 if r.as_bytes()[2] == b':' => {
                    (r[0..2].parse::<i64>().ok()?, r[3..5].parse::<i64>().ok()?)
                }
                4 => (r[0..2].parse::<i64>().ok()?, r[2..4].parse::<i64>().ok()?),
                2 => (r.parse::<i64>().ok()?, 0),
                _ => return None,
            };
            sign * (oh * 60 + om)
        }
    };
    let days = days_from_civil(y, mo, d);
    Some(((days * 86_400 + h * 3600 + mi * 60 + s) - offset_min * 60) * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("1700000000123").unwrap(), 1_700_000_000_123);
        assert_eq!(parse_timestamp("1970-01-01 00:00:01").unwrap(), 1000);
        assert_eq!(
            parse_timestamp("2015-02-04 17:51:00").unwrap(),
            1_423_072_260_000
        );
        assert_eq!(
            parse_timestamp("2015-02-04T17:51:00.5Z").unwrap(),
            1_423_072_260_500
        );
        assert_eq!(
            parse_timestamp("2015-02-04T18:51:00+01:00").unwrap(),
            1_423_072_260_000
        );
        assert_eq!(parse_timestamp("1969-12-31 23:59:59").unwrap(), -1000);
        assert!(parse_timestamp("yesterday").is_err());
        assert!(parse_timestamp("2015-13-04 17:51:00").is_err());
    }

    #[test]
    fn previews_are_short_and_printable() {
        assert_eq!(preview(b"a\nb"), "a b");
        assert!(preview(&[b'x'; 200]).ends_with('…'));
    }
}

/// A top-level JSON field's value, read without building a document tree.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonScalar {
    /// An integer.
    Int(i64),
    /// Any other number.
    Float(f64),
    /// A string (unescaped).
    Str(String),
    /// `true`, `false`, `null`, an array or an object, as JSON text.
    Other(String),
}

impl JsonScalar {
    /// The value as text: strings without quotes, everything else as JSON.
    pub fn into_text(self) -> String {
        match self {
            JsonScalar::Int(i) => i.to_string(),
            JsonScalar::Float(f) => f.to_string(),
            JsonScalar::Str(s) | JsonScalar::Other(s) => s,
        }
    }

    /// The value as Unix milliseconds (numbers as they are, strings parsed).
    pub fn to_timestamp(&self) -> Result<i64, String> {
        match self {
            JsonScalar::Int(i) => Ok(*i),
            JsonScalar::Float(f) => Ok(f.round() as i64),
            JsonScalar::Str(s) => parse_timestamp(s),
            JsonScalar::Other(s) => Err(format!("cannot read timestamp from {s}")),
        }
    }
}

/// Finds top-level field `name` of a JSON object. `Ok(None)` when absent,
/// `Err` when `json` is not a JSON object.
pub fn json_field(json: &[u8], name: &str) -> Result<Option<JsonScalar>, String> {
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
    use std::fmt;

    struct Find<'a>(&'a str);
    impl<'de> DeserializeSeed<'de> for Find<'_> {
        type Value = Option<JsonScalar>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de> Visitor<'de> for Find<'_> {
        type Value = Option<JsonScalar>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
            let mut found = None;
            while let Some(is_it) = map.next_key_seed(KeyIs(self.0))? {
                if is_it {
                    let v: serde_json::Value = map.next_value()?;
                    found = Some(match v {
                        serde_json::Value::String(s) => JsonScalar::Str(s),
                        serde_json::Value::Number(n) => match n.as_i64() {
                            Some(i) => JsonScalar::Int(i),
                            None => JsonScalar::Float(n.as_f64().unwrap_or(f64::NAN)),
                        },
                        other => JsonScalar::Other(other.to_string()),
                    });
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found)
        }
    }
    struct KeyIs<'a>(&'a str);
    impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
        type Value = bool;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
            d.deserialize_str(self)
        }
    }
    impl<'de> Visitor<'de> for KeyIs<'_> {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a key")
        }
        fn visit_str<E>(self, v: &str) -> Result<bool, E> {
            Ok(v == self.0)
        }
    }

    let mut de = serde_json::Deserializer::from_slice(json);
    let found = Find(name)
        .deserialize(&mut de)
        .and_then(|f| de.end().map(|()| f))
        .map_err(|e| format!("invalid JSON: {e}"))?;
    Ok(found)
}

/// [`json_field`] as text.
pub fn json_field_text(json: &[u8], name: &str) -> Result<Option<String>, String> {
    json_field(json, name).map(|f| f.map(JsonScalar::into_text))
}

#[cfg(test)]
mod json_tests {
    use super::*;

    #[test]
    fn fields() {
        assert_eq!(
            json_field(br#"{"ts":5,"g":"0"}"#, "ts").unwrap(),
            Some(JsonScalar::Int(5))
        );
        assert_eq!(
            json_field_text(br#"{"ts":5,"g":"0"}"#, "g")
                .unwrap()
                .as_deref(),
            Some("0")
        );
        assert_eq!(
            json_field_text(br#"{"g":[1,2]}"#, "g").unwrap().as_deref(),
            Some("[1,2]")
        );
        assert_eq!(json_field(br#"{"a":1}"#, "g").unwrap(), None);
        assert!(json_field(b"{oops", "g").is_err());
        assert!(json_field(b"[1]", "g").is_err());
    }
}
