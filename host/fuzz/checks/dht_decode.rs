//! The DHT11/DHT22 decoder over any pulse train: a reading or a reason,
//! never a panic; and the ideal waveform of any five bytes decodes back to
//! them exactly when their checksum holds.

use weir::sources::dht::protocol::{self, Model, Pulse};

/// Decodes `bytes` as libFuzzer's `arbitrary` would and checks them.
pub fn run(bytes: &[u8]) {
    if let Some(input) = super::decode(bytes) {
        check(input);
    }
}

fn check(input: (bool, [u8; 5], Vec<(bool, u16)>)) {
    let (dht11, bytes, raw) = input;
    let model = if dht11 { Model::Dht11 } else { Model::Dht22 };
    let pulses: Vec<Pulse> = raw
        .into_iter()
        .map(|(high, micros)| Pulse {
            high,
            micros: u32::from(micros),
        })
        .collect();
    let _ = protocol::decode(&pulses, model);

    let sum = bytes[..4].iter().fold(0u8, |a, b| a.wrapping_add(*b));
    let decoded = protocol::decode_bytes(&protocol::waveform(bytes));
    if sum == bytes[4] {
        assert_eq!(decoded, Ok(bytes));
        if let Ok(reading) = protocol::interpret(bytes, model) {
            assert!(reading.temperature.is_finite() && reading.humidity.is_finite());
        }
    } else {
        assert!(decoded.is_err());
    }
}
