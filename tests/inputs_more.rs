//! More of the core and image-input guarantees, through the real binary:
//! the plugin sandbox (no filesystem, no network), the default per-call
//! limits (1 s deadline, 64 MiB memory) when a stage sets none,
//! backpressure from a slow consumer back to the source, the `images`
//! source's `watch` mode, and unreadable image files being logged and
//! skipped.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::*;

/// Polls `path` until `done` accepts its text; returns the text.
fn wait_file(path: &Path, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if done(&text) {
            return text;
        }
        assert!(
            start.elapsed() < timeout,
            "{} not as expected within {timeout:?}; it holds:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The dead letters of a `file` sink with `format = "json"`, parsed.
fn dead_letters(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// A stage's entry in a `weir status --json` answer.
fn stage<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no stage {name} in {status}"))
}

/// A counter of a stage in a `weir status --json` answer.
fn counter(status: &serde_json::Value, name: &str, field: &str) -> u64 {
    stage(status, name)["counters"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {field} for {name} in {status}"))
}

/// `source` (a `[sources.in]` table) → chaos plugin (batch size 1, no
/// `timeout`, no `memory_limit`) → `out.txt`, failed batches to
/// `dlq.jsonl`.
fn chaos_pipeline(dir: &Path, source: &str) -> PathBuf {
    let text = format!(
        r#"
batch_size = 1

{source}

[transforms.chaos]
type = "wasm"
inputs = ["in"]
plugin = "{plugin}"
dead_letter = "dlq"

[sinks.out]
type = "file"
inputs = ["chaos"]
path = "out.txt"

[sinks.dlq]
type = "file"
path = "dlq.jsonl"
format = "json"
"#,
        plugin = plugin("chaos").display()
    );
    write(dir, "p.toml", &text)
}

/// [`chaos_pipeline`] fed from standard input.
fn chaos_from_stdin(dir: &Path) -> PathBuf {
    chaos_pipeline(dir, "[sources.in]\ntype = \"stdin\"\n")
}

/// Feeds `a`, then `bad` (a chaos mode), then `b` to a running pipeline
/// without a `timeout` or `memory_limit`, checking the host is still up and
/// processing after the failure. Returns the dead letter of `bad`, the time
/// from sending `bad` to its dead letter appearing, and the log line
/// reporting the failed call (checked to name the stage).
fn misbehave_under_default_limits(bad: &str) -> (serde_json::Value, Duration, String) {
    let dir = tempdir();
    let file = chaos_from_stdin(dir.path());
    let mut bg = Background::start_piped(dir.path(), &file, &[]);
    let mut stdin = bg.child.stdin.take().unwrap();
    let (out, dlq) = (dir.path().join("out.txt"), dir.path().join("dlq.jsonl"));

    stdin.write_all(b"a\n").unwrap();
    stdin.flush().unwrap();
    wait_file(&out, Duration::from_secs(30), |t| t == "a\n");

    let sent = Instant::now();
    stdin.write_all(format!("{bad}\n").as_bytes()).unwrap();
    stdin.flush().unwrap();
    wait_file(&dlq, Duration::from_secs(30), |t| t.lines().count() == 1);
    let took = sent.elapsed();

    // The host is up: the admin endpoint answers, the stage runs on with
    // the failure counted, and a later event goes through.
    let status = bg.status();
    assert_eq!(stage(&status, "chaos")["state"], "running", "{status}");
    assert_eq!(counter(&status, "chaos", "errors"), 1, "{status}");
    assert_eq!(bg.child.try_wait().unwrap(), None, "weir exited");
    stdin.write_all(b"b\n").unwrap();
    stdin.flush().unwrap();
    wait_file(&out, Duration::from_secs(30), |t| t == "a\nb\n");

    drop(stdin);
    let log = bg.finish(Duration::from_secs(30));
    // The plugin's running total survived the re-created instance.
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "a\nb\ntotal=2\n",
        "{log}"
    );
    let dead = dead_letters(&dlq);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["value"], bad);
    assert_eq!(dead[0]["headers"]["weir.stage"], "chaos");
    assert_eq!(log.matches("plugin call failed").count(), 1, "{log}");
    let failure = log
        .lines()
        .find(|l| l.contains("plugin call failed"))
        .unwrap();
    assert!(failure.contains("stage=\"chaos\""), "{failure}");
    (dead[0].clone(), took, failure.to_owned())
}

/// A plugin that loops forever in a stage with no `timeout` is stopped by
/// the default 1 s deadline (not earlier), reported by stage name, its
/// batch dead-lettered, and the host keeps processing.
#[test]
fn a_looping_plugin_is_stopped_by_the_default_one_second_deadline() {
    let (dead, took, failure) = misbehave_under_default_limits("loop");
    assert_eq!(
        dead["headers"]["weir.reason"],
        "deadline of 1s exceeded (plugin interrupted)"
    );
    assert!(
        took >= Duration::from_secs(1),
        "interrupted after {took:?}, before the 1 s default"
    );
    assert!(took < Duration::from_secs(10), "took {took:?} to interrupt");
    assert!(failure.contains("deadline of 1s exceeded"), "{failure}");
}

/// A plugin that allocates without bound in a stage with no `memory_limit`
/// is stopped by the default 64 MiB cap, reported by stage name, its batch
/// dead-lettered, and the host keeps processing.
#[test]
fn a_memory_hogging_plugin_is_stopped_by_the_default_64_mib_cap() {
    let (dead, _, failure) = misbehave_under_default_limits("alloc");
    let reason = dead["headers"]["weir.reason"].as_str().unwrap();
    assert!(
        reason.starts_with("memory limit of 64 MiB exceeded (plugin asked for "),
        "{reason}"
    );
    // The refused growth was past the cap.
    let wanted: f64 = reason
        .trim_start_matches("memory limit of 64 MiB exceeded (plugin asked for ")
        .trim_end_matches(" MiB)")
        .parse()
        .unwrap_or_else(|e| panic!("{e}: {reason}"));
    assert!(wanted > 64.0, "{reason}");
    assert!(
        failure.contains("memory limit of 64 MiB exceeded"),
        "{failure}"
    );
}

/// A plugin asking to read a file that exists on the host (`open:PATH`) or
/// to connect to a listening loopback socket (`connect:ADDR`) fails inside
/// the sandbox: the records are refused with the plugin's error, nothing
/// is read or accepted, and the host goes on with later events.
#[test]
fn a_plugin_cannot_open_host_files_or_sockets() {
    let dir = tempdir();
    let secret = write(dir.path(), "secret.txt", "top secret\n");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let input = format!(
        "a\nopen:{}\nb\nopen:secret.txt\nc\nconnect:{addr}\nd\n",
        secret.display()
    );
    write(dir.path(), "in.txt", &input);
    let file = chaos_pipeline(
        dir.path(),
        "[sources.in]\ntype = \"replay\"\npath = \"in.txt\"\nformat = \"lines\"\n",
    );
    let out = run_with_timeout(weir().arg("run").arg(&file), Duration::from_secs(60));
    let (_, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");

    // Neither `opened` nor `connected`: every good event, then the total.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.txt")).unwrap(),
        "a\nb\nc\nd\ntotal=4\n"
    );
    let dead = dead_letters(&dir.path().join("dlq.jsonl"));
    assert_eq!(dead.len(), 3, "{dead:?}");
    for (d, (value, prefix)) in dead.iter().zip([
        (format!("open:{}", secret.display()), "open failed: "),
        ("open:secret.txt".to_owned(), "open failed: "),
        (format!("connect:{addr}"), "connect failed: "),
    ]) {
        assert_eq!(d["value"], value.as_str());
        assert_eq!(d["headers"]["weir.stage"], "chaos");
        let reason = d["headers"]["weir.reason"].as_str().unwrap();
        assert!(reason.starts_with(prefix), "{reason}");
    }
    // Refusals, not failures: no trap, no re-created instance.
    assert!(!stderr.contains("plugin call failed"), "{stderr}");
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the plugin reached the listener: {other:?}"),
    }
}

