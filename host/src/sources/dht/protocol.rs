//! The DHT11/DHT22 single-wire protocol: one decoder for every backend.
//!
//! After the host's start signal (line low for at least 1 ms on a DHT22,
//! 18 ms on a DHT11, then released), the sensor answers with a response
//! (~80 µs low, ~80 µs high) and 40 bits, most significant first. Each bit
//! is ~50 µs low followed by a high pulse of ~26-28 µs for `0` or ~70 µs for
//! `1`. The five bytes are humidity (2), temperature (2) and a checksum:
//! the wrapping sum of the first four.
//!
//! DHT22 readings are tenths: humidity `(b0 << 8 | b1) / 10`, temperature
//! `(b2 << 8 | b3) / 10`. Negative temperatures come in two encodings in
//! the field: sign-magnitude (datasheet: bit 15 set, magnitude in the rest)
//! and, on some units, two's complement. Both are decoded: the sensor's
//! range (-40 °C to 80 °C) keeps them apart, because a two's-complement
//! negative has a magnitude above 32,000 when read as sign-magnitude. DHT11
//! readings are whole numbers in `b0` and `b2` (recent units put tenths in
//! `b1`/`b3`, and a sign in bit 7 of `b3`).

use std::fmt;

/// Sensor model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Model {
    /// DHT11: 0-50 °C, 20-90 %, whole degrees; at most one read a second.
    Dht11,
    /// DHT22 / AM2302: -40-80 °C, 0-100 %, tenths; one read every 2 s.
    Dht22,
}

impl Model {
    /// Shortest allowed time between reads.
    pub fn min_interval(self) -> std::time::Duration {
        match self {
            Model::Dht11 => std::time::Duration::from_secs(1),
            Model::Dht22 => std::time::Duration::from_secs(2),
        }
    }

    /// How long the host holds the line low to start a read.
    pub fn start_signal(self) -> std::time::Duration {
        match self {
            Model::Dht11 => std::time::Duration::from_millis(20),
            Model::Dht22 => std::time::Duration::from_millis(2),
        }
    }
}

/// How a DHT22 encodes negative temperatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Negative {
    /// Bit 15 is the sign, bits 0-14 the magnitude (datasheet).
    SignMagnitude,
    /// Two's complement 16-bit (seen on some units).
    TwosComplement,
}

/// One reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// Degrees Celsius.
    pub temperature: f64,
    /// Relative humidity, percent.
    pub humidity: f64,
}

/// A level held on the line for some time, as measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pulse {
    /// Line level.
    pub high: bool,
    /// Duration in microseconds.
    pub micros: u32,
}

/// Why a read failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// The sensor did not answer the start signal.
    NoResponse,
    /// Fewer than 40 bits arrived (edges were missed).
    MissingEdges {
        /// Bits decoded before the pulses ran out.
        bits: usize,
    },
    /// A pulse was far outside the protocol's timing.
    BadTiming {
        /// Bit index, or `None` in the response.
        bit: Option<usize>,
        /// Pulse length, µs.
        micros: u32,
    },
    /// The checksum does not match the data.
    Checksum {
        /// Sum of the first four bytes.
        computed: u8,
        /// The fifth byte.
        received: u8,
    },
    /// The values are outside the sensor's range.
    OutOfRange(String),
    /// The line could not be driven or read (GPIO backend).
    Io(String),
    /// No edge arrived in time (GPIO backend).
    Timeout,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::NoResponse => f.write_str("no response to the start signal"),
            ReadError::MissingEdges { bits } => write!(f, "missing edges: only {bits} of 40 bits"),
            ReadError::BadTiming {
                bit: Some(b),
                micros,
            } => write!(f, "bad timing: bit {b} pulse of {micros} µs"),
            ReadError::BadTiming { bit: None, micros } => {
                write!(f, "bad timing: response pulse of {micros} µs")
            }
            ReadError::Checksum { computed, received } => {
                write!(
                    f,
                    "checksum mismatch: computed {computed:#04x}, received {received:#04x}"
                )
            }
            ReadError::OutOfRange(what) => write!(f, "out of range: {what}"),
            ReadError::Io(e) => write!(f, "GPIO error: {e}"),
            ReadError::Timeout => f.write_str("timed out waiting for an edge"),
        }
    }
}

