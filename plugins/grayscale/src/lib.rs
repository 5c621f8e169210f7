//! Weir plugin `grayscale`: JPEG or PNG images to 8-bit grayscale.
//!
//! Each event's value is one image file. The plugin decodes it (JPEG with
//! zune-jpeg, PNG with the `png` crate: 8- or 16-bit gray, gray+alpha, RGB,
//! RGBA or palette), converts colour pixels with OpenCV's 8-bit BGR→GRAY
//! arithmetic, `Y = (3735*B + 19235*G + 9798*R + 16384) >> 15` (bit-exact;
//! alpha ignored; gray input passes through unchanged), and encodes the
//! result as PNG (default, lossless) or JPEG. Colour JPEGs are made gray
//! straight from the decoder's Y Cb Cr with the decoder's RGB arithmetic
//! ([`ycbcr_to_gray`]): the same bytes as through an RGB image, in one
//! pass.
//!
//! Config: `output = "png" | "jpeg" | "raw"`, `quality` (JPEG, 1-100,
//! default 90), `compression = "fast" | "fastest" | "best"` (PNG),
//! `max_pixels` (default 50,000,000: larger images are refused before
//! they are decoded), `input = "encoded" | "rgb"` (`rgb`: raw 8-bit RGB
//! frames with `width` and `height` headers).
//!
//! Output headers: `filename` (from the input's `filename` header or key),
//! `width`, `height`, `content-type`. A corrupt, truncated, unsupported or
//! oversized image is refused with the decoder's reason; the rest of the
//! batch goes on.

pub mod png_gray;
pub mod png_read;

use png_gray::RowFilters;
use serde::Deserialize;
use weir_plugin::{Emit, Event, Map, Mapped};

/// Output encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Lossless 8-bit gray PNG.
    #[default]
    Png,
    /// Baseline gray JPEG.
    Jpeg,
    /// Raw 8-bit gray pixels, row by row (with `width`/`height` headers).
    Raw,
}

/// PNG compression effort.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PngCompression {
    /// Fastest encoding, files ~10 % larger (one row filter, light deflate).
    Fastest,
    /// Fast deflate with adaptive row filters.
    #[default]
    Fast,
    /// Smaller files, slower.
    Best,
}

/// What the input values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum InputKind {
    /// JPEG or PNG files.
    #[default]
    Encoded,
    /// Raw interleaved 8-bit RGB pixels; `width` and `height` headers give
    /// the size (camera frames).
    Rgb,
}

/// The plugin: its configuration (the stage's `config` table), and the
/// buffers it keeps from image to image.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Converter {
    /// Input kind (default encoded).
    #[serde(default)]
    pub input: InputKind,
    /// Output encoding (default png).
    #[serde(default)]
    pub output: Encoding,
    /// JPEG quality 1-100 (default 90).
    #[serde(default = "quality_default")]
    pub quality: u8,
    /// PNG compression effort (default fast).
    #[serde(default)]
    pub compression: PngCompression,
    /// Largest image accepted, in pixels (default 50 MP).
    #[serde(default = "max_pixels_default")]
    pub max_pixels: u64,
    /// Decoded pixels.
    #[serde(skip)]
    decoded: Vec<u8>,
    /// Gray pixels of colour images.
    #[serde(skip)]
    gray: Vec<u8>,
    /// The PNG reader, with its inflate buffer.
    #[serde(skip)]
    png: png_read::Reader,
}

/// The plugin as a stage: one gray image (or a rejection) per image.
pub type Grayscale = Mapped<Converter>;

fn quality_default() -> u8 {
    90
}
fn max_pixels_default() -> u64 {
    50_000_000
}

/// A decoded image: 8-bit gray, or 8-bit interleaved RGB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Pixels.
    pub pixels: Pixels,
}

/// Pixel layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pixels {
    /// One byte per pixel.
    Gray(Vec<u8>),
    /// Three bytes per pixel, R G B.
    Rgb(Vec<u8>),
    /// Four bytes per pixel, R G B A (alpha is ignored).
    Rgba(Vec<u8>),
    /// Three bytes per pixel, Y Cb Cr as a colour JPEG holds them (after
    /// upsampling): [`ycbcr_to_gray`] makes gray of them in one pass,
    /// without an RGB image between.
    YCbCr(Vec<u8>),
}

