//! What window-stats prints: a statistic's value, the window's label, and
//! the JSON object of one statistic over one window.

use weir_plugin::bytes::append;
use weir_plugin::format::{push_int, push_json_float, python_float};

use crate::{Func, Moments, WindowKind};

/// Appends the JSON object of one statistic (`name_json`, its name as a
/// JSON string) over one window. Written piece by piece (no `write!`
/// machinery): one object per window and statistic is the plugin's main
/// output cost.
pub(crate) fn json(
    buf: &mut Vec<u8>,
    name_json: &str,
    window: &str,
    (start, end): (i64, i64),
    value: Number,
    count: u64,
) {
    buf.extend_from_slice(b"{\"stat\":");
    append(buf, name_json.as_bytes());
    buf.extend_from_slice(b",\"window\":\"");
    append(buf, window.as_bytes());
    buf.extend_from_slice(b"\",\"window_start\":");
    push_int(buf, start);
    buf.extend_from_slice(b",\"window_end\":");
    push_int(buf, end);
    buf.extend_from_slice(b",\"value\":");
    match value {
        Number::Float(x) => push_json_float(buf, x),
        Number::Int(n) => push_int(buf, n),
        Number::Missing => buf.extend_from_slice(b"null"),
    }
    buf.extend_from_slice(b",\"count\":");
    push_int(buf, count);
    buf.push(b'}');
}

/// A statistic's value as printed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Number {
    /// A float, printed shortest.
    Float(f64),
    /// A whole number.
    Int(u64),
    /// No value (a standard deviation of one sample).
    Missing,
}

impl Number {
    /// The value as the users' Spark job printed it (Python's `repr`).
    pub(crate) fn text(self) -> String {
        match self {
            Number::Float(x) => python_float(x),
            Number::Int(n) => n.to_string(),
            Number::Missing => "None".into(),
        }
    }
}

/// A statistic's value and the number of samples behind it.
pub(crate) type Value = (Number, u64);

/// The value `func` gives for the samples summed up in `m`.
pub(crate) fn value_of(func: Func, m: &Moments) -> Number {
    match func {
        Func::Mean => Number::Float(m.sum / m.n as f64),
        Func::Min => Number::Float(m.min),
        Func::Max => Number::Float(m.max),
        Func::Sum => Number::Float(m.sum),
        Func::Count => Number::Int(m.n),
        Func::Stddev => m.stddev().map_or(Number::Missing, Number::Float),
        Func::Gaps => Number::Missing,
    }
}

/// The window's name in the output: `batch`, `since_start`, `45s`,
/// `45s/15s`.
pub(crate) fn label(kind: WindowKind, slide: Option<i64>) -> String {
    let d = |ms: i64| {
        if ms % 1000 == 0 {
            format!("{}s", ms / 1000)
        } else {
            format!("{ms}ms")
        }
    };
    match (kind, slide) {
        (WindowKind::Batch, _) => "batch".into(),
        (WindowKind::SinceStart, _) => "since_start".into(),
        (WindowKind::Size(s), Some(sl)) if sl != s => format!("{}/{}", d(s), d(sl)),
        (WindowKind::Size(s), _) => d(s),
    }
}
