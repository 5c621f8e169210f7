//! Which part of an event a plugin reads: the whole value, a top-level
//! field of a JSON object, or a column of a CSV row.
//!
//! A config names the field ([`Field::keyed`] for the `key` + `columns`
//! settings, [`Field::csv`] and [`Field::json`] for a [`FieldRef`]); a
//! [`Record`] reads it from each event, splitting a CSV row once however
//! many fields are read from it.
//!
//! ```
//! use weir_plugin::field::{Field, Record};
//!
//! let columns = ["user".to_owned(), "gender".to_owned()];
//! let gender = Field::keyed(Some("gender"), Some(&columns)).unwrap();
//! assert_eq!(gender, Field::Column(1));
//! let batch = weir_plugin::Batch::from_values(0, &[(1, "7, 1 "), (2, "7"), (3, r#"{"gender":1}"#)]);
//! let mut record = Record::default();
//! record.set(batch.get(0));
//! assert_eq!(record.key(&gender).unwrap(), "1");
//! record.set(batch.get(1));
//! assert_eq!(record.key(&gender).unwrap_err(), "row has 1 columns, the key is column 2");
//!
//! let json = Field::keyed(Some("gender"), None).unwrap();
//! record.set(batch.get(2));
//! assert_eq!(record.key(&json).unwrap(), "1");
//! ```

use std::borrow::Cow;

use serde::Deserialize;

use crate::Event;
use crate::json::{self, Scalar};

/// Where a plugin finds what it reads in each event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Field {
    /// The whole value.
    #[default]
    Whole,
    /// A top-level field of a JSON object.
    Json(String),
    /// A column of a CSV row, 0-based.
    Column(usize),
}

/// A field as a config names it: by name (a JSON field, or a CSV column by
/// its header) or by 0-based CSV position.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum FieldRef {
    /// By position.
    Position(usize),
    /// By name.
    Name(String),
}

/// Position of column `name` in the CSV header `columns`; `what` names the
/// setting in the error.
fn column(what: &str, name: &str, columns: &[String]) -> Result<usize, String> {
    columns
        .iter()
        .position(|c| c == name)
        .ok_or_else(|| format!("{what} {name:?} is not one of the columns {columns:?}"))
}

impl Field {
    /// The field a `key` setting names, `columns` being the CSV header when
    /// the input is CSV: no key is the whole value, a key with columns that
    /// column, a key alone that JSON field.
    pub fn keyed(key: Option<&str>, columns: Option<&[String]>) -> Result<Field, String> {
        Ok(match (key, columns) {
            (None, _) => Field::Whole,
            (Some(k), None) => Field::Json(k.to_owned()),
            (Some(k), Some(cols)) => Field::Column(column("key", k, cols)?),
        })
    }

    /// A field of CSV rows whose header is `columns` (needed to name
    /// columns).
    pub fn csv(field: &FieldRef, columns: Option<&[String]>) -> Result<Field, String> {
        match field {
            FieldRef::Position(p) => Ok(Field::Column(*p)),
            FieldRef::Name(n) => {
                let cols = columns.ok_or_else(|| {
                    format!("field {n:?} is named, but no `columns` list the CSV header")
                })?;
                Ok(Field::Column(column("field", n, cols)?))
            }
        }
    }

    /// A field of JSON objects.
    pub fn json(field: &FieldRef) -> Result<Field, String> {
        match field {
            FieldRef::Name(n) => Ok(Field::Json(n.clone())),
            FieldRef::Position(p) => Err(format!(
                "field {p} is a position; JSON input needs field names"
            )),
        }
    }
}

/// What a [`Record`] found for a field, before any conversion.
#[derive(Debug, Clone, PartialEq)]
pub enum Raw<'r> {
    /// The whole value.
    Whole(&'r [u8]),
    /// A CSV column: borrowed from the row, or owned when unescaping
    /// (`""` inside quotes) changed it.
    Column(&'r Cow<'r, [u8]>),
    /// A JSON field's value.
    Json(Scalar<'r>),
    /// The row has no such column, or the object no such field.
    Missing,
}

/// One event, read field by field. Keep one per batch and [`Record::set`]
/// it to each event: the column buffer is reused.
#[derive(Debug, Default)]
pub struct Record<'a> {
    event: Event<'a>,
    columns: Vec<Cow<'a, [u8]>>,
    split: bool,
}

impl<'a> Record<'a> {
    /// Starts reading `event`.
    pub fn set(&mut self, event: Event<'a>) {
        self.event = event;
        self.split = false;
    }

