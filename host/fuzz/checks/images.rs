//! The grayscale plugin's PNG and JPEG paths, natively: any bytes are an
//! image within the pixel limit or a rejection with a reason; nothing
//! panics, and what is accepted is re-encoded.

use weir_plugin::{Batch, Output, Transform};

/// Keeps a fuzzed header from asking for gigabytes.
const MAX_PIXELS: u64 = 1 << 22;

/// Decodes `bytes` as libFuzzer's `arbitrary` would and checks them.
pub fn run(bytes: &[u8]) {
    if let Some(input) = super::decode(bytes) {
        check(input);
    }
}

fn check(input: (u8, &[u8])) {
    let (mode, bytes) = input;
    if let Ok(image) = grayscale::decode(bytes, MAX_PIXELS) {
        assert!(image.width as u64 * image.height as u64 <= MAX_PIXELS);
    }
    let output = ["png", "jpeg"][usize::from(mode & 1)];
    let compression = ["fast", "best"][usize::from(mode >> 1 & 1)];
    let config = format!(
        r#"{{"output":"{output}","compression":"{compression}","max_pixels":{MAX_PIXELS}}}"#
    );
    let mut plugin = grayscale::Grayscale::new(&config).expect("config");
    let mut out = Output::default();
    plugin.process(&Batch::from_values(0, &[(0, bytes)]), &mut out);
    assert_eq!(
        out.len() + out.rejections().len(),
        1,
        "one result per image"
    );
}
