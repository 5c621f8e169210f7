//! A PNG reader for the common case, written to run well as WebAssembly:
//! 8-bit, non-interlaced gray, gray+alpha, RGB and RGBA images. Everything
//! else (palettes, other bit depths, interlacing) is left to the `png`
//! crate ([`Reader::decode`] returns `Ok(None)`).
//!
//! Why not the `png` crate for these too:
//! - It reconstructs Paeth-filtered rows with a branch-free formulation on
//!   x86-64 only; everywhere else, WebAssembly included, it takes a
//!   branching one that runs at under half the speed. Here one branch-free
//!   formulation serves every target, and rows are reconstructed as soon as
//!   they are inflated, straight into the output buffer.
//! - It checks the CRC-32 of every chunk and not the zlib stream's
//!   Adler-32. Without a carry-less multiply, CRC-32 is table lookups in
//!   WebAssembly (a tenth of the whole job's time there), while Adler-32 is
//!   vector code. This reader checks what it uses: the IHDR chunk's CRC and
//!   the Adler-32 of the inflated image data (which also catches a damaged
//!   IDAT); the contents of other chunks are not read, so their CRCs are not
//!   computed.
//!
//! The tests compare the pixels with the `png` crate's on images using every
//! filter type and colour type.

/// A decoded image.
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes per pixel: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA.
    pub channels: usize,
    /// Pixels, row after row.
    pub pixels: Vec<u8>,
}

/// Why a PNG was not decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The file is damaged: the reason.
    Corrupt(String),
    /// `check` refused the size: its reason.
    Size(String),
}

impl From<String> for Refused {
    fn from(reason: String) -> Self {
        Refused::Corrupt(reason)
    }
}

