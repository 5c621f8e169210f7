//! The `http_stream` source against a stand-in streaming API on loopback
//! (`common::stream_server`): posts arrive once in Kafka and a file across
//! drops, a 429 and a stall, with the documented reconnect waits; SSE
//! resumes after `Last-Event-ID`; a 401 stops the source naming the URL and
//! never the token; a slow stage makes the source stop reading, losing
//! nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::kafka::{broker, read_text};
use crate::common::stream_server::{End, Step, StreamServer};
use crate::common::*;

const TOKEN: &str = "s3cr3t-T0KEN-never-logged";

fn posts(from: u64, to: u64, resend: u64, end: End) -> Step {
    Step::Posts {
        from,
        to,
        resend,
        keep_alive_every: 10,
        pause: Duration::ZERO,
        end,
    }
}

/// The `id` of every post in `lines` (JSON posts), counted.
fn ids(lines: &[String]) -> BTreeMap<u64, usize> {
    let mut seen = BTreeMap::new();
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}"));
        let id: u64 = v["id"].as_str().unwrap().parse().unwrap();
        *seen.entry(id).or_insert(0) += 1;
    }
    seen
}

fn start(dir: &Path, toml: &str) -> Background {
    let file = write(dir, "p.toml", toml);
    let envs: [(&str, &Path); 1] = [("WEIR_TEST_STREAM_TOKEN", Path::new(TOKEN))];
    Background::start_with_env(dir, &file, &envs)
}

#[test]
fn every_post_arrives_once_in_kafka_and_the_file_across_drops_a_429_and_a_stall() {
    let server = StreamServer::start(
        vec![
            posts(0, 100, 0, End::Drop),
            posts(100, 200, 3, End::Drop),
            Step::Status(429, Some(2)),
            posts(200, 300, 0, End::Stall(Duration::from_secs(20))),
            posts(300, 400, 2, End::Drop),
            posts(400, 500, 0, End::Drop),
            posts(500, 600, 1, End::Drop),
            posts(600, 700, 0, End::Open),
        ],
        false,
    );
    let dir = tempdir();
    let topic = format!("twitter-stream-{}", std::process::id());
    let bg = start(
        dir.path(),
        &format!(
            r#"
[sources.posts]
type = "http_stream"
url = "{}/2/tweets/search/stream"
query = {{ track = ["rust", "kafka"], lang = "en" }}
auth = {{ bearer_env = "WEIR_TEST_STREAM_TOKEN" }}
timestamp = "created_at"
dedupe = "id"
stall_timeout = "5s"
# Waits 2 s longer after each further drop unless a connection brings
# something new: the drops below, each after new posts, wait nothing.
backoff = {{ network_step = "2s" }}

[sinks.kafka]
type = "kafka"
inputs = ["posts"]
brokers = "{}"
topic = "{topic}"
create_topic = {{ partitions = 1 }}

[sinks.file]
type = "file"
inputs = ["posts"]
path = "posts.jsonl"
"#,
            server.url,
            broker()
        ),
    );
    let file = dir.path().join("posts.jsonl");
    bg.wait_until(
        "700 posts in the file and Kafka",
        Duration::from_secs(120),
        || lines(&file).len() >= 700 && bg.counters("kafka")["events_out"] == 700,
    );
    let status = bg.status();
    let counters = bg.counters("posts");
    let log_so_far = bg.log_text();
    stop(bg);

    // Every post once, in the file and in Kafka.
    let in_file = ids(&lines(&file));
    assert_eq!(in_file.len(), 700, "{log_so_far}");
    assert!(in_file.values().all(|n| *n == 1), "duplicates in the file");
    let kafka: Vec<String> = read_text(broker(), &topic)
        .into_iter()
        .map(|r| r.value)
        .collect();
    let in_kafka = ids(&kafka);
    assert_eq!(in_kafka, in_file, "Kafka and the file differ");
    // The resent posts were counted, and the reconnects.
    assert_eq!(counters["duplicates"], 3 + 2 + 1, "{counters}");
    assert!(counters["reconnects"].as_u64().unwrap() >= 7, "{counters}");

    // The waits, from the server's clock.
    let reqs = server.requests();
    assert!(reqs.len() >= 8, "{reqs:?}");
    let gap = |i: usize| {
        reqs[i]
            .at
            .saturating_sub(reqs[i - 1].ended.unwrap_or(reqs[i - 1].at))
    };
    // Upper bounds with room for a slow machine; the planned waits are
    // checked exactly in weir's log below.
    for i in [1, 2, 5, 6, 7] {
        assert!(
            gap(i) < Duration::from_secs(2),
            "after drop {i}: {:?}",
            gap(i)
        );
    }
    assert!(
        (Duration::from_secs(2)..Duration::from_secs(5)).contains(&gap(3)),
        "Retry-After: 2 gave {:?}",
        gap(3)
    );
    let after_stall = reqs[4].at - reqs[3].at;
    assert!(
        (Duration::from_secs(5)..Duration::from_secs(10)).contains(&after_stall),
        "stall: {after_stall:?}"
    );
    // Query and token went to the server, and nowhere else.
    assert!(
        reqs[0].target.contains("track=rust%2Ckafka"),
        "{}",
        reqs[0].target
    );
    assert_eq!(
        reqs[0].header("authorization"),
        Some(&*format!("Bearer {TOKEN}"))
    );
    let log = std::fs::read_to_string(dir.path().join("weir.log")).unwrap();
    let stdout = std::fs::read_to_string(dir.path().join("weir.out")).unwrap();
    for (what, text) in [
        ("log", &log),
        ("stdout", &stdout),
        ("/status", &status.to_string()),
    ] {
        assert!(!text.contains(TOKEN), "the token is in the {what}");
    }
    for reason in [
        "rate limited (429",
        "stalled: nothing received for 5000 ms",
        "closed the stream",
    ] {
        assert!(
            log.contains(reason),
            "no reconnect logged for {reason:?}:\n{log}"
        );
    }
    assert!(log.contains("gap_ms="), "{log}");
    // The waits weir planned: Retry-After's 2 s, none after a drop that
    // followed new posts.
    assert_eq!(planned_waits(&log, "rate limited (429"), ["2000"], "{log}");
    let drops = planned_waits(&log, "closed the stream");
    assert!(
        !drops.is_empty() && drops.iter().all(|w| *w == "0"),
        "{drops:?}\n{log}"
    );
}

