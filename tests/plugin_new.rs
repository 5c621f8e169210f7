//! `weir plugin new` → `cargo test` → `weir plugin build` → `weir run`, from
//! a fresh clone of this repository, and `weir plugin inspect`.

use std::process::Command;
use std::time::Duration;

use crate::common::*;

#[test]
fn a_new_plugin_builds_passes_its_test_and_runs_from_a_fresh_clone() {
    let dir = tempdir();
    let clone = fresh_clone(dir.path());
    // Shared between runs so a second run does not rebuild serde & co.
    let target = target_dir().join("test-plugin-new");

    // `new` run inside the clone finds the clone's SDK by itself.
    let out = run_with_timeout(
        weir()
            .current_dir(&clone)
            .args(["plugin", "new", "word-tally", "--dir"])
            .arg(dir.path().join("word-tally"))
            .env_remove("WEIR_SDK"),
        Duration::from_secs(30),
    );
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    let sdk = clone.join("plugins/sdk").canonicalize().unwrap();
    assert!(
        stdout.contains(&format!("SDK {}", sdk.display())),
        "{stdout}"
    );
    let krate = dir.path().join("word-tally");
    for f in [
        "Cargo.toml",
        "Cargo.lock",
        "rust-toolchain.toml",
        ".cargo/config.toml",
        "src/lib.rs",
        "example/pipeline.toml",
        "README.md",
    ] {
        assert!(krate.join(f).is_file(), "{f} missing");
    }
    // Built with weir's WebAssembly code generation flags.
    let config = std::fs::read_to_string(krate.join(".cargo/config.toml")).unwrap();
    assert!(config.contains("target-feature=+simd128"), "{config}");
    // Creating it again refuses to overwrite.
    let out = run_with_timeout(
        weir()
            .args(["plugin", "new", "word-tally", "--sdk"])
            .arg(&sdk)
            .arg("--dir")
            .arg(&krate),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(texts(&out).1.contains("already exists"));

    // Its native tests pass.
    let out = Command::new(env!("CARGO"))
        .current_dir(&krate)
        .args(["test", "--quiet"])
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert!(
        out.status.success(),
        "cargo test failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("test result: ok. 3 passed"), "{stdout}");

    // `plugin build` builds and checks the component.
    let out = run_with_timeout(
        weir()
            .current_dir(&krate)
            .args(["plugin", "build"])
            .env("CARGO_TARGET_DIR", &target),
        Duration::from_secs(900),
    );
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("weir: building plugin word-tally"),
        "{stderr}"
    );
    let wasm = std::path::PathBuf::from(stdout.trim());
    assert_eq!(wasm, target.join("wasm32-wasip2/plugin/word_tally.wasm"));

    // `inspect` says what it is.
    let out = run_with_timeout(
        weir().args(["plugin", "inspect"]).arg(&wasm),
        Duration::from_secs(60),
    );
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("package:     weir:plugin\n"), "{stdout}");
    assert!(stdout.contains("version:     0.1.0\n"), "{stdout}");
    assert!(stdout.contains("weir plugin: yes"), "{stdout}");
    let out = run_with_timeout(
        weir().args(["plugin", "inspect", "--json"]).arg(&wasm),
        Duration::from_secs(60),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["exports"],
        serde_json::json!(["weir:plugin/transform@0.1.0"])
    );
    assert_eq!(v["size"], std::fs::metadata(&wasm).unwrap().len());

    // The generated example pipeline runs it.
    let out = run_with_timeout(
        weir()
            .current_dir(&krate)
            .args(["run", "example/pipeline.toml"])
            .env("CARGO_TARGET_DIR", &target),
        Duration::from_secs(300),
    );
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            r#"{"seen":1,"value":"apple"}"#,
            r#"{"seen":1,"value":"Banana"}"#,
            r#"{"seen":2,"value":"apple"}"#,
            r#"{"seen":3,"value":"APPLE"}"#,
        ]
    );
}

#[test]
fn inspect_tells_what_is_wrong_with_a_file_that_is_not_a_plugin() {
    let dir = tempdir();
    let text = write(dir.path(), "x.wasm", "hello");
    let out = run_with_timeout(
        weir().args(["plugin", "inspect"]).arg(&text),
        Duration::from_secs(30),
    );
    let (stdout, _) = texts(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.contains("weir plugin: no: not a WebAssembly file"),
        "{stdout}"
    );

    // A built plugin passes; a core module does not.
    let good = plugin("gender-count");
    let out = run_with_timeout(
        weir().args(["plugin", "inspect"]).arg(&good),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", texts(&out).0);
    let core = write(dir.path(), "core.wasm", "");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let out = run_with_timeout(
        weir().args(["plugin", "inspect"]).arg(&core),
        Duration::from_secs(30),
    );
    let (stdout, _) = texts(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.contains("kind:        not a component"), "{stdout}");
    assert!(
        stdout.contains("weir plugin: no: it is a core WebAssembly module"),
        "{stdout}"
    );

    // `build` wants a plugin directory, and says which files make one.
    let out = run_with_timeout(
        weir().args(["plugin", "build"]).arg(dir.path()),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1));
    let said = texts(&out).1;
    assert!(
        said.contains("is not a plugin directory (no Cargo.toml, plugin.py or plugin.js)"),
        "{said}"
    );
}
