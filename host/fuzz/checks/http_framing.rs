//! The HTTP stream source's NDJSON / SSE / line framer: however the bytes
//! are cut into chunks, the same messages come out.

use weir::sources::http_stream::framing::{Format, Framer};

/// Decodes `bytes` as libFuzzer's `arbitrary` would and checks them.
pub fn run(bytes: &[u8]) {
    if let Some(input) = super::decode(bytes) {
        check(input);
    }
}

fn check(input: (u8, u16, Vec<u8>, Vec<u16>)) {
    let (mode, max, bytes, cuts) = input;
    let format = match mode % 3 {
        0 => Format::Ndjson,
        1 => Format::Sse,
        _ => Format::Lines,
    };
    let max = 1 + usize::from(max % 512);
    let last_id = (mode & 4 != 0).then(|| "7".to_owned());

    let mut whole = Framer::new(format, max, last_id.clone());
    let (mut a, mut a_long) = (Vec::new(), Vec::new());
    whole.push(&bytes, &mut a, &mut a_long);

    let mut pieces = Framer::new(format, max, last_id);
    let (mut b, mut b_long) = (Vec::new(), Vec::new());
    let mut at = 0;
    for cut in cuts {
        let end = (at + usize::from(cut) % 64).min(bytes.len());
        pieces.push(&bytes[at..end], &mut b, &mut b_long);
        at = end;
    }
    pieces.push(&bytes[at..], &mut b, &mut b_long);

    assert_eq!(a, b, "chunking changed the messages");
    assert_eq!(a_long, b_long, "chunking changed what is too long");
    for m in &a {
        assert!(m.data.len() <= max, "a message past the limit came out");
    }
}
