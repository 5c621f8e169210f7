//! The fast path of [`super::field`]: one pass over a flat JSON object,
//! without serde's visitor machinery.
//!
//! Most events are flat objects whose keys and strings have no escapes and
//! whose numbers are integers (`{"ts": 1700000000123, "gender": "1"}`). For
//! those this scanner validates the whole object and returns the field. It
//! answers only when it is sure: anything it does not handle (escapes,
//! nested arrays and objects, fractions and exponents, integers of 19
//! digits or more, `-0`, malformed input) returns `None`, and the caller
//! asks serde_json, whose answers and error messages are the reference.
//! Answering `Some` therefore never changes what a plugin sees; the tests
//! check that on generated inputs.
//!
//! Fewer, simpler loops matter in the sandbox: the host's deadline checks
//! sit at every function entry and loop back-edge.

use std::borrow::Cow;

use super::Scalar;
use crate::bytes::{HIGHS, ONES, every, zero_bytes};

/// Top-level field `name` of `json` when the object is simple enough to
/// read here: `Some(None)` when it is absent, `None` when serde_json must
/// decide.
pub(super) fn field<'a>(json: &'a [u8], name: &[u8]) -> Option<Option<Scalar<'a>>> {
    let mut s = Scanner { b: json, i: 0 };
    s.ws();
    s.eat(b'{')?;
    s.ws();
    let mut found = None;
    if s.peek() == Some(b'}') {
        s.i += 1;
    } else {
        loop {
            s.eat(b'"')?;
            let (key, _) = s.string()?;
            s.ws();
            s.eat(b':')?;
            s.ws();
            // Like serde's map visitor, a repeated key's last value wins.
            if crate::bytes::same(key, name) {
                found = Some(s.value()?);
            } else {
                s.value()?;
            }
            s.ws();
            match s.next()? {
                b',' => s.ws(),
                b'}' => break,
                _ => return None,
            }
        }
    }
    s.ws();
    (s.i == json.len()).then_some(found)
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    /// Skips JSON whitespace. Straight-line for none or one character,
    /// the usual cases; a loop only for more.
    #[inline(always)]
    fn ws(&mut self) {
        let space = |c| matches!(c, Some(b' ' | b'\n' | b'\t' | b'\r'));
        if space(self.peek()) {
            self.i += 1;
            while space(self.peek()) {
                self.i += 1;
            }
        }
    }

    /// The body of a string whose opening quote was read, up to and past
    /// its closing quote, and whether it is all ASCII; `None` on an escape,
    /// a control character or invalid UTF-8. Eight bytes are looked at per
    /// step, the first step outside any loop: most keys and short values
    /// end in it.
    #[inline(always)]
    fn string(&mut self) -> Option<(&'a [u8], bool)> {
        let start = self.i;
        if let Some(word) = self.word() {
            let stop = special(word);
            let at = (stop.trailing_zeros() / 8) as usize;
            if stop != 0 && self.b[self.i + at] == b'"' {
                self.i += at + 1;
                return Some((&self.b[start..self.i - 1], true));
            }
        }
        let mut ascii = true;
        loop {
            if let Some(word) = self.word() {
                let stop = special(word);
                if stop == 0 {
                    self.i += 8;
                    continue;
                }
                // The lowest flagged byte is exact; bytes above it may not be.
                self.i += (stop.trailing_zeros() / 8) as usize;
            }
            match self.next()? {
                b'"' => break,
                b'\\' | 0..0x20 => return None,
                0x80.. => ascii = false,
                _ => {}
            }
        }
        let body = &self.b[start..self.i - 1];
        if !ascii {
            std::str::from_utf8(body).ok()?;
        }
        Some((body, ascii))
    }

    /// The next eight bytes as a little-endian word, when there are eight.
    #[inline(always)]
    fn word(&self) -> Option<u64> {
        let bytes = self.b.get(self.i..self.i + 8)?;
        Some(u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
    }

    /// One value: a string, an integer, `true`, `false` or `null`.
    #[inline(always)]
    fn value(&mut self) -> Option<Scalar<'a>> {
        match self.peek()? {
            b'"' => {
                self.i += 1;
                let (body, ascii) = self.string()?;
                let text = if ascii {
                    // SAFETY: every byte is below 0x80, and ASCII is UTF-8.
                    unsafe { std::str::from_utf8_unchecked(body) }
                } else {
                    std::str::from_utf8(body).ok()?
                };
                Some(Scalar::Str(Cow::Borrowed(text)))
            }
            b't' => self.literal(b"true", Scalar::Bool(true)),
            b'f' => self.literal(b"false", Scalar::Bool(false)),
            b'n' => self.literal(b"null", Scalar::Null),
            _ => self.integer(),
        }
    }

    #[inline]
    fn literal(&mut self, word: &[u8], value: Scalar<'a>) -> Option<Scalar<'a>> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word).then(|| {
            self.i = end;
            value
        })
    }

    /// `-?(0|[1-9][0-9]{0,17})` not followed by a fraction, an exponent or
    /// another digit.
    #[inline(always)]
    fn integer(&mut self) -> Option<Scalar<'a>> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.i += 1;
        }
        let start = self.i;
        let mut n: i64 = 0;
        // Up to eight digits per step, two steps unrolled (no loop): the 13
        // digits of a timestamp in milliseconds take both. Longer numbers,
        // and numbers at the very end of the input, go one digit at a time.
        let mut whole_words = 0;
        for _ in 0..2 {
            let Some(word) = self.word() else { break };
            let k = leading_digits(word);
            if k > 0 {
                n = n * POW10[k] + value_of_digits(word, k) as i64;
                self.i += k;
            }
            if k < 8 {
                break;
            }
            whole_words += 1;
        }
        if whole_words == 2 || self.word().is_none() {
            while let Some(c @ b'0'..=b'9') = self.peek() {
                // A 19th digit could overflow: serde_json decides those.
                if self.i - start == 18 {
                    return None;
                }
                n = n * 10 + i64::from(c - b'0');
                self.i += 1;
            }
        }
        let digits = self.i - start;
        let leading_zero = digits > 1 && self.b[start] == b'0';
        if digits == 0 || leading_zero || matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        match (negative, n) {
            // serde_json reads -0 as the float -0.0.
            (true, 0) => None,
            (true, n) => Some(Scalar::Int(-n)),
            (false, n) => Some(Scalar::Int(n)),
        }
    }
}

