//! A PNG writer for 8-bit grayscale images, written to run well as
//! WebAssembly.
//!
//! It writes the same bytes as the `png` crate's encoder with
//! `Filter::Adaptive` (or `Filter::Up`) and fdeflate's fast compressor:
//! one IHDR, one IDAT, IEND; each row filtered with the filter whose output
//! has the smallest sum of absolute (signed) bytes, ties going to the later
//! of Up, Sub, Avg, Paeth. The tests compare the output with the `png`
//! crate's byte for byte.
//!
//! Why not call the `png` crate: its row filter selection runs each filter
//! over the row separately, and sums absolute values into 64-bit
//! accumulators, which x86 does with one instruction (`psadbw`) and
//! WebAssembly does not have. Here the four candidate filters are computed in
//! one pass over 16-byte blocks with 16-bit per-lane sums, which LLVM turns
//! into `simd128` (and SSE2) vector code, and the compressed stream is
//! written straight into the output, without the intermediate copy.

use std::io::Write;

/// PNG filter type bytes.
const SUB: u8 = 1;
const UP: u8 = 2;
const AVG: u8 = 3;
const PAETH: u8 = 4;

/// Bytes per block in the vectorised loops.
const LANES: usize = 16;

/// How row filters are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowFilters {
    /// Per row, the filter with the smallest sum of absolute values.
    Adaptive,
    /// Every row filtered with Up (fastest).
    Up,
}

/// `(value as i8).unsigned_abs()`: the filter-selection cost of one byte.
#[inline(always)]
fn cost(v: u8) -> u8 {
    (v as i8).unsigned_abs()
}

/// `(a + b) / 2` without widening.
#[inline(always)]
fn average(a: u8, b: u8) -> u8 {
    (a & b) + ((a ^ b) >> 1)
}

/// The Paeth predictor on unsigned bytes only (the formulation from
/// fpnge): `c` outside `[min(a,b), max(a,b)]` can never be the nearest.
#[inline(always)]
fn paeth(a: u8, b: u8, c: u8) -> u8 {
    let pa = b.max(c) - b.min(c);
    let pb = a.max(c) - a.min(c);
    let pc = if (a < c) == (c < b) {
        pa.max(pb) - pa.min(pb)
    } else {
        u8::MAX
    };
    if pa <= pb && pa <= pc {
        a
    } else if pb <= pc {
        b
    } else {
        c
    }
}

/// The filtered value of `x` with left `a`, up `b`, up-left `c`.
#[inline(always)]
fn filtered(filter: u8, x: u8, a: u8, b: u8, c: u8) -> u8 {
    match filter {
        SUB => x.wrapping_sub(a),
        UP => x.wrapping_sub(b),
        AVG => x.wrapping_sub(average(a, b)),
        PAETH => x.wrapping_sub(paeth(a, b, c)),
        _ => x,
    }
}

/// Costs of Up, Sub, Avg and Paeth for one row (`prev` is the row above,
/// zeros for the first).
fn costs(prev: &[u8], cur: &[u8]) -> [u64; 4] {
    let n = cur.len();
    let mut total = [0u64; 4];
    if n == 0 {
        return total;
    }
    // The first byte has no left neighbour (a = c = 0).
    let (x0, b0) = (cur[0], prev[0]);
    let first = [
        x0.wrapping_sub(b0),
        x0,
        x0.wrapping_sub(b0 >> 1),
        x0.wrapping_sub(paeth(0, b0, 0)),
    ];
    for (t, v) in total.iter_mut().zip(first) {
        *t = u64::from(cost(v));
    }
    let (x, a, b, c) = (&cur[1..], &cur[..n - 1], &prev[1..], &prev[..n - 1]);
    let blocks = x.len() / LANES;
    // Per-lane 16-bit sums: at most 128 per block, flushed every 256 blocks.
    let mut lanes = [[0u16; LANES]; 4];
    for block in 0..blocks {
        let at = block * LANES;
        let x: &[u8; LANES] = x[at..at + LANES].try_into().unwrap();
        let a: &[u8; LANES] = a[at..at + LANES].try_into().unwrap();
        let b: &[u8; LANES] = b[at..at + LANES].try_into().unwrap();
        let c: &[u8; LANES] = c[at..at + LANES].try_into().unwrap();
        for j in 0..LANES {
            lanes[0][j] += u16::from(cost(x[j].wrapping_sub(b[j])));
            lanes[1][j] += u16::from(cost(x[j].wrapping_sub(a[j])));
            lanes[2][j] += u16::from(cost(x[j].wrapping_sub(average(a[j], b[j]))));
            lanes[3][j] += u16::from(cost(x[j].wrapping_sub(paeth(a[j], b[j], c[j]))));
        }
        if block % 256 == 255 {
            flush(&mut lanes, &mut total);
        }
    }
    flush(&mut lanes, &mut total);
    for i in blocks * LANES..x.len() {
        for (t, f) in total.iter_mut().zip([UP, SUB, AVG, PAETH]) {
            *t += u64::from(cost(filtered(f, x[i], a[i], b[i], c[i])));
        }
    }
    total
}

