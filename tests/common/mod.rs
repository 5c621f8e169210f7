//! Helpers shared by the integration tests.

#![allow(dead_code)]

pub mod cassandra;
pub mod kafka;
pub mod pipeline;
pub mod stats;
pub mod stream_server;
pub mod thingsboard;
pub mod toolchains;

// Unused by the benchmark that includes this module for its Kafka helpers.
#[allow(unused_imports)]
pub use pipeline::{
    LOOPING_SHOP_LOG, Pipeline, continuous_pipeline, counting, pipeline_file, replace_pipeline,
};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A command running the `weir` binary under test, with a private compile
/// cache and plain logs.
pub fn weir() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_weir"));
    c.env("WEIR_CACHE_DIR", cache_dir())
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    c
}

/// The compile cache shared by every `weir` the tests run.
fn cache_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = target_dir().join("test-compile-cache");
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

/// Cargo's target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"))
}

/// Path of a built plugin component (`gender-count`, `chaos`, ...). The
/// plugins are built once per test run (a no-op when already built).
pub fn plugin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .current_dir(repo())
            .args([
                "build",
                "--quiet",
                "--target",
                "wasm32-wasip2",
                "--profile",
                "plugin",
            ])
            .args([
                "-p",
                "gender-count",
                "-p",
                "window-stats",
                "-p",
                "grayscale",
                "-p",
                "chaos",
            ])
            .status()
            .expect("run cargo");
        assert!(status.success(), "building the test plugins failed");
    });
    let p = target_dir()
        .join("wasm32-wasip2/plugin")
        .join(format!("{}.wasm", name.replace('-', "_")));
    assert!(p.is_file(), "{} missing", p.display());
    p
}

/// A fresh temporary directory.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("weir-test-")
        .tempdir()
        .unwrap()
}

/// A fresh clone of this repository (what has been committed) at
/// `dir/weir`, as a new user would have it.
pub fn fresh_clone(dir: &Path) -> PathBuf {
    let clone = dir.join("weir");
    let out = Command::new("git")
        .args(["clone", "--quiet", "--no-hardlinks"])
        .arg(repo())
        .arg(&clone)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git clone of the repository failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    clone
}

/// Runs `weir` with `args`, failing the test after `timeout`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn weir");
    wait_with_timeout(child, timeout)
}

/// Waits for a child, killing it (and failing) after `timeout`.
pub fn wait_with_timeout(child: Child, timeout: Duration) -> Output {
    let id = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    let killer = std::thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if flag.load(std::sync::atomic::Ordering::Relaxed) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Where it is stuck, before it is killed.
        let threads = thread_dump(id);
        unsafe { libc::kill(id as i32, libc::SIGKILL) };
        Some(threads)
    });
    let out = child.wait_with_output().expect("wait for weir");
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(threads) = killer.join().unwrap() {
        panic!(
            "weir did not finish within {timeout:?}\nstdout:\n{}\nstderr:\n{}\n{threads}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// `weir run FILE`, failing the test after `timeout`.
pub fn run_pipeline(file: &Path, timeout: Duration) -> Output {
    run_with_timeout(weir().arg("run").arg(file), timeout)
}

/// `weir run FILE` to its end, failing the test after `timeout` or when
/// weir fails; returns stdout and stderr.
pub fn run_to_end(file: &Path, timeout: Duration) -> (String, String) {
    let out = run_pipeline(file, timeout);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "weir failed:\n{stderr}");
    (stdout, stderr)
}

/// The lines of a text file (none when it does not exist yet).
pub fn lines(path: &Path) -> Vec<String> {
    complete_lines(&std::fs::read_to_string(path).unwrap_or_default())
        .map(str::to_owned)
        .collect()
}

/// The lines of `text` that end in a newline. Every line a sink writes
/// does; text after the last newline is a write still going on (a reader
/// can see part of one `write`) and is left for the next look.
fn complete_lines(text: &str) -> std::str::Lines<'_> {
    text[..text.rfind('\n').map_or(0, |i| i + 1)].lines()
}

/// The lines of a JSON-lines file (such as a `file` sink with `format =
/// "json"` writes), parsed; none when it does not exist yet.
pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    complete_lines(&std::fs::read_to_string(path).unwrap_or_default())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Polls `done` every 20 ms until it holds, failing with `what()` after
/// `timeout`.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool, what: impl Fn() -> String) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < timeout,
            "not within {timeout:?}: {}",
            what()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the text file `path` has grown by `more` lines past `from`