impl std::error::Error for ReadError {}

/// High pulses longer than this are `1` bits.
const ONE_THRESHOLD_US: u32 = 48;

/// Decodes the five data bytes from pulses measured after the start
/// signal was released (the sensor's response first). Leading high time
/// (the pull-up before the response) is skipped.
pub fn decode_bytes(pulses: &[Pulse]) -> Result<[u8; 5], ReadError> {
    let mut i = 0;
    while i < pulses.len() && pulses[i].high {
        i += 1;
    }
    // Response: low ~80 µs, high ~80 µs.
    let (low, high) = match (pulses.get(i), pulses.get(i + 1)) {
        (Some(l), Some(h)) if !l.high && h.high => (l, h),
        _ => return Err(ReadError::NoResponse),
    };
    for p in [low, high] {
        if !(40..=140).contains(&p.micros) {
            return Err(ReadError::BadTiming {
                bit: None,
                micros: p.micros,
            });
        }
    }
    i += 2;
    let mut bytes = [0u8; 5];
    for bit in 0..40 {
        let (low, high) = match (pulses.get(i), pulses.get(i + 1)) {
            (Some(l), Some(h)) if !l.high && h.high => (l, h),
            _ => return Err(ReadError::MissingEdges { bits: bit }),
        };
        if !(20..=110).contains(&low.micros) {
            return Err(ReadError::BadTiming {
                bit: Some(bit),
                micros: low.micros,
            });
        }
        if !(10..=120).contains(&high.micros) {
            return Err(ReadError::BadTiming {
                bit: Some(bit),
                micros: high.micros,
            });
        }
        if high.micros > ONE_THRESHOLD_US {
            bytes[bit / 8] |= 0x80 >> (bit % 8);
        }
        i += 2;
    }
    let computed = bytes[..4].iter().fold(0u8, |a, b| a.wrapping_add(*b));
    if computed != bytes[4] {
        return Err(ReadError::Checksum {
            computed,
            received: bytes[4],
        });
    }
    Ok(bytes)
}

/// Turns checked data bytes into a reading.
pub fn interpret(bytes: [u8; 5], model: Model) -> Result<Reading, ReadError> {
    let reading = match model {
        Model::Dht22 => {
            let h = u16::from_be_bytes([bytes[0], bytes[1]]);
            let raw = u16::from_be_bytes([bytes[2], bytes[3]]);
            let tenths = if raw & 0x8000 == 0 {
                raw as i32
            } else if raw & 0x7FFF <= 1000 {
                -((raw & 0x7FFF) as i32)
            } else {
                raw as i16 as i32
            };
            Reading {
                temperature: tenths as f64 / 10.0,
                humidity: h as f64 / 10.0,
            }
        }
        Model::Dht11 => {
            let t = bytes[2] as f64 + (bytes[3] & 0x0F) as f64 / 10.0;
            Reading {
                temperature: if bytes[3] & 0x80 != 0 { -t } else { t },
                humidity: bytes[0] as f64 + bytes[1] as f64 / 10.0,
            }
        }
    };
    let (tmin, tmax) = match model {
        Model::Dht11 => (-20.0, 60.0),
        Model::Dht22 => (-40.0, 80.0),
    };
    if !(tmin..=tmax).contains(&reading.temperature) {
        return Err(ReadError::OutOfRange(format!(
            "temperature {} °C",
            reading.temperature
        )));
    }
    if !(0.0..=100.0).contains(&reading.humidity) {
        return Err(ReadError::OutOfRange(format!(
            "humidity {} %",
            reading.humidity
        )));
    }
    Ok(reading)
}

/// Decodes pulses into a reading.
pub fn decode(pulses: &[Pulse], model: Model) -> Result<Reading, ReadError> {
    interpret(decode_bytes(pulses)?, model)
}

