//! Pipelines written from short TOML fragments: the text is the pipeline
//! file as a user would write it, with placeholders for what only the test
//! run knows (plugin paths, the broker's address, directories).
//!
//! | placeholder     | replaced by                                     |
//! | --------------- | ----------------------------------------------- |
//! | `@plugin(NAME)` | the built plugin component `NAME` ([`plugin`])  |
//! | `@broker`       | the shared Kafka broker ([`super::kafka::broker`]) |
//! | `@repo`         | the repository root                             |
//! | `@dir`          | the directory the pipeline file is written to   |

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use super::{Background, json_lines, lines, plugin, repo, tempdir, texts, weir, write};

/// `toml` with its placeholders (see the module's documentation) filled
/// in, for a pipeline file in `dir`.
pub fn fill(dir: &Path, toml: &str) -> String {
    let mut text = toml
        .replace("@dir", &dir.display().to_string())
        .replace("@repo", &repo().display().to_string());
    if text.contains("@broker") {
        text = text.replace("@broker", super::kafka::broker());
    }
    while let Some(at) = text.find("@plugin(") {
        let name_start = at + "@plugin(".len();
        let len = text[name_start..]
            .find(')')
            .unwrap_or_else(|| panic!("unclosed @plugin( in:\n{toml}"));
        let path = plugin(&text[name_start..name_start + len]);
        text.replace_range(at..name_start + len + 1, &path.display().to_string());
    }
    text
}

/// Writes the pipeline `toml`, placeholders filled in, to `dir/p.toml`;
/// returns its path.
pub fn pipeline_file(dir: &Path, toml: &str) -> PathBuf {
    write(dir, "p.toml", &fill(dir, toml))
}

/// A pipeline file `p.toml` in a fresh temporary directory, with the files
/// it reads and writes next to it.
pub struct Pipeline {
    dir: tempfile::TempDir,
    file: PathBuf,
}

impl Pipeline {
    /// Writes the pipeline `toml` (placeholders filled in) to `p.toml` in a
    /// fresh temporary directory.
    pub fn new(toml: &str) -> Pipeline {
        let dir = tempdir();
        let file = pipeline_file(dir.path(), toml);
        Pipeline { dir, file }
    }

    /// Also writes the file `name` with `text` next to the pipeline (an
    /// input it reads).
    pub fn with_file(self, name: &str, text: &str) -> Pipeline {
        write(self.dir.path(), name, text);
        self
    }

    /// The pipeline's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The pipeline file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The path of `name` in the pipeline's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The contents of `name` in the pipeline's directory, which must
    /// exist.
    pub fn read(&self, name: &str) -> String {
        let path = self.path(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The lines of `name` in the pipeline's directory (none when it does
    /// not exist).
    pub fn lines(&self, name: &str) -> Vec<String> {
        lines(&self.path(name))
    }

    /// The JSON lines of `name` in the pipeline's directory, parsed (none
    /// when it does not exist).
    pub fn json_lines(&self, name: &str) -> Vec<serde_json::Value> {
        json_lines(&self.path(name))
    }

    /// A `weir run p.toml` command, to add arguments or environment to.
    pub fn command(&self) -> Command {
        let mut c = weir();
        c.arg("run").arg(&self.file);
        c
    }

    /// Runs the pipeline, failing the test after `timeout`.
    pub fn run(&self, timeout: Duration) -> Output {
        super::run_pipeline(&self.file, timeout)
    }

    /// Runs the pipeline to its end, failing the test after `timeout` or
    /// when weir fails; returns stderr (the log).
    pub fn run_ok(&self, timeout: Duration) -> String {
        super::run_to_end(&self.file, timeout).1
    }

    /// Runs the pipeline, which must fail with exit status 1 within
    /// `timeout`; returns stderr.
    pub fn run_failing(&self, timeout: Duration) -> String {
        let out = self.run(timeout);
        let (_, stderr) = texts(&out);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        stderr
    }

    /// Starts the pipeline in the background with an admin endpoint (see
    /// [`Background::start`]).
    pub fn start(&self) -> Background {
        Background::start(self.dir.path(), &self.file, &[])
    }

    /// [`Pipeline::start`] with standard input piped (take it from
    /// `child.stdin`), for pipelines with a `stdin` source.
    pub fn start_piped(&self) -> Background {
        Background::start_piped(self.dir.path(), &self.file, &[])
    }
}

/// Replaces the pipeline file `file` with `toml` (placeholders filled in),
/// atomically, as an editor saving it would.
pub fn replace_pipeline(file: &Path, toml: &str) {
    super::replace_text(file, &fill(file.parent().unwrap(), toml));
}

// ---- Fragments shared by several test files. ----

/// `[sources.log]`: the shop log replayed at 20,000 lines/s, in a loop.
pub const LOOPING_SHOP_LOG: &str = r#"
[sources.log]
type = "replay"
path = "@repo/data/user_log.csv"
format = "csv"
select = "gender"
rate = 20000
loop = true
"#;

/// `[transforms.count]`, gender-count from `plugin` in 500 ms JSON windows
/// over `input`, and `[sinks.counts]` writing them to `counts.jsonl` (the
/// last table, so callers may add keys to it).
pub fn counting(input: &str, plugin: &str) -> String {
    format!(
        r#"
[transforms.count]
type = "wasm"
inputs = ["{input}"]
plugin = "{plugin}"
config = {{ window = "500ms", format = "json" }}

[sinks.counts]
type = "file"
inputs = ["count"]
path = "counts.jsonl"
"#
    )
}

/// A continuously fed pipeline: the looping shop log into a gender-count
/// stage (from `gc.wasm` next to the pipeline) and a chaos stage (which
/// echoes each event prefixed with its `tag`) with `chaos_config`.
pub fn continuous_pipeline(chaos_config: &str) -> String {
    format!(
        r#"{LOOPING_SHOP_LOG}{counting}
[transforms.echo]
type = "wasm"
inputs = ["log"]
plugin = "@plugin(chaos)"
config = {chaos_config}

[sinks.echoes]
type = "file"
inputs = ["echo"]
path = "echoes.txt"
"#,
        counting = counting("log", "gc.wasm"),
    )
}
