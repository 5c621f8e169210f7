//! The operator surface through the real binary: `/metrics` read by a
//! Prometheus parser, the admin endpoint's token rule, its address in the
//! pipeline file, `weir tap`, and `weir top` in a terminal (tmux).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// A pipeline from standard input straight to the console.
const STDIN_TO_CONSOLE: &str =
    "[sources.in]\ntype = \"stdin\"\n\n[sinks.out]\ntype = \"console\"\ninputs = [\"in\"]\n";

/// stdin → gender-count (wasm) → console, and stdin → Kafka topic (the
/// embedded broker) → Kafka source that checks JSON → file.
const METRICS_PIPELINE: &str = r#"
[sources.lines]
type = "stdin"

[transforms.count]
type = "wasm"
inputs = ["lines"]
plugin = "@plugin(gender-count)"
config = { key = "g", window = "1s", time = "processing" }

[sinks.windows]
type = "file"
inputs = ["count"]
path = "windows.jsonl"

[sinks.to_topic]
type = "kafka"
inputs = ["lines"]
topic = "m"

[sources.from_topic]
type = "kafka"
topic = "m"
group = "metrics-test"
start = "earliest"
format = "json"
dead_letter = "bad"

[sinks.copy]
type = "file"
inputs = ["from_topic"]
path = "copy.jsonl"

[sinks.bad]
type = "file"
path = "bad.jsonl"
format = "json"
"#;

/// Reads `/metrics` as Prometheus text: (name, labels) → value.
fn scrape(admin: &str) -> prometheus_parse::Scrape {
    let (code, body) = http("GET", &format!("http://{admin}/metrics"), None, None);
    assert_eq!(code, 200, "{body}");
    check_exposition(&body);
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    prometheus_parse::Scrape::parse(lines).unwrap_or_else(|e| panic!("{e}:\n{body}"))
}

/// What `prometheus-parse` lets through but Prometheus rejects: a family
/// without exactly one TYPE line before its samples, samples of a family
/// not kept together, the same series twice, a malformed label set or a
/// value that is not a number.
fn check_exposition(body: &str) {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut finished: std::collections::BTreeSet<String> = Default::default();
    let mut current = String::new();
    let mut series = std::collections::BTreeSet::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "two TYPE lines for {name}"
            );
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (name, rest) = line.split_at(line.find(['{', ' ']).expect("name then labels or value"));
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => {
                let end = r.rfind("} ").expect("closed label set");
                (&r[..end], &r[end + 2..])
            }
            None => ("", rest.trim_start()),
        };
        // Labels: name="value" with \\, \" and \n escapes, comma-separated.
        let mut chars = labels.chars().peekable();
        while chars.peek().is_some() {
            let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
            assert!(
                !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "label name {key:?} in {line}"
            );
            assert_eq!(chars.next(), Some('"'), "{line}");
            loop {
                match chars.next().expect("closed label value") {
                    '\\' => assert!(matches!(chars.next(), Some('\\' | '"' | 'n')), "{line}"),
                    '"' => break,
                    _ => {}
                }
            }
            if chars.peek() == Some(&',') {
                chars.next();
            }
        }
        assert!(
            value == "+Inf" || value.parse::<f64>().is_ok(),
            "value {value:?} in {line}"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        assert!(
            types.contains_key(family),
            "{family} has no TYPE before its samples"
        );
        if family != current {
            assert!(finished.insert(current.clone()), "{current} is split");
            assert!(!finished.contains(family), "{family} is split");
            current = family.to_owned();
        }
        assert!(
            series.insert(format!("{name}{{{labels}}}")),
            "duplicate series {name}{{{labels}}}"
        );
    }
}

/// The one sample of metric `name` for `stage`.
fn value(s: &prometheus_parse::Scrape, name: &str, stage: &str) -> f64 {
    let found: Vec<f64> = s
        .samples
        .iter()
        .filter(|x| x.metric == name && x.labels.get("stage") == Some(stage))
        .filter_map(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        })
        .collect();
    assert_eq!(found.len(), 1, "{name}{{stage={stage}}}: {found:?}");
    found[0]
}

