//! `weir plugin new | build | inspect`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use weir::wasm::capabilities::Import;
use weir::wasm::lang::Language;
use weir::wasm::{ComponentInfo, EXPORT_NAME, inspect_bytes};

/// `weir plugin new NAME [--lang L]`: writes the plugin and says what to do
/// next.
pub fn new(
    name: &str,
    lang: Option<Language>,
    dir: Option<&Path>,
    sdk: Option<&Path>,
) -> Result<()> {
    if let Some(lang) = lang {
        if sdk.is_some() {
            bail!(
                "--sdk is for Rust plugins; a {} plugin gets the SDK copied in",
                lang.name()
            );
        }
        let dest = dir.map_or_else(|| PathBuf::from(name), Path::to_path_buf);
        let files = weir::scaffold::script::create(name, &dest, lang)?;
        let test = match lang {
            Language::Python => "python3 -m unittest              # native unit tests",
            Language::JavaScript => "node --test                       # native unit tests",
        };
        println!(
            "created {} plugin {} ({} files, with the SDK in {}/)",
            lang.name(),
            dest.display(),
            files.len(),
            lang.sdk_dir()
        );
        println!();
        println!("  cd {}", dest.display());
        println!("  {test}");
        println!(
            "  weir plugin build                 # installs {} on first use",
            lang.toolchain()
        );
        println!("  weir run example/pipeline.toml    # run it on example/input.txt");
        return Ok(());
    }
    let sdk = match sdk {
        Some(s) => Some(s.to_path_buf()),
        None => std::env::var_os("WEIR_SDK").map(PathBuf::from),
    };
    let sdk = weir::scaffold::find_sdk(sdk.as_deref())?;
    let dest = dir.map_or_else(|| PathBuf::from(name), Path::to_path_buf);
    let files = weir::scaffold::create(name, &dest, &sdk)?;
    println!(
        "created plugin crate {} ({} files, SDK {})",
        dest.display(),
        files.len(),
        sdk.display()
    );
    println!();
    println!("  cd {}", dest.display());
    println!("  cargo test                        # native unit tests");
    println!("  weir plugin build                 # the WebAssembly component");
    println!("  weir run example/pipeline.toml    # run it on example/input.txt");
    Ok(())
}

