//! Events to rows: the JSON object `INSERT ... JSON ?` takes (column →
//! value), and the partition a row belongs to, so that rows of one
//! partition can share a batch.
//!
//! Values are passed to Cassandra as they are in the event, and Cassandra
//! converts them to the column types: a value it cannot convert is refused
//! with Cassandra's own reason, which the dead letter carries.

use crate::event::Event;

/// Where a column's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Source {
    /// A top-level field of the event's JSON value.
    Field(String),
    /// The event time, ms since the epoch.
    Timestamp,
    /// The event key, as text.
    Key,
}

impl Source {
    /// `@timestamp`, `@key`, or a field name (checked by the settings).
    pub(super) fn parse(s: &str) -> Source {
        match s {
            "@timestamp" => Source::Timestamp,
            "@key" => Source::Key,
            field => Source::Field(field.to_owned()),
        }
    }
}

/// One row, ready to bind.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Row {
    /// The JSON object of column values.
    pub json: String,
    /// The partition key's values, when every one of them is present.
    pub partition: Option<String>,
}

/// Columns and their sources, and which of them form the partition key.
#[derive(Debug, Clone)]
pub(super) struct Mapping {
    /// (column name as the JSON key `INSERT ... JSON` expects, source).
    columns: Vec<(String, Source)>,
    /// Indexes into `columns` of the partition key, in key order.
    partition: Vec<usize>,
    /// Whether any column reads the event's JSON value.
    reads_value: bool,
}

impl Mapping {
    /// `columns` are table column names (as stored: case-sensitive ones
    /// keep their case); `partition` indexes the partition key columns.
    pub(super) fn new(columns: Vec<(String, Source)>, partition: Vec<usize>) -> Mapping {
        let reads_value = columns.iter().any(|(_, s)| matches!(s, Source::Field(_)));
        let columns = columns
            .into_iter()
            .map(|(name, source)| (json_key(&name), source))
            .collect();
        Mapping {
            columns,
            partition,
            reads_value,
        }
    }

    /// The row of `event`, or why there is none.
    pub(super) fn row(&self, event: &Event) -> Result<Row, String> {
        let object = if self.reads_value {
            match serde_json::from_slice::<serde_json::Value>(&event.value) {
                Ok(serde_json::Value::Object(o)) => Some(o),
                Ok(_) => return Err("the value is not a JSON object".into()),
                Err(e) => return Err(format!("the value is not JSON: {e}")),
            }
        } else {
            None
        };
        let mut values: Vec<Option<serde_json::Value>> = Vec::with_capacity(self.columns.len());
        for (_, source) in &self.columns {
            values.push(match source {
                Source::Field(f) => object.as_ref().and_then(|o| o.get(f)).cloned(),
                Source::Timestamp => Some(event.timestamp_ms.into()),
                Source::Key => event
                    .key
                    .as_ref()
                    .map(|k| String::from_utf8_lossy(k).into_owned().into()),
            });
        }
        let partition = if self.partition.is_empty() {
            None
        } else {
            let mut key = String::new();
            for &i in &self.partition {
                match &values[i] {
                    Some(v) if !v.is_null() => {
                        key.push_str(&v.to_string());
                        key.push('\u{1}');
                    }
                    _ => {
                        key.clear();
                        break;
                    }
                }
            }
            (!key.is_empty()).then_some(key)
        };
        let mut json = serde_json::Map::new();
        for ((column, _), value) in self.columns.iter().zip(values) {
            if let Some(v) = value {
                json.insert(column.clone(), v);
            }
        }
        Ok(Row {
            json: serde_json::Value::Object(json).to_string(),
            partition,
        })
    }
}

/// The key `INSERT ... JSON` expects for a column: its name, quoted when
/// it is case-sensitive.
fn json_key(name: &str) -> String {
    if name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn event(value: &str, key: Option<&str>) -> Event {
        let mut e = Event::new(Bytes::from(value.to_owned()), 1_700_000_000_123);
        e.key = key.map(|k| Bytes::from(k.to_owned()));
        e
    }

    fn mapping() -> Mapping {
        Mapping::new(
            vec![
                ("device".into(), Source::Field("dev".into())),
                ("time".into(), Source::Timestamp),
                ("temperature".into(), Source::Field("temperature".into())),
                ("Raw".into(), Source::Key),
            ],
            vec![0],
        )
    }

    #[test]
    fn rows_carry_fields_time_and_key_as_they_are() {
        let row = mapping()
            .row(&event(
                r#"{"dev":"pi-1","temperature":21.5,"other":1}"#,
                Some("k"),
            ))
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&row.json).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"device":"pi-1","time":1_700_000_000_123i64,"temperature":21.5,"\"Raw\"":"k"})
        );
        assert_eq!(row.partition.as_deref(), Some("\"pi-1\"\u{1}"));
        // A text where Cassandra wants a float goes as it is: Cassandra
        // decides, and says why.
        let row = mapping()
            .row(&event(r#"{"dev":"pi-1","temperature":"warm"}"#, None))
            .unwrap();
        assert!(
            row.json.contains("\"temperature\":\"warm\""),
            "{}",
            row.json
        );
        assert!(!row.json.contains("Raw"), "a missing key is left unset");
    }

    #[test]
    fn rows_without_their_partition_key_are_not_grouped() {
        let row = mapping().row(&event(r#"{"temperature":1}"#, None)).unwrap();
        assert_eq!(row.partition, None);
        let row = mapping()
            .row(&event(r#"{"dev":null,"temperature":1}"#, None))
            .unwrap();
        assert_eq!(row.partition, None);
    }

    #[test]
    fn values_that_are_not_objects_are_refused() {
        assert!(
            mapping()
                .row(&event("[1]", None))
                .unwrap_err()
                .contains("not a JSON object")
        );
        assert!(
            mapping()
                .row(&event("{", None))
                .unwrap_err()
                .contains("not JSON")
        );
    }
}