#[test]
fn server_sent_events_resume_after_the_last_event_id() {
    let server = StreamServer::start(vec![Step::Resume { count: 50 }], true);
    let dir = tempdir();
    let bg = start(
        dir.path(),
        &format!(
            r#"
[sources.changes]
type = "http_stream"
url = "{}/v2/stream/recentchange"
format = "sse"

[sinks.file]
type = "file"
inputs = ["changes"]
path = "changes.jsonl"
format = "json"
"#,
            server.url
        ),
    );
    let file = dir.path().join("changes.jsonl");
    bg.wait_until("200 events", Duration::from_secs(60), || {
        lines(&file).len() >= 200
    });
    drop(bg);
    let events = json_lines(&file);
    let got: Vec<u64> = events
        .iter()
        .take(200)
        .map(|e| {
            let post: serde_json::Value =
                serde_json::from_str(e["value"].as_str().unwrap()).unwrap();
            post["id"].as_str().unwrap().parse().unwrap()
        })
        .collect();
    assert_eq!(got, (0..200).collect::<Vec<u64>>());
    assert_eq!(events[0]["headers"]["sse.event"], "post");
    assert_eq!(events[0]["headers"]["sse.id"], "0");
    let reqs = server.requests();
    let sent: Vec<Option<&str>> = reqs
        .iter()
        .take(4)
        .map(|r| r.header("last-event-id"))
        .collect();
    assert_eq!(sent, [None, Some("49"), Some("99"), Some("149")]);
    assert_eq!(reqs[0].header("accept"), Some("text/event-stream"));
}

#[test]
fn a_401_stops_the_source_naming_the_url_and_not_the_token() {
    let server = StreamServer::start(vec![Step::Status(401, None)], false);
    let dir = tempdir();
    let file = write(
        dir.path(),
        "p.toml",
        &format!(
            r#"
[sources.posts]
type = "http_stream"
url = "{}/stream?api_key={TOKEN}"
auth = {{ bearer_env = "WEIR_TEST_STREAM_TOKEN" }}

[sinks.out]
type = "console"
inputs = ["posts"]
"#,
            server.url
        ),
    );
    let out = run_with_timeout(
        weir()
            .arg("run")
            .arg(&file)
            .env("WEIR_TEST_STREAM_TOKEN", TOKEN)
            .env("RUST_LOG", "debug"),
        Duration::from_secs(60),
    );
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{}/stream answered 401 Unauthorized", server.url)),
        "{stderr}"
    );
    assert!(
        stderr.contains("check the token in `auth.bearer_env`"),
        "{stderr}"
    );
    assert!(
        !stdout.contains(TOKEN) && !stderr.contains(TOKEN),
        "the token leaked:\n{stderr}"
    );
    assert_eq!(server.requests().len(), 1, "a 401 is not retried");
}

