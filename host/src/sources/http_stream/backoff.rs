//! When to reconnect, the way well-behaved streaming clients do:
//!
//! - a dropped connection or a network error: at once, then linearly
//!   longer (`network_step` more each time, up to `network_max`);
//! - an HTTP error status: `http_initial`, doubling up to `http_max`;
//! - rate limited (420, 429): the server's `Retry-After` when it sends
//!   one, else `rate_limit_initial`, doubling up to `rate_limit_max`;
//! - a stall (no byte, not even a keep-alive, for `stall_timeout`) counts
//!   as a dropped connection.
//!
//! A connection that delivered a new message (valid, not a duplicate)
//! resets all three. SSE: a `retry:` the server sent makes drops wait at
//! least that long.

use std::time::Duration;

use serde::Deserialize;

use crate::units::Duration as Setting;

/// The source's `backoff` table; every field has a default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Added to the wait after each further network failure (default 250 ms).
    pub network_step: Setting,
    /// Longest wait after network failures (default 16 s).
    pub network_max: Setting,
    /// First wait after an HTTP error (default 5 s).
    pub http_initial: Setting,
    /// Longest wait after HTTP errors (default 320 s).
    pub http_max: Setting,
    /// First wait when rate limited without `Retry-After` (default 60 s).
    pub rate_limit_initial: Setting,
    /// Longest wait when rate limited (default 960 s).
    pub rate_limit_max: Setting,
}

impl Default for Policy {
    fn default() -> Self {
        let ms = |n| Setting(Duration::from_millis(n));
        Policy {
            network_step: ms(250),
            network_max: ms(16_000),
            http_initial: ms(5_000),
            http_max: ms(320_000),
            rate_limit_initial: ms(60_000),
            rate_limit_max: ms(960_000),
        }
    }
}

/// Why a connection ended, as far as waiting goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Closed, reset, refused, timed out or stalled.
    Network,
    /// An HTTP error status (not rate limiting).
    Http,
    /// 420 or 429, with the server's `Retry-After` if it sent one.
    RateLimited(Option<Duration>),
}

/// The waiting state across reconnects.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    policy: Policy,
    network: u32,
    http: u32,
    rate: u32,
}

impl Backoff {
    /// A fresh state under `policy`.
    pub fn new(policy: Policy) -> Self {
        Backoff {
            policy,
            ..Backoff::default()
        }
    }

    /// A connection delivered data: the next failure starts from scratch.
    pub fn reset(&mut self) {
        self.network = 0;
        self.http = 0;
        self.rate = 0;
    }

    /// How long to wait before reconnecting after `failure`.
    pub fn next(&mut self, failure: Failure) -> Duration {
        let p = self.policy;
        match failure {
            Failure::Network => {
                let wait = p.network_step.0.saturating_mul(self.network);
                self.network = self.network.saturating_add(1);
                wait.min(p.network_max.0)
            }
            Failure::Http => {
                let wait = doubled(p.http_initial.0, self.http);
                self.http = self.http.saturating_add(1);
                wait.min(p.http_max.0)
            }
            // At least a second (a `Retry-After` of 0 or in the past must
            // not make a client hammer the server), at most the cap.
            Failure::RateLimited(Some(after)) => {
                self.rate = self.rate.saturating_add(1);
                after.clamp(
                    Duration::from_secs(1),
                    p.rate_limit_max.0.max(Duration::from_secs(1)),
                )
            }
            Failure::RateLimited(None) => {
                let wait = doubled(p.rate_limit_initial.0, self.rate);
                self.rate = self.rate.saturating_add(1);
                wait.min(p.rate_limit_max.0)
            }
        }
    }
}

fn doubled(d: Duration, times: u32) -> Duration {
    d.saturating_mul(1u32.checked_shl(times.min(31)).unwrap_or(u32::MAX))
}

/// Reads a `Retry-After` header: delay-seconds, or an HTTP date.
pub fn retry_after(value: &str, now_ms: i64) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = http_date_ms(v)?;
    Some(Duration::from_millis(
        u64::try_from(at - now_ms).unwrap_or(0),
    ))
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) in Unix ms.
fn http_date_ms(v: &str) -> Option<i64> {
    let parts: Vec<&str> = v.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| m == month)? + 1;
    let text = format!("{year}-{month:02}-{:0>2}T{time}Z", day);
    weir_plugin::time::parse_timestamp(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(b: &mut Backoff, f: Failure, n: usize) -> Vec<f64> {
        (0..n).map(|_| b.next(f).as_secs_f64()).collect()
    }

    #[test]
    fn network_failures_retry_at_once_then_linearly_up_to_the_cap() {
        let mut b = Backoff::new(Policy::default());
        assert_eq!(secs(&mut b, Failure::Network, 4), [0.0, 0.25, 0.5, 0.75]);
        let mut b = Backoff::new(Policy::default());
        assert_eq!(secs(&mut b, Failure::Network, 100)[99], 16.0);
    }

    #[test]
    fn http_errors_double_from_five_seconds_and_rate_limits_from_a_minute() {
        let mut b = Backoff::new(Policy::default());
        assert_eq!(
            secs(&mut b, Failure::Http, 8),
            [5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 320.0]
        );
        assert_eq!(
            secs(&mut b, Failure::RateLimited(None), 5),
            [60.0, 120.0, 240.0, 480.0, 960.0]
        );
        assert_eq!(
            b.next(Failure::RateLimited(Some(Duration::from_secs(2)))),
            Duration::from_secs(2)
        );
        b.reset();
        assert_eq!(b.next(Failure::Http), Duration::from_secs(5));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(retry_after("2", 0), Some(Duration::from_secs(2)));
        let now = weir_plugin::time::parse_timestamp("1994-11-06T08:49:30Z").unwrap();
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(retry_after("soon", 0), None);
    }
}