/// OpenCV's 8-bit BGR→GRAY conversion of one pixel.
#[inline]
pub fn gray(r: u8, g: u8, b: u8) -> u8 {
    ((3735 * b as u32 + 19235 * g as u32 + 9798 * r as u32 + 16384) >> 15) as u8
}

/// The gray of a JPEG pixel: converted to RGB as zune-jpeg converts it
/// (14-bit fixed point, clamped), then [`gray`].
#[inline]
pub fn ycbcr_gray(y: u8, cb: u8, cr: u8) -> u8 {
    let (cb, cr) = (i32::from(cb) - 128, i32::from(cr) - 128);
    let y = i32::from(y) * 16384 + 8191;
    let channel = |v: i32| (v >> 14).clamp(0, 255) as u8;
    gray(
        channel(y + 22970 * cr),
        channel(y - 11700 * cr - 5638 * cb),
        channel(y + 29032 * cb),
    )
}

/// Converts interleaved Y Cb Cr pixels to gray: the same bytes as
/// decoding to RGB and [`to_gray`], in one pass that is vector code on
/// every target (zune-jpeg's own conversion to RGB is scalar outside x86
/// and ARM).
pub fn ycbcr_to_gray(pixels: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(pixels.len() / 3);
    out.extend(pixels.chunks_exact(3).map(|p| ycbcr_gray(p[0], p[1], p[2])));
}

/// Converts interleaved pixels of `channels` bytes (RGB first) to gray.
pub fn to_gray(pixels: &[u8], channels: usize, out: &mut Vec<u8>) {
    out.clear();
    out.reserve(pixels.len() / channels);
    out.extend(
        pixels
            .chunks_exact(channels)
            .map(|p| gray(p[0], p[1], p[2])),
    );
}

fn check_size(width: usize, height: usize, max_pixels: u64) -> Result<(), String> {
    let px = width as u64 * height as u64;
    if px > max_pixels {
        return Err(format!(
            "image is {width}x{height} ({:.1} MP), above max_pixels ({:.1} MP)",
            px as f64 / 1e6,
            max_pixels as f64 / 1e6
        ));
    }
    Ok(())
}

/// Decodes a JPEG or PNG file (a colour JPEG to [`Pixels::YCbCr`]).
pub fn decode(bytes: &[u8], max_pixels: u64) -> Result<Image, String> {
    decode_reusing(bytes, max_pixels, Vec::new())
}

/// Resizes `buf` to `size` bytes, zeroing only bytes it never held: a
/// buffer reused for images of similar size is not cleared every time.
fn sized(mut buf: Vec<u8>, size: usize) -> Vec<u8> {
    buf.resize(size, 0);
    buf
}

/// [`decode`] into a reused pixel buffer (its contents are overwritten).
pub fn decode_reusing(bytes: &[u8], max_pixels: u64, buf: Vec<u8>) -> Result<Image, String> {
    decode_with(&mut png_read::Reader::default(), bytes, max_pixels, buf)
}

/// [`decode_reusing`] with a PNG reader kept from image to image.
pub fn decode_with(
    png: &mut png_read::Reader,
    bytes: &[u8],
    max_pixels: u64,
    buf: Vec<u8>,
) -> Result<Image, String> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        decode_png(png, bytes, max_pixels, buf)
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        decode_jpeg(bytes, max_pixels, buf)
    } else {
        let head: String = bytes
            .iter()
            .take(8)
            .map(|b| {
                if b.is_ascii_graphic() || *b == b' ' {
                    *b as char
                } else {
                    '.'
                }
            })
            .collect();
        Err(format!(
            "not a JPEG or PNG image (starts with {head:?}, {} bytes)",
            bytes.len()
        ))
    }
}