#[test]
fn metrics_are_prometheus_text_that_agrees_with_what_was_sent() {
    let p = Pipeline::new(METRICS_PIPELINE);
    let mut bg = p.start_piped();
    const GOOD: usize = 3000;
    const BAD: usize = 7;
    let mut stdin = bg.child.stdin.take().unwrap();
    let mut text = String::new();
    for i in 0..GOOD {
        text.push_str(&format!("{{\"g\":\"{}\"}}\n", i % 3));
        if i % 400 == 0 && i / 400 < BAD {
            text.push_str("not json\n");
        }
    }
    stdin.write_all(text.as_bytes()).unwrap();
    stdin.flush().unwrap();
    let sent = (GOOD + BAD) as f64;

    // Counters settle once everything has passed; Kafka lag once the group
    // has committed.
    let start = Instant::now();
    let s = loop {
        let s = scrape(&bg.admin);
        let settled = value(&s, "weir_events_in_total", "copy") == GOOD as f64
            && value(&s, "weir_events_in_total", "count") == sent
            && s.samples.iter().any(|x| {
                x.metric == "weir_kafka_consumer_lag"
                    && matches!(x.value, prometheus_parse::Value::Gauge(v) if v == 0.0)
            });
        if settled {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "metrics did not settle:\n{:#?}",
            s.samples
                .iter()
                .filter(|x| x.metric.starts_with("weir_events")
                    || x.metric == "weir_kafka_consumer_lag")
                .map(|x| (&x.metric, x.labels.get("stage"), &x.value))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // Counters agree with what was sent.
    assert_eq!(value(&s, "weir_events_out_total", "lines"), sent);
    assert_eq!(value(&s, "weir_events_in_total", "to_topic"), sent);
    assert_eq!(value(&s, "weir_events_in_total", "from_topic"), sent);
    assert_eq!(
        value(&s, "weir_events_rejected_total", "from_topic"),
        BAD as f64
    );
    assert_eq!(value(&s, "weir_events_in_total", "bad"), BAD as f64);
    assert_eq!(value(&s, "weir_events_out_total", "copy"), GOOD as f64);
    assert_eq!(value(&s, "weir_errors_total", "count"), 0.0);
    assert_eq!(value(&s, "weir_kafka_rebalances_total", "from_topic"), 1.0);
    // Types as declared.
    let docs_type = |name: &str| {
        s.samples
            .iter()
            .find(|x| x.metric == name)
            .map(|x| match x.value {
                prometheus_parse::Value::Counter(_) => "counter",
                prometheus_parse::Value::Gauge(_) => "gauge",
                prometheus_parse::Value::Histogram(_) => "histogram",
                _ => "other",
            })
            .unwrap_or_else(|| panic!("no {name}"))
    };
    assert_eq!(docs_type("weir_events_in_total"), "counter");
    assert_eq!(docs_type("weir_plugin_memory_bytes"), "gauge");
    assert_eq!(docs_type("weir_batch_duration_seconds"), "histogram");
    assert!(s.docs.contains_key("weir_batch_duration_seconds"));
    // The plugin's memory and its call-time histogram.
    let memory = value(&s, "weir_plugin_memory_bytes", "count");
    assert!(memory >= 65536.0, "plugin memory {memory}");
    let batches = value(&s, "weir_batches_total", "count");
    let hist = s
        .samples
        .iter()
        .find(|x| {
            x.metric == "weir_batch_duration_seconds" && x.labels.get("stage") == Some("count")
        })
        .unwrap();
    let prometheus_parse::Value::Histogram(buckets) = &hist.value else {
        panic!("{hist:?}")
    };
    let counts: Vec<f64> = buckets.iter().map(|b| b.count).collect();
    assert!(
        counts.windows(2).all(|w| w[0] <= w[1]),
        "cumulative: {counts:?}"
    );
    assert_eq!(buckets.last().unwrap().less_than, f64::INFINITY);
    assert_eq!(
        *counts.last().unwrap(),
        batches,
        "every batch observed once"
    );
    let busy = value(&s, "weir_stage_busy_seconds_total", "count");
    assert!(busy > 0.0 && busy < 60.0, "{busy}");
    // The lag is per partition of the source's topic.
    let lag: Vec<_> = s
        .samples
        .iter()
        .filter(|x| x.metric == "weir_kafka_consumer_lag")
        .collect();
    assert_eq!(lag.len(), 1, "{lag:?}");
    assert_eq!(lag[0].labels.get("topic"), Some("m"));
    assert_eq!(lag[0].labels.get("partition"), Some("0"));

    // `weir status` shows the same counters.
    let status = bg.status();
    let counters = |n: &str| stage(&status, n)["counters"].clone();
    assert_eq!(counters("from_topic")["rejected"], BAD as u64);
    assert_eq!(counters("copy")["events_out"], GOOD as u64);
    assert!(counters("count")["memory_bytes"].as_u64().unwrap() >= 65536);

    // A Kafka source never ends by itself: stop with SIGTERM.
    drop(stdin);
    bg.stop();
}

#[test]
fn the_admin_endpoint_needs_a_token_off_loopback() {
    let p = Pipeline::new(STDIN_TO_CONSOLE);
    // No token: refuses to start, and says why.
    let out = run_with_timeout(
        p.command()
            .args(["--admin", "0.0.0.0:0"])
            .stdin(Stdio::null()),
        Duration::from_secs(30),
    );
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("refusing to serve the admin endpoint on 0.0.0.0:0 without `admin_token`"),
        "{stderr}"
    );

    // With a token: requests without it (or with a wrong one) get 401.
    let file = write(
        p.dir(),
        "q.toml",
        &format!("admin_token = \"s3cret\"\n\n{STDIN_TO_CONSOLE}"),
    );
    let bg = Background::start_with(
        p.dir(),
        &file,
        &["--admin", "0.0.0.0:0"],
        &[],
        Stdio::piped(),
    );
    let port = bg.admin.rsplit(':').next().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    for path in ["/status", "/metrics", "/tap/in", "/dashboard/"] {
        let (code, body) = http("GET", &format!("{base}{path}"), None, None);
        assert_eq!(code, 401, "{path}: {body}");
        let (code, _) = http("GET", &format!("{base}{path}"), Some("wrong"), None);
        assert_eq!(code, 401, "{path} with a wrong token");
    }
    let (code, _) = http("POST", &format!("{base}/reload"), None, None);
    assert_eq!(code, 401);
    let (code, body) = http("GET", &format!("{base}/status"), Some("s3cret"), None);
    assert_eq!(code, 200, "{body}");
    let (code, _) = http(
        "GET",
        &format!("{base}/dashboard/?token=s3cret"),
        None,
        None,
    );
    assert_eq!(code, 200, "browsers pass the token in the query");
    // The CLI passes it with --token, and reports a refusal plainly.
    let out = run_with_timeout(
        weir().args(["status", "--admin", &format!("127.0.0.1:{port}")]),
        Duration::from_secs(30),
    );
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("refused the request"), "{stderr}");
    let out = run_with_timeout(
        weir().args([
            "status",
            "--admin",
            &format!("127.0.0.1:{port}"),
            "--token",
            "s3cret",
        ]),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", texts(&out).1);
    bg.stop();
}

/// A `weir tap` in the background; waits until it is subscribed.
fn tap(admin: &str, args: &[&str]) -> std::process::Child {
    let mut child = weir()
        .args(["tap", "--admin", admin])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut err, &mut line).unwrap();
    assert!(line.starts_with("tapping"), "{line}");
    // Keep draining stderr so later messages cannot block or break it.
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    child
}

