//! `weir validate` and `weir graph`: malformed pipelines are reported as
//! FILE:LINE: message, every error at once.

use std::time::Duration;

use crate::common::*;

/// One malformed pipeline and the (line, message fragment) pairs expected.
struct Case {
    name: &'static str,
    toml: &'static str,
    expect: &'static [(usize, &'static str)],
}

const CASES: &[Case] = &[
    Case {
        name: "syntax error",
        toml: "[sources.a]\ntype = \"replay\"\npath = \"x.csv\n",
        expect: &[(3, "invalid basic string")],
    },
    Case {
        name: "unknown type with suggestion",
        toml: "[sources.a]\ntype = \"replai\"\npath = \"data.csv\"\n",
        expect: &[(2, "unknown source type `replai` (did you mean `replay`?)")],
    },
    Case {
        name: "misspelled key",
        toml: "[sources.a]\ntype = \"replay\"\npth = \"data.csv\"\n",
        expect: &[(3, "unknown key `pth` (did you mean `path`?)")],
    },
    Case {
        name: "wrong value type",
        toml: "[sources.a]\ntype = \"replay\"\npath = \"data.csv\"\nrate = \"fast\"\n",
        expect: &[(
            4,
            "`rate`: invalid type: string \"fast\", expected a number",
        )],
    },
    Case {
        name: "missing required key",
        toml: "[sources.a]\ntype = \"replay\"\nselect = \"gender\"\n",
        expect: &[(1, "source `a`: missing key `path`")],
    },
    Case {
        name: "missing inputs",
        toml: "[sources.a]\ntype = \"stdin\"\n\n[sinks.out]\ntype = \"console\"\n",
        expect: &[(4, "sink `out` has no `inputs`")],
    },
    Case {
        name: "unknown input with suggestion",
        toml: "[sources.shop_log]\ntype = \"stdin\"\n\n[sinks.out]\ntype = \"console\"\ninputs = [\"shoplog\"]\n",
        expect: &[(
            6,
            "reads from unknown stage `shoplog` (did you mean `shop_log`?)",
        )],
    },
    Case {
        name: "cycle",
        toml: "[sources.a]\ntype = \"stdin\"\n\n[transforms.x]\ntype = \"wasm\"\ninputs = [\"a\", \"y\"]\nplugin = \"PLUGIN\"\n\n[transforms.y]\ntype = \"wasm\"\ninputs = [\"x\"]\nplugin = \"PLUGIN\"\n\n[sinks.out]\ntype = \"console\"\ninputs = [\"y\"]\n",
        expect: &[(4, "stages form a cycle: x -> y -> x")],
    },
    Case {
        name: "plugin file missing",
        toml: "[sources.a]\ntype = \"stdin\"\n\n[transforms.x]\ntype = \"wasm\"\ninputs = [\"a\"]\nplugin = \"missing.wasm\"\n",
        expect: &[(7, "missing.wasm does not exist")],
    },
    Case {
        name: "plugin is a core module",
        toml: "[sources.a]\ntype = \"stdin\"\n\n[transforms.x]\ntype = \"wasm\"\ninputs = [\"a\"]\nplugin = \"core.wasm\"\n",
        expect: &[(7, "is a core WebAssembly module, not a component")],
    },
    Case {
        name: "plugin is a component of another world",
        toml: "[sources.a]\ntype = \"stdin\"\n\n[transforms.x]\ntype = \"wasm\"\ninputs = [\"a\"]\nplugin = \"empty-component.wasm\"\n",
        expect: &[(7, "does not export `weir:plugin/transform@0.1.0`")],
    },
    Case {
        name: "unset environment variable",
        toml: "[sources.a]\ntype = \"stdin\"\n\n[sinks.out]\ntype = \"file\"\ninputs = [\"a\"]\npath = \"${WEIR_TEST_UNSET_DIR}/out.txt\"\n",
        expect: &[(7, "environment variable `WEIR_TEST_UNSET_DIR` is not set")],
    },
    Case {
        name: "dead letter to a transform",
        toml: "[sources.a]\ntype = \"stdin\"\ndead_letter = \"a\"\n",
        expect: &[(3, "dead_letter must name a sink, but `a` is a source")],
    },
    Case {
        name: "sink used as an input",
        toml: "[sources.a]\ntype = \"stdin\"\n\n[sinks.b]\ntype = \"console\"\ninputs = [\"a\"]\n\n[sinks.c]\ntype = \"console\"\ninputs = [\"b\"]\n",
        expect: &[(10, "`b` is a sink and produces no events")],
    },
    Case {
        name: "unknown top-level key",
        toml: "batch_sise = 10\n[sources.a]\ntype = \"stdin\"\n",
        expect: &[(1, "unknown key `batch_sise` (did you mean `batch_size`?)")],
    },
    Case {
        name: "duplicate stage name",
        toml: "[sources.a]\ntype = \"stdin\"\n\n[sinks.a]\ntype = \"console\"\ninputs = [\"a\"]\n",
        expect: &[(4, "stage name `a` is already used by a source")],
    },
    Case {
        name: "source with inputs",
        toml: "[sources.a]\ntype = \"stdin\"\n\n[sources.b]\ntype = \"stdin\"\ninputs = [\"a\"]\n",
        expect: &[(6, "source `b` cannot have `inputs`")],
    },
    Case {
        name: "bad duration",
        toml: "[sources.a]\ntype = \"stdin\"\n\n[transforms.x]\ntype = \"wasm\"\ninputs = [\"a\"]\nplugin = \"PLUGIN\"\ntimeout = \"1 fortnight\"\n",
        expect: &[(
            8,
            "`timeout`: invalid duration \"1 fortnight\": unknown unit \"fortnight\"",
        )],
    },
    Case {
        name: "contradicting instance settings",
        toml: "[sources.a]\ntype = \"stdin\"\n\n[transforms.x]\ntype = \"wasm\"\ninputs = [\"a\"]\nplugin = \"PLUGIN\"\nscope = \"global\"\ninstances = 2\n\n[transforms.y]\ntype = \"wasm\"\ninputs = [\"a\"]\nplugin = \"PLUGIN\"\ninstances = 65\nroute = \"batch\"\nkey_field = \"g\"\n\n[transforms.z]\ntype = \"wasm\"\ninputs = [\"a\"]\nplugin = \"PLUGIN\"\ninstances = 0\n",
        expect: &[
            (
                9,
                "`scope = \"global\"` keeps one state for the whole input, so it runs one instance",
            ),
            (15, "`instances` is 65; at most 64 are allowed"),
            (
                17,
                "`key_field` picks the key events are routed by; with `route = \"batch\"`",
            ),
            (
                23,
                "`instances`: invalid value: integer `0`, expected a nonzero u32",
            ),
        ],
    },
    Case {
        name: "missing type",
        toml: "[sources.a]\npath = \"x\"\n",
        expect: &[(1, "source `a` has no `type`; expected one of")],
    },
    Case {
        name: "several errors at once",
        toml: "[sources.a]\ntype = \"replay\"\npth = \"data.csv\"\n\n[transforms.count]\ntype = \"wasm\"\nplugin = \"PLUGIN\"\n\n[sinks.out]\ntype = \"console\"\ninputs = [\"cont\"]\n",
        expect: &[
            (3, "unknown key `pth`"),
            (5, "transform `count` has no `inputs`"),
            (
                11,
                "reads from unknown stage `cont` (did you mean `count`?)",
            ),
        ],
    },
];

