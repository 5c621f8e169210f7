//! Benchmark: the window-stats plugin with the four statistics of the
//! users' room-sensor job, WebAssembly versus the same code native.
//!
//! Run with `cargo bench -p weir --bench window_stats`. Input: the room
//! sensor file (20,160 rows over 14.7 days) repeated 10 times with its
//! dates shifted by 15 days each time (so no row is late), as CSV text, on
//! event time.

#[path = "support.rs"]
mod support;

use support::{build_plugin, compare, repo};

const CONFIG: &str = r#"{"input":"csv","columns":["id","date","Temperature","Humidity","Light","CO2","HumidityRatio","Occupancy"],
 "time":"event","timestamp":"date","stats":[
  {"name":"Average temperature","field":"Temperature","fn":"mean","window":"batch"},
  {"name":"Average temperature","field":"Temperature","fn":"mean","window":"since_start"},
  {"name":"Average luminosity","field":"Light","fn":"mean","window":"45s","slide":"15s"},
  {"name":"number of sample couples difference != 1 min","field":"date","fn":"gaps","expect":"60s","window":"batch"}]}"#;

fn main() {
    let wasm = build_plugin("window-stats");
    let text = std::fs::read_to_string(repo().join("data/room_sensors.csv")).unwrap();
    let rows: Vec<&str> = text.lines().skip(1).collect();
    let mut events = Vec::new();
    for rep in 0..10i64 {
        for row in &rows {
            // Shift the date (column 2, quoted) by 15 days per repetition.
            let mut f: Vec<String> = row.split(',').map(str::to_owned).collect();
            let date = f[1].trim_matches('"');
            let ms = weir_plugin::time::parse_timestamp(date).unwrap() + rep * 15 * 86_400_000;
            let days = ms.div_euclid(86_400_000);
            let secs = ms.div_euclid(1000).rem_euclid(86_400);
            let (y, m, d) = civil(days);
            f[1] = format!(
                "\"{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}\"",
                secs / 3600,
                secs / 60 % 60,
                secs % 60
            );
            events.push((0, f.join(",").into_bytes()));
        }
    }
    println!(
        "window-stats benchmark: 4 statistics (batch mean, since-start mean, 45s/15s sliding mean, gaps), event time, batches of 1024 rows"
    );
    let events = support::events_from(events);
    compare::<window_stats::WindowStats>(&wasm, support::Setup::new(CONFIG), &events, |_| 1)
        .print(&format!("{} rows", events.len()), "rows");
}

/// Calendar date of a day number (days since 1970-01-01).
fn civil(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}