#[test]
fn tap_prints_a_stages_events_as_they_pass_then_exits() {
    let p = Pipeline::new(
        "[sources.in]\ntype = \"stdin\"\n\n[transforms.count]\ntype = \"wasm\"\ninputs = [\"in\"]\nplugin = \"@plugin(gender-count)\"\nconfig = { window = \"1h\", time = \"event\" }\n\n[sinks.out]\ntype = \"file\"\ninputs = [\"count\"]\npath = \"out.txt\"\n",
    );
    let mut bg = p.start_piped();
    let source = tap(&bg.admin, &["in", "--limit", "5"]);
    let sink = tap(&bg.admin, &["out", "-n", "1", "--json"]);
    let mut stdin = bg.child.stdin.take().unwrap();
    for i in 0..20 {
        writeln!(stdin, "v{i}").unwrap();
    }
    stdin.flush().unwrap();
    let out = wait_with_timeout(source, Duration::from_secs(30));
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["v0", "v1", "v2", "v3", "v4"]
    );

    // Closing stdin ends the source; the open window reaches the sink.
    drop(stdin);
    let out = wait_with_timeout(sink, Duration::from_secs(30));
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    let event: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let window: serde_json::Value = serde_json::from_str(event["value"].as_str().unwrap()).unwrap();
    assert_eq!(window["counts"].as_object().unwrap().len(), 20, "{window}");
    assert!(event["timestamp"].as_i64().unwrap() > 0);
    bg.finish(Duration::from_secs(60));

    // An unknown stage is an error that lists the stages.
    let p = Pipeline::new(STDIN_TO_CONSOLE);
    let bg = p.start_piped();
    let out = run_with_timeout(bg.client("tap").arg("nope"), Duration::from_secs(30));
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("no stage `nope`; known: in, out"),
        "{stderr}"
    );
    bg.stop();
}