fn decode_png(
    png: &mut png_read::Reader,
    bytes: &[u8],
    max_pixels: u64,
    buf: Vec<u8>,
) -> Result<Image, String> {
    let check = |w: u32, h: u32| check_size(w as usize, h as usize, max_pixels);
    let buf = match png.decode(bytes, check, buf) {
        Ok(Some(d)) => {
            let pixels = match d.channels {
                1 => Pixels::Gray(d.pixels),
                2 => Pixels::Gray(d.pixels.chunks_exact(2).map(|p| p[0]).collect()),
                3 => Pixels::Rgb(d.pixels),
                _ => Pixels::Rgba(d.pixels),
            };
            return Ok(Image {
                width: d.width,
                height: d.height,
                pixels,
            });
        }
        // Palettes, other bit depths, interlacing: the png crate.
        Ok(None) => Vec::new(),
        Err(png_read::Refused::Size(reason)) => return Err(reason),
        Err(png_read::Refused::Corrupt(reason)) => {
            return Err(format!("corrupt or truncated PNG: {reason}"));
        }
    };
    decode_png_crate(bytes, max_pixels, buf)
}

fn decode_png_crate(bytes: &[u8], max_pixels: u64, buf: Vec<u8>) -> Result<Image, String> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder
        .read_info()
        .map_err(|e| format!("corrupt PNG: {e}"))?;
    let (w, h) = (reader.info().width, reader.info().height);
    check_size(w as usize, h as usize, max_pixels)?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| format!("PNG of {w}x{h} is too large to decode"))?;
    let mut buf = sized(buf, size);
    let frame = reader
        .next_frame(&mut buf)
        .map_err(|e| format!("corrupt or truncated PNG: {e}"))?;
    buf.truncate(frame.buffer_size());
    let (color, depth) = reader.output_color_type();
    if depth != png::BitDepth::Eight {
        return Err(format!("unsupported PNG bit depth {depth:?}"));
    }
    let pixels = match color {
        png::ColorType::Grayscale => Pixels::Gray(buf),
        png::ColorType::GrayscaleAlpha => Pixels::Gray(buf.chunks_exact(2).map(|p| p[0]).collect()),
        png::ColorType::Rgb => Pixels::Rgb(buf),
        png::ColorType::Rgba => Pixels::Rgba(buf),
        png::ColorType::Indexed => return Err("unexpanded palette PNG".into()),
    };
    Ok(Image {
        width: w,
        height: h,
        pixels,
    })
}

fn decode_jpeg(bytes: &[u8], max_pixels: u64, buf: Vec<u8>) -> Result<Image, String> {
    use zune_core::bytestream::ZCursor;
    use zune_core::colorspace::ColorSpace;
    use zune_core::options::DecoderOptions;
    let reason = |e: zune_jpeg::errors::DecodeErrors| format!("corrupt or truncated JPEG: {e}");
    let mut probe = zune_jpeg::JpegDecoder::new(ZCursor::new(bytes));
    probe.decode_headers().map_err(reason)?;
    let (w, h) = probe.dimensions().ok_or("JPEG without dimensions")?;
    check_size(w, h, max_pixels)?;
    let input = probe.input_colorspace();
    let gray_input = matches!(input, Some(ColorSpace::Luma));
    // Colour JPEGs are YCbCr almost always: taken as they are, and made
    // gray in one pass. Others (Adobe RGB, CMYK, YCCK) go through RGB.
    let ycbcr_input = matches!(input, Some(ColorSpace::YCbCr));
    let out = if gray_input {
        ColorSpace::Luma
    } else if ycbcr_input {
        ColorSpace::YCbCr
    } else {
        ColorSpace::RGB
    };
    // Strict: a truncated or damaged stream is an error, not an image
    // padded with guesses.
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        .jpeg_set_out_colorspace(out)
        .set_max_width(w.max(1))
        .set_max_height(h.max(1));
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder.decode_headers().map_err(reason)?;
    let size = decoder
        .output_buffer_size()
        .ok_or("JPEG without an output size")?;
    let mut pixels = sized(buf, size);
    decoder.decode_into(&mut pixels).map_err(reason)?;
    Ok(Image {
        width: w as u32,
        height: h as u32,
        pixels: if gray_input {
            Pixels::Gray(pixels)
        } else if ycbcr_input {
            Pixels::YCbCr(pixels)
        } else {
            Pixels::Rgb(pixels)
        },
    })
}