/// The server writes 60,000 posts as fast as the socket takes them; a stage
/// ten times slower than the stream (100 µs an event) holds the source
/// back: it stops reading, so the server's writes block (the stream is not
/// buffered in weir), and every post still arrives.
#[test]
fn a_slow_stage_makes_the_source_stop_reading_and_nothing_is_lost() {
    const N: u64 = 60_000;
    let server = StreamServer::start(vec![posts(0, N, 0, End::Open)], false);
    let dir = tempdir();
    let bg = start(
        dir.path(),
        &format!(
            r#"
[sources.posts]
type = "http_stream"
url = "{}/stream"

[transforms.slow]
type = "wasm"
inputs = ["posts"]
plugin = "{}"
config = {{ pace_us = 100 }}

[sinks.file]
type = "file"
inputs = ["slow"]
path = "posts.jsonl"
"#,
            server.url,
            plugin("chaos").display()
        ),
    );
    let file = dir.path().join("posts.jsonl");
    let started = Instant::now();
    // Two seconds in, the server is still blocked writing.
    std::thread::sleep(Duration::from_secs(2));
    let sent_early = *server.sent.lock().unwrap();
    assert!(sent_early < N, "the server wrote all {N} posts at once");
    let mut peak_kib = 0;
    bg.wait_until("every post", Duration::from_secs(120), || {
        peak_kib = peak_kib.max(rss_kib(bg.child.id()));
        lines(&file).len() >= N as usize
    });
    let took = started.elapsed();
    let counters = bg.counters("posts");
    drop(bg);
    let got = ids(&lines(&file));
    assert_eq!(got.len() as u64, N);
    assert!(got.values().all(|n| *n == 1));
    assert!(
        counters["backpressure_ms"].as_u64().unwrap() > 1000,
        "{counters}"
    );
    assert!(peak_kib < 200 * 1024, "peak RSS {peak_kib} KiB");
    eprintln!(
        "slow stage: {N} posts in {took:?}; server had written {sent_early} after 2 s; peak RSS {peak_kib} KiB; {counters}"
    );
}

