//! Pulling one key out of a value without building a document tree.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

/// The value as trimmed UTF-8.
pub fn trim(value: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(value)
        .map(str::trim)
        .map_err(|e| format!("value is not UTF-8: {e}"))
}

/// Writes the text of top-level JSON field `name` into `out`: strings as
/// they are, numbers and booleans as written, `null` as the empty key.
pub fn json_field(value: &[u8], name: &str, out: &mut String) -> Result<(), String> {
    out.clear();
    let mut de = serde_json::Deserializer::from_slice(value);
    let found = Find { name, out }
        .deserialize(&mut de)
        .and_then(|found| de.end().map(|()| found))
        .map_err(|e| format!("invalid JSON: {e}"))?;
    if found {
        Ok(())
    } else {
        Err(format!("no field {name:?}"))
    }
}

struct Find<'a> {
    name: &'a str,
    out: &'a mut String,
}

impl<'de> DeserializeSeed<'de> for Find<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Find<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<bool, M::Error> {
        let mut found = false;
        while let Some(is_it) = map.next_key_seed(KeyIs(self.name))? {
            if is_it {
                self.out.clear();
                map.next_value_seed(Scalar(&mut *self.out))?;
                found = true;
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

struct Scalar<'a>(&'a mut String);

impl<'de> DeserializeSeed<'de> for Scalar<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Scalar<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, number, boolean or null")
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.0.push_str(v);
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        use fmt::Write;
        let _ = write!(self.0, "{v}");
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        use fmt::Write;
        let _ = write!(self.0, "{v}");
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        use fmt::Write;
        let _ = write!(self.0, "{v}");
        Ok(())
    }
    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.0.push_str(if v { "true" } else { "false" });
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// Writes CSV column `col` (0-based) of a one-line record into `out`,
/// unquoting `"..."` fields (`""` inside quotes is a literal quote).
pub fn csv_field(value: &[u8], col: usize, out: &mut String) -> Result<(), String> {
    out.clear();
    let line = std::str::from_utf8(value).map_err(|e| format!("value is not UTF-8: {e}"))?;
    let line = line.trim_end_matches(['\r', '\n']);
    let mut chars = line.chars().peekable();
    let mut index = 0;
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("unterminated quoted CSV field".into()),
                }
            }
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                field.push(c);
                chars.next();
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                field.push(c);
                chars.next();
            }
        }
        if index == col {
            out.push_str(field.trim());
            return Ok(());
        }
        if chars.next().is_none() {
            return Err(format!(
                "row has {} columns, key is column {}",
                index + 1,
                col + 1
            ));
        }
        index += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_fields() {
        let mut s = String::new();
        json_field(br#"{"a":{"g":1},"g":"x\"y"}"#, "g", &mut s).unwrap();
        assert_eq!(s, "x\"y");
        json_field(br#"{"g":2.5}"#, "g", &mut s).unwrap();
        assert_eq!(s, "2.5");
        json_field(br#"{"g\u0020":1,"g":true}"#, "g", &mut s).unwrap();
        assert_eq!(s, "true");
        assert!(json_field(br#"{"g":[1]}"#, "g", &mut s).is_err());
        assert!(json_field(br#"{"g":1} x"#, "g", &mut s).is_err());
        assert!(json_field(br#"[1]"#, "g", &mut s).is_err());
    }

    #[test]
    fn csv_fields() {
        let mut s = String::new();
        csv_field(b"a,\"b,\"\"c\"\"\",d\r\n", 1, &mut s).unwrap();
        assert_eq!(s, "b,\"c\"");
        csv_field(b"a,,d", 1, &mut s).unwrap();
        assert_eq!(s, "");
        csv_field(b"a,b,d", 2, &mut s).unwrap();
        assert_eq!(s, "d");
        assert!(
            csv_field(b"a,b", 2, &mut s)
                .unwrap_err()
                .contains("2 columns")
        );
    }
}