/// Encodes 8-bit gray pixels.
pub fn encode(
    gray: &[u8],
    width: u32,
    height: u32,
    encoding: Encoding,
    quality: u8,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    encode_with(
        gray,
        width,
        height,
        encoding,
        quality,
        PngCompression::Fast,
        out,
    )
}

/// [`encode`] with a PNG compression effort.
pub fn encode_with(
    gray: &[u8],
    width: u32,
    height: u32,
    encoding: Encoding,
    quality: u8,
    compression: PngCompression,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    match encoding {
        Encoding::Png => match compression {
            PngCompression::Fastest => png_gray::encode(gray, width, height, RowFilters::Up, out),
            PngCompression::Fast => {
                png_gray::encode(gray, width, height, RowFilters::Adaptive, out)
            }
            PngCompression::Best => {
                let mut enc = png::Encoder::new(&mut *out, width, height);
                enc.set_color(png::ColorType::Grayscale);
                enc.set_depth(png::BitDepth::Eight);
                enc.set_compression(png::Compression::High);
                let mut w = enc
                    .write_header()
                    .map_err(|e| format!("PNG encoding failed: {e}"))?;
                w.write_image_data(gray)
                    .map_err(|e| format!("PNG encoding failed: {e}"))?;
                w.finish().map_err(|e| format!("PNG encoding failed: {e}"))
            }
        },
        Encoding::Raw => {
            out.extend_from_slice(gray);
            Ok(())
        }
        Encoding::Jpeg => {
            let (w, h) = (
                u16::try_from(width).map_err(|_| "too wide for JPEG (65535 max)")?,
                u16::try_from(height).map_err(|_| "too tall for JPEG (65535 max)")?,
            );
            jpeg_encoder::Encoder::new(&mut *out, quality)
                .encode(gray, w, h, jpeg_encoder::ColorType::Luma)
                .map_err(|e| format!("JPEG encoding failed: {e}"))
        }
    }
}

/// Reads a decimal header.
fn size_header(event: &Event<'_>, name: &str) -> Result<u32, String> {
    let v = event
        .header(name)
        .ok_or_else(|| format!("raw RGB input needs a `{name}` header"))?;
    std::str::from_utf8(v)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| format!("`{name}` header is not a number"))
}

impl Converter {
    /// Converts the image `event` holds, appending the result to `encoded`;
    /// its width and height.
    fn convert_event(
        &mut self,
        event: &Event<'_>,
        encoded: &mut Vec<u8>,
    ) -> Result<(u32, u32), String> {
        match self.input {
            InputKind::Encoded => self.convert(event.value, encoded),
            InputKind::Rgb => {
                let (w, h) = (size_header(event, "width")?, size_header(event, "height")?);
                check_size(w as usize, h as usize, self.max_pixels)?;
                if event.value.len() as u64 != u64::from(w) * u64::from(h) * 3 {
                    return Err(format!("{} bytes is not {w}x{h} RGB", event.value.len()));
                }
                to_gray(event.value, 3, &mut self.gray);
                let (output, quality, compression) = (self.output, self.quality, self.compression);
                encode_with(&self.gray, w, h, output, quality, compression, encoded)?;
                Ok((w, h))
            }
        }
    }

