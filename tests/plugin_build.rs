//! Plugin references: crate directories are built on demand, compiled
//! components are cached on disk.

use std::time::{Duration, SystemTime};

use crate::common::*;

fn echo_pipeline(dir: &std::path::Path, plugin: &std::path::Path) -> std::path::PathBuf {
    write(dir, "in.txt", "x\ny\n");
    write(
        dir,
        "p.toml",
        &format!(
            "[sources.in]\ntype = \"replay\"\npath = \"in.txt\"\nformat = \"lines\"\n\n[transforms.t]\ntype = \"wasm\"\ninputs = [\"in\"]\nplugin = \"{}\"\n\n[sinks.out]\ntype = \"console\"\ninputs = [\"t\"]\n",
            plugin.display()
        ),
    )
}

#[test]
fn plugin_crate_directories_are_built_when_missing_or_stale() {
    let dir = tempdir();
    let src = r#"
use weir_plugin::{Batch, Output, Transform};
struct Echo;
impl Transform for Echo {
    fn new(_: &str) -> Result<Self, String> { Ok(Echo) }
    fn process(&mut self, b: &Batch, out: &mut Output) {
        for e in b.iter() { out.emit(e.timestamp_ms, e.value); }
    }
}
weir_plugin::export!(Echo);
"#;
    let krate = plugin_crate(dir.path(), "tiny-echo", src);
    let file = echo_pipeline(dir.path(), &krate);
    // Share compiled dependencies between test runs.
    let target = target_dir().join("test-plugin-builds");
    let run = || {
        let out = run_with_timeout(
            weir()
                .arg("run")
                .arg(&file)
                .env("CARGO_TARGET_DIR", &target),
            Duration::from_secs(600),
        );
        let (stdout, stderr) = texts(&out);
        assert!(out.status.success(), "{stderr}");
        assert_eq!(stdout, "x\ny\n");
        stderr
    };
    let _ = std::fs::remove_file(target.join("wasm32-wasip2/plugin/tiny_echo.wasm"));
    let first = run();
    assert!(
        first.contains("weir: building plugin tiny-echo from") && first.contains("(not built yet)"),
        "{first}"
    );
    let second = run();
    assert!(!second.contains("building plugin"), "{second}");
    let future = SystemTime::now() + Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(krate.join("src/lib.rs"))
        .unwrap()
        .set_modified(future)
        .unwrap();
    let third = run();
    assert!(third.contains("(sources changed)"), "{third}");
}

#[test]
fn compiled_components_are_cached_by_content_hash() {
    let dir = tempdir();
    let cache = dir.path().join("cache");
    let file = echo_pipeline(dir.path(), &plugin("chaos"));
    let run = || {
        let out = run_with_timeout(
            weir()
                .args(["--log-level", "weir=debug"])
                .arg("run")
                .arg(&file)
                .env("WEIR_CACHE_DIR", &cache),
            Duration::from_secs(60),
        );
        let (_, stderr) = texts(&out);
        assert!(out.status.success(), "{stderr}");
        stderr
            .lines()
            .find(|l| l.contains("plugin loaded"))
            .unwrap_or_else(|| panic!("{stderr}"))
            .to_owned()
    };
    assert!(run().contains("cached=false"));
    let entries: Vec<_> = std::fs::read_dir(&cache).unwrap().collect();
    assert_eq!(entries.len(), 1, "one compiled component in the cache");
    assert!(run().contains("cached=true"));
}
