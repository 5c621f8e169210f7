//! Plugins in other languages for the tests: componentize-py (pinned,
//! from PyPI) and componentize-js (pinned, from npm) installed once into
//! `target/toolchains`, the directory `weir plugin build` shares between
//! plugins when `WEIR_TOOLCHAINS` names it; raw plugins of `tests/plugins/`
//! built with them into `target/lang-plugins`, and SDK plugins (a
//! `plugin.py` or `plugin.js` directory) built with `weir plugin build`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use super::{repo, target_dir};

/// The componentize-py release the tests build with.
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// The componentize-js release the tests build with.
pub const COMPONENTIZE_JS: &str = "@bytecodealliance/componentize-js@0.23.0";

/// `WEIR_TOOLCHAINS` for the tests: one install per machine.
pub fn toolchains() -> PathBuf {
    target_dir().join("toolchains")
}

/// Serialises installs and builds: tests share the toolchains.
static INSTALLING: Mutex<()> = Mutex::new(());

/// Runs `install` (commands, each with its arguments) unless `dir` already
/// holds `package` (the marker `weir plugin build` writes too); returns
/// `dir`.
fn toolchain(dir: &str, package: &str, install: &[&[&str]]) -> PathBuf {
    let _one = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = toolchains().join(dir);
    let marker = dir.join(".installed");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(package) {
        return dir;
    }
    std::fs::create_dir_all(&dir).unwrap();
    for command in install {
        let ok = Command::new(command[0])
            .args(&command[1..])
            .current_dir(&dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "installing {package} failed: {command:?}");
    }
    std::fs::write(&marker, package).unwrap();
    dir
}

/// Builds plugin `name` with `build` (given the output path) once per
/// test run; returns the component.
fn build_once(name: &str, build: impl FnOnce(&Path) -> Command) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let out = target_dir()
        .join("lang-plugins")
        .join(format!("{name}.wasm"));
    if built.iter().any(|n| n == name) {
        return out;
    }
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let output = build(&out)
        .current_dir(repo())
        .output()
        .expect("run the plugin toolchain");
    assert!(
        output.status.success(),
        "building {name} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    built.push(name.to_owned());
    out
}

/// The component of Python plugin `tests/plugins/NAME` (its `app.py` and
/// modules), built against `wit/` once per test run.
pub fn python_plugin(name: &str) -> PathBuf {
    let venv = toolchain(
        "componentize-py-0.25.1",
        COMPONENTIZE_PY,
        &[
            &["python3", "-m", "venv", "."],
            &["bin/pip", "install", "--quiet", COMPONENTIZE_PY],
        ],
    );
    build_once(name, |out| {
        let mut c = Command::new(venv.join("bin/componentize-py"));
        c.args([
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
        .arg(out);
        c
    })
}

/// The component of JavaScript plugin `tests/plugins/NAME/plugin.js`,
/// built against `wit/` once per test run (without the `wasi:http`
/// imports componentize-js adds by default, which the host refuses).
pub fn js_plugin(name: &str) -> PathBuf {
    componentize_js(name, name, &["-d", "http", "-d", "fetch-event"])
}

/// The same plugin built as componentize-js builds by default, importing
/// `wasi:http` (`NAME-http.wasm`).
pub fn js_plugin_with_http(name: &str) -> PathBuf {
    componentize_js(name, &format!("{name}-http"), &[])
}

fn componentize_js(name: &str, output: &str, flags: &[&str]) -> PathBuf {
    let prefix = toolchain(
        "componentize-js-0.23.0",
        COMPONENTIZE_JS,
        &[&[
            "npm",
            "install",
            "--no-audit",
            "--no-fund",
            "--silent",
            "--prefix",
            ".",
            COMPONENTIZE_JS,
        ]],
    );
    build_once(output, |out| {
        let mut c = Command::new(prefix.join("node_modules/.bin/componentize-js"));
        c.args(["--wit", "wit", "--world-name", "transform-plugin"])
            .args(flags)
            .arg("-o")
            .arg(out)
            .arg(repo().join("tests/plugins").join(name).join("plugin.js"));
        c
    })
}

/// The component of SDK plugin directory `dir` (absolute, or relative to
/// the repository), built once per test run with `weir plugin build`
/// (toolchains shared in [`toolchains`]), so compiled for this machine too.
pub fn sdk_plugin(dir: &Path) -> PathBuf {
    static BUILT: Mutex<Vec<(PathBuf, PathBuf)>> = Mutex::new(Vec::new());
    let dir = repo().join(dir);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, wasm)) = built.iter().find(|(d, _)| *d == dir) {
        return wasm.clone();
    }
    let output = {
        let _one = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
        super::weir()
            .args(["plugin", "build"])
            .arg(&dir)
            .env("WEIR_TOOLCHAINS", toolchains())
            .output()
            .expect("run weir plugin build")
    };
    assert!(
        output.status.success(),
        "weir plugin build {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let wasm = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    built.push((dir, wasm.clone()));
    wasm
}