/// Lines of the backpressure test: 100 characters each, numbered.
fn numbered_line(i: usize) -> String {
    format!("{i:06}-{}", "x".repeat(93))
}

/// Samples the status until the source's produced count stops moving (the
/// pipeline is stalled on its consumer); returns that status.
fn settled(bg: &Background) -> serde_json::Value {
    let start = Instant::now();
    let mut last = bg.status();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = bg.status();
        if counter(&now, "in", "events_in") == counter(&last, "in", "events_in")
            && counter(&now, "out", "events_in") == counter(&last, "out", "events_in")
        {
            return now;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the pipeline never stalled:\n{now}"
        );
        last = now;
    }
}

/// A slow consumer throttles the source instead of letting events pile up:
/// replay (as fast as possible) → chaos plugin → console, whose standard
/// output is a pipe the test reads only when it chooses. While nothing is
/// read, the source stops producing, and its produced count stays within
/// `(channel_capacity × hops + stages) × batch_size` of what the sink has
/// taken; reading lets it go on; in the end every event arrives, in order.
#[test]
fn a_slow_consumer_throttles_the_source_through_bounded_channels() {
    const N: usize = 20_000;
    const BATCH: u64 = 16;
    const CAPACITY: u64 = 1;
    // Two channels (in → chaos → out), three stages that may each hold a
    // batch in hand.
    const BOUND: u64 = (CAPACITY * 2 + 3) * BATCH;
    let dir = tempdir();
    let mut input = String::with_capacity(N * 101);
    for i in 0..N {
        input.push_str(&numbered_line(i));
        input.push('\n');
    }
    write(dir.path(), "in.txt", &input);
    let text = format!(
        r#"
batch_size = {BATCH}
channel_capacity = {CAPACITY}

[sources.in]
type = "replay"
path = "in.txt"
format = "lines"

[transforms.chaos]
type = "wasm"
inputs = ["in"]
plugin = "{plugin}"

[sinks.out]
type = "console"
inputs = ["chaos"]
"#,
        plugin = plugin("chaos").display()
    );
    let file = write(dir.path(), "p.toml", &text);

    // weir's standard output (`Background` opens `weir.out`) is a FIFO we
    // hold the read end of: the console sink blocks once the pipe is full.
    let fifo = dir.path().join("weir.out");
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo");
    let reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let mut bg = Background::start(dir.path(), &file, &[]);
    {
        use std::os::fd::AsRawFd;
        let fd = reader.as_raw_fd();
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        assert_eq!(
            unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) },
            0
        );
    }
    let mut reader = BufReader::new(reader);

    let check = |status: &serde_json::Value, floor: u64| -> u64 {
        let produced = counter(status, "in", "events_in");
        let taken = counter(status, "out", "events_in");
        assert!(produced >= floor, "{status}");
        assert!(
            produced < N as u64,
            "the source read everything ahead of the consumer: {status}"
        );
        assert!(
            produced - taken <= BOUND,
            "{produced} produced, {taken} taken by the sink: more than {BOUND} in flight\n{status}"
        );
        produced
    };

    // Nothing read: the pipeline stalls with a bounded amount in flight,
    // and stays stalled.
    let first = settled(&bg);
    let stalled = check(&first, 1);
    let in_flight = stalled - counter(&first, "out", "events_in");
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(check(&bg.status(), stalled), stalled, "source moved");
    }

    // Read 5000 lines: the source goes on by about as much, still bounded.
    let mut line = String::new();
    for i in 0..5000 {
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line.trim_end(), numbered_line(i));
    }
    let later = check(&settled(&bg), stalled + 4000);

    // Drain the rest: weir finishes by itself with every event, in order.
    let drain = std::thread::spawn(move || {
        let mut rest = String::new();
        reader.read_to_string(&mut rest).unwrap();
        rest
    });
    bg.finish(Duration::from_secs(60));
    let rest = drain.join().unwrap();
    let mut expected: String = (5000..N).map(|i| numbered_line(i) + "\n").collect();
    expected.push_str(&format!("total={N}\n"));
    assert!(rest == expected, "the remaining output differs");
    eprintln!(
        "stalled at {stalled} produced ({in_flight} not yet taken by the sink), \
         then {later} after reading 5000"
    );
}