/// Stops a running weir as Ctrl-C does (its sinks flush) and waits for it.
fn stop(mut bg: Background) {
    signal(&bg.child, libc::SIGTERM);
    let started = Instant::now();
    while bg.child.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "weir did not stop:\n{}",
            bg.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Resident memory of process `pid`, KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// `pipelines/tweets.toml` as shipped (its plugin path made absolute, run
/// in a temporary directory) against the stand-in: posts reach the
/// embedded Kafka topic and `tweets.jsonl`, and the Python hashtag plugin
/// prints the top hashtags of the sliding windows.
#[test]
fn the_tweet_pipeline_archives_posts_and_prints_top_hashtags() {
    let wasm = crate::common::toolchains::sdk_plugin(Path::new("plugins/hashtags-py"));
    assert!(wasm.is_file());
    let server = StreamServer::start(
        vec![Step::Posts {
            from: 0,
            to: 300,
            resend: 0,
            keep_alive_every: 10,
            pause: Duration::from_millis(20),
            end: End::Open,
        }],
        false,
    );
    let dir = tempdir();
    let text = std::fs::read_to_string(repo().join("pipelines/tweets.toml"))
        .unwrap()
        .replace(
            "\"../plugins/hashtags-py\"",
            &format!(
                "{:?}",
                repo().join("plugins/hashtags-py").display().to_string()
            ),
        )
        .replace(
            "window = \"60s\", slide = \"10s\"",
            "window = \"2s\", slide = \"1s\"",
        );
    let file = write(dir.path(), "tweets.toml", &text);
    let url = format!("{}/1.1/statuses/filter.json", server.url);
    let envs: [(&str, &Path); 2] = [
        ("TWEETS_URL", Path::new(&url)),
        ("TWEETS_BEARER_TOKEN", Path::new(TOKEN)),
    ];
    let bg = Background::start_with_env(dir.path(), &file, &envs);
    let archive = dir.path().join("tweets.jsonl");
    bg.wait_until(
        "300 posts archived and in Kafka, windows printed",
        Duration::from_secs(90),
        || {
            let out = std::fs::read_to_string(&bg.stdout).unwrap_or_default();
            lines(&archive).len() >= 300
                && out.lines().count() >= 3
                && bg.counters("kafka")["events_out"] == 300
        },
    );
    let out = std::fs::read_to_string(&bg.stdout).unwrap();
    let window: serde_json::Value =
        serde_json::from_str(out.lines().nth(1).unwrap()).unwrap_or_else(|e| panic!("{out}: {e}"));
    assert!(window["posts"].as_u64().unwrap() > 0, "{window}");
    let counts = window["counts"].as_object().unwrap();
    assert!(!counts.is_empty() && counts.len() <= 10, "{window}");
    assert!(
        counts
            .keys()
            .all(|k| ["rust", "kafka", "iot", "streaming", "wasm"].contains(&k.as_str()))
    );
    assert_eq!(ids(&lines(&archive)).len(), 300);
    assert_eq!(bg.counters("kafka")["events_out"], 300);
    let req = &server.requests()[0];
    assert!(
        req.target
            .contains("track=rust%2Ckafka%2Ciot%2Cstreaming%2Cwasm"),
        "{}",
        req.target
    );
    assert!(req.target.contains("language=en"), "{}", req.target);
}

/// OAuth 1.0a: every request carries a fresh signed `Authorization`
/// header (checked by signing the request the server saw again, with the
/// nonce and timestamp it carried), the secrets are never sent nor shown;
/// 500 and 503 are retried after the HTTP-error waits, doubling (1 s, 2 s).
#[test]
fn oauth1_signs_every_request_and_http_errors_back_off_doubling() {
    let server = StreamServer::start(
        vec![
            Step::Status(500, None),
            Step::Status(503, None),
            posts(0, 50, 0, End::Open),
        ],
        false,
    );
    let dir = tempdir();
    let file = write(
        dir.path(),
        "p.toml",
        &format!(
            r#"
[sources.posts]
type = "http_stream"
url = "{}/1.1/statuses/filter.json"
method = "POST"
body = "track=rust,kafka&language=en"
auth = {{ oauth1 = {{ consumer_key_env = "CK", consumer_secret_env = "CS", token_env = "AT", token_secret_env = "ATS" }} }}
backoff = {{ http_initial = "1s" }}

[sinks.file]
type = "file"
inputs = ["posts"]
path = "posts.jsonl"
"#,
            server.url
        ),
    );
    let secrets = ["consumer-SECRET-value", "token-SECRET-value"];
    let envs: [(&str, &Path); 4] = [
        ("CK", Path::new("ck-visible")),
        ("CS", Path::new(secrets[0])),
        ("AT", Path::new("at-visible")),
        ("ATS", Path::new(secrets[1])),
    ];
    let bg = Background::start_with_env(dir.path(), &file, &envs);
    let out = dir.path().join("posts.jsonl");
    bg.wait_until("50 posts", Duration::from_secs(60), || {
        lines(&out).len() >= 50
    });
    let status = bg.status().to_string();
    stop(bg);
    let reqs = server.requests();
    assert!(reqs.len() >= 3);
    // The waits really happened (the server's clock, with room above for
    // a slow machine), and were planned as 1 s then 2 s (weir's log).
    let gap = |i: usize| reqs[i].at - reqs[i - 1].at;
    assert!(
        (Duration::from_secs(1)..Duration::from_secs(4)).contains(&gap(1)),
        "{:?}",
        gap(1)
    );
    assert!(
        (Duration::from_secs(2)..Duration::from_secs(6)).contains(&gap(2)),
        "{:?}",
        gap(2)
    );
    let creds = weir::sources::http_stream::oauth1::Credentials {
        consumer_key: "ck-visible".into(),
        consumer_secret: secrets[0].into(),
        token: "at-visible".into(),
        token_secret: secrets[1].into(),
    };
    let mut nonces = Vec::new();
    for r in reqs.iter().take(3) {
        let header = r.header("authorization").expect("signed");
        let field = |name: &str| {
            let start = header.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
            header[start..].split('"').next().unwrap().to_owned()
        };
        let url = reqwest::Url::parse(&format!("{}{}", server.url, r.target)).unwrap();
        let nonce = field("oauth_nonce");
        let again = weir::sources::http_stream::oauth1::authorization(
            "POST",
            &url,
            &[
                ("track".into(), "rust,kafka".into()),
                ("language".into(), "en".into()),
            ],
            &creds,
            &nonce,
            field("oauth_timestamp").parse().unwrap(),
        );
        assert_eq!(header, again, "the signature does not verify");
        assert_eq!(
            r.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        nonces.push(nonce);
    }
    let distinct: std::collections::HashSet<&String> = nonces.iter().collect();
    assert_eq!(distinct.len(), 3, "a nonce was reused");
    let log = std::fs::read_to_string(dir.path().join("weir.log")).unwrap();
    for secret in secrets {
        for (what, text) in [("log", &log), ("/status", &status)] {
            assert!(!text.contains(secret), "a secret is in the {what}");
        }
        assert!(
            reqs.iter()
                .all(|r| r.headers.iter().all(|(_, v)| !v.contains(secret)))
        );
    }
    assert!(
        log.contains("HTTP status 500") && log.contains("HTTP status 503"),
        "{log}"
    );
    assert_eq!(planned_waits(&log, "")[..2], ["1000", "2000"], "{log}");
}

/// The waits (`wait_ms`) weir's log gives for its reconnects whose line
/// contains `reason`, in order.
fn planned_waits<'l>(log: &'l str, reason: &str) -> Vec<&'l str> {
    log.lines()
        .filter(|l| l.contains("http_stream reconnecting") && l.contains(reason))
        .filter_map(|l| l.split("wait_ms=").nth(1)?.split_whitespace().next())
        .collect()
}
