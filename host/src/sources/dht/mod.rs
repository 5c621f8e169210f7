//! `type = "dht"`: a DHT11/DHT22 temperature and humidity sensor.
//!
//! ```toml
//! [sources.room]
//! type = "dht"
//! model = "dht22"          # or "dht11"
//! backend = "gpio"         # a sensor on a Raspberry Pi pin; "sim" simulates one
//! pin = 4                  # BCM pin number (gpio)
//! interval = "5s"          # at least 2 s (DHT22) / 1 s (DHT11)
//! device = "pi-kitchen"    # default: the host name
//! experiment = "kitchen"   # copied into every reading
//! retries = 3              # extra attempts after a failed read
//! max_temperature_step = 10.0   # a bigger change since the last reading must be
//! max_humidity_step = 30.0      # confirmed by a second read that agrees
//!
//! # sim backend only:
//! readings = "../data/weather_greensboro.csv"   # temperature,humidity columns; default: a daily curve
//! jitter = 0.05            # pulse lengths vary by up to ±5 %
//! drop_edge = 0.0          # probability a read loses an edge
//! flip_bit = 0.0           # probability each bit flips
//! negative = "sign_magnitude"   # or "twos_complement": how the sensor encodes sub-zero temperatures
//! realtime = true          # false: read as fast as possible, timestamps spaced by `interval`
//! count = 8760             # stop after this many reads (default: never)
//! start = "1988-01-01 01:00:00"   # with realtime = false: time of the first read (default: now)
//! seed = 1
//! ```
//!
//! Each reading becomes `{"time": UNIX_S, "device": ..., "temperature": C,
//! "humidity": PCT, "experiment": ...}`. A read that fails (missing edges,
//! timeout, checksum) is retried up to `retries` times, waiting the
//! sensor's minimum interval between attempts, then counted as an error
//! and skipped; the source keeps going.
//!
//! The DHT checksum is one byte: two flipped bits can cancel in it (say the
//! temperature's sign bit and the checksum's top bit), and the read then
//! passes as a different, valid reading. A reading that jumps further than
//! `max_temperature_step` / `max_humidity_step` from the previous one is
//! therefore read again and accepted only when a second read agrees (or
//! comes back close to the previous reading). Small cancelling errors
//! remain undetectable by the protocol.

pub mod gpio;
pub mod protocol;
pub mod sim;

use std::path::PathBuf;
use std::time::{Duration as StdDuration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use serde::Deserialize;

use crate::event::{Batch, Event};
use crate::stage::{BoxError, Component, Source, SourceContext, StageTask, run_blocking};
use crate::telemetry::StageMetrics;
use crate::units::Duration;
use protocol::{Model, Negative, ReadError, Reading};
use sim::{Noise, Series, SimSensor};

/// Where readings come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A sensor on a Raspberry Pi GPIO pin.
    #[default]
    Gpio,
    /// A simulated sensor, decoded through the same protocol code.
    Sim,
}

fn default_model() -> Model {
    Model::Dht22
}

/// Settings of the `dht` source.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhtConfig {
    /// Sensor model (default dht22).
    #[serde(default = "default_model")]
    pub model: Model,
    /// Backend (default gpio).
    #[serde(default)]
    pub backend: Backend,
    /// BCM pin (gpio).
    #[serde(default)]
    pub pin: Option<u8>,
    /// Time between reads (default 5 s).
    #[serde(default)]
    pub interval: Option<Duration>,
    /// Device name (default: host name).
    #[serde(default)]
    pub device: Option<String>,
    /// Experiment name copied into readings.
    #[serde(default)]
    pub experiment: Option<String>,
    /// Extra attempts after a failed read (default 3).
    #[serde(default)]
    pub retries: Option<u32>,
    /// Sim: CSV with temperature and humidity columns.
    #[serde(default)]
    pub readings: Option<PathBuf>,
    /// Sim: pulse-length jitter as a fraction (default 0.05).
    #[serde(default)]
    pub jitter: Option<f64>,
    /// Sim: probability a read loses an edge.
    #[serde(default)]
    pub drop_edge: Option<f64>,
    /// Sim: probability each bit flips.
    #[serde(default)]
    pub flip_bit: Option<f64>,
    /// Sim: how the sensor encodes negative temperatures.
    #[serde(default)]
    pub negative: Option<Negative>,
    /// Sim: wait `interval` between reads (default true).
    #[serde(default)]
    pub realtime: Option<bool>,
    /// Sim: stop after this many reads.
    #[serde(default)]
    pub count: Option<u64>,
    /// Sim: random seed.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Sim, not realtime: time of the first read (default: now).
    #[serde(default)]
    pub start: Option<String>,
    /// Largest temperature change between reads accepted without a
    /// confirming read (default 10 °C).
    #[serde(default)]
    pub max_temperature_step: Option<f64>,
    /// Largest humidity change between reads accepted without a confirming
    /// read (default 30 %).
    #[serde(default)]
    pub max_humidity_step: Option<f64>,
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at
    // most that many bytes.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