/// The five bytes a sensor sends for `reading` (rounded to its resolution).
pub fn encode(reading: Reading, model: Model, negative: Negative) -> [u8; 5] {
    let mut b = [0u8; 5];
    match model {
        Model::Dht22 => {
            let h = (reading.humidity * 10.0).round().clamp(0.0, 1000.0) as u16;
            let t = (reading.temperature * 10.0).round() as i32;
            let raw: u16 = if t >= 0 {
                t as u16
            } else {
                match negative {
                    Negative::SignMagnitude => 0x8000 | (-t) as u16,
                    Negative::TwosComplement => t as i16 as u16,
                }
            };
            b[..2].copy_from_slice(&h.to_be_bytes());
            b[2..4].copy_from_slice(&raw.to_be_bytes());
        }
        Model::Dht11 => {
            b[0] = reading.humidity.round().clamp(0.0, 100.0) as u8;
            let t = reading.temperature.round();
            b[2] = t.abs() as u8;
            if t < 0.0 {
                b[3] = 0x80;
            }
        }
    }
    b[4] = b[..4].iter().fold(0u8, |a, x| a.wrapping_add(*x));
    b
}

/// The ideal pulses for five bytes: pull-up, response, 40 bits, end low.
pub fn waveform(bytes: [u8; 5]) -> Vec<Pulse> {
    let mut p = Vec::with_capacity(84);
    p.push(Pulse {
        high: true,
        micros: 30,
    });
    p.push(Pulse {
        high: false,
        micros: 80,
    });
    p.push(Pulse {
        high: true,
        micros: 80,
    });
    for bit in 0..40 {
        let one = bytes[bit / 8] & (0x80 >> (bit % 8)) != 0;
        p.push(Pulse {
            high: false,
            micros: 50,
        });
        p.push(Pulse {
            high: true,
            micros: if one { 70 } else { 27 },
        });
    }
    p.push(Pulse {
        high: false,
        micros: 50,
    });
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(t: f64, h: f64) -> Reading {
        Reading {
            temperature: t,
            humidity: h,
        }
    }

    #[test]
    fn datasheet_example_decodes() {
        // DHT22 datasheet: 0x02 0x8C 0x01 0x5F 0xEE -> 65.2 %RH, 35.1 °C.
        let r = decode(&waveform([0x02, 0x8C, 0x01, 0x5F, 0xEE]), Model::Dht22).unwrap();
        assert_eq!(r, reading(35.1, 65.2));
        // Sign-magnitude -10.1 °C: 0x80 0x65.
        let b = [
            0x02,
            0x8C,
            0x80,
            0x65,
            0x02u8
                .wrapping_add(0x8C)
                .wrapping_add(0x80)
                .wrapping_add(0x65),
        ];
        assert_eq!(
            decode(&waveform(b), Model::Dht22).unwrap().temperature,
            -10.1
        );
        // Two's complement -10.1 °C: 0xFF 0x9B.
        let b = [
            0x02,
            0x8C,
            0xFF,
            0x9B,
            0x02u8
                .wrapping_add(0x8C)
                .wrapping_add(0xFF)
                .wrapping_add(0x9B),
        ];
        assert_eq!(
            decode(&waveform(b), Model::Dht22).unwrap().temperature,
            -10.1
        );
    }

    #[test]
    fn dht11_whole_numbers() {
        let b = encode(reading(23.0, 45.0), Model::Dht11, Negative::SignMagnitude);
        assert_eq!(b, [45, 0, 23, 0, 68]);
        assert_eq!(
            decode(&waveform(b), Model::Dht11).unwrap(),
            reading(23.0, 45.0)
        );
    }

    #[test]
    fn damage_is_reported() {
        let w = waveform(encode(
            reading(20.0, 50.0),
            Model::Dht22,
            Negative::SignMagnitude,
        ));
        assert_eq!(
            decode(&w[..40], Model::Dht22),
            Err(ReadError::MissingEdges { bits: 18 })
        );
        assert_eq!(decode(&w[..1], Model::Dht22), Err(ReadError::NoResponse));
        let mut flipped = w.clone();
        flipped[4].micros = 70; // first data bit 0 -> 1
        assert!(matches!(
            decode(&flipped, Model::Dht22),
            Err(ReadError::Checksum { .. })
        ));
        let mut slow = w;
        slow[10].micros = 400;
        assert!(matches!(
            decode(&slow, Model::Dht22),
            Err(ReadError::BadTiming { .. })
        ));
    }
}