/// High bit set in each byte of `word` that ends or complicates a plain
/// string: `"`, `\\`, a control character or a non-ASCII byte. The lowest
/// set bit marks the first such byte exactly; higher ones may be spurious.
#[inline]
fn special(word: u64) -> u64 {
    let below_space = word.wrapping_sub(every(0x20)) & !word & HIGHS;
    zero_bytes(word ^ every(b'"')) | zero_bytes(word ^ every(b'\\')) | below_space | (word & HIGHS)
}

/// How many of the bytes of `word`, from the lowest, are ASCII digits.
#[inline(always)]
fn leading_digits(word: u64) -> usize {
    // Digits become 0..=9 and nothing else does; flag each byte >= 10
    // without carries between bytes.
    let t = word ^ (ONES * 0x30);
    let not_digit = (((t & (ONES * 0x7F)) + ONES * 0x76) | t) & HIGHS;
    (not_digit.trailing_zeros() / 8) as usize
}

/// Powers of ten by exponent, for shifting a number left by `k` digits.
const POW10: [i64; 9] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
];

/// The number the lowest `k` bytes of `word` spell (`1 <= k <= 8`, all
/// ASCII digits, first digit in the lowest byte).
#[inline(always)]
fn value_of_digits(word: u64, k: usize) -> u64 {
    // Move the digits to the top and fill below with '0's: the same number
    // as eight digits with leading zeros.
    let padded = if k == 8 {
        word
    } else {
        (word << (8 * (8 - k))) | ((ONES * 0x30) >> (8 * k))
    };
    let d = padded - ONES * 0x30;
    // Pairs, then fours, then all eight, each step combining neighbours.
    let pairs = (d * 10 + (d >> 8)) & 0x00FF_00FF_00FF_00FF;
    let fours = (pairs * 100 + (pairs >> 16)) & 0x0000_FFFF_0000_FFFF;
    (fours * 10_000 + (fours >> 32)) & 0xFFFF_FFFF
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(json: &[u8], name: &str) -> Result<Option<Scalar<'static>>, String> {
        super::super::field_with_serde(json, name).map(|f| f.map(owned))
    }

    fn owned(s: Scalar<'_>) -> Scalar<'static> {
        match s {
            Scalar::Str(c) => Scalar::Str(Cow::Owned(c.into_owned())),
            Scalar::Null => Scalar::Null,
            Scalar::Bool(b) => Scalar::Bool(b),
            Scalar::Int(i) => Scalar::Int(i),
            Scalar::Float(f) => Scalar::Float(f),
            Scalar::Json(j) => Scalar::Json(j),
        }
    }

    #[test]
    fn reads_the_flat_objects_events_are() {
        let v = br#" {"ts": 1700000000123, "gender": "1", "ok": true, "n": null, "neg": -42} "#;
        assert_eq!(field(v, b"ts"), Some(Some(Scalar::Int(1_700_000_000_123))));
        assert_eq!(field(v, b"gender"), Some(Some(Scalar::Str("1".into()))));
        assert_eq!(field(v, b"ok"), Some(Some(Scalar::Bool(true))));
        assert_eq!(field(v, b"n"), Some(Some(Scalar::Null)));
        assert_eq!(field(v, b"neg"), Some(Some(Scalar::Int(-42))));
        assert_eq!(field(v, b"missing"), Some(None));
        assert_eq!(field(b"{}", b"x"), Some(None));
        assert_eq!(
            field("{\"é\":\"ü\"}".as_bytes(), "é".as_bytes()),
            Some(Some(Scalar::Str("ü".into())))
        );
    }

    #[test]
    fn leaves_everything_else_to_serde() {
        for v in [
            &br#"{"a":"x\"y"}"#[..],
            br#"{"a":[1]}"#,
            br#"{"a":1.5}"#,
            br#"{"a":1e3}"#,
            br#"{"a":-0}"#,
            br#"{"a":01}"#,
            br#"{"a":1234567890123456789}"#,
            br#"{"a":9223372036854775808}"#,
            br#"{"a":-9999999999999999999}"#,
            br#"{"id":9300000000000000000,"a":1}"#,
            br#"{"a":999999991234567899999999}"#,
            br#"{"a":1} x"#,
            br#"{"a":1,}"#,
            b"{\"a\":\"\x01\"}",
            b"{\"a\":\"\xff\"}",
            b"not json",
            b"",
        ] {
            assert_eq!(field(v, b"a"), None, "{}", String::from_utf8_lossy(v));
        }
    }

    #[test]
    fn word_helpers_match_their_byte_definitions() {
        for text in [
            "12345678",
            "00000000",
            "99999999",
            "1234567a",
            "/0000000",
            ":0000000",
            "1, \"x\"}  ",
            "x1234567",
            "0123}   ",
            "9\u{80}999999",
        ] {
            let word = u64::from_le_bytes(text.as_bytes()[..8].try_into().unwrap());
            let k = text.bytes().take_while(u8::is_ascii_digit).count().min(8);
            assert_eq!(leading_digits(word), k, "{text}");
            if k > 0 {
                assert_eq!(
                    value_of_digits(word, k),
                    text[..k].parse::<u64>().unwrap(),
                    "{text}"
                );
            }
        }
        for (text, first) in [
            ("abcdefgh", None),
            ("ab\"cdefg", Some(2)),
            ("abcdefg\\", Some(7)),
            ("\u{1}bcdefgh", Some(0)),
            ("abcé", Some(3)),
        ] {
            let mut bytes = [b'x'; 8];
            bytes[..text.len().min(8)].copy_from_slice(&text.as_bytes()[..text.len().min(8)]);
            let stop = special(u64::from_le_bytes(bytes));
            let got = (stop != 0).then(|| stop.trailing_zeros() / 8);
            assert_eq!(got, first, "{text}");
        }
    }

    /// Random objects built from fragments that are valid, nearly valid and
    /// invalid: wherever the scanner answers, serde_json answers the same.
    #[test]
    fn agrees_with_serde_json_wherever_it_answers() {
        const PARTS: &[&str] = &[
            "{",
            "}",
            "\"a\"",
            "\"b\"",
            "\"ü\"",
            ":",
            ",",
            " ",
            "\n",
            "1",
            "-",
            "0",
            "12",
            "1.5",
            "e3",
            "true",
            "fals",
            "false",
            "null",
            "\"x\\\"y\"",
            "[1,2]",
            "{\"a\":1}",
            "\"\"",
            "\"\t\"",
            "9223372036854775807",
            "-17",
            "-0",
            "01",
            "-",
            "1.",
            "1700000000123",
            "123456789012345678",
            "00000000",
            "\"a longer plain string value\"",
            "\"longer, with é in it\"",
            "\"long enough \\n escaped\"",
            "\"eight ch\"",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let (mut answered, mut total) = (0, 0);
        for _ in 0..200_000 {
            let mut text = String::from("{");
            // Mostly well-formed pairs, sometimes a random fragment.
            // Zero to five members, so the member loop runs several times.
            for k in 0..rand(6) {
                if k > 0 {
                    text.push(',');
                }
                if rand(16) == 0 {
                    text.push_str(PARTS[rand(PARTS.len())]);
                } else {
                    text.push_str(["\"a\"", "\"b\"", "\"ü\""][rand(3)]);
                    text.push(':');
                    text.push_str(PARTS[rand(PARTS.len())]);
                }
            }
            if rand(10) > 0 {
                text.push('}');
            }
            for name in ["a", "b", "ü"] {
                total += 1;
                if let Some(fast) = field(text.as_bytes(), name.as_bytes()) {
                    answered += 1;
                    assert_eq!(
                        Ok(fast.map(owned)),
                        reference(text.as_bytes(), name),
                        "{text}"
                    );
                }
            }
        }
        // The fast path must carry the common case, or it is dead weight.
        assert!(answered * 4 > total, "answered {answered} of {total}");
    }
}