enum Sensor {
    Gpio(gpio::GpioSensor),
    Sim(SimSensor, Series),
}

impl Source for DhtConfig {
    fn build(&self, ctx: SourceContext) -> Result<StageTask, BoxError> {
        let interval = self
            .interval
            .map_or(StdDuration::from_secs(5), Duration::get);
        let min = self.model.min_interval();
        if interval < min {
            return Err(format!(
                "interval {interval:?} is shorter than a {:?} allows ({min:?} between reads)",
                self.model
            )
            .into());
        }
        for (name, p) in [
            ("jitter", self.jitter),
            ("drop_edge", self.drop_edge),
            ("flip_bit", self.flip_bit),
        ] {
            if let Some(p) = p
                && !(0.0..=1.0).contains(&p)
            {
                return Err(format!("`{name}` must be between 0 and 1, got {p}").into());
            }
        }
        let sim_only = [
            ("readings", self.readings.is_some()),
            ("jitter", self.jitter.is_some()),
            ("drop_edge", self.drop_edge.is_some()),
            ("flip_bit", self.flip_bit.is_some()),
            ("negative", self.negative.is_some()),
            ("realtime", self.realtime.is_some()),
            ("count", self.count.is_some()),
            ("seed", self.seed.is_some()),
            ("start", self.start.is_some()),
        ];
        let sensor = match self.backend {
            Backend::Gpio => {
                if let Some((name, _)) = sim_only.iter().find(|(_, set)| *set) {
                    return Err(format!("`{name}` applies to backend = \"sim\" only").into());
                }
                let pin = self
                    .pin
                    .ok_or("backend = \"gpio\" needs `pin` (the BCM pin number)")?;
                Sensor::Gpio(gpio::GpioSensor::open(pin, self.model)?)
            }
            Backend::Sim => {
                let series = match &self.readings {
                    Some(p) => Series::from_csv(p)?,
                    None => Series::Curve,
                };
                let noise = Noise {
                    jitter: self.jitter.unwrap_or(0.05),
                    drop_edge: self.drop_edge.unwrap_or(0.0),
                    flip_bit: self.flip_bit.unwrap_or(0.0),
                };
                let negative = self.negative.unwrap_or(Negative::SignMagnitude);
                Sensor::Sim(
                    SimSensor::new(self.model, negative, noise, self.seed.unwrap_or(1)),
                    series,
                )
            }
        };
        let start_ms = match &self.start {
            Some(t) => {
                Some(weir_plugin::time::parse_timestamp(t).map_err(|e| format!("`start`: {e}"))?)
            }
            None => None,
        };
        if start_ms.is_some() && self.realtime.unwrap_or(true) {
            return Err("`start` needs realtime = false (a realtime sensor reads now)".into());
        }
        let reader = Reader {
            max_step: (
                self.max_temperature_step.unwrap_or(10.0),
                self.max_humidity_step.unwrap_or(30.0),
            ),
            last: None,
            start_ms,
            model: self.model,
            interval,
            retries: self.retries.unwrap_or(3),
            device: self.device.clone().unwrap_or_else(hostname),
            experiment: self.experiment.clone().unwrap_or_default(),
            realtime: self.backend == Backend::Gpio || self.realtime.unwrap_or(true),
            count: self.count,
            sensor,
        };
        let handle = tokio::runtime::Handle::current();
        Ok(async move { run_blocking(move || reader.run(ctx, handle)).await? }.boxed())
    }
}

impl Component for DhtConfig {
    fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        self.readings.iter_mut().collect()
    }
}

struct Reader {
    /// (temperature, humidity) changes that need confirming.
    max_step: (f64, f64),
    /// The last reading accepted.
    last: Option<Reading>,
    start_ms: Option<i64>,
    model: Model,
    interval: StdDuration,
    retries: u32,
    device: String,
    experiment: String,
    realtime: bool,
    count: Option<u64>,
    sensor: Sensor,
}

impl Reader {
    /// One read: the reading and, for the simulator, how many bits the
    /// wire flipped.
    fn read_once(&mut self, i: u64) -> (Result<Reading, ReadError>, u32) {
        match &mut self.sensor {
            Sensor::Gpio(g) => (
                g.read_pulses()
                    .and_then(|p| protocol::decode(&p, self.model)),
                0,
            ),
            Sensor::Sim(s, series) => {
                let (pulses, flips) = s.read(series.get(i));
                (protocol::decode(&pulses, self.model), flips)
            }
        }
    }

    /// Reads, retrying failed reads up to `retries` times.
    fn read_retrying(&mut self, i: u64, stage: &str) -> (Result<Reading, ReadError>, u32) {
        let (mut result, mut flips) = self.read_once(i);
        let mut attempt = 0;
        while let Err(e) = &result {
            if attempt >= self.retries {
                break;
            }
            attempt += 1;
            tracing::debug!(stage, read = i, attempt, error = %e, "read failed; retrying");
            self.pause();
            (result, flips) = self.read_once(i);
        }
        (result, flips)
    }

