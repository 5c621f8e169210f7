//! Reading one top-level field of a JSON object without building a
//! document tree (the other fields are skipped, not allocated).
//!
//! ```
//! use weir_plugin::json::{Scalar, field};
//! let v = br#"{"sensor":"S1","temperature":21.5,"tags":[1,2]}"#;
//! assert_eq!(field(v, "temperature").unwrap(), Some(Scalar::Float(21.5)));
//! assert_eq!(field(v, "sensor").unwrap().unwrap().as_text(), "S1");
//! assert_eq!(field(v, "tags").unwrap(), Some(Scalar::Json("[1,2]".into())));
//! assert_eq!(field(v, "missing").unwrap(), None);
//! ```

use std::borrow::Cow;
use std::fmt;

mod scan;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

/// A field's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer that fits in `i64`.
    Int(i64),
    /// Any other number.
    Float(f64),
    /// A string, borrowed from the input unless it had escapes.
    Str(Cow<'a, str>),
    /// An array or object, as JSON text.
    Json(String),
}

impl<'a> Scalar<'a> {
    /// The value as text: strings without quotes, `null` as the empty
    /// string, everything else as JSON.
    pub fn as_text(&self) -> Cow<'_, str> {
        match self {
            Scalar::Null => Cow::Borrowed(""),
            Scalar::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            Scalar::Int(i) => Cow::Owned(i.to_string()),
            Scalar::Float(f) => Cow::Owned(f.to_string()),
            Scalar::Str(s) => Cow::Borrowed(s),
            Scalar::Json(j) => Cow::Borrowed(j),
        }
    }

    /// Like [`Scalar::as_text`], keeping a borrowed string borrowed.
    #[inline]
    pub fn into_text(self) -> Cow<'a, str> {
        match self {
            Scalar::Str(s) => s,
            Scalar::Json(j) => Cow::Owned(j),
            other => Cow::Owned(other.as_text().into_owned()),
        }
    }

    /// The value as a number: JSON numbers, and strings holding one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Scalar::Int(i) => Some(*i as f64),
            Scalar::Float(f) => Some(*f),
            Scalar::Str(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
            _ => None,
        }
    }

    /// The value as Unix milliseconds: numbers as they are, strings parsed
    /// with [`crate::time::parse_timestamp_in`].
    pub fn as_timestamp(&self, zone: crate::time::TimeZone) -> Result<i64, String> {
        match self {
            Scalar::Int(i) => Ok(*i),
            Scalar::Float(f) if f.is_finite() => Ok(f.round() as i64),
            Scalar::Str(s) => crate::time::parse_timestamp_in(s, zone),
            other => Err(format!("cannot read a timestamp from {}", other.as_text())),
        }
    }
}

/// Finds top-level field `name` of the JSON object `json`: `Ok(None)` when
/// absent, `Err` when `json` is not a JSON object.
pub fn field<'a>(json: &'a [u8], name: &str) -> Result<Option<Scalar<'a>>, String> {
    match scan::field(json, name.as_bytes()) {
        Some(found) => Ok(found),
        None => field_with_serde(json, name),
    }
}

/// [`field`] by serde_json: every input, and the reference for the fast
/// path's answers and for error messages.
fn field_with_serde<'a>(json: &'a [u8], name: &str) -> Result<Option<Scalar<'a>>, String> {
    let mut de = serde_json::Deserializer::from_slice(json);
    Find(name)
        .deserialize(&mut de)
        .and_then(|found| de.end().map(|()| found))
        .map_err(|e| format!("invalid JSON: {e}"))
}

struct Find<'n>(&'n str);

impl<'de> DeserializeSeed<'de> for Find<'_> {
    type Value = Option<Scalar<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Find<'_> {
    type Value = Option<Scalar<'de>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let mut found = None;
        while let Some(is_it) = map.next_key_seed(KeyIs(self.0))? {
            if is_it {
                found = Some(map.next_value_seed(ScalarSeed)?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

struct KeyIs<'n>(&'n str);

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

struct ScalarSeed;

impl<'de> DeserializeSeed<'de> for ScalarSeed {
    type Value = Scalar<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ScalarSeed {
    type Value = Scalar<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).map_or(Scalar::Float(v as f64), Scalar::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let v = serde_json::Value::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
        Ok(Scalar::Json(v.to_string()))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let v = serde_json::Value::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(Scalar::Json(v.to_string()))
    }
}

use serde::Deserialize as _;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields() {
        assert_eq!(
            field(br#"{"a":{"g":1},"g":"x\"y"}"#, "g")
                .unwrap()
                .unwrap()
                .as_text(),
            "x\"y"
        );
        assert!(matches!(
            field(br#"{"g":"plain"}"#, "g").unwrap(),
            Some(Scalar::Str(Cow::Borrowed("plain")))
        ));
        assert_eq!(
            field(br#"{"g":2.5}"#, "g").unwrap(),
            Some(Scalar::Float(2.5))
        );
        assert_eq!(field(br#"{"g":null}"#, "g").unwrap(), Some(Scalar::Null));
        assert_eq!(
            field(br#"{"g":{"x":[1]}}"#, "g").unwrap(),
            Some(Scalar::Json(r#"{"x":[1]}"#.into()))
        );
        assert_eq!(field(br#"{"a":1}"#, "g").unwrap(), None);
        assert!(field(br#"{"g":1} x"#, "g").is_err());
        assert!(field(b"[1]", "g").is_err());
        assert!(field(b"{oops", "g").is_err());
    }

    #[test]
    fn numbers_and_timestamps() {
        assert_eq!(Scalar::Str("21.5".into()).as_f64(), Some(21.5));
        assert_eq!(Scalar::Str("warm".into()).as_f64(), None);
        assert_eq!(Scalar::Int(5).as_timestamp(Default::default()), Ok(5));
        assert_eq!(
            Scalar::Str("1970-01-01 00:00:01".into()).as_timestamp(Default::default()),
            Ok(1000)
        );
    }
}
