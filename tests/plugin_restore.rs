//! Every shipped plugin (Rust, Python and JavaScript) given garbage for
//! its saved state: `restore` refuses it with a reason (weir stops naming
//! the refusal, or starts the stage empty with `on_incompatible_state =
//! "reset"`), and nothing traps. `host/fuzz` (`plugin_restore`) feeds the
//! Rust plugins far more such bytes natively.

use crate::common::*;

/// Random bytes from a fixed xorshift seed.
fn garbage(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `plugin` (a component path, or `@plugin(NAME)`) with `config`
/// once to get a checkpoint, then again with the stage's saved state
/// replaced by garbage.
fn refuses_garbage(plugin: &str, config: &str) {
    for (len, seed) in [(1, 1), (64, 2), (4096, 3)] {
        for reset in [false, true] {
            let p = Pipeline::new(&format!(
                r#"
state_dir = "state"

[sources.in]
type = "replay"
path = "in.txt"
format = "lines"

[transforms.p]
type = "wasm"
inputs = ["in"]
plugin = "{plugin}"
{config}
{reset}

[sinks.out]
type = "file"
inputs = ["p"]
path = "out.txt"
"#,
                reset = if reset {
                    "on_incompatible_state = \"reset\""
                } else {
                    ""
                }
            ))
            .with_file("in.txt", "{\"t\":1}\n{\"t\":2}\n");
            p.run_ok(std::time::Duration::from_secs(60));
            let path = p.path("state/checkpoint.json");
            let mut checkpoint: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            checkpoint["stages"]["p"]["state"] = hex(&garbage(len, seed)).into();
            std::fs::write(&path, checkpoint.to_string()).unwrap();
            let out = p.run(std::time::Duration::from_secs(60));
            let (_, stderr) = texts(&out);
            let what = format!("{plugin}, {len} bytes, reset {reset}:\n{stderr}");
            assert!(
                !stderr.contains("trap") && !stderr.contains("panicked"),
                "{what}"
            );
            if reset {
                assert!(out.status.success(), "{what}");
                assert!(
                    stderr.contains("plugin refused the saved state; starting empty"),
                    "{what}"
                );
            } else {
                assert_eq!(out.status.code(), Some(1), "{what}");
                assert!(
                    stderr.contains("plugin refused the checkpointed state:"),
                    "{what}"
                );
            }
        }
    }
}

#[test]
fn gender_count_refuses_garbage_state() {
    refuses_garbage("@plugin(gender-count)", "config = { key = \"t\" }");
}

#[test]
fn window_stats_refuses_garbage_state() {
    refuses_garbage(
        "@plugin(window-stats)",
        "config = { input = \"json\", time = \"processing\", stats = [{ name = \"m\", field = \"t\", fn = \"mean\", window = \"batch\" }] }",
    );
}

#[test]
fn grayscale_refuses_garbage_state() {
    refuses_garbage("@plugin(grayscale)", "");
}

/// A plugin of the Python or JavaScript SDK, built by `weir plugin build`.
fn sdk_plugin(dir: &str) -> String {
    let wasm = crate::common::toolchains::sdk_plugin(std::path::Path::new(dir));
    wasm.display().to_string().replace('\\', "/")
}

#[test]
fn gender_count_py_refuses_garbage_state() {
    refuses_garbage(
        &sdk_plugin("plugins/gender-count-py"),
        "config = { key = \"t\" }",
    );
}

#[test]
fn gender_count_js_refuses_garbage_state() {
    refuses_garbage(
        &sdk_plugin("plugins/gender-count-js"),
        "config = { key = \"t\" }",
    );
}

#[test]
fn hashtags_py_refuses_garbage_state() {
    refuses_garbage(&sdk_plugin("plugins/hashtags-py"), "");
}
