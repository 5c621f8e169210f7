//! Pipeline TOML compilation: any text either compiles or yields errors
//! that point to a line of that text; nothing panics.

use std::path::Path;

/// Decodes `bytes` as libFuzzer's `arbitrary` would and checks them.
pub fn run(bytes: &[u8]) {
    if let Some(input) = super::decode(bytes) {
        check(input);
    }
}

fn check(text: &str) {
    // A few variables exist, one empty; the rest are unset.
    let env = |name: &str| match name {
        "EMPTY" => Some(String::new()),
        "PORT" => Some("9092".to_owned()),
        n if n.len() == 1 => Some(format!("value-of-{n}")),
        _ => None,
    };
    match weir::config::compile(text, Path::new("/fuzz/pipeline.toml"), &env) {
        Ok(pipeline) => {
            let _ = weir::config::render_graph(&pipeline, false);
            let _ = pipeline.name();
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "an error without a message");
            let lines = text.split('\n').count();
            for e in &errors.0 {
                assert!(
                    e.line <= lines,
                    "line {} of a {lines}-line file: {}",
                    e.line,
                    e.message
                );
                assert!(!e.message.is_empty());
            }
            let _ = errors.to_string();
        }
    }
}