/// `weir plugin build [DIR]`: builds the component (with cargo, or the
/// Python or JavaScript toolchain, installed on first use), checks it is a
/// Weir plugin and compiles it for this machine so the first `weir run`
/// starts at once.
pub fn build(dir: &Path) -> Result<()> {
    let dir = &dir
        .canonicalize()
        .with_context(|| format!("cannot find plugin directory {}", dir.display()))?;
    let started = Instant::now();
    let wasm = if let Some(lang) = Language::of_dir(dir) {
        let toolchain = weir::wasm::lang::toolchain_dir(dir, lang);
        if !toolchain.join(".installed").is_file() {
            eprintln!(
                "weir: installing {} into {} (once) ...",
                lang.toolchain(),
                toolchain.display()
            );
        }
        eprintln!(
            "weir: building {} plugin {} with {} ...",
            lang.name(),
            weir::wasm::lang::plugin_name(dir),
            lang.toolchain()
        );
        weir::wasm::lang::build(dir, lang)?
    } else if dir.join("Cargo.toml").is_file() {
        let info = weir::wasm::crate_info(dir)?;
        eprintln!(
            "weir: building plugin {} (cargo build --target wasm32-wasip2 --profile {}) ...",
            info.package, info.profile
        );
        weir::wasm::build_crate(dir, &info)?
    } else {
        bail!(
            "{} is not a plugin directory (no Cargo.toml, plugin.py or plugin.js): run `weir plugin build` in one, or pass its directory",
            dir.display()
        );
    };
    let size = std::fs::metadata(&wasm)?.len();
    eprintln!(
        "weir: built {} ({}) in {:.1} s",
        wasm.display(),
        super::top_screen::bytes(size),
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let runtime = weir::wasm::Runtime::global()?;
    let plugin = runtime.load(&wasm)?;
    eprintln!(
        "weir: {} for this machine in {:.1} s",
        if plugin.from_cache {
            "found it compiled"
        } else {
            "compiled it"
        },
        started.elapsed().as_secs_f64()
    );
    println!("{}", wasm.display());
    Ok(())
}

/// The WIT package and version of an interface name such as
/// `weir:plugin/transform@0.1.0`.
fn package_of(export: &str) -> (String, Option<String>) {
    let (path, version) = match export.split_once('@') {
        Some((p, v)) => (p, Some(v.to_owned())),
        None => (export, None),
    };
    let package = path.split_once('/').map_or(path, |(p, _)| p).to_owned();
    (package, version)
}

/// `weir plugin inspect FILE`: prints what the file is; fails (exit 1)
/// unless it is a Weir plugin this host can run.
pub fn inspect(file: &Path, json: bool) -> Result<bool> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let info = inspect_bytes(&bytes);
    let verdict = match &info {
        Ok(i) => i.check_weir_plugin(),
        Err(e) => Err(e.clone()),
    };
    // Structure is fine: make sure it also compiles and links.
    let verdict = verdict.and_then(|()| {
        weir::wasm::Runtime::global()
            .map_err(|e| e.to_string())?
            .load(file)
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    let info = info.unwrap_or_default();
    let weir_export = info.exports.iter().find(|e| e.starts_with("weir:"));
    let (package, version) = weir_export.map_or((None, None), |e| {
        let (p, v) = package_of(e);
        (Some(p), v)
    });
    if json {
        let doc = serde_json::json!({
            "file": file.display().to_string(),
            "size": bytes.len(),
            "component": info.is_component,
            "package": package,
            "version": version,
            "exports": info.exports,
            "imports": info.imports,
            "built_by": info.built_by,
            "producers": info.producers,
            "import_status": info
                .imports
                .iter()
                .map(|i| (i.clone(), Import::of(i).label()))
                .collect::<std::collections::BTreeMap<_, _>>(),
            "weir_plugin": verdict.is_ok(),
            "problem": verdict.as_ref().err(),
            "host_supports": EXPORT_NAME,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print_text(file, bytes.len(), &info, package, version, &verdict);
    }
    Ok(verdict.is_ok())
}

fn print_text(
    file: &Path,
    size: usize,
    info: &ComponentInfo,
    package: Option<String>,
    version: Option<String>,
    verdict: &Result<(), String>,
) {
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join(", ")
        }
    };
    println!("file:        {}", file.display());
    println!(
        "size:        {} ({size} bytes)",
        super::top_screen::bytes(size as u64)
    );
    println!(
        "kind:        {}",
        if info.is_component {
            "component"
        } else {
            "not a component"
        }
    );
    println!("package:     {}", package.as_deref().unwrap_or("-"));
    println!("version:     {}", version.as_deref().unwrap_or("-"));
    println!("exports:     {}", list(&info.exports));
    if let Some(built) = &info.built_by {
        // `language=python;toolchain=componentize-py 0.25.1`
        let field = |k: &str| {
            built
                .split(';')
                .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
                .unwrap_or("-")
                .to_owned()
        };
        println!("language:    {}", field("language"));
        println!("toolchain:   {} (weir plugin build)", field("toolchain"));
    } else if !info.producers.is_empty() {
        println!("producers:   {}", info.producers.join(", "));
    }
    if info.imports.is_empty() {
        println!("imports:     none");
    } else {
        println!("imports:");
        for import in &info.imports {
            println!("  {import:<40} {}", Import::of(import).label());
        }
    }
    match verdict {
        Ok(()) => println!("weir plugin: yes (this host runs {EXPORT_NAME})"),
        Err(why) => println!("weir plugin: no: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_split_into_package_and_version() {
        assert_eq!(
            package_of("weir:plugin/transform@0.1.0"),
            ("weir:plugin".into(), Some("0.1.0".into()))
        );
        assert_eq!(package_of("wasi:cli/run"), ("wasi:cli".into(), None));
    }
}
