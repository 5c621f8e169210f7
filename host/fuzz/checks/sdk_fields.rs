//! The plugin SDK's field readers: the JSON field finder, the CSV
//! splitter, timestamps and the `Field` / `Record` layer plugins read
//! through. Any bytes give a value or a reason; nothing panics.

use weir_plugin::Batch;
use weir_plugin::field::{Field, FieldRef, Raw, Record};
use weir_plugin::time::TimeZone;

/// Decodes `bytes` as libFuzzer's `arbitrary` would and checks them.
pub fn run(bytes: &[u8]) {
    if let Some(input) = super::decode(bytes) {
        check(input);
    }
}

fn check(input: (&str, &[u8])) {
    let (name, bytes) = input;
    if let Ok(Some(scalar)) = weir_plugin::json::field(bytes, name) {
        let _ = scalar.as_text();
        let _ = scalar.as_f64();
        let _ = scalar.as_timestamp(TimeZone::default());
    }
    let mut fields = Vec::new();
    if weir_plugin::csv::split(bytes, &mut fields).is_ok() {
        assert!(!fields.is_empty(), "a line has at least one field");
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = weir_plugin::time::parse_timestamp(text);
    }
    let batch = Batch::from_values(0, &[(0, bytes)]);
    let columns = vec!["a".to_owned(), name.to_owned()];
    let named = FieldRef::Name(name.to_owned());
    let mut wanted = vec![Field::Whole, Field::Column(1)];
    wanted.extend(Field::json(&named));
    wanted.extend(Field::csv(&named, Some(&columns)));
    wanted.extend(Field::keyed(Some(name), None));
    let mut record = Record::default();
    record.set(batch.get(0));
    for field in &wanted {
        if let Ok(Raw::Json(scalar)) = record.get(field) {
            let _ = scalar.as_f64();
        }
        let _ = record.key(field);
    }
}
