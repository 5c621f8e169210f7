//! The simulated sensor: the exact DHT waveform for a series of readings,
//! with the imperfections seen on real wires, decoded by the same code as
//! the GPIO backend.

use std::path::Path;

use super::protocol::{Model, Negative, Pulse, Reading, encode, waveform};

/// What can go wrong on the simulated wire.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Noise {
    /// Each pulse's length varies by up to this fraction (0.1 = ±10 %).
    pub jitter: f64,
    /// Probability that a read loses one edge (two pulses merge).
    pub drop_edge: f64,
    /// Probability that each data bit reads inverted.
    pub flip_bit: f64,
}

/// Small deterministic generator (xorshift64*), so runs are repeatable.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator (a zero seed is replaced).
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Readings a simulated sensor reports, in order, then again.
#[derive(Debug, Clone)]
pub enum Series {
    /// Rows of a CSV file with `temperature` and `humidity` columns.
    File(Vec<Reading>),
    /// A daily curve around 20 °C / 50 %.
    Curve,
}

impl Series {
    /// Reads `temperature` and `humidity` columns of a CSV file.
    pub fn from_csv(path: &Path) -> Result<Series, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut lines = text.lines();
        let header: Vec<&str> = lines
            .next()
            .ok_or_else(|| format!("{} is empty", path.display()))?
            .split(',')
            .map(|h| h.trim().trim_matches('"'))
            .collect();
        let col = |name: &str| {
            header
                .iter()
                .position(|h| h.eq_ignore_ascii_case(name))
                .ok_or_else(|| format!("{} has no `{name}` column", path.display()))
        };
        let (t, h) = (col("temperature")?, col("humidity")?);
        let mut readings = Vec::new();
        for (n, line) in lines.enumerate() {
            let f: Vec<&str> = line
                .split(',')
                .map(|x| x.trim().trim_matches('"'))
                .collect();
            let num = |i: usize| -> Result<f64, String> {
                f.get(i)
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| format!("{} line {}: not a number", path.display(), n + 2))
            };
            readings.push(Reading {
                temperature: num(t)?,
                humidity: num(h)?,
            });
        }
        if readings.is_empty() {
            return Err(format!("{} has no readings", path.display()));
        }
        Ok(Series::File(readings))
    }

    /// The `i`-th reading.
    pub fn get(&self, i: u64) -> Reading {
        match self {
            Series::File(r) => r[(i % r.len() as u64) as usize],
            Series::Curve => {
                let phase = (i % 1440) as f64 / 1440.0 * std::f64::consts::TAU;
                Reading {
                    temperature: ((20.0 + 5.0 * phase.sin()) * 10.0).round() / 10.0,
                    humidity: ((50.0 - 15.0 * phase.sin()) * 10.0).round() / 10.0,
                }
            }
        }
    }

    /// Number of readings before the series repeats (`None` for the curve).
    pub fn period(&self) -> Option<usize> {
        match self {
            Series::File(r) => Some(r.len()),
            Series::Curve => None,
        }
    }
}

/// A simulated sensor on a noisy wire.
#[derive(Debug, Clone)]
pub struct SimSensor {
    model: Model,
    negative: Negative,
    noise: Noise,
    rng: Rng,
}

impl SimSensor {
    /// A sensor of `model` encoding negatives as `negative`.
    pub fn new(model: Model, negative: Negative, noise: Noise, seed: u64) -> Self {
        SimSensor {
            model,
            negative,
            noise,
            rng: Rng::new(seed),
        }
    }

    /// The pulses a read of `reading` produces on the wire.
    pub fn pulses(&mut self, reading: Reading) -> Vec<Pulse> {
        self.read(reading).0
    }

