//! `weir plugin new NAME --lang python|javascript`: a plugin directory with
//! the SDK copied in (so it builds and tests without a weir checkout), a
//! plugin with a native test, and an example pipeline.

use std::path::{Path, PathBuf};

use super::{ScaffoldError, valid_name, write_all};
use crate::wasm::lang::Language;

const PIPELINE: &str = include_str!("../../assets/plugin-template-script/pipeline.toml.in");
const README: &str = include_str!("../../assets/plugin-template-script/README.md.in");
const INPUT: &str = include_str!("../../assets/plugin-template/input.txt.in");

const PY_PLUGIN: &str = include_str!("../../assets/plugin-template-python/plugin.py.in");
const PY_TEST: &str = include_str!("../../assets/plugin-template-python/test_plugin.py.in");
const PY_GITIGNORE: &str = include_str!("../../assets/plugin-template-python/gitignore.in");
const JS_PLUGIN: &str = include_str!("../../assets/plugin-template-js/plugin.js.in");
const JS_TEST: &str = include_str!("../../assets/plugin-template-js/plugin.test.js.in");
const JS_GITIGNORE: &str = include_str!("../../assets/plugin-template-js/gitignore.in");
const JS_PACKAGE: &str = include_str!("../../assets/plugin-template-js/package.json.in");

/// The Python SDK, file by file.
const PY_SDK: &[(&str, &str)] = &[
    (
        "__init__.py",
        include_str!("../../../plugins/sdk-python/weir_plugin/__init__.py"),
    ),
    (
        "batch.py",
        include_str!("../../../plugins/sdk-python/weir_plugin/batch.py"),
    ),
    (
        "config.py",
        include_str!("../../../plugins/sdk-python/weir_plugin/config.py"),
    ),
    (
        "field.py",
        include_str!("../../../plugins/sdk-python/weir_plugin/field.py"),
    ),
    (
        "output.py",
        include_str!("../../../plugins/sdk-python/weir_plugin/output.py"),
    ),
    (
        "state.py",
        include_str!("../../../plugins/sdk-python/weir_plugin/state.py"),
    ),
    (
        "transform.py",
        include_str!("../../../plugins/sdk-python/weir_plugin/transform.py"),
    ),
    (
        "window.py",
        include_str!("../../../plugins/sdk-python/weir_plugin/window.py"),
    ),
];

/// The JavaScript SDK, file by file.
const JS_SDK: &[(&str, &str)] = &[
    (
        "index.js",
        include_str!("../../../plugins/sdk-js/weir-plugin/index.js"),
    ),
    (
        "batch.js",
        include_str!("../../../plugins/sdk-js/weir-plugin/batch.js"),
    ),
    (
        "config.js",
        include_str!("../../../plugins/sdk-js/weir-plugin/config.js"),
    ),
    (
        "field.js",
        include_str!("../../../plugins/sdk-js/weir-plugin/field.js"),
    ),
    (
        "output.js",
        include_str!("../../../plugins/sdk-js/weir-plugin/output.js"),
    ),
    (
        "state.js",
        include_str!("../../../plugins/sdk-js/weir-plugin/state.js"),
    ),
    (
        "transform.js",
        include_str!("../../../plugins/sdk-js/weir-plugin/transform.js"),
    ),
    (
        "window.js",
        include_str!("../../../plugins/sdk-js/weir-plugin/window.js"),
    ),
];

/// Creates plugin `name` in `lang` in directory `dest` (which must not
/// exist). Returns the files written.
pub fn create(name: &str, dest: &Path, lang: Language) -> Result<Vec<PathBuf>, ScaffoldError> {
    if !valid_name(name) {
        return Err(ScaffoldError::BadName(name.to_owned()));
    }
    if dest.exists() {
        return Err(ScaffoldError::Exists(dest.to_path_buf()));
    }
    let (language, test, sdk) = match lang {
        Language::Python => ("Python", "python3 -m unittest", PY_SDK),
        Language::JavaScript => ("JavaScript", "node --test", JS_SDK),
    };
    let fill = |t: &str| {
        t.replace("{{name}}", name)
            .replace("{{language}}", language)
            .replace("{{lang}}", lang.name())
            .replace("{{entry}}", lang.entry())
            .replace("{{test}}", test)
            .replace("{{sdk}}", lang.sdk_dir())
            .replace("{{toolchain}}", &lang.toolchain().to_string())
            .replace("{{version}}", env!("CARGO_PKG_VERSION"))
            .replace("{{wasm}}", &format!("target/{name}.wasm"))
    };
    let mut files: Vec<(String, String)> = vec![
        ("README.md".into(), fill(README)),
        ("example/pipeline.toml".into(), fill(PIPELINE)),
        ("example/input.txt".into(), INPUT.to_owned()),
    ];
    match lang {
        Language::Python => files.extend([
            ("plugin.py".into(), fill(PY_PLUGIN)),
            ("test_plugin.py".into(), fill(PY_TEST)),
            (".gitignore".into(), PY_GITIGNORE.to_owned()),
        ]),
        Language::JavaScript => files.extend([
            ("plugin.js".into(), fill(JS_PLUGIN)),
            ("plugin.test.js".into(), fill(JS_TEST)),
            (".gitignore".into(), JS_GITIGNORE.to_owned()),
            ("package.json".into(), fill(JS_PACKAGE)),
        ]),
    }
    for (file, text) in sdk {
        files.push((format!("{}/{file}", lang.sdk_dir()), (*text).to_owned()));
    }
    write_all(dest, &files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_and_javascript_plugins_get_the_sdk_and_a_test() {
        for lang in [Language::Python, Language::JavaScript] {
            let dir = std::env::temp_dir().join(format!(
                "weir-scaffold-{}-{}",
                lang.name(),
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            let files = create("tally", &dir, lang).unwrap();
            assert!(files.len() >= 14, "{files:?}");
            assert_eq!(Language::of_dir(&dir), Some(lang));
            assert!(dir.join(lang.sdk_dir()).is_dir());
            // The templates are filled (the SDK is copied as it is).
            for f in files
                .iter()
                .filter(|f| !f.starts_with(dir.join(lang.sdk_dir())))
            {
                let text = std::fs::read_to_string(f).unwrap();
                assert!(!text.contains("{{"), "{} keeps a placeholder", f.display());
            }
            assert!(matches!(
                create("tally", &dir, lang),
                Err(ScaffoldError::Exists(_))
            ));
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}