fn flush(lanes: &mut [[u16; LANES]; 4], total: &mut [u64; 4]) {
    for (l, t) in lanes.iter_mut().zip(total.iter_mut()) {
        *t += l.iter().map(|&v| u64::from(v)).sum::<u64>();
        *l = [0; LANES];
    }
}

/// Writes `cur` filtered with `filter` into `out` (same length).
fn apply(filter: u8, prev: &[u8], cur: &[u8], out: &mut [u8]) {
    let n = cur.len();
    if n == 0 {
        return;
    }
    out[0] = filtered(filter, cur[0], 0, prev[0], 0);
    let (x, a, b, c) = (&cur[1..], &cur[..n - 1], &prev[1..], &prev[..n - 1]);
    // One loop per filter so that each is a plain vector loop.
    let o = &mut out[1..];
    match filter {
        SUB => {
            for i in 0..x.len() {
                o[i] = x[i].wrapping_sub(a[i]);
            }
        }
        UP => {
            for i in 0..x.len() {
                o[i] = x[i].wrapping_sub(b[i]);
            }
        }
        AVG => {
            for i in 0..x.len() {
                o[i] = x[i].wrapping_sub(average(a[i], b[i]));
            }
        }
        _ => {
            for i in 0..x.len() {
                o[i] = x[i].wrapping_sub(paeth(a[i], b[i], c[i]));
            }
        }
    }
}

/// Chooses a row's filter, the `png` crate's way: the smallest cost, ties
/// to the later candidate, and a zero cost ends the search.
fn choose(prev: &[u8], cur: &[u8]) -> u8 {
    let mut best = (u64::MAX, 0);
    for (cost, filter) in costs(prev, cur).into_iter().zip([UP, SUB, AVG, PAETH]) {
        if cost <= best.0 {
            best = (cost, filter);
            if cost == 0 {
                break;
            }
        }
    }
    best.1
}

/// Appends a chunk (length, type, data, CRC).
fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// Largest chunk data a PNG allows.
const MAX_CHUNK: usize = i32::MAX as usize;