    /// Converts a JPEG or PNG file, appending the result to `encoded`.
    fn convert(&mut self, bytes: &[u8], encoded: &mut Vec<u8>) -> Result<(u32, u32), String> {
        let img = decode_with(
            &mut self.png,
            bytes,
            self.max_pixels,
            std::mem::take(&mut self.decoded),
        )?;
        let gray = match &img.pixels {
            Pixels::Gray(p) => p,
            Pixels::Rgb(p) => {
                to_gray(p, 3, &mut self.gray);
                &self.gray
            }
            Pixels::Rgba(p) => {
                to_gray(p, 4, &mut self.gray);
                &self.gray
            }
            Pixels::YCbCr(p) => {
                ycbcr_to_gray(p, &mut self.gray);
                &self.gray
            }
        };
        let (output, quality, compression) = (self.output, self.quality, self.compression);
        let written = encode_with(
            gray,
            img.width,
            img.height,
            output,
            quality,
            compression,
            encoded,
        );
        // The pixel buffer serves the next image.
        self.decoded = match img.pixels {
            Pixels::Gray(p) | Pixels::Rgb(p) | Pixels::Rgba(p) | Pixels::YCbCr(p) => p,
        };
        written.map(|()| (img.width, img.height))
    }
}

impl Map for Converter {
    type State = ();

    fn init(&mut self) -> Result<(), String> {
        if !(1..=100).contains(&self.quality) {
            return Err(format!("quality must be 1-100, got {}", self.quality));
        }
        Ok(())
    }

    fn map(&mut self, event: &Event<'_>, _: &mut (), out: &mut Emit<'_>) -> Result<(), String> {
        let (w, h) = self.convert_event(event, out.buf())?;
        if let Some(name) = event.header("filename").or(event.key) {
            out.header("filename", name);
        }
        out.header("width", w.to_string().as_bytes());
        out.header("height", h.to_string().as_bytes());
        let content_type: &[u8] = match self.output {
            Encoding::Png => b"image/png",
            Encoding::Jpeg => b"image/jpeg",
            Encoding::Raw => b"application/octet-stream",
        };
        out.header("content-type", content_type);
        Ok(())
    }
}

weir_plugin::export!(map Converter);

#[cfg(test)]
mod tests {
    use weir_plugin::{Batch, Output, Transform};

    use super::*;

    /// The plugin itself, configured.
    fn converter(config: &str) -> Converter {
        let mut c: Converter = weir_plugin::config::parse(config).unwrap();
        c.init().unwrap();
        c
    }

    #[test]
    fn gray_matches_opencv_on_known_colours() {
        // Worked by hand from the formula (which matches OpenCV 4.x on all
        // 2^24 colours, per the shared sample-data notes).
        assert_eq!(gray(255, 255, 255), 255);
        assert_eq!(gray(0, 0, 0), 0);
        assert_eq!(gray(255, 0, 0), 76);
        assert_eq!(gray(0, 255, 0), 150);
        assert_eq!(gray(0, 0, 255), 29);
        assert_eq!(gray(10, 200, 30), 124);
    }

