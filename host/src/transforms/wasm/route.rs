//! Which instance of a several-instance `wasm` stage (`instances` > 1) an
//! event from no partition goes to. By key (the default), every event of a
//! key goes to the same instance, so keyed state (counts per key, windows
//! per key) is complete in one place; the instance is Kafka's default
//! partitioner's choice, `murmur2(key) & 0x7fffffff % instances`, so it is
//! the partition the key would have in a topic of `instances` partitions.
//! By batch, each whole batch goes to the least busy instance (the fewest
//! batches queued or running, see [`super::load`]): only for plugins that
//! keep no state across events.

use serde::Deserialize;

use crate::event::Event;

/// See `WasmConfig::route`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Route {
    /// By the event key, or by `key_field` of a JSON value.
    #[default]
    Key,
    /// Each whole batch to the least busy instance.
    Batch,
}

/// Spreads events from no partition over `instances` instances.
#[derive(Debug)]
pub(super) struct Router {
    instances: u32,
    by: By,
}

#[derive(Debug)]
enum By {
    EventKey,
    Field(String),
    Batch,
}

/// Where the events of one batch go.
pub(super) enum Spread {
    /// All to one instance.
    One(u32),
    /// To the instance at each event's index.
    Each(Vec<u32>),
    /// All to whichever instance is least busy.
    AnyOne,
}

impl Router {
    /// A router over `instances` (at least 2) instances.
    pub fn new(instances: u32, route: Route, key_field: Option<&str>) -> Router {
        let by = match (route, key_field) {
            (Route::Batch, _) => By::Batch,
            (Route::Key, Some(field)) => By::Field(field.to_owned()),
            (Route::Key, None) => By::EventKey,
        };
        Router {
            instances: instances.max(1),
            by,
        }
    }

    /// How events are routed, as saved with the instances' state:
    /// `key`, `field:NAME` or `batch`, with the instance count.
    pub fn describe(&self) -> String {
        let by = match &self.by {
            By::EventKey => "key".to_owned(),
            By::Field(name) => format!("field:{name}"),
            By::Batch => "batch".to_owned(),
        };
        format!("{by}/{}", self.instances)
    }

    /// Where the events of a batch go.
    pub fn spread(&self, events: &[Event]) -> Spread {
        if let By::Batch = self.by {
            return Spread::AnyOne;
        }
        let lanes: Vec<u32> = events.iter().map(|e| self.lane_of(e)).collect();
        match lanes.first() {
            Some(first) if lanes.iter().all(|l| l == first) => Spread::One(*first),
            Some(_) => Spread::Each(lanes),
            None => Spread::One(0),
        }
    }

    /// The instance of one event: by its key; an event without one (no
    /// event key, or a value without the field) goes to the first.
    fn lane_of(&self, event: &Event) -> u32 {
        match &self.by {
            By::EventKey => event.key.as_deref().map_or(0, |k| self.of_key(k)),
            By::Field(name) => match weir_plugin::json::field(&event.value, name) {
                Ok(Some(value)) => self.of_key(value.as_text().as_bytes()),
                Ok(None) | Err(_) => 0,
            },
            By::Batch => 0,
        }
    }

    fn of_key(&self, key: &[u8]) -> u32 {
        (murmur2(key) & 0x7fff_ffff) % self.instances
    }
}

/// MurmurHash2 (32-bit) with Kafka's seed, as Kafka's default partitioner
/// and librdkafka's `murmur2` partitioner compute it.
pub(super) fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut words = data.chunks_exact(4);
    for word in &mut words {
        let mut k = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        for (i, b) in tail.iter().enumerate() {
            h ^= u32::from(*b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn murmur2_gives_kafkas_hashes() {
        // The reference values of librdkafka's and Kafka's own tests.
        let cases: [(&[u8], u32); 10] = [
            (b"kafka", 0xd067_cf64),
            (b"giberish123456789", 0x8f55_2b0c),
            (b"1234", 0x9fc9_7b14),
            (b"234", 0xe7c0_09ca),
            (b"34", 0x8739_30da),
            (b"4", 0x5a4b_5ca1),
            (b"PreAmbleWillBeRemoved,ThePrePartThatIs", 0x7842_4f1c),
            (b"", 0x106e_08d9),
            (b"21", -973_932_308_i32 as u32),
            (b"abc", 479_470_107),
        ];
        for (key, want) in cases {
            assert_eq!(murmur2(key), want, "{:?}", String::from_utf8_lossy(key));
        }
    }

    fn event(key: Option<&str>, value: &str) -> Event {
        let mut e = Event::new(Bytes::from(value.to_owned()), 0);
        e.key = key.map(|k| Bytes::from(k.to_owned()));
        e
    }

    #[test]
    fn one_key_always_goes_to_one_instance() {
        let r = Router::new(4, Route::Key, Some("g"));
        let events: Vec<Event> = (0..100)
            .map(|i| event(None, &format!(r#"{{"n":{i},"g":"k{}"}}"#, i % 7)))
            .collect();
        let Spread::Each(lanes) = r.spread(&events) else {
            panic!("seven keys over four instances land on more than one");
        };
        for (i, lane) in lanes.iter().enumerate() {
            assert_eq!(*lane, lanes[i % 7], "event {i}");
            assert_eq!(
                *lane,
                (murmur2(format!("k{}", i % 7).as_bytes()) & 0x7fff_ffff) % 4
            );
        }
        // Without the field, or not JSON: the first instance.
        let odd = [event(None, r#"{"x":1}"#), event(None, "not json")];
        assert!(matches!(r.spread(&odd), Spread::One(0)));
    }

    #[test]
    fn by_event_key_and_by_batch() {
        let r = Router::new(2, Route::Key, None);
        let same = [event(Some("a"), "1"), event(Some("a"), "2")];
        let Spread::One(lane) = r.spread(&same) else {
            panic!("one key, one instance")
        };
        assert_eq!(lane, (murmur2(b"a") & 0x7fff_ffff) % 2);
        assert!(matches!(r.spread(&[event(None, "1")]), Spread::One(0)));

        let r = Router::new(3, Route::Batch, None);
        assert!(matches!(r.spread(&same), Spread::AnyOne));
    }
}