/// Appends an 8-bit grayscale PNG of `gray` (row by row, `width` ×
/// `height` bytes) to `out`.
pub fn encode(
    gray: &[u8],
    width: u32,
    height: u32,
    filters: RowFilters,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let (w, h) = (width as usize, height as usize);
    if w == 0 || h == 0 || width > i32::MAX as u32 || height > i32::MAX as u32 {
        return Err(format!("cannot write a {width}x{height} PNG"));
    }
    if gray.len() != w * h {
        return Err(format!(
            "{} bytes is not a {width}x{height} gray image",
            gray.len()
        ));
    }
    let io = |e: std::io::Error| format!("PNG encoding failed: {e}");
    out.extend_from_slice(b"\x89PNG\r\n\x1a\n");
    let mut ihdr = [0u8; 13];
    ihdr[..4].copy_from_slice(&width.to_be_bytes());
    ihdr[4..8].copy_from_slice(&height.to_be_bytes());
    ihdr[8] = 8; // bit depth
    ihdr[9] = 0; // grayscale; compression, filter, interlace methods 0
    chunk(out, b"IHDR", &ihdr);

    // IDAT: the length is patched in once the stream is written.
    let idat = out.len();
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(b"IDAT");
    let zeros = vec![0u8; w];
    let mut row = vec![0u8; w + 1];
    let mut z = fdeflate::Compressor::new(&mut *out).map_err(io)?;
    let mut prev: &[u8] = &zeros;
    for line in gray.chunks_exact(w) {
        let filter = match filters {
            RowFilters::Adaptive => choose(prev, line),
            RowFilters::Up => UP,
        };
        row[0] = filter;
        apply(filter, prev, line, &mut row[1..]);
        z.write_data(&row).map_err(io)?;
        prev = line;
    }
    z.finish().map_err(io)?;
    let mut len = out.len() - idat - 8;
    let raw = (w + 1) * h;
    if len > fdeflate::StoredOnlyCompressor::<()>::compressed_size(raw) {
        // Incompressible: stored blocks are smaller (as the png crate does).
        out.truncate(idat + 8);
        let mut stored =
            fdeflate::StoredOnlyCompressor::new(std::io::Cursor::new(Vec::new())).map_err(io)?;
        for line in gray.chunks_exact(w) {
            stored.write_data(&[0]).map_err(io)?;
            stored.write_data(line).map_err(io)?;
        }
        out.write_all(&stored.finish().map_err(io)?.into_inner())
            .map_err(io)?;
        len = out.len() - idat - 8;
    }
    if len > MAX_CHUNK {
        return Err(format!(
            "compressed image of {len} bytes does not fit one PNG chunk"
        ));
    }
    out[idat..idat + 4].copy_from_slice(&(len as u32).to_be_bytes());
    let crc = crc32fast::hash(&out[idat + 4..]);
    out.extend_from_slice(&crc.to_be_bytes());
    chunk(out, b"IEND", &[]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `png` crate's encoding of the same image.
    fn reference(gray: &[u8], w: u32, h: u32, filter: png::Filter) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_deflate_compression(png::DeflateCompression::FdeflateUltraFast);
        enc.set_filter(filter);
        let mut writer = enc.write_header().unwrap();
        writer.write_image_data(gray).unwrap();
        writer.finish().unwrap();
        out
    }

    fn image(w: usize, h: usize, seed: u32) -> Vec<u8> {
        // Smooth gradients with noise and flat runs: every filter wins
        // somewhere.
        let mut s = seed;
        (0..w * h)
            .map(|i| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let (x, y) = (i % w, i / w);
                match y % 5 {
                    0 => (x * 3 + y) as u8,
                    1 => 77,
                    2 => ((x + y) / 2) as u8 ^ ((s >> 29) as u8),
                    3 => (s >> 24) as u8,
                    _ => (x as u8).wrapping_mul(y as u8),
                }
            })
            .collect()
    }

    #[test]
    fn paeth_matches_the_specification() {
        for a in 0..=255u8 {
            for b in (0..=255u8).step_by(3) {
                for c in (0..=255u8).step_by(5) {
                    let p = i16::from(a) + i16::from(b) - i16::from(c);
                    let (pa, pb, pc) = (
                        (p - i16::from(a)).abs(),
                        (p - i16::from(b)).abs(),
                        (p - i16::from(c)).abs(),
                    );
                    let want = if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    };
                    assert_eq!(paeth(a, b, c), want, "{a} {b} {c}");
                }
            }
        }
    }

    #[test]
    fn output_is_the_png_crates_byte_for_byte() {
        // Widths around the block size and the 256-block flush.
        for (w, h) in [
            (1, 1),
            (1, 7),
            (16, 3),
            (17, 9),
            (33, 20),
            (4200, 6),
            (300, 41),
        ] {
            let gray = image(w, h, w as u32 * 31 + h as u32);
            let mut ours = Vec::new();
            encode(&gray, w as u32, h as u32, RowFilters::Adaptive, &mut ours).unwrap();
            assert_eq!(
                ours,
                reference(&gray, w as u32, h as u32, png::Filter::Adaptive),
                "{w}x{h} adaptive"
            );
            let mut up = Vec::new();
            encode(&gray, w as u32, h as u32, RowFilters::Up, &mut up).unwrap();
            assert_eq!(
                up,
                reference(&gray, w as u32, h as u32, png::Filter::Up),
                "{w}x{h} up"
            );
        }
    }

    #[test]
    fn incompressible_images_are_stored_like_the_png_crate_does() {
        let mut s = 9u32;
        let noise: Vec<u8> = (0..64 * 64)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 24) as u8
            })
            .collect();
        let mut ours = Vec::new();
        encode(&noise, 64, 64, RowFilters::Adaptive, &mut ours).unwrap();
        // Stored: larger than the 65 x 64 bytes of filtered rows.
        assert!(ours.len() > 65 * 64, "{}", ours.len());
        assert_eq!(ours, reference(&noise, 64, 64, png::Filter::Adaptive));
    }

    #[test]
    fn refuses_sizes_that_do_not_match() {
        let mut out = Vec::new();
        assert!(encode(&[1, 2, 3], 2, 2, RowFilters::Adaptive, &mut out).is_err());
        assert!(encode(&[], 0, 0, RowFilters::Adaptive, &mut out).is_err());
    }
}