/// A private tmux server for one test.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// A server on a socket named after this process.
    fn new() -> Tmux {
        Tmux {
            socket: format!("weir-test-{}", std::process::id()),
        }
    }

    /// Runs `tmux ARGS` against this server.
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .env("TERM", "xterm-256color")
            .output()
            .expect("tmux is installed by scripts/test")
    }

    /// The text on the `top` session's screen.
    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", "top"]).stdout).into_owned()
    }

    /// Whether the `top` session still exists.
    fn running(&self) -> bool {
        self.cmd(&["has-session", "-t", "top"]).status.success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

#[test]
fn top_shows_the_running_stages_in_a_terminal_and_quits_on_q() {
    let lines: String = (0..200_000).map(|i| format!("{}\n", i % 3)).collect();
    let p = Pipeline::new(
        "[sources.replay]\ntype = \"replay\"\npath = \"in.txt\"\nformat = \"lines\"\nrate = 2000\n\n[transforms.count]\ntype = \"wasm\"\ninputs = [\"replay\"]\nplugin = \"@plugin(gender-count)\"\n\n[sinks.out]\ntype = \"file\"\ninputs = [\"count\"]\npath = \"out.txt\"\n",
    )
    .with_file("in.txt", &lines);
    let bg = p.start();
    let tmux = Tmux::new();
    // After top exits, the terminal's settings are recorded: raw mode
    // must be gone.
    let stty = p.path("stty.txt");
    let top = format!(
        "{} top --admin {} --interval 0.5; stty -a > {}",
        env!("CARGO_BIN_EXE_weir"),
        bg.admin,
        stty.display()
    );
    let out = tmux.cmd(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "160",
        "-y",
        "30",
        &top,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Wait for a frame with rates: the replay runs at 2000 events/s.
    let start = Instant::now();
    let screen = loop {
        let screen = tmux.screen();
        let rate = screen
            .lines()
            .find(|l| l.starts_with("replay"))
            .and_then(|l| l.split_whitespace().nth(4))
            .and_then(|r| r.parse::<f64>().ok());
        if rate.is_some_and(|r| r > 1000.0 && r < 3000.0) {
            break screen;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no frame with a rate near 2000/s:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(screen.contains("weir top"), "{screen}");
    assert!(
        screen.contains("STAGE") && screen.contains("IN/s"),
        "{screen}"
    );
    let rows: BTreeMap<&str, Vec<&str>> = screen
        .lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.len() >= 11).then(|| (cols[0], cols))
        })
        .collect();
    for (stage, kind, ty) in [
        ("replay", "source", "replay"),
        ("count", "transform", "wasm"),
        ("out", "sink", "file"),
    ] {
        let row = rows
            .get(stage)
            .unwrap_or_else(|| panic!("{stage}:\n{screen}"));
        assert_eq!((row[1], row[2], row[3]), (kind, ty, "running"), "{screen}");
    }
    // Its tasks (none per partition: a file feeds it), the size of its
    // state and the plugin's memory, in B/KiB/MiB.
    assert_eq!(rows["count"][9], "0", "{screen}");
    assert!(rows["count"][10].ends_with('B'), "{screen}");
    assert!(rows["count"][11].ends_with("iB"), "{screen}");

    // `q` quits and restores the terminal.
    tmux.cmd(&["send-keys", "-t", "top", "q"]);
    let start = Instant::now();
    while tmux.running() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "top did not quit on q:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let settings = std::fs::read_to_string(&stty).expect("stty ran after top");
    let flags: Vec<&str> = settings.split([' ', ';', '\n']).collect();
    for flag in ["icanon", "echo", "isig"] {
        assert!(flags.contains(&flag), "{flag} not restored:\n{settings}");
    }
    bg.stop();
}

/// Sends a raw HTTP/1.1 request and returns the status line.
fn raw_status(addr: &str, request: &str) -> String {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer.lines().next().unwrap_or_default().to_owned()
}

#[test]
fn pages_elsewhere_cannot_use_the_loopback_endpoint() {
    let p = Pipeline::new(STDIN_TO_CONSOLE);
    let bg = p.start_piped();
    let get = |host: &str| {
        raw_status(
            &bg.admin,
            &format!("GET /status HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
    };
    assert!(get(&bg.admin).contains(" 200 "));
    assert!(get("localhost:7470").contains(" 200 "));
    // DNS rebinding: a name that resolves to 127.0.0.1.
    assert!(
        get("evil.example:7470").contains(" 403 "),
        "{}",
        get("evil.example:7470")
    );
    // A cross-origin POST (a form on another site).
    let post = |origin: &str| {
        raw_status(
            &bg.admin,
            &format!(
                "POST /reload HTTP/1.1\r\nHost: {}\r\nOrigin: {origin}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                bg.admin
            ),
        )
    };
    assert!(post("http://evil.example").contains(" 403 "));
    assert!(post(&format!("http://{}", bg.admin)).contains(" 200 "));
    bg.stop();
}

// --- the admin address in the pipeline file ----------------------------

/// A `weir` client command with no admin address from the environment.
fn client(command: &str) -> std::process::Command {
    let mut c = weir();
    c.arg(command)
        .env_remove("WEIR_ADMIN")
        .env_remove("WEIR_ADMIN_TOKEN");
    c
}

/// `admin = "127.0.0.1:PORT"` in the pipeline file (no `--admin`) is where
/// `weir run` serves the endpoint, and where `weir status FILE` and
/// `weir reload FILE` find it; a file without `admin` is refused by the
/// clients, and editing the address is refused by the running pipeline
/// (it applies at start only), whose endpoint stays where it was.
#[test]
fn the_admin_address_in_the_pipeline_file_is_served_and_found_by_the_clients() {
    let dir = tempdir();
    let port = free_port();
    write(dir.path(), "in.txt", "x\ny\n");
    let body = r#"
[sources.in]
type = "replay"
path = "in.txt"
format = "lines"
rate = 100
loop = true

[sinks.out]
type = "file"
inputs = ["in"]
path = "out.txt"
"#;
    let text = format!("admin = \"127.0.0.1:{port}\"\n{body}");
    let file = write(dir.path(), "p.toml", &text);
    let weir = Background::start_with(dir.path(), &file, &[], &[], Stdio::null());
    assert_eq!(weir.admin, format!("127.0.0.1:{port}"));

    let out = run_with_timeout(
        client("status").arg(&file).arg("--json"),
        Duration::from_secs(30),
    );
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    let s: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(s["pid"], weir.child.id(), "{s}");
    let names: Vec<&str> = s["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["in", "out"], "{s}");

    let out = run_with_timeout(client("status").arg(&file), Duration::from_secs(30));
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains(&format!("(pid {})", weir.child.id())),
        "{stdout}"
    );

    let out = run_with_timeout(client("reload").arg(&file), Duration::from_secs(30));
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("reload 1: kept 2, swapped -, restarted -"),
        "{stdout}"
    );

    // A file that names no endpoint: the client says so.
    let other = write(dir.path(), "other.toml", body);
    let out = run_with_timeout(client("status").arg(&other), Duration::from_secs(30));
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("sets no `admin` address; pass --admin"),
        "{stderr}"
    );

    // Moving the endpoint needs a restart.
    let moved = format!("admin = \"127.0.0.1:{}\"\n{body}", free_port());
    replace_text(&file, &moved);
    let r = weir.wait_for_reload(2, Duration::from_secs(30));
    assert_eq!(r["ok"], false, "{r}");
    assert!(
        r["rejected"]
            .as_str()
            .unwrap()
            .contains("top-level settings (batch_size, channel_capacity, state_dir, checkpoint_interval, admin) apply at start"),
        "{r}"
    );
    assert_eq!(weir.status()["pid"], weir.child.id());
    weir.stop();
}