    fn pause(&self) {
        if self.realtime {
            std::thread::sleep(self.model.min_interval());
        }
    }

    fn jumps(&self, r: &Reading) -> bool {
        self.last.is_some_and(|l| {
            (r.temperature - l.temperature).abs() > self.max_step.0
                || (r.humidity - l.humidity).abs() > self.max_step.1
        })
    }

    /// A checked reading: retried on failure, confirmed by a second read
    /// when it jumps; with the simulator's count of flipped bits.
    fn reading(&mut self, i: u64, stage: &str) -> (Result<Reading, ReadError>, u32) {
        let (mut result, mut flips) = self.read_retrying(i, stage);
        if let Ok(first) = result
            && self.jumps(&first)
        {
            let mut candidate = first;
            result = Err(ReadError::OutOfRange(format!(
                "jump to {} °C / {} % not confirmed by a second read",
                first.temperature, first.humidity
            )));
            for _ in 0..self.retries.max(1) {
                self.pause();
                let (again, f) = self.read_retrying(i, stage);
                match again {
                    Ok(r) if r == candidate || !self.jumps(&r) => {
                        result = Ok(r);
                        flips = f;
                        break;
                    }
                    Ok(r) => candidate = r,
                    Err(_) => {}
                }
            }
        }
        if let Ok(r) = &result {
            self.last = Some(*r);
        }
        (result, flips)
    }

    fn run(
        mut self,
        mut ctx: SourceContext,
        handle: tokio::runtime::Handle,
    ) -> Result<(), BoxError> {
        let mut i = ctx
            .control
            .resume
            .as_ref()
            .and_then(|r| r["reads"].as_u64())
            .unwrap_or(0);
        let epoch_ms = self.start_ms.unwrap_or_else(crate::util::now_ms);
        let started = Instant::now();
        let mut failures_logged = 0u64;
        let mut batch: Vec<Event> = Vec::new();
        let mut reads_here: u32 = 0;
        loop {
            if let Some(action) = ctx.control.poll() {
                if !batch.is_empty()
                    && ctx
                        .out
                        .blocking_send(&handle, Batch::new(std::mem::take(&mut batch)))
                        .is_err()
                {
                    return Ok(());
                }
                if ctx.act(&handle, action, || serde_json::json!({ "reads": i })) {
                    return Ok(());
                }
            }
            if self.count.is_some_and(|c| i >= c) {
                if !batch.is_empty() {
                    let _ = ctx
                        .out
                        .blocking_send(&handle, Batch::new(std::mem::take(&mut batch)));
                }
                ctx.finish(&handle, serde_json::json!({ "reads": i }));
                tracing::info!(reads = i, "dht simulation finished");
                return Ok(());
            }
            let (result, flips) = self.reading(i, &ctx.name);
            if result.is_ok() && flips >= 2 {
                // Only the simulator knows: flipped bits that cancelled in
                // the checksum.
                tracing::debug!(
                    read = i,
                    flips,
                    "sim: read accepted although bits were flipped (they cancel in the checksum)"
                );
            }
            let time_ms = if self.realtime {
                crate::util::now_ms()
            } else {
                epoch_ms + (i as i64) * self.interval.as_millis() as i64
            };
            match result {
                Ok(r) => {
                    let value = serde_json::json!({
                        "time": time_ms as f64 / 1000.0,
                        "device": self.device,
                        "temperature": r.temperature,
                        "humidity": r.humidity,
                        "experiment": self.experiment,
                    });
                    StageMetrics::add(&ctx.metrics.events_in, 1);
                    batch.push(Event::new(Bytes::from(value.to_string()), time_ms));
                }
                Err(e) => {
                    StageMetrics::add(&ctx.metrics.errors, 1);
                    failures_logged += 1;
                    if failures_logged <= 20 || failures_logged.is_multiple_of(100) {
                        tracing::warn!(
                            read = i,
                            error = %e,
                            failures = failures_logged,
                            "sensor read failed; skipped"
                        );
                    }
                }
            }
            i += 1;
            reads_here += 1;
            if (self.realtime || batch.len() >= ctx.batch_size)
                && !batch.is_empty()
                && ctx
                    .out
                    .blocking_send(&handle, Batch::new(std::mem::take(&mut batch)))
                    .is_err()
            {
                return Ok(());
            }
            if self.realtime {
                // Wait for the next read, checking for stop requests.
                let due = started + self.interval * reads_here;
                while Instant::now() < due {
                    if let Some(action) = ctx.control.poll()
                        && ctx.act(&handle, action, || serde_json::json!({ "reads": i }))
                    {
                        return Ok(());
                    }
                    std::thread::sleep((due - Instant::now()).min(StdDuration::from_millis(50)));
                }
            }
        }
    }
}
