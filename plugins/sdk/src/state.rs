//! Versioned plugin state: what [`Transform::snapshot`] saves and
//! [`Transform::restore`] reads back, possibly in a later build.
//!
//! A snapshot is the state struct as a JSON object with a `version` field
//! first. A build that changes the layout raises the version, so a snapshot
//! it cannot read is refused with a reason instead of being misread.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use weir_plugin::state;
//!
//! #[derive(Serialize, Deserialize, Debug, PartialEq)]
//! struct Seen {
//!     total: u64,
//! }
//!
//! let bytes = state::save(1, &Seen { total: 3 });
//! assert_eq!(bytes, br#"{"version":1,"total":3}"#);
//! assert_eq!(state::load::<Seen>(1, &bytes), Ok(Seen { total: 3 }));
//! assert_eq!(
//!     state::load::<Seen>(2, &bytes).unwrap_err(),
//!     "state version 1 is not supported (this build reads version 2)"
//! );
//! ```
//!
//! [`Transform::snapshot`]: crate::Transform::snapshot
//! [`Transform::restore`]: crate::Transform::restore

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Saves `state`, a struct with named fields (none called `version`), as
/// `{"version":VERSION,...its fields}`.
///
/// # Panics
///
/// If `state` does not serialise to a JSON object.
pub fn save<T: Serialize>(version: u32, state: &T) -> Vec<u8> {
    let mut out = format!("{{\"version\":{version}").into_bytes();
    let fields = out.len();
    serde_json::to_writer(&mut out, state).expect("plugin state serialises to JSON");
    // The state's own `{` becomes the comma after the version.
    match &out[fields..] {
        b"{}" => {
            out.truncate(fields);
            out.push(b'}');
        }
        [b'{', ..] => out[fields] = b',',
        _ => panic!("plugin state must serialise to a JSON object (a struct)"),
    }
    out
}

/// Reads state saved by [`save`] with the same `version`, refusing other
/// versions and unreadable bytes with a reason.
pub fn load<T: DeserializeOwned>(version: u32, bytes: &[u8]) -> Result<T, String> {
    #[derive(serde::Deserialize)]
    struct Version {
        version: u32,
    }
    let unreadable = |e: serde_json::Error| format!("unreadable state: {e}");
    let saved: Version = serde_json::from_slice(bytes).map_err(unreadable)?;
    if saved.version != version {
        return Err(format!(
            "state version {} is not supported (this build reads version {version})",
            saved.version
        ));
    }
    serde_json::from_slice(bytes).map_err(unreadable)
}

/// `restore` of a plugin that keeps no state: only the empty snapshot is
/// its own; any other bytes are another plugin's state and are refused.
pub fn none(bytes: &[u8]) -> Result<(), String> {
    if bytes.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "this plugin keeps no state, but was given {} bytes of it",
            bytes.len()
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Serialize, Deserialize, Debug, PartialEq, Default)]
    struct Empty {}

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Two {
        a: Vec<(String, u64)>,
        b: Option<i64>,
    }

    #[test]
    fn round_trips_with_the_version_first() {
        let two = Two {
            a: vec![("x".into(), 2)],
            b: None,
        };
        let bytes = save(3, &two);
        assert_eq!(bytes, br#"{"version":3,"a":[["x",2]],"b":null}"#);
        assert_eq!(load::<Two>(3, &bytes), Ok(two));
        assert_eq!(save(1, &Empty {}), br#"{"version":1}"#);
        assert_eq!(load::<Empty>(1, br#"{"version":1}"#), Ok(Empty {}));
    }

    #[test]
    fn refuses_other_versions_and_garbage() {
        assert!(
            load::<Empty>(1, b"")
                .unwrap_err()
                .starts_with("unreadable state: EOF")
        );
        assert!(
            load::<Empty>(1, br#"{"total":1}"#)
                .unwrap_err()
                .contains("missing field `version`")
        );
        assert!(
            load::<Two>(1, br#"{"version":1,"b":2}"#)
                .unwrap_err()
                .contains("missing field `a`")
        );
    }

    #[test]
    #[should_panic(expected = "JSON object")]
    fn state_must_be_a_struct() {
        save(1, &5u32);
    }
}
