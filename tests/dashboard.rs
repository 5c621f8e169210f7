//! The live dashboard of the shop-log pipeline, opened in headless Chromium
//! (Debian's `chromium` and `chromedriver`, installed by scripts/test) over
//! the WebDriver protocol.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;

/// A chromedriver process and one browser session.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session.
    fn start() -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed by scripts/test (Debian package chromium-driver)");
        let base = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempdir();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-quic", "--window-size=900,600",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }}});
        let (code, body) = http("POST", &format!("{base}/session"), None, Some(caps));
        assert_eq!(code, 200, "cannot start a Chromium session: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let session = v["value"]["sessionId"].as_str().unwrap().to_owned();
        Browser {
            driver,
            base,
            session,
            _profile: profile,
        }
    }

    /// A WebDriver command of this session; returns its `value`.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let (code, text) = http(method, &url, None, body);
        assert_eq!(code, 200, "{method} {path}: {text}");
        serde_json::from_str::<Value>(&text).unwrap()["value"].clone()
    }

    /// Navigates to `url`.
    fn open(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `js` in the page; returns what it returns.
    fn script(&self, js: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": js, "args": [] })),
        )
    }

    /// Saves a PNG screenshot of the page to `path`.
    fn screenshot(&self, path: &std::path::Path) {
        use base64::Engine as _;
        let png = self.call("GET", "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        assert!(bytes.starts_with(b"\x89PNG"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = std::panic::catch_unwind(|| http("DELETE", &url, None, None));
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// What the page shows: the window's end and the bars, key → count.
#[derive(Debug, Clone, PartialEq)]
struct Frame {
    window_end: String,
    bars: BTreeMap<String, u64>,
    labels: Vec<String>,
}

const READ_FRAME: &str = r#"
const bars = Array.from(document.querySelectorAll("rect.bar"))
  .map(r => [r.dataset.key, Number(r.dataset.count), Number(r.getAttribute("height"))]);
const labels = Array.from(document.querySelectorAll("text.label")).map(t => t.textContent);
return { end: document.getElementById("window").dataset.end || "", bars, labels,
         conn: document.getElementById("conn").textContent };
"#;

#[test]
fn the_shop_log_dashboard_shows_each_windows_counts_in_chromium() {
    let dir = tempdir();
    let bg = Background::start(dir.path(), &repo().join("pipelines/gender-count.toml"), &[]);
    let browser = Browser::start();
    browser.open(&format!("http://{}/dashboard/shoppers", bg.admin));
    let title: Value = browser.call("GET", "/title", None);
    assert_eq!(title, "Shoppers by gender, per second · weir");

    // Watch the page for a few windows.
    let mut frames: Vec<Frame> = Vec::new();
    let start = Instant::now();
    while frames.len() < 4 {
        let v = browser.script(READ_FRAME);
        let end = v["end"].as_str().unwrap().to_owned();
        if !end.is_empty() && frames.last().is_none_or(|f| f.window_end != end) {
            let bars: BTreeMap<String, u64> = v["bars"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| (b[0].as_str().unwrap().to_owned(), b[1].as_u64().unwrap()))
                .collect();
            // Taller bars for larger counts.
            let mut by_count: Vec<(u64, f64)> = v["bars"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| (b[1].as_u64().unwrap(), b[2].as_f64().unwrap()))
                .collect();
            by_count.sort_by(|a, b| a.partial_cmp(b).unwrap());
            assert!(
                by_count.windows(2).all(|w| w[0].1 <= w[1].1),
                "{by_count:?}"
            );
            let labels = v["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l.as_str().unwrap().to_owned())
                .collect();
            frames.push(Frame {
                window_end: end,
                bars,
                labels,
            });
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the page showed {} windows in 60 s: {frames:?}\nlast read: {v}",
            frames.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    browser.screenshot(&target_dir().join("test-artifacts/dashboard-shoppers.png"));

    // Every window the page showed is one the pipeline printed (the same
    // counts, from the same topic), in the same order; the bars changed
    // from window to window and are labelled as configured.
    let stdout = bg.stdout.clone();
    bg.stop();
    let printed: Vec<BTreeMap<String, u64>> = std::fs::read_to_string(&stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let items: Vec<BTreeMap<String, u64>> = serde_json::from_str(l).unwrap();
            items.into_iter().flatten().collect()
        })
        .collect();
    let mut at = 0;
    for f in &frames {
        let found = printed[at..].iter().position(|p| *p == f.bars);
        let Some(i) = found else {
            panic!(
                "the page showed {:?}, which the pipeline did not print after window {at}: {printed:?}",
                f.bars
            );
        };
        at += i + 1;
        assert!(
            f.labels.iter().any(|l| l == "female" || l == "male"),
            "{f:?}"
        );
    }
    let ends: std::collections::BTreeSet<_> = frames.iter().map(|f| &f.window_end).collect();
    assert_eq!(ends.len(), frames.len(), "each frame is a new window");
    assert!(
        frames.windows(2).any(|w| w[0].bars != w[1].bars),
        "the bars never changed: {frames:?}"
    );
    let total: u64 = frames.iter().flat_map(|f| f.bars.values()).sum();
    assert!(total > 0);
}

#[test]
fn a_dashboard_needs_the_admin_endpoint() {
    let p = Pipeline::new(
        "[sources.in]\ntype = \"stdin\"\n\n[sinks.chart]\ntype = \"dashboard\"\ninputs = [\"in\"]\n",
    );
    let out = run_with_timeout(p.command().stdin(Stdio::null()), Duration::from_secs(30));
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("the dashboard sink `chart` is served by the admin endpoint, which is off"),
        "{stderr}"
    );
}

#[test]
fn numeric_fields_are_drawn_as_lines_over_time() {
    let p = Pipeline::new(
        "[sources.in]\ntype = \"stdin\"\n\n[sinks.room]\ntype = \"dashboard\"\ninputs = [\"in\"]\ntitle = \"Room\"\nfields = [\"temperature\", \"humidity\"]\n",
    );
    let mut bg = p.start_piped();
    let mut stdin = bg.child.stdin.take().unwrap();
    let browser = Browser::start();
    browser.open(&format!("http://{}/dashboard/room", bg.admin));
    let read = r#"
const lines = Array.from(document.querySelectorAll("polyline.line"))
  .map(l => [l.dataset.key, l.getAttribute("points").trim().split(/\s+/).length]);
return { lines, legend: document.getElementById("legend").textContent };
"#;
    let mut seen = Vec::new();
    for i in 0..5 {
        use std::io::Write as _;
        writeln!(
            stdin,
            "{{\"device\":\"pi\",\"temperature\":{},\"humidity\":{}}}",
            20 + i,
            40 + 2 * i
        )
        .unwrap();
        stdin.flush().unwrap();
        // Wait until the page has drawn this point.
        let start = Instant::now();
        loop {
            let v = browser.script(read);
            let lines = v["lines"].as_array().unwrap().clone();
            if lines.len() == 2 && lines.iter().all(|l| l[1].as_u64() == Some(i + 1)) {
                seen.push(v);
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "point {i} not drawn: {v}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let last = seen.last().unwrap();
    let keys: Vec<&str> = last["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l[0].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["temperature", "humidity"],
        "in the order of `fields`"
    );
    let legend = last["legend"].as_str().unwrap();
    assert!(
        legend.contains("temperature: 24") && legend.contains("humidity: 48"),
        "{legend}"
    );
    browser.screenshot(&target_dir().join("test-artifacts/dashboard-lines.png"));
    drop(stdin);
    bg.finish(Duration::from_secs(30));
}