/// A directory with the files the cases refer to: a core module, an
/// empty component and a small CSV file.
fn fixture_dir() -> tempfile::TempDir {
    let dir = tempdir();
    std::fs::write(dir.path().join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(
        dir.path().join("empty-component.wasm"),
        b"\0asm\x0d\0\x01\0",
    )
    .unwrap();
    std::fs::write(dir.path().join("data.csv"), "a,b\n1,2\n").unwrap();
    dir
}

#[test]
fn malformed_pipelines_are_reported_with_file_line_and_message() {
    let dir = fixture_dir();
    let chaos = plugin("chaos");
    let mut failures = Vec::new();
    for case in CASES {
        let file = write(
            dir.path(),
            "p.toml",
            &case.toml.replace("PLUGIN", chaos.to_str().unwrap()),
        );
        let out = weir()
            .arg("validate")
            .arg(&file)
            .env_remove("WEIR_TEST_UNSET_DIR")
            .output()
            .unwrap();
        let (stdout, _) = texts(&out);
        if out.status.code() != Some(1) {
            failures.push(format!(
                "{}: exit {:?}, output:\n{stdout}",
                case.name,
                out.status.code()
            ));
            continue;
        }
        let lines: Vec<&str> = stdout.lines().collect();
        if lines.len() != case.expect.len() {
            failures.push(format!(
                "{}: expected {} errors, got:\n{stdout}",
                case.name,
                case.expect.len()
            ));
            continue;
        }
        for (line, (want_line, want_msg)) in lines.iter().zip(case.expect) {
            let prefix = format!("{}:{want_line}: ", file.display());
            if !line.starts_with(&prefix) || !line.contains(want_msg) {
                failures.push(format!(
                    "{}: expected `{prefix}…{want_msg}…`, got `{line}`",
                    case.name
                ));
            }
        }
    }
    assert!(CASES.len() >= 12);
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_shipped_pipeline_validates() {
    let mut files: Vec<_> = std::fs::read_dir(repo().join("pipelines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let out = weir()
        .arg("validate")
        .args(&files)
        .env("THINGSBOARD_TOKEN", "test-token")
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(
        stdout.lines().filter(|l| l.contains(": ok (")).count(),
        files.len(),
        "{stdout}"
    );
}

#[test]
fn graph_prints_text_and_dot() {
    let file = repo().join("pipelines/gender-count-local.toml");
    let out = weir().arg("graph").arg(&file).output().unwrap();
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("source shop_log (replay)\n    -> count\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("transform count (wasm)\n    <- shop_log\n    -> print\n"),
        "{stdout}"
    );
    let out = weir()
        .arg("graph")
        .arg("--dot")
        .arg(&file)
        .output()
        .unwrap();
    let (dot, _) = texts(&out);
    assert!(dot.starts_with("digraph pipeline {"), "{dot}");
    assert!(dot.contains("\"shop_log\" -> \"count\";"), "{dot}");
    assert!(dot.contains("\"count\" -> \"print\";"), "{dot}");
}

#[test]
fn help_is_available_on_every_command() {
    for cmd in [
        &["--help"][..],
        &["run", "--help"],
        &["validate", "--help"],
        &["graph", "--help"],
    ] {
        let out = weir().args(cmd).output().unwrap();
        let (stdout, _) = texts(&out);
        assert!(
            out.status.success() && stdout.contains("Usage:"),
            "{cmd:?}: {stdout}"
        );
    }
}

/// A component importing an interface the host does not provide (here
/// `wasi:http/types`: the chaos plugin with its `wasi:sockets/tcp` import
/// renamed in place, the same length) is refused by `weir validate` and
/// `weir plugin inspect` naming the import, before anything runs; the
/// interfaces the sandbox denies but links as traps (sockets) are shown as
/// such.
#[test]
fn a_plugin_importing_what_the_host_does_not_provide_is_refused_naming_the_import() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(plugin("chaos")).unwrap();
    let (from, to) = (b"wasi:sockets/tcp@0.2.6", b"wasi:http/types@0.2.60");
    let mut renamed = 0;
    while let Some(at) = bytes.windows(from.len()).position(|w| w == from) {
        bytes[at..at + to.len()].copy_from_slice(to);
        renamed += 1;
    }
    assert!(
        renamed > 0,
        "chaos no longer imports wasi:sockets/tcp@0.2.6"
    );
    let wasm = dir.path().join("http.wasm");
    std::fs::write(&wasm, &bytes).unwrap();

    let pipeline = write(
        dir.path(),
        "p.toml",
        "[sources.in]\ntype = \"stdin\"\n\n[transforms.t]\ntype = \"wasm\"\ninputs = [\"in\"]\nplugin = \"http.wasm\"\n\n[sinks.out]\ntype = \"console\"\ninputs = [\"t\"]\n",
    );
    let out = run_with_timeout(
        weir().arg("validate").arg(&pipeline),
        Duration::from_secs(60),
    );
    let (stdout, stderr) = texts(&out);
    let said = format!("{stdout}{stderr}");
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("p.toml:7: ")
            && said.contains("http.wasm is not a Weir plugin: it imports `wasi:http/types@0.2.60`, which this host does not provide"),
        "{said}"
    );

    let out = run_with_timeout(
        weir().args(["plugin", "inspect"]).arg(&wasm),
        Duration::from_secs(60),
    );
    let (stdout, _) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in:\n{stdout}"))
            .to_owned()
    };
    assert!(line("wasi:http/types@0.2.60").ends_with("NOT PROVIDED"));
    assert!(line("wasi:sockets/udp@0.2.6").ends_with("denied (traps if called)"));
    assert!(line("wasi:io/poll@0.2.6").ends_with("provided"));
    assert!(stdout.contains("weir plugin: no: it imports `wasi:http/types@0.2.60`"));
}