    #[test]
    fn png_round_trip_and_rejections() {
        let mut png = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut png, 2, 1);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut w = enc.write_header().unwrap();
            w.write_image_data(&[255, 0, 0, 0, 0, 255]).unwrap();
        }
        let mut p = Grayscale::new("{}").unwrap();
        let mut out = Output::default();
        let mut batch = Batch::from_values(
            0,
            &[
                (1, png.as_slice()),
                (2, b"hello there".as_slice()),
                (3, &png[..20]),
            ],
        );
        batch.push_header(0, "filename", b"red-blue.png");
        p.process(&batch, &mut out);
        assert_eq!(out.len(), 1);
        let img = decode(out.value(0), 10).unwrap();
        assert_eq!(img.pixels, Pixels::Gray(vec![76, 29]));
        let headers: Vec<(&str, &[u8])> = out
            .headers()
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_slice()))
            .collect();
        assert!(headers.contains(&("filename", b"red-blue.png".as_slice())));
        assert!(headers.contains(&("width", b"2".as_slice())));
        let r = out.rejections();
        assert_eq!(r.len(), 2);
        assert!(
            r[0].reason.starts_with("not a JPEG or PNG image"),
            "{}",
            r[0].reason
        );
        assert!(r[1].reason.starts_with("corrupt"), "{}", r[1].reason);
        let small = converter(r#"{"max_pixels": 1}"#)
            .convert(&png, &mut Vec::new())
            .unwrap_err();
        assert!(small.contains("above max_pixels"), "{small}");
    }

    #[test]
    fn raw_rgb_frames_in_raw_gray_out() {
        let mut p = Grayscale::new(r#"{"input":"rgb","output":"raw"}"#).unwrap();
        let mut batch = Batch::from_values(
            0,
            &[
                (1, [255u8, 0, 0, 0, 255, 0].as_slice()),
                (2, [1u8, 2].as_slice()),
            ],
        );
        for i in 0..2 {
            batch.push_header(i, "width", b"2");
            batch.push_header(i, "height", b"1");
        }
        let mut out = Output::default();
        p.process(&batch, &mut out);
        assert_eq!(out.value(0), [76, 150]);
        assert_eq!(out.rejections()[0].reason, "2 bytes is not 2x1 RGB");
    }

    /// The filter byte of every row of a gray PNG.
    fn row_filters(png: &[u8], width: usize) -> Vec<u8> {
        // Signature, IHDR (25 bytes), then the one IDAT.
        let len = u32::from_be_bytes(png[33..37].try_into().unwrap()) as usize;
        let raw = fdeflate::decompress_to_vec(&png[41..41 + len]).unwrap();
        raw.chunks(width + 1).map(|row| row[0]).collect()
    }

    #[test]
    fn compression_setting_applies_to_image_files() {
        // A photo-like gradient: adaptive filtering picks Sub/Avg/Paeth
        // rows, `fastest` filters every row with Up.
        let (w, h) = (64u32, 48u32);
        let rgb: Vec<u8> = (0..w * h)
            .flat_map(|i| {
                let (x, y) = (i % w, i / w);
                [(x * 4) as u8, (y * 5) as u8, ((x + y) * 2) as u8]
            })
            .collect();
        let mut file = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut file, w, h);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut writer = enc.write_header().unwrap();
            writer.write_image_data(&rgb).unwrap();
        }
        let filters = |config: &str| {
            let mut p = converter(config);
            let mut encoded = Vec::new();
            p.convert(&file, &mut encoded).unwrap();
            // Twice: the second image reuses the first one's buffers.
            encoded.clear();
            p.convert(&file, &mut encoded).unwrap();
            row_filters(&encoded, w as usize)
        };
        let fastest = filters(r#"{"compression":"fastest"}"#);
        assert!(fastest.iter().all(|&f| f == 2), "{fastest:?}");
        let fast = filters(r#"{"compression":"fast"}"#);
        assert!(fast.iter().any(|&f| f != 2), "{fast:?}");
    }

    #[test]
    fn jpeg_output_and_bad_quality() {
        let mut p = converter(r#"{"output":"jpeg","quality":80}"#);
        let mut out = Vec::new();
        encode(&[0, 128, 255, 64], 2, 2, Encoding::Jpeg, 80, &mut out).unwrap();
        let (w, h) = p.convert(&out, &mut Vec::new()).unwrap();
        assert_eq!((w, h), (2, 2));
        assert!(Grayscale::new(r#"{"quality":0}"#).is_err());
    }

    /// Gray in one pass from Y Cb Cr is byte for byte the gray of
    /// zune-jpeg's RGB decoding, on every colour sample JPEG.
    #[test]
    fn jpeg_gray_in_one_pass_equals_the_gray_of_the_rgb_decoding() {
        use zune_core::bytestream::ZCursor;
        use zune_core::colorspace::ColorSpace;
        use zune_core::options::DecoderOptions;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/images");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let Ok(img) = decode(&bytes, u64::MAX) else {
                continue;
            };
            let Pixels::YCbCr(ycc) = &img.pixels else {
                continue;
            };
            let options = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::RGB);
            let rgb = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(&bytes[..]), options)
                .decode()
                .unwrap();
            let (mut want, mut got) = (Vec::new(), Vec::new());
            to_gray(&rgb, 3, &mut want);
            ycbcr_to_gray(ycc, &mut got);
            assert!(got == want, "{} differs", path.display());
            checked += 1;
        }
        assert!(
            checked >= 5,
            "only {checked} colour JPEGs among the samples"
        );
    }
}
