//! A small HTTP/1.1 server on loopback that behaves like ThingsBoard's
//! device telemetry API, with scripted faults, for the sink tests.
//!
//! `POST /api/v1/{token}/telemetry` with `{"ts", "values"}` or an array of
//! them: 401 for an unknown token, 500 for bad JSON, 413 above the size
//! limit, 200 otherwise, recording what it accepted. Faults by request
//! number: a 500 (as ThingsBoard answers rate limiting), a connection
//! dropped before the request is looked at, or one dropped after the
//! readings were recorded (the client never hears it succeeded).

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// What to do with request number `n` (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer normally.
    None,
    /// Answer 500 without recording.
    RateLimited,
    /// Close the connection without reading the body.
    DropBefore,
    /// Record the readings, then close without answering.
    DropAfter,
    /// Answer 400 (a body ThingsBoard cannot parse) without recording.
    BadRequest,
}

/// What the server saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Requests received.
    pub requests: u64,
    /// Accepted readings: (token, ts, values).
    pub accepted: Vec<(String, i64, serde_json::Value)>,
    /// Readings accepted in requests whose response was dropped: (token, ts).
    pub lost_responses: Vec<(String, i64)>,
    /// Status codes answered.
    pub statuses: Vec<u16>,
}

/// A running fake server.
pub struct FakeThingsboard {
    /// Base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    /// What it saw so far.
    pub seen: Arc<Mutex<Seen>>,
}

struct Config {
    tokens: HashSet<String>,
    max_body: usize,
    faults: fn(u64) -> Fault,
}

impl FakeThingsboard {
    /// Starts a server accepting `tokens`, refusing bodies above `max_body`
    /// bytes, failing requests as `faults` says.
    pub fn start(tokens: &[&str], max_body: usize, faults: fn(u64) -> Fault) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Seen::default()));
        let config = Arc::new(Config {
            tokens: tokens.iter().map(|t| t.to_string()).collect(),
            max_body,
            faults,
        });
        let s = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (s, c) = (s.clone(), config.clone());
                std::thread::spawn(move || serve(stream, &s, &c));
            }
        });
        FakeThingsboard { url, seen }
    }
}

/// Answers `status` with an empty body, recording the status.
fn respond(stream: &mut TcpStream, status: u16, seen: &Mutex<Seen>) -> std::io::Result<()> {
    seen.lock().unwrap().statuses.push(status);
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        413 => "Payload Too Large",
        _ => "Internal Server Error",
    };
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
    )?;
    stream.flush()
}

/// Serves the requests of one connection, as `config` says.
fn serve(stream: TcpStream, seen: &Mutex<Seen>, config: &Config) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut stream = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let n = {
            let mut s = seen.lock().unwrap();
            s.requests += 1;
            s.requests
        };
        let fault = (config.faults)(n);
        if fault == Fault::DropBefore {
            return; // closes the connection mid-request
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or("");
        let token = path
            .strip_prefix("/api/v1/")
            .and_then(|p| p.strip_suffix("/telemetry"))
            .unwrap_or("")
            .to_owned();
        let status = if !config.tokens.contains(&token) {
            401
        } else if length > config.max_body {
            413
        } else if fault == Fault::RateLimited {
            500
        } else if fault == Fault::BadRequest {
            400
        } else {
            match serde_json::from_slice::<serde_json::Value>(&body) {
                Ok(v) => {
                    let items = match v {
                        serde_json::Value::Array(a) => a,
                        one => vec![one],
                    };
                    let mut s = seen.lock().unwrap();
                    for item in items {
                        let ts = item["ts"].as_i64().unwrap_or(-1);
                        s.accepted.push((token.clone(), ts, item["values"].clone()));
                        if fault == Fault::DropAfter {
                            s.lost_responses.push((token.clone(), ts));
                        }
                    }
                    if fault == Fault::DropAfter {
                        return; // recorded, but the client never hears it
                    }
                    200
                }
                Err(_) => 500,
            }
        };
        if respond(&mut stream, status, seen).is_err() {
            return;
        }
    }
}
