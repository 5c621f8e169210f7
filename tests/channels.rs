//! How events move between stages: every consumer of a stage gets every
//! event (fan-out), and bounded channels make a slow consumer throttle the
//! source instead of letting events pile up (backpressure).

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use crate::common::*;

#[test]
fn fan_out_delivers_every_event_to_every_consumer() {
    let lines: String = (0..5000).map(|i| format!("line {i}\n")).collect();
    let p = Pipeline::new(
        r#"
batch_size = 64
channel_capacity = 1

[sources.in]
type = "replay"
path = "in.txt"
format = "lines"

[sinks.a]
type = "file"
inputs = ["in"]
path = "a/out.txt"

[sinks.b]
type = "file"
inputs = ["in"]
path = "b/out.txt"
"#,
    )
    .with_file("in.txt", &lines);
    let out = p.run(Duration::from_secs(60));
    assert!(out.status.success(), "{}", texts(&out).1);
    for sink in ["a", "b"] {
        let got = p.read(&format!("{sink}/out.txt"));
        assert_eq!(got, lines, "sink {sink}");
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
    let mut input = String::with_capacity(N * 101);
    for i in 0..N {
        input.push_str(&numbered_line(i));
        input.push('\n');
    }
    let p = Pipeline::new(&format!(
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
plugin = "@plugin(chaos)"

[sinks.out]
type = "console"
inputs = ["chaos"]
"#
    ))
    .with_file("in.txt", &input);

    // weir's standard output (`Background` opens `weir.out`) is a FIFO we
    // hold the read end of: the console sink blocks once the pipe is full.
    let fifo = p.path("weir.out");
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo");
    let reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let mut bg = p.start();
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
