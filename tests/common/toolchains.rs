//! Plugins in other languages for the tests: componentize-py (pinned,
//! from PyPI) installed once into `target/py-toolchain`, componentize-js
//! (pinned, from npm) into `target/js-toolchain`, and plugins of
//! `tests/plugins/` built with them into `target/lang-plugins`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use super::{repo, target_dir};

/// The componentize-py release the tests build with.
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// The toolchain's `componentize-py`, installed on first use.
fn componentize_py() -> PathBuf {
    static TOOL: OnceLock<PathBuf> = OnceLock::new();
    TOOL.get_or_init(|| {
        let venv = target_dir().join("py-toolchain");
        let tool = venv.join("bin/componentize-py");
        let pinned = venv.join(".installed");
        if std::fs::read_to_string(&pinned).ok().as_deref() == Some(COMPONENTIZE_PY) {
            return tool;
        }
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "python3 -m venv {} failed", venv.display());
        let ok = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", COMPONENTIZE_PY])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "pip install {COMPONENTIZE_PY} failed");
        std::fs::write(&pinned, COMPONENTIZE_PY).unwrap();
        tool
    })
    .clone()
}

/// The component of Python plugin `tests/plugins/NAME` (its `app.py` and
/// modules), built against `wit/` once per test run.
pub fn python_plugin(name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let out = target_dir()
        .join("lang-plugins")
        .join(format!("{name}.wasm"));
    if built.iter().any(|n| n == name) {
        return out;
    }
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let output = Command::new(componentize_py())
        .current_dir(repo())
        .args([
            "-d",
            "wit",
            "-w",
            "transform-plugin",
            "componentize",
            "app",
            "-p",
        ])
        .arg(repo().join("tests/plugins").join(name))
        .arg("-o")
        .arg(&out)
        .output()
        .expect("run componentize-py");
    assert!(
        output.status.success(),
        "componentize-py failed for {name}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    built.push(name.to_owned());
    out
}

/// The componentize-js release the tests build with.
pub const COMPONENTIZE_JS: &str = "@bytecodealliance/componentize-js@0.23.0";

/// The toolchain's `componentize-js`, installed on first use.
fn componentize_js() -> PathBuf {
    static TOOL: OnceLock<PathBuf> = OnceLock::new();
    TOOL.get_or_init(|| {
        let prefix = target_dir().join("js-toolchain");
        let tool = prefix.join("node_modules/.bin/componentize-js");
        let pinned = prefix.join(".installed");
        if std::fs::read_to_string(&pinned).ok().as_deref() == Some(COMPONENTIZE_JS) {
            return tool;
        }
        std::fs::create_dir_all(&prefix).unwrap();
        let ok = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
            .arg(&prefix)
            .arg(COMPONENTIZE_JS)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "npm install {COMPONENTIZE_JS} failed");
        std::fs::write(&pinned, COMPONENTIZE_JS).unwrap();
        tool
    })
    .clone()
}

/// The component of JavaScript plugin `tests/plugins/NAME/plugin.js`,
/// built against `wit/` once per test run (without the `wasi:http`
/// imports componentize-js adds by default, which the host refuses).
pub fn js_plugin(name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let out = target_dir()
        .join("lang-plugins")
        .join(format!("{name}.wasm"));
    if built.iter().any(|n| n == name) {
        return out;
    }
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let output = Command::new(componentize_js())
        .current_dir(repo())
        .args(["--wit", "wit", "--world-name", "transform-plugin"])
        .args(["-d", "http", "-d", "fetch-event", "-o"])
        .arg(&out)
        .arg(repo().join("tests/plugins").join(name).join("plugin.js"))
        .output()
        .expect("run componentize-js");
    assert!(
        output.status.success(),
        "componentize-js failed for {name}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    built.push(name.to_owned());
    out
}