    /// The pulses of a read, and how many data bits were flipped in it.
    pub fn read(&mut self, reading: Reading) -> (Vec<Pulse>, u32) {
        let mut bytes = encode(reading, self.model, self.negative);
        let mut flips = 0;
        for bit in 0..40 {
            if self.noise.flip_bit > 0.0 && self.rng.unit() < self.noise.flip_bit {
                bytes[bit / 8] ^= 0x80 >> (bit % 8);
                flips += 1;
            }
        }
        let mut pulses = waveform(bytes);
        for p in &mut pulses {
            let j = (self.rng.unit() * 2.0 - 1.0) * self.noise.jitter;
            p.micros = ((p.micros as f64) * (1.0 + j)).round().max(1.0) as u32;
        }
        if self.noise.drop_edge > 0.0 && self.rng.unit() < self.noise.drop_edge {
            // A missed edge merges a pulse with the next one.
            let i = 1 + (self.rng.next_u64() % (pulses.len() as u64 - 2)) as usize;
            let merged = pulses[i].micros + pulses[i + 1].micros;
            pulses[i].micros = merged;
            pulses.remove(i + 1);
        }
        (pulses, flips)
    }
}

#[cfg(test)]
mod tests {
    use super::super::protocol::{ReadError, decode};
    use super::*;

    #[test]
    fn round_trips_thousands_of_random_readings_in_both_encodings() {
        let mut rng = Rng::new(42);
        let clean = Noise {
            jitter: 0.1,
            drop_edge: 0.0,
            flip_bit: 0.0,
        };
        for n in 0..5000 {
            let model = if n % 5 == 0 {
                Model::Dht11
            } else {
                Model::Dht22
            };
            let negative = if n % 2 == 0 {
                Negative::SignMagnitude
            } else {
                Negative::TwosComplement
            };
            let r = match model {
                Model::Dht22 => Reading {
                    temperature: ((rng.unit() * 120.0 - 40.0) * 10.0).round() / 10.0,
                    humidity: (rng.unit() * 1000.0).round() / 10.0,
                },
                Model::Dht11 => Reading {
                    temperature: (rng.unit() * 50.0).round(),
                    humidity: (rng.unit() * 100.0).round(),
                },
            };
            let mut s = SimSensor::new(model, negative, clean, n);
            let got = decode(&s.pulses(r), model)
                .unwrap_or_else(|e| panic!("{r:?} {model:?} {negative:?}: {e}"));
            assert_eq!(got, r, "{model:?} {negative:?}");
        }
    }

    #[test]
    fn corrupted_waveforms_are_refused_never_misread() {
        let mut rng = Rng::new(7);
        let (mut refused, mut read) = (0, 0);
        for n in 0..5000u64 {
            let r = Reading {
                temperature: ((rng.unit() * 120.0 - 40.0) * 10.0).round() / 10.0,
                humidity: (rng.unit() * 1000.0).round() / 10.0,
            };
            let mut bytes = encode(r, Model::Dht22, Negative::SignMagnitude);
            // Flip exactly one bit of the 40, or drop one edge.
            let mut pulses = if n % 2 == 0 {
                let bit = (rng.next_u64() % 40) as usize;
                bytes[bit / 8] ^= 0x80 >> (bit % 8);
                waveform(bytes)
            } else {
                let mut p = waveform(bytes);
                let i = 1 + (rng.next_u64() % (p.len() as u64 - 2)) as usize;
                let merged = p[i].micros + p[i + 1].micros;
                p[i].micros = merged;
                p.remove(i + 1);
                p
            };
            pulses.truncate(pulses.len());
            match decode(&pulses, Model::Dht22) {
                Ok(got) => {
                    // Only a merged pulse in the trailing low can leave the
                    // data intact; a different reading must never appear.
                    assert_eq!(got, r, "corruption {n} misread as another reading");
                    read += 1;
                }
                Err(
                    ReadError::Checksum { .. }
                    | ReadError::MissingEdges { .. }
                    | ReadError::BadTiming { .. }
                    | ReadError::NoResponse,
                ) => refused += 1,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert!(refused > 4900, "{refused} refused, {read} read intact");
    }
}