    /// The event being read.
    pub fn event(&self) -> &Event<'a> {
        &self.event
    }

    /// The value's CSV columns, split on first use.
    pub fn columns(&mut self) -> Result<&[Cow<'a, [u8]>], String> {
        if !self.split {
            crate::csv::split(self.event.value, &mut self.columns)?;
            self.split = true;
        }
        Ok(&self.columns)
    }

    /// What the value holds for `field`; `Err` when it is not the JSON
    /// object or CSV row the field expects.
    pub fn get(&mut self, field: &Field) -> Result<Raw<'_>, String> {
        Ok(match field {
            Field::Whole => Raw::Whole(self.event.value),
            Field::Json(name) => {
                json::field(self.event.value, name)?.map_or(Raw::Missing, Raw::Json)
            }
            Field::Column(i) => self.columns()?.get(*i).map_or(Raw::Missing, Raw::Column),
        })
    }

    /// The field as a key to group events by: a value or column as trimmed
    /// UTF-8 text, a JSON string, number or boolean as its text, JSON `null`
    /// as the empty key. A missing field, a JSON object or array, and text
    /// that is not UTF-8 are errors, to reject the event with.
    #[inline]
    pub fn key(&mut self, field: &Field) -> Result<Cow<'_, str>, String> {
        match field {
            Field::Whole => trimmed_text(self.event.value).map(Cow::Borrowed),
            Field::Json(name) => match json::field(self.event.value, name)? {
                None => Err(format!("no field {name:?}")),
                Some(Scalar::Json(_)) => Err(format!(
                    "field {name:?} is not a string, number, boolean or null"
                )),
                Some(v) => Ok(v.into_text()),
            },
            Field::Column(i) => {
                let columns = self.columns()?;
                match columns.get(*i) {
                    Some(c) => trimmed_text(c).map(Cow::Borrowed),
                    None => Err(format!(
                        "row has {} columns, the key is column {}",
                        columns.len(),
                        i + 1
                    )),
                }
            }
        }
    }
}

fn trimmed_text(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes)
        .map(str::trim)
        .map_err(|e| format!("value is not UTF-8: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_name_fields() {
        let cols = ["a".to_owned(), "b".to_owned()];
        assert_eq!(Field::keyed(None, Some(&cols)), Ok(Field::Whole));
        assert_eq!(Field::keyed(Some("b"), None), Ok(Field::Json("b".into())));
        assert_eq!(
            Field::keyed(Some("c"), Some(&cols)).unwrap_err(),
            r#"key "c" is not one of the columns ["a", "b"]"#
        );
        let name = FieldRef::Name("b".into());
        assert_eq!(Field::csv(&name, Some(&cols)), Ok(Field::Column(1)));
        assert_eq!(
            Field::csv(&FieldRef::Position(7), None),
            Ok(Field::Column(7))
        );
        assert!(
            Field::csv(&name, None)
                .unwrap_err()
                .contains("no `columns`")
        );
        assert!(
            Field::csv(&FieldRef::Name("x".into()), Some(&cols))
                .unwrap_err()
                .starts_with(r#"field "x" is not one of the columns"#)
        );
        assert_eq!(Field::json(&name), Ok(Field::Json("b".into())));
        assert!(Field::json(&FieldRef::Position(1)).is_err());
    }

    /// A batch of the given values.
    fn batch(values: &[&[u8]]) -> crate::Batch {
        crate::Batch::from_values(0, &values.iter().map(|v| (0, *v)).collect::<Vec<_>>())
    }

    #[test]
    fn records_split_rows_once_and_read_raw_fields() {
        let b = batch(&[br#"1,"x""y",z"#, br#"{"a":null}"#, b"\"open"]);
        let mut r = Record::default();
        r.set(b.get(0));
        assert_eq!(
            r.get(&Field::Column(0)).unwrap(),
            Raw::Column(&Cow::Borrowed(b"1"))
        );
        assert!(matches!(
            r.get(&Field::Column(1)).unwrap(),
            Raw::Column(Cow::Owned(_))
        ));
        assert_eq!(r.get(&Field::Column(3)).unwrap(), Raw::Missing);
        assert_eq!(r.columns().unwrap().len(), 3);
        r.set(b.get(1));
        assert_eq!(
            r.get(&Field::Json("a".into())).unwrap(),
            Raw::Json(Scalar::Null)
        );
        assert_eq!(r.get(&Field::Json("b".into())).unwrap(), Raw::Missing);
        assert_eq!(r.get(&Field::Whole).unwrap(), Raw::Whole(br#"{"a":null}"#));
        r.set(b.get(2));
        assert!(r.get(&Field::Column(0)).is_err());
    }

    #[test]
    fn keys_are_trimmed_text() {
        let b = batch(&[
            b" 1 ",
            b"\xff",
            br#"{"g":" x ","n":null,"o":{},"b":true,"f":2.5}"#,
            br#"a,"b "" ",c"#,
        ]);
        let mut r = Record::default();
        let key = |r: &mut Record<'_>, f: &Field| r.key(f).map(Cow::into_owned);
        r.set(b.get(0));
        assert_eq!(key(&mut r, &Field::Whole), Ok("1".into()));
        r.set(b.get(1));
        assert!(
            key(&mut r, &Field::Whole)
                .unwrap_err()
                .starts_with("value is not UTF-8")
        );
        r.set(b.get(2));
        let json = |n: &str| Field::Json(n.into());
        assert_eq!(
            key(&mut r, &json("g")),
            Ok(" x ".into()),
            "JSON strings are not trimmed"
        );
        assert_eq!(key(&mut r, &json("n")), Ok("".into()));
        assert_eq!(key(&mut r, &json("b")), Ok("true".into()));
        assert_eq!(key(&mut r, &json("f")), Ok("2.5".into()));
        assert!(
            key(&mut r, &json("o"))
                .unwrap_err()
                .contains("is not a string")
        );
        assert_eq!(key(&mut r, &json("z")), Err(r#"no field "z""#.into()));
        r.set(b.get(3));
        assert_eq!(key(&mut r, &Field::Column(1)), Ok("b \"".into()));
    }
}