impl From<&str> for Refused {
    fn from(reason: &str) -> Self {
        Refused::Corrupt(reason.into())
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Splits the chunk at `at` of `file`: its type, its data and where the
/// next chunk starts. The CRC is checked only if `check_crc`.
fn chunk(file: &[u8], at: usize, check_crc: bool) -> Result<(&[u8], &[u8], usize), String> {
    let rest = &file[at..];
    if rest.len() < 12 {
        return Err("truncated chunk header".into());
    }
    let len = be32(rest) as usize;
    let name = || String::from_utf8_lossy(&rest[4..8]).into_owned();
    if len > i32::MAX as usize || rest.len() - 12 < len {
        return Err(format!("{} chunk is truncated", name()));
    }
    if check_crc && crc32fast::hash(&rest[4..8 + len]) != be32(&rest[8 + len..]) {
        return Err(format!("CRC error in the {} chunk", name()));
    }
    Ok((&rest[4..8], &rest[8..8 + len], at + 12 + len))
}

/// Bytes inflated ahead of the rows reconstructed so far: small enough to
/// stay in cache, large enough to keep calls to the inflater few.
const WINDOW: usize = 64 * 1024;

/// A PNG reader; keeps its inflate buffer from image to image.
#[derive(Debug, Default)]
pub struct Reader {
    /// Inflated rows (filter byte + row), the whole image.
    raw: Vec<u8>,
}

/// Where row reconstruction stands.
struct Rows {
    stride: usize,
    channels: usize,
    done: usize,
    zeros: Vec<u8>,
}

impl Rows {
    /// Reconstructs every complete row of `raw[..inflated]` not yet done.
    fn advance(&mut self, raw: &[u8], inflated: usize, out: &mut [u8]) -> Result<(), String> {
        let s = self.stride;
        while (self.done + 1) * (s + 1) <= inflated {
            let row = self.done;
            let src = &raw[row * (s + 1)..(row + 1) * (s + 1)];
            let (above, rest) = out.split_at_mut(row * s);
            let prev = if row == 0 {
                &self.zeros[..]
            } else {
                &above[(row - 1) * s..]
            };
            let dst = &mut rest[..s];
            match self.channels {
                1 => unfilter_row::<1>(src[0], &src[1..], prev, dst),
                2 => unfilter_row::<2>(src[0], &src[1..], prev, dst),
                3 => unfilter_row::<3>(src[0], &src[1..], prev, dst),
                _ => unfilter_row::<4>(src[0], &src[1..], prev, dst),
            }
            .map_err(|e| format!("row {row}: {e}"))?;
            self.done += 1;
        }
        Ok(())
    }
}

/// Decodes `file` with a one-off [`Reader`].
pub fn decode(
    file: &[u8],
    check: impl Fn(u32, u32) -> Result<(), String>,
    buf: Vec<u8>,
) -> Result<Option<Decoded>, Refused> {
    Reader::default().decode(file, check, buf)
}

impl Reader {
    /// Decodes `file` (which starts with the PNG signature) if it is an
    /// 8-bit, non-interlaced gray, gray+alpha, RGB or RGBA image;
    /// `Ok(None)` for every other kind. `check` sees the width and height
    /// before anything is allocated and may refuse them. `buf` is reused
    /// for the pixels.
    pub fn decode(
        &mut self,
        file: &[u8],
        check: impl Fn(u32, u32) -> Result<(), String>,
        buf: Vec<u8>,
    ) -> Result<Option<Decoded>, Refused> {
        let (kind, ihdr, mut at) = chunk(file, 8, true)?;
        if kind != b"IHDR" || ihdr.len() != 13 {
            return Err("the first chunk is not a 13-byte IHDR".into());
        }
        let (width, height) = (be32(ihdr), be32(&ihdr[4..]));
        let channels = match ihdr[9] {
            0 => 1,
            4 => 2,
            2 => 3,
            6 => 4,
            _ => return Ok(None),
        };
        if ihdr[8] != 8 || ihdr[12] != 0 {
            return Ok(None);
        }
        if ihdr[10] != 0 || ihdr[11] != 0 {
            return Err("unknown compression or filter method".into());
        }
        if width == 0 || height == 0 {
            return Err(format!("invalid size {width}x{height}").into());
        }
        check(width, height).map_err(Refused::Size)?;
        let stride = width as usize * channels;
        let raw_len = (stride + 1) * height as usize;
        // The inflater overwrites what it uses: only grow, never clear.
        if self.raw.len() < raw_len {
            self.raw.resize(raw_len, 0);
        }
        let raw = &mut self.raw[..raw_len];
        let mut pixels = buf;
        pixels.resize(stride * height as usize, 0);
        let mut rows = Rows {
            stride,
            channels,
            done: 0,
            zeros: vec![0; stride],
        };
        let mut inflater = fdeflate::Decompressor::new();
        let mut inflated = 0;
        let mut seen_idat = false;
        loop {
            let next = if at == file.len() {
                None
            } else {
                Some(chunk(file, at, false)?)
            };
            match next {
                Some((b"IDAT", data, next)) => {
                    at = next;
                    seen_idat = true;
                    let mut input = data;
                    while !input.is_empty() && !inflater.is_done() {
                        let limit = (inflated + WINDOW).min(raw_len);
                        let (used, out) = inflater
                            .read(input, &mut raw[..limit], inflated, false)
                            .map_err(|e| format!("corrupt image data: {e:?}"))?;
                        input = &input[used..];
                        inflated += out;
                        if used == 0 && out == 0 {
                            return Err(if limit == raw_len {
                                "more image data than the size says".into()
                            } else {
                                "corrupt image data: no progress".into()
                            });
                        }
                        rows.advance(raw, inflated, &mut pixels)?;
                    }
                    if inflater.is_done() {
                        break;
                    }
                }
                Some((_, _, next)) if !seen_idat => at = next,
                _ if !seen_idat => return Err("no image data (IDAT)".into()),
                _ => {
                    // The image data ended: let the inflater finish its input.
                    while !inflater.is_done() && inflated < raw_len {
                        let limit = (inflated + WINDOW).min(raw_len);
                        let (_, out) = inflater
                            .read(&[], &mut raw[..limit], inflated, true)
                            .map_err(|e| format!("image data is truncated: {e:?}"))?;
                        inflated += out;
                        rows.advance(raw, inflated, &mut pixels)?;
                        if out == 0 {
                            break;
                        }
                    }
                    if !inflater.is_done() {
                        return Err("image data is truncated".into());
                    }
                    break;
                }
            }
        }
        if inflated != raw_len {
            return Err(format!("image data is truncated ({inflated} of {raw_len} bytes)").into());
        }
        rows.advance(raw, inflated, &mut pixels)?;
        Ok(Some(Decoded {
            width,
            height,
            channels,
            pixels,
        }))
    }
}

/// The branch-free Paeth predictor on 16-bit values (stb_image's
/// formulation: the same result as the specification's).
#[inline(always)]
fn paeth(a: i16, b: i16, c: i16) -> i16 {
    let thresh = c * 3 - (a + b);
    let lo = a.min(b);
    let hi = a.max(b);
    let t0 = if hi <= thresh { lo } else { c };
    if thresh <= lo { hi } else { t0 }
}

/// Reconstructs one row: `dst[i] = src[i] + predictor`.
fn unfilter_row<const BPP: usize>(
    filter: u8,
    src: &[u8],
    prev: &[u8],
    dst: &mut [u8],
) -> Result<(), String> {
    match filter {
        0 => dst.copy_from_slice(src),
        1 => {
            let mut left = [0u8; BPP];
            for (d, s) in dst.chunks_exact_mut(BPP).zip(src.chunks_exact(BPP)) {
                for i in 0..BPP {
                    left[i] = s[i].wrapping_add(left[i]);
                }
                d.copy_from_slice(&left);
            }
        }
        2 => {
            for ((d, &s), &p) in dst.iter_mut().zip(src).zip(prev) {
                *d = s.wrapping_add(p);
            }
        }
        3 => {
            let mut left = [0u8; BPP];
            for ((d, s), p) in dst
                .chunks_exact_mut(BPP)
                .zip(src.chunks_exact(BPP))
                .zip(prev.chunks_exact(BPP))
            {
                for i in 0..BPP {
                    let avg = ((u16::from(left[i]) + u16::from(p[i])) >> 1) as u8;
                    left[i] = s[i].wrapping_add(avg);
                }
                d.copy_from_slice(&left);
            }
        }
        4 => {
            let mut left = [0i16; BPP];
            let mut up_left = [0i16; BPP];
            for ((d, s), p) in dst
                .chunks_exact_mut(BPP)
                .zip(src.chunks_exact(BPP))
                .zip(prev.chunks_exact(BPP))
            {
                for i in 0..BPP {
                    let up = i16::from(p[i]);
                    let v = s[i].wrapping_add(paeth(left[i], up, up_left[i]) as u8);
                    d[i] = v;
                    left[i] = i16::from(v);
                    up_left[i] = up;
                }
            }
        }
        other => return Err(format!("unknown filter type {other}")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(_: u32, _: u32) -> Result<(), String> {
        Ok(())
    }

    /// Encodes with the `png` crate.
    fn png(pixels: &[u8], w: u32, h: u32, color: png::ColorType, filter: png::Filter) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(color);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_filter(filter);
        enc.set_compression(png::Compression::Balanced);
        let mut writer = enc.write_header().unwrap();
        writer.write_image_data(pixels).unwrap();
        writer.finish().unwrap();
        out
    }

    /// The `png` crate's decoding.
    fn reference(file: &[u8]) -> Vec<u8> {
        let mut reader = png::Decoder::new(std::io::Cursor::new(file))
            .read_info()
            .unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let frame = reader.next_frame(&mut buf).unwrap();
        buf.truncate(frame.buffer_size());
        buf
    }

    fn pixels(n: usize, seed: u32) -> Vec<u8> {
        let mut s = seed;
        (0..n)
            .map(|i| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                if i % 7 < 3 {
                    (i / 5) as u8
                } else {
                    (s >> 25) as u8
                }
            })
            .collect()
    }

    #[test]
    fn pixels_equal_the_png_crates_for_every_filter_and_colour_type() {
        use png::ColorType::*;
        for (color, channels) in [(Grayscale, 1), (GrayscaleAlpha, 2), (Rgb, 3), (Rgba, 4)] {
            for filter in [
                png::Filter::NoFilter,
                png::Filter::Sub,
                png::Filter::Up,
                png::Filter::Avg,
                png::Filter::Paeth,
                png::Filter::Adaptive,
            ] {
                for (w, h) in [(1u32, 1u32), (5, 3), (37, 21)] {
                    let px = pixels(w as usize * h as usize * channels, w * 7 + h);
                    let file = png(&px, w, h, color, filter);
                    let got = decode(&file, ok, Vec::new()).unwrap().unwrap();
                    assert_eq!(got.pixels, px, "{color:?} {filter:?} {w}x{h}");
                    assert_eq!(got.pixels, reference(&file));
                    assert_eq!((got.width, got.height, got.channels), (w, h, channels));
                }
            }
        }
    }

    #[test]
    fn image_data_split_over_many_idat_chunks_is_read() {
        let px = pixels(61 * 17 * 4, 3);
        let file = png(&px, 61, 17, png::ColorType::Rgba, png::Filter::Adaptive);
        // Re-chunk the one IDAT into pieces of 7 bytes (and an empty one).
        let idat = 8 + 25;
        let len = be32(&file[idat..]) as usize;
        let mut split = file[..idat].to_vec();
        let mut pieces: Vec<&[u8]> = file[idat + 8..idat + 8 + len].chunks(7).collect();
        pieces.insert(3, &[]);
        for piece in pieces {
            split.extend_from_slice(&(piece.len() as u32).to_be_bytes());
            let at = split.len();
            split.extend_from_slice(b"IDAT");
            split.extend_from_slice(piece);
            let crc = crc32fast::hash(&split[at..]);
            split.extend_from_slice(&crc.to_be_bytes());
        }
        split.extend_from_slice(&file[idat + 12 + len..]);
        assert_eq!(reference(&split), px);
        let got = decode(&split, ok, Vec::new()).unwrap().unwrap();
        assert_eq!(got.pixels, px);
    }

    #[test]
    fn other_kinds_are_left_to_the_png_crate() {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, 2, 1);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_palette(vec![0, 0, 0, 255, 255, 255]);
        let mut writer = enc.write_header().unwrap();
        writer.write_image_data(&[0, 1]).unwrap();
        writer.finish().unwrap();
        assert_eq!(decode(&out, ok, Vec::new()), Ok(None));
    }

    #[test]
    fn damage_is_reported() {
        let px = pixels(40 * 30 * 3, 5);
        let file = png(&px, 40, 30, png::ColorType::Rgb, png::Filter::Paeth);
        let err = |f: &[u8]| match decode(f, ok, Vec::new()) {
            Err(Refused::Corrupt(reason)) => reason,
            other => panic!("{other:?}"),
        };
        assert!(err(&file[..file.len() / 2]).contains("truncated"));
        // Any damaged byte of the image data is caught: by the inflater or
        // by the Adler-32 of what it inflated (the file has one IDAT, after
        // the signature and IHDR).
        let idat = 8 + 25;
        let len = be32(&file[idat..]) as usize;
        for at in idat + 8..idat + 8 + len {
            for bit in [0x01, 0x10, 0x80] {
                let mut damaged = file.clone();
                damaged[at] ^= bit;
                // `err` panics unless it is refused as corrupt.
                err(&damaged);
            }
        }
        let mut bad_header = file.clone();
        bad_header[20] ^= 1;
        assert_eq!(err(&bad_header), "CRC error in the IHDR chunk");
        let refused = decode(&file, |w, h| Err(format!("{w}x{h} too big")), Vec::new());
        assert_eq!(refused, Err(Refused::Size("40x30 too big".into())));
    }
}