/// (60 s at the most: CI's machine is several times slower than a
/// developer's, and a passing test never waits that long); returns its lines.
pub fn wait_growth(path: &Path, from: usize, more: usize) -> Vec<String> {
    let start = Instant::now();
    loop {
        let l = lines(path);
        if l.len() >= from + more {
            return l;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} stopped growing at {} lines",
            path.display(),
            l.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A sorted list of the strings in a JSON array.
pub fn sorted(v: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

/// One stage's entry in a `weir status --json` answer.
pub fn stage<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no stage {name} in {status}"))
}

/// A counter of one stage in a `weir status --json` answer.
pub fn counter(status: &serde_json::Value, name: &str, field: &str) -> u64 {
    stage(status, name)["counters"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {field} for {name} in {status}"))
}

/// stdout and stderr as strings.
pub fn texts(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sends a signal to a child process.
pub fn signal(child: &Child, sig: i32) {
    unsafe { libc::kill(child.id() as i32, sig) };
}

/// The `gender-count-next` test plugin: gender-count rebuilt to add a
/// `"build":"next"` field (built once, on its own; see its Cargo.toml).
pub fn plugin_next() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let target = target_dir().join("standalone-plugins");
            let status = Command::new(env!("CARGO"))
                .current_dir(repo())
                .args(["build", "--quiet", "--locked", "--release"])
                .args(["--target", "wasm32-wasip2", "--manifest-path"])
                .arg(repo().join("tests/plugins/gender-count-next/Cargo.toml"))
                .arg("--target-dir")
                .arg(&target)
                .status()
                .expect("run cargo");
            assert!(status.success(), "building gender-count-next failed");
            target.join("wasm32-wasip2/release/gender_count_next.wasm")
        })
        .clone()
}

/// `YYYY-MM-DD HH:MM:SS` read as UTC, to Unix ms (days counted by walking
/// the calendar, independently of the plugins' date parsing).
pub fn epoch_ms(date: &str) -> i64 {
    let n = |a: usize, b: usize| date[a..b].parse::<i64>().unwrap();
    let (y, mo, d, h, mi, s) = (n(0, 4), n(5, 7), n(8, 10), n(11, 13), n(14, 16), n(17, 19));
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let mut days = 0;
    for year in 1970..y {
        days += if leap(year) { 366 } else { 365 };
    }
    let lengths = [
        31,
        if leap(y) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    days += lengths[..(mo - 1) as usize].iter().sum::<i64>() + d - 1;
    ((days * 24 + h) * 60 + mi) * 60_000 + s * 1000
}

/// Writes a standalone plugin crate `name` with `lib_rs` into `dir`,
/// depending on this repository's SDK with its locked dependency versions;
/// returns the crate's directory.
pub fn plugin_crate(dir: &Path, name: &str, lib_rs: &str) -> PathBuf {
    let krate = dir.join(name);
    std::fs::create_dir_all(krate.join("src")).unwrap();
    write(
        &krate,
        "Cargo.toml",
        &format!(
            r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib"]

[dependencies]
weir-plugin = {{ path = "{}" }}

[workspace]

[profile.plugin]
inherits = "release"
panic = "abort"
"#,
            repo().join("plugins/sdk").display()
        ),
    );
    std::fs::copy(repo().join("Cargo.lock"), krate.join("Cargo.lock")).unwrap();
    write(&krate.join("src"), "lib.rs", lib_rs);
    krate
}

/// A counter of the `stage totals` line weir logs for `stage` at exit.
pub fn stage_total(log: &str, stage: &str, counter: &str) -> u64 {
    log.lines()
        .find(|l| l.contains("stage totals") && l.contains(&format!("stage=\"{stage}\"")))
        .and_then(|l| l.split(&format!(" {counter}=")).nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {counter} total for {stage}:\n{log}"))
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// An HTTP request from the test (a fresh client each time); returns the
/// status and body.
pub fn http(
    method: &str,
    url: &str,
    bearer: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let mut req = client
            .request(method.parse().unwrap(), url)
            .timeout(Duration::from_secs(60));
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let code = resp.status().as_u16();
        (code, resp.text().await.unwrap())
    })
}

/// Replaces `dest` with a copy of `src` atomically (copy, then rename), as
/// a deployment would.
pub fn replace_file(src: &Path, dest: &Path) {
    let tmp = dest.with_extension("tmp-replace");
    std::fs::copy(src, &tmp).unwrap();
    std::fs::rename(&tmp, dest).unwrap();
}

/// Replaces `dest`'s contents atomically.
pub fn replace_text(dest: &Path, text: &str) {
    let tmp = dest.with_extension("tmp-replace");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dest).unwrap();
}

/// A `weir run` in the background with its admin endpoint on a free
/// loopback port; output goes to files in `dir`.
pub struct Background {
    /// The process.
    pub child: Child,
    /// Admin address.
    pub admin: String,
    /// stderr (logs).
    pub log: PathBuf,
    /// stdout.
    pub stdout: PathBuf,
}

impl Background {
    /// Starts `weir run FILE --admin 127.0.0.1:0 EXTRA...` and waits until
    /// the admin endpoint listens.
    pub fn start(dir: &Path, file: &Path, extra: &[&str]) -> Background {
        Self::start_with(dir, file, &["--admin", "127.0.0.1:0"], extra, Stdio::null())
    }

    /// [`Background::start`] with its standard input piped (take it from
    /// `child.stdin`) for pipelines with a `stdin` source.
    pub fn start_piped(dir: &Path, file: &Path, extra: &[&str]) -> Background {
        Self::start_with(
            dir,
            file,
            &["--admin", "127.0.0.1:0"],
            extra,
            Stdio::piped(),
        )
    }

    /// `weir run FILE ADMIN... EXTRA...`; waits for the admin endpoint.
    pub fn start_with(
        dir: &Path,
        file: &Path,
        admin: &[&str],
        extra: &[&str],
        stdin: Stdio,
    ) -> Background {
        let mut cmd = weir();
        cmd.arg("run")
            .arg(file)
            .args(admin)
            .args(extra)
            .stdin(stdin);
        Self::spawn(dir, cmd)
    }

    /// [`Background::start`] with the environment variables `envs` set.
    pub fn start_with_env(dir: &Path, file: &Path, envs: &[(&str, &Path)]) -> Background {
        let mut cmd = weir();
        cmd.arg("run").arg(file).args(["--admin", "127.0.0.1:0"]);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null());
        Self::spawn(dir, cmd)
    }

    /// Spawns `cmd` (a `weir run` with an admin endpoint) with its output
    /// to files in `dir`; waits until the admin endpoint listens and every
    /// stage is up.
    pub fn spawn(dir: &Path, mut cmd: Command) -> Background {
        let log = dir.join("weir.log");
        let stdout = dir.join("weir.out");
        let child = cmd
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn weir");
        let mut bg = Background {
            child,
            admin: String::new(),
            log,
            stdout,
        };
        let start = Instant::now();
        loop {
            let text = bg.log_text();
            if let Some(rest) = text.split("admin endpoint listening address=").nth(1) {
                bg.admin = rest.split_whitespace().next().unwrap().to_owned();
                break;
            }
            assert!(
                bg.child.try_wait().unwrap().is_none(),
                "weir exited early:\n{text}"
            );
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "admin endpoint did not start:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Wait until every stage is up.
        bg.wait_for("pipeline running", Duration::from_secs(60));
        bg
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle` `n` times.
    pub fn wait_for_n(&self, needle: &str, n: usize, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            let text = self.log_text();
            if text.matches(needle).count() >= n {
                return text;
            }
            assert!(
                start.elapsed() < timeout,
                "`{needle}` did not appear {n} times within {timeout:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        self.wait_for_n(needle, 1, timeout)
    }

    /// Polls `done` every 20 ms until it holds, failing with `what` and the
    /// log after `timeout`.
    pub fn wait_until(&self, what: &str, timeout: Duration, done: impl FnMut() -> bool) {
        wait_until(timeout, done, || format!("{what}\n{}", self.log_text()));
    }

    /// One stage's counters, from `weir status --json`.
    pub fn counters(&self, stage_name: &str) -> serde_json::Value {
        stage(&self.status(), stage_name)["counters"].clone()
    }

    /// A `weir` client command pointed at this pipeline's admin endpoint.
    pub fn client(&self, command: &str) -> Command {
        let mut c = weir();
        c.arg(command).args(["--admin", &self.admin]);
        c
    }

    /// `weir status --json`, parsed.
    pub fn status(&self) -> serde_json::Value {
        let out = run_with_timeout(self.client("status").arg("--json"), Duration::from_secs(30));
        let (stdout, stderr) = texts(&out);
        assert!(out.status.success(), "weir status failed: {stderr}");
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    }

    /// Each stage's running instance, by name.
    pub fn instances(&self) -> std::collections::BTreeMap<String, u64> {
        self.status()["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap().to_owned(),
                    s["instance"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    /// Waits until the status reports `n` reloads (applied or failed) and
    /// returns the last one.
    pub fn wait_for_reload(&self, n: u64, timeout: Duration) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let s = self.status();
            let done = s["reloads_ok"].as_u64().unwrap() + s["reloads_failed"].as_u64().unwrap();
            if done >= n {
                return s["last_reload"].clone();
            }
            assert!(
                start.elapsed() < timeout,
                "reload {n} did not happen within {timeout:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then waits for a clean exit; returns the log.
    pub fn stop(mut self) -> String {
        signal(&self.child, libc::SIGTERM);
        self.finish(Duration::from_secs(60))
    }

    /// Waits for the process to exit by itself with status 0; returns the
    /// log.
    pub fn finish(&mut self, timeout: Duration) -> String {
        let status = self.exit_status(timeout);
        let text = self.log_text();
        assert!(status.success(), "weir failed ({status}):\n{text}");
        text
    }

    /// Waits until the process exits, successfully or not; kills it and
    /// panics with its log after `timeout`.
    pub fn exit_status(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > timeout {
                let threads = thread_dump(self.child.id());
                let _ = self.child.kill();
                panic!(
                    "weir did not exit within {timeout:?}:\n{}\n{threads}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Every thread's stack of a hung process, from gdb when the machine has
/// it: where a process that does not exit is stuck.
fn thread_dump(pid: u32) -> String {
    let out = Command::new("gdb")
        .args(["-p", &pid.to_string(), "-batch", "-nx"])
        .args(["-ex", "set pagination off", "-ex", "thread apply all bt"])
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(out) => format!(
            "threads of the hung process (gdb):\n{}",
            String::from_utf8_lossy(&out.stdout)
        ),
        Err(e) => format!("(no thread dump: gdb: {e})"),
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