/// `watch = true`: files added to the directory after the start are read
/// (once each, byte for byte) and written by the directory sink; files not
/// matching the pattern are not.
#[test]
fn the_images_source_in_watch_mode_picks_up_files_added_after_start() {
    let dir = tempdir();
    let images = dir.path().join("in");
    std::fs::create_dir_all(&images).unwrap();
    let samples = repo().join("data/images");
    std::fs::copy(samples.join("camera.png"), images.join("camera.png")).unwrap();
    let text = format!(
        r#"
[sources.photos]
type = "images"
path = "{images}"
pattern = ["*.png", "*.jpg"]
watch = true
poll_interval = "100ms"

[sinks.copies]
type = "directory"
inputs = ["photos"]
path = "copies"
name = "filename"
"#,
        images = images.display()
    );
    let file = write(dir.path(), "p.toml", &text);
    let bg = Background::start(dir.path(), &file, &[]);
    let copies = dir.path().join("copies");
    let listing = |want: usize| -> Vec<String> {
        let start = Instant::now();
        loop {
            let mut names: Vec<String> = std::fs::read_dir(&copies)
                .map(|d| {
                    d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                        .filter(|n| !n.starts_with('.'))
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            if names.len() >= want {
                return names;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "only {names:?} written:\n{}",
                bg.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert_eq!(listing(1), ["camera.png"]);

    // Added while running: two matching files and one that does not match.
    for name in ["coffee.png", "rocket.jpg"] {
        std::fs::copy(samples.join(name), images.join(name)).unwrap();
    }
    write(&images, "notes.txt", "not an image\n");
    assert_eq!(listing(3), ["camera.png", "coffee.png", "rocket.jpg"]);

    // Nothing more comes (no re-reads, no notes.txt) over several polls.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(listing(3).len(), 3);
    let status = bg.status();
    assert_eq!(stage(&status, "photos")["state"], "running", "{status}");
    assert_eq!(counter(&status, "photos", "events_in"), 3, "{status}");
    assert_eq!(counter(&status, "photos", "errors"), 0, "{status}");
    assert_eq!(counter(&status, "copies", "events_out"), 3, "{status}");
    bg.stop();
    for name in ["camera.png", "coffee.png", "rocket.jpg"] {
        assert!(
            std::fs::read(copies.join(name)).unwrap() == std::fs::read(samples.join(name)).unwrap(),
            "{name} differs"
        );
    }
}

/// A file the `images` source cannot take (larger than `max_file_size`) is
/// logged with its reason, counted as an error and skipped, while the other
/// files are read; a directory whose name matches the pattern is ignored.
#[test]
fn unreadable_image_files_are_logged_and_skipped_and_the_rest_are_read() {
    let dir = tempdir();
    let images = dir.path().join("in");
    std::fs::create_dir_all(&images).unwrap();
    let samples = repo().join("data/images");
    // camera.png and logo.png are under 200 KiB, coffee.png (456 KiB) over.
    for name in ["camera.png", "coffee.png", "logo.png"] {
        std::fs::copy(samples.join(name), images.join(name)).unwrap();
    }
    let big = std::fs::metadata(images.join("coffee.png")).unwrap().len();
    assert!(big > 200 << 10, "coffee.png is {big} bytes");
    std::fs::create_dir(images.join("folder.png")).unwrap();
    let text = format!(
        r#"
[sources.photos]
type = "images"
path = "{images}"
pattern = "*.png"
max_file_size = "200KiB"

[sinks.copies]
type = "directory"
inputs = ["photos"]
path = "copies"
name = "filename"
"#,
        images = images.display()
    );
    let file = write(dir.path(), "p.toml", &text);
    let out = run_with_timeout(weir().arg("run").arg(&file), Duration::from_secs(60));
    let (_, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");

    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("copies"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["camera.png", "logo.png"], "{stderr}");
    for name in &names {
        assert!(
            std::fs::read(dir.path().join("copies").join(name)).unwrap()
                == std::fs::read(samples.join(name)).unwrap(),
            "{name} differs"
        );
    }
    let warning = stderr
        .lines()
        .find(|l| l.contains("cannot read file; skipped"))
        .unwrap_or_else(|| panic!("no warning:\n{stderr}"));
    assert!(
        warning.contains("stage=\"photos\"")
            && warning.contains("file=\"coffee.png\"")
            && warning.contains(&format!(
                "reason=\"{big} bytes is above max_file_size (204800)\""
            )),
        "{warning}"
    );
    assert_eq!(stderr.matches("cannot read file; skipped").count(), 1);
    assert_eq!(stage_total(&stderr, "photos", "events_in"), 2);
    assert_eq!(stage_total(&stderr, "photos", "errors"), 1);
}

/// A symbolic link matching the pattern is read like any file when its
/// target is a readable image, and logged and skipped when it dangles.
#[test]
fn symlinked_images_are_read_and_dangling_links_are_logged() {
    let dir = tempdir();
    let images = dir.path().join("in");
    std::fs::create_dir_all(&images).unwrap();
    let samples = repo().join("data/images");
    std::fs::copy(samples.join("camera.png"), images.join("camera.png")).unwrap();
    std::os::unix::fs::symlink(samples.join("coffee.png"), images.join("coffee.png")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("gone.png"), images.join("gone.png")).unwrap();
    let text = format!(
        r#"
[sources.photos]
type = "images"
path = "{images}"
pattern = "*.png"

[sinks.copies]
type = "directory"
inputs = ["photos"]
path = "copies"
name = "filename"
"#,
        images = images.display()
    );
    let file = write(dir.path(), "p.toml", &text);
    let out = run_with_timeout(weir().arg("run").arg(&file), Duration::from_secs(60));
    let (_, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    let copies = dir.path().join("copies");
    assert!(
        std::fs::read(copies.join("coffee.png")).ok()
            == std::fs::read(samples.join("coffee.png")).ok(),
        "the symlinked image was not read:\n{stderr}"
    );
    assert!(copies.join("camera.png").is_file());
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("cannot read file; skipped") && l.contains("file=\"gone.png\"")),
        "the dangling link was not logged:\n{stderr}"
    );
}
