//! A stand-in for a streaming API on loopback: each connection follows the
//! next step of a script (a status answer, or a stream of numbered posts
//! with keep-alives that then drops, stalls or stays open), and every
//! request is recorded with its time and headers, so a test can check what
//! arrived and when the client came back.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a streaming answer ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The server closes the connection.
    Drop,
    /// The server sends nothing for this long, then closes.
    Stall(Duration),
    /// The server keeps sending keep-alives until the test ends.
    Open,
}

/// One connection's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A status without a stream, with an optional `Retry-After`.
    Status(u16, Option<u64>),
    /// 200 and posts `from..to` (after resending `resend` posts before
    /// `from`), as NDJSON or SSE, a keep-alive every `keep_alive_every`
    /// posts, `pause` between posts, then `end`.
    Posts {
        /// First new post.
        from: u64,
        /// One past the last post.
        to: u64,
        /// Posts before `from` sent again first.
        resend: u64,
        /// Keep-alive period, in posts.
        keep_alive_every: u64,
        /// Wait between posts.
        pause: Duration,
        /// What happens after the last post.
        end: End,
    },
    /// SSE: 200 and posts after the client's `Last-Event-ID` (or from 0),
    /// `count` of them, then drop.
    Resume {
        /// Posts per connection.
        count: u64,
    },
}

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Request {
    /// When it arrived, from the server's start.
    pub at: Duration,
    /// Request line target (path and query).
    pub target: String,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// When the server closed it (drop, stall end), from its start.
    pub ended: Option<Duration>,
}

impl Request {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The server: serves `steps` in order, one per connection (the last step
/// repeats).
pub struct StreamServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Every request so far.
    pub requests: Arc<Mutex<Vec<Request>>>,
    /// Posts written so far (resends included).
    pub sent: Arc<Mutex<u64>>,
}

/// Post `i` as JSON: id, text with hashtags, lang, created_at, entities.
pub fn post(i: u64) -> String {
    const TAGS: [&str; 5] = ["rust", "kafka", "iot", "streaming", "wasm"];
    let a = TAGS[(i % 5) as usize];
    let b = TAGS[((i / 5) % 5) as usize];
    // From the first post's creation on, a second apart: recent times, as
    // a live stream has (Kafka deletes records older than its retention
    // by their timestamps).
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    });
    let secs = start + i;
    let days = secs / 86_400;
    let (y, m, d) = civil(days as i64);
    let created = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60
    );
    format!(
        "{{\"id\":\"{i}\",\"text\":\"post {i} about #{a} and #{b} \\u00e9\",\"lang\":\"en\",\"created_at\":\"{created}\",\"entities\":{{\"hashtags\":[{{\"tag\":\"{a}\"}},{{\"tag\":\"{b}\"}}]}}}}"
    )
}

/// The calendar date of a day count since 1970-01-01 (proleptic
/// Gregorian; Howard Hinnant's days-to-civil algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

impl StreamServer {
    /// Starts serving `steps` (as SSE when `sse`) on a free loopback port.
    pub fn start(steps: Vec<Step>, sse: bool) -> StreamServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let sent = Arc::new(Mutex::new(0));
        let (reqs, count) = (requests.clone(), sent.clone());
        let started = Instant::now();
        std::thread::spawn(move || {
            for (n, conn) in listener.incoming().enumerate() {
                let Ok(conn) = conn else { continue };
                let step = steps[n.min(steps.len() - 1)].clone();
                let (reqs, count) = (reqs.clone(), count.clone());
                std::thread::spawn(move || serve(conn, step, sse, started, &reqs, &count));
            }
        });
        StreamServer {
            url,
            requests,
            sent,
        }
    }

    /// The requests so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(
    conn: TcpStream,
    step: Step,
    sse: bool,
    started: Instant,
    requests: &Mutex<Vec<Request>>,
    sent: &Mutex<u64>,
) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let target = line.split_whitespace().nth(1).unwrap_or("").to_owned();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let last_id = headers
        .iter()
        .find(|(k, _)| k == "last-event-id")
        .and_then(|(_, v)| v.parse::<u64>().ok());
    let index = {
        let mut r = requests.lock().unwrap();
        r.push(Request {
            at: started.elapsed(),
            target,
            headers,
            ended: None,
        });
        r.len() - 1
    };
    let mut out = conn;
    let end_at = |requests: &Mutex<Vec<Request>>| {
        requests.lock().unwrap()[index].ended = Some(started.elapsed());
    };
    let head = |status: &str, extra: &str| {
        let kind = if sse {
            "text/event-stream"
        } else {
            "application/x-ndjson"
        };
        format!("HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nConnection: close\r\n{extra}\r\n")
    };
    let frame = |i: u64| {
        if sse {
            format!("id: {i}\nevent: post\ndata: {}\n\n", post(i))
        } else {
            format!("{}\r\n", post(i))
        }
    };
    let keep_alive = if sse { ": keep-alive\n\n" } else { "\r\n" };
    match step {
        Step::Status(code, retry) => {
            let extra = retry.map_or(String::new(), |s| format!("Retry-After: {s}\r\n"));
            let body = format!("{{\"title\":\"status {code}\"}}");
            let _ = out.write_all(
                format!(
                    "{}{body}",
                    head(
                        &format!("{code} X"),
                        &format!("{extra}Content-Length: {}\r\n", body.len())
                    )
                )
                .as_bytes(),
            );
            end_at(requests);
        }
        Step::Posts {
            from,
            to,
            resend,
            keep_alive_every,
            pause,
            end,
        } => {
            if out.write_all(head("200 OK", "").as_bytes()).is_err() {
                return;
            }
            for i in from.saturating_sub(resend)..to {
                if out.write_all(frame(i).as_bytes()).is_err() {
                    return;
                }
                *sent.lock().unwrap() += 1;
                if keep_alive_every > 0 && i % keep_alive_every == 0 {
                    let _ = out.write_all(keep_alive.as_bytes());
                }
                if !pause.is_zero() {
                    std::thread::sleep(pause);
                }
            }
            let _ = out.flush();
            match end {
                End::Drop => {}
                End::Stall(d) => std::thread::sleep(d),
                End::Open => loop {
                    std::thread::sleep(Duration::from_millis(500));
                    if out.write_all(keep_alive.as_bytes()).is_err() {
                        break;
                    }
                },
            }
            end_at(requests);
            let _ = out.shutdown(std::net::Shutdown::Both);
        }
        Step::Resume { count } => {
            if out.write_all(head("200 OK", "").as_bytes()).is_err() {
                return;
            }
            let from = last_id.map_or(0, |i| i + 1);
            for i in from..from + count {
                if out.write_all(frame(i).as_bytes()).is_err() {
                    return;
                }
                *sent.lock().unwrap() += 1;
            }
            let _ = out.flush();
            std::thread::sleep(Duration::from_millis(100));
            end_at(requests);
            let _ = out.shutdown(std::net::Shutdown::Both);
        }
    }
}
