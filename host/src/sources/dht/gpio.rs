//! The real sensor on a Raspberry Pi GPIO pin (rppal).
//!
//! A read drives the pin low for the start signal, releases it (input with
//! the internal pull-up), then busy-polls the level and timestamps every
//! change with the monotonic clock, up to 84 levels or 10 ms. The pulses go
//! to the same decoder as the simulator's.
//!
//! Limits of doing this from userspace: the 40 bits take about 4 ms and a
//! `0` differs from a `1` by ~40 µs, so the thread must not be descheduled
//! during a read. On a Raspberry Pi 4 a polling loop samples the pin every
//! ~0.1-0.5 µs, which is ample, but any preemption longer than ~20 µs
//! corrupts the read; the checksum then rejects it and the read is retried
//! (after the sensor's minimum interval). Running `weir` with real-time
//! priority (`chrt -f 50`) or on an isolated core (`isolcpus`) makes
//! failures rare. Linux's own `dht11` IIO driver
//! (`drivers/iio/humidity/dht11.c`, enabled with the `dht11` device-tree
//! overlay) avoids the problem differently: it timestamps edges in the GPIO
//! interrupt handler and decodes the recorded edges afterwards, so
//! scheduling latency does not matter; with that driver loaded, read
//! `/sys/bus/iio/devices/iio:device0/in_temp_input` instead of this backend.

use std::time::{Duration, Instant};

use super::protocol::{Model, Pulse, ReadError};

/// An open GPIO line with a DHT sensor on it.
pub struct GpioSensor {
    pin: rppal::gpio::IoPin,
    model: Model,
}

impl GpioSensor {
    /// Opens BCM pin `pin`.
    pub fn open(pin: u8, model: Model) -> Result<Self, String> {
        let gpio = rppal::gpio::Gpio::new().map_err(|e| format!("cannot open the GPIO controller: {e} (is this a Raspberry Pi, and may this user use /dev/gpiomem?)"))?;
        let pin = gpio
            .get(pin)
            .map_err(|e| format!("cannot use GPIO pin {pin}: {e}"))?
            .into_io(rppal::gpio::Mode::Input);
        Ok(GpioSensor { pin, model })
    }

    /// Performs one read and returns the measured pulses.
    pub fn read_pulses(&mut self) -> Result<Vec<Pulse>, ReadError> {
        use rppal::gpio::{Bias, Level, Mode};
        // Start signal: low, then release.
        self.pin.set_mode(Mode::Output);
        self.pin.set_low();
        std::thread::sleep(self.model.start_signal());
        self.pin.set_high();
        self.pin.set_mode(Mode::Input);
        self.pin.set_bias(Bias::PullUp);
        let start = Instant::now();
        let deadline = start + Duration::from_millis(10);
        let mut pulses = Vec::with_capacity(88);
        let mut level = self.pin.read() == Level::High;
        let mut since = Instant::now();
        while pulses.len() < 84 {
            let now = Instant::now();
            if now > deadline {
                if pulses.len() < 3 {
                    return Err(ReadError::Timeout);
                }
                break;
            }
            let l = self.pin.read() == Level::High;
            if l != level {
                pulses.push(Pulse {
                    high: level,
                    micros: now.duration_since(since).as_micros() as u32,
                });
                level = l;
                since = now;
            }
        }
        Ok(pulses)
    }
}
