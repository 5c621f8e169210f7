//! What `weir top` shows, computed from two successive [`Status`]
//! readings: rates, and the screen's lines. The terminal handling is in
//! `top.rs`; this is the arithmetic and the layout, so it can be tested.

use std::time::Duration;

use weir::telemetry::{StageStatus, Status};

/// Per-second rates of one stage between two readings.
#[derive(Debug, Clone, PartialEq)]
pub struct Rates {
    /// Events in per second.
    pub events_in: f64,
    /// Events out per second.
    pub events_out: f64,
    /// Rejections per second.
    pub rejected: f64,
    /// Share of wall time the stage spent in its calls, percent.
    pub busy_pct: f64,
}

/// Rates of `now` since `before` (`None` on the first reading, or when the
/// stage was restarted with fresh counters).
pub fn rates(before: Option<&StageStatus>, now: &StageStatus, elapsed: Duration) -> Option<Rates> {
    let before = before?;
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return None;
    }
    let (b, n) = (&before.counters, &now.counters);
    let per_s = |a: u64, z: u64| z.checked_sub(a).map(|d| d as f64 / secs);
    Some(Rates {
        events_in: per_s(b.events_in, n.events_in)?,
        events_out: per_s(b.events_out, n.events_out)?,
        rejected: per_s(b.rejected, n.rejected)?,
        busy_pct: per_s(b.busy_ms, n.busy_ms)? / 10.0,
    })
}

/// A count for a narrow column: `950`, `12.3k`, `4.1M`.
pub fn human(x: f64) -> String {
    let a = x.abs();
    if a >= 1e9 {
        format!("{:.1}G", x / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", x / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", x / 1e3)
    } else if a >= 100.0 || x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// Bytes for a narrow column: `512B`, `1.5MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut x = n as f64;
    let mut unit = 0;
    while x >= 1024.0 && unit < UNITS.len() - 1 {
        x /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}B")
    } else {
        format!("{x:.1}{}", UNITS[unit])
    }
}

/// The screen: a header and one row per stage, each line at most `width`
/// characters.
pub fn render(
    before: Option<&Status>,
    now: &Status,
    elapsed: Duration,
    uptime: Duration,
    width: usize,
) -> Vec<String> {
    let mut lines = vec![
        format!(
            "weir top · {} · pid {} · up {} · reloads {} ok, {} failed · q quits",
            now.pipeline,
            now.pid,
            clock(uptime),
            now.reloads_ok,
            now.reloads_failed
        ),
        String::new(),
        format!(
            "{:<20} {:<9} {:<10} {:<7} {:>9} {:>9} {:>7} {:>7} {:>8} {:>5} {:>9} {:>9} {:>5}",
            "STAGE",
            "KIND",
            "TYPE",
            "STATE",
            "IN/s",
            "OUT/s",
            "REJ/s",
            "ERRORS",
            "LAG",
            "TASKS",
            "STATE_SZ",
            "MEMORY",
            "BUSY%"
        ),
    ];
    for st in &now.stages {
        let prev = before.and_then(|b| b.stages.iter().find(|s| s.name == st.name));
        let r = rates(prev, st, elapsed);
        let rate = |f: fn(&Rates) -> f64| r.as_ref().map_or("-".to_owned(), |r| human(f(r)));
        let c = &st.counters;
        let row = format!(
            "{:<20} {:<9} {:<10} {:<7} {:>9} {:>9} {:>7} {:>7} {:>8} {:>5} {:>9} {:>9} {:>5}",
            truncate(&st.name, 20),
            st.kind,
            truncate(&st.type_name, 10),
            format!("{:?}", st.state).to_lowercase(),
            rate(|r| r.events_in),
            rate(|r| r.events_out),
            rate(|r| r.rejected),
            human(c.errors as f64),
            if st.type_name == "kafka" && st.kind == "source" {
                human(c.lag as f64)
            } else {
                "-".into()
            },
            if st.type_name == "wasm" {
                c.partitions.len().to_string()
            } else {
                "-".into()
            },
            if st.type_name == "wasm" {
                bytes(c.state_bytes)
            } else {
                "-".into()
            },
            if c.memory_bytes > 0 {
                bytes(c.memory_bytes)
            } else {
                "-".into()
            },
            r.as_ref()
                .map_or("-".to_owned(), |r| format!("{:.0}", r.busy_pct)),
        );
        lines.push(row);
        if let Some(e) = &st.error {
            lines.push(format!("  └ {e}"));
        }
    }
    if let Some(r) = &now.last_reload {
        lines.push(String::new());
        lines.push(format!(
            "last reload {} ({}): {}",
            r.id,
            r.trigger,
            r.summary()
        ));
    }
    lines.into_iter().map(|l| truncate(&l, width)).collect()
}

fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(width.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir::telemetry::Counters;

    fn stage(name: &str, events_in: u64, busy_ms: u64) -> StageStatus {
        StageStatus {
            name: name.into(),
            kind: "transform".into(),
            type_name: "wasm".into(),
            instance: 1,
            counters: Counters {
                events_in,
                events_out: events_in / 2,
                busy_ms,
                memory_bytes: 3 << 20,
                ..Counters::default()
            },
            ..StageStatus::default()
        }
    }

    #[test]
    fn rates_are_deltas_over_elapsed_time() {
        let r = rates(
            Some(&stage("a", 1000, 100)),
            &stage("a", 3000, 600),
            Duration::from_secs(2),
        )
        .unwrap();
        assert_eq!(r.events_in, 1000.0);
        assert_eq!(r.events_out, 500.0);
        assert_eq!(r.busy_pct, 25.0);
        assert!(rates(None, &stage("a", 1, 0), Duration::from_secs(1)).is_none());
        // Counters that went backwards (a fresh stage of the same name).
        assert!(
            rates(
                Some(&stage("a", 9, 0)),
                &stage("a", 1, 0),
                Duration::from_secs(1)
            )
            .is_none()
        );
    }

    #[test]
    fn the_screen_lists_every_stage_with_rates() {
        let before = Status {
            pipeline: "p.toml".into(),
            stages: vec![stage("count", 0, 0)],
            ..Status::default()
        };
        let now = Status {
            stages: vec![stage("count", 25_000, 0)],
            ..before.clone()
        };
        let lines = render(
            Some(&before),
            &now,
            Duration::from_secs(1),
            Duration::from_secs(61),
            200,
        );
        assert!(lines[0].contains("up 0:01:01"), "{}", lines[0]);
        let row = lines.iter().find(|l| l.starts_with("count")).unwrap();
        assert!(row.contains("25.0k"), "{row}");
        assert!(row.contains("3.0MiB"), "{row}");
        assert!(
            render(None, &now, Duration::ZERO, Duration::ZERO, 30)
                .iter()
                .all(|l| l.chars().count() <= 30)
        );
    }

    #[test]
    fn numbers_fit_narrow_columns() {
        assert_eq!(human(950.0), "950");
        assert_eq!(human(2.5), "2.5");
        assert_eq!(human(12_345.0), "12.3k");
        assert_eq!(human(4_100_000.0), "4.1M");
        assert_eq!(bytes(512), "512B");
        assert_eq!(bytes(1536 * 1024), "1.5MiB");
    }
}
