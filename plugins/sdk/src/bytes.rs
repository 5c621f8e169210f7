//! Small byte-string helpers for hot paths in plugins.
//!
//! In the sandbox every function call and loop iteration carries the
//! host's deadline check, so comparing two short strings through `memcmp`
//! costs several times the comparison, and a copy of unknown length
//! compiles to `memory.copy`, which wasmtime runs as a call into the host
//! (native code inlines short copies). These helpers stay inline and
//! loop-free for the short strings that keys, field names and formatted
//! numbers are.

/// Whether `a` and `b` are equal: without a call to `memcmp` or a loop for
/// strings of up to 16 bytes, where two overlapping loads compare each
/// side.
///
/// ```
/// assert!(weir_plugin::bytes::same(b"gender", b"gender"));
/// assert!(!weir_plugin::bytes::same(b"gender", b"genres"));
/// ```
#[inline(always)]
pub fn same(a: &[u8], b: &[u8]) -> bool {
    fn part<const N: usize>(s: &[u8], at: usize) -> [u8; N] {
        s[at..at + N].try_into().expect("in bounds")
    }
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0 => true,
        1 => a[0] == b[0],
        2..4 => part::<2>(a, 0) == part::<2>(b, 0) && part::<2>(a, n - 2) == part::<2>(b, n - 2),
        4..8 => part::<4>(a, 0) == part::<4>(b, 0) && part::<4>(a, n - 4) == part::<4>(b, n - 4),
        8..=16 => part::<8>(a, 0) == part::<8>(b, 0) && part::<8>(a, n - 8) == part::<8>(b, n - 8),
        _ => a == b,
    }
}

/// `0x01` in every byte of a word: with [`HIGHS`], the constants of the
/// eight-bytes-per-step scans.
pub(crate) const ONES: u64 = 0x0101_0101_0101_0101;
/// `0x80` in every byte of a word.
pub(crate) const HIGHS: u64 = 0x8080_8080_8080_8080;

/// `c` in every byte of a word.
#[inline(always)]
pub(crate) const fn every(c: u8) -> u64 {
    ONES * c as u64
}

/// The high bit set in each zero byte of `word`. The lowest set bit marks
/// the first zero byte exactly; higher ones may be borrows from it.
#[inline(always)]
pub(crate) const fn zero_bytes(word: u64) -> u64 {
    word.wrapping_sub(ONES) & !word & HIGHS
}

/// The index of the first `c` in `s`, like `iter().position`, but looking
/// at eight bytes per step: in the sandbox each loop iteration carries a
/// deadline check, so a byte-by-byte search pays one per byte.
///
/// ```
/// assert_eq!(weir_plugin::bytes::find(b"2015-02-04,23.18", b','), Some(10));
/// assert_eq!(weir_plugin::bytes::find(b"no comma", b','), None);
/// ```
#[inline(always)]
pub fn find(s: &[u8], c: u8) -> Option<usize> {
    let mut i = 0;
    while let Some(chunk) = s.get(i..i + 8) {
        let hit = zero_bytes(u64::from_le_bytes(chunk.try_into().expect("8 bytes")) ^ every(c));
        if hit != 0 {
            return Some(i + (hit.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    s[i..].iter().position(|&b| b == c).map(|p| i + p)
}

/// Appends `s` to `buf` like `extend_from_slice`, but copies strings of up
/// to 64 bytes with two overlapping fixed-size moves instead of a
/// `memory.copy` (in WebAssembly, a call into the host per copy: output
/// built piece by piece made hundreds of them per batch).
///
/// ```
/// let mut buf = b"{\"n\":".to_vec();
/// weir_plugin::bytes::append(&mut buf, b"12345");
/// assert_eq!(buf, b"{\"n\":12345");
/// ```
#[inline(always)]
pub fn append(buf: &mut Vec<u8>, s: &[u8]) {
    /// Copies `s` (`N <= s.len() <= 2 * N`) to `dst` as its first and
    /// last `N` bytes.
    ///
    /// # Safety
    /// `dst` must be valid for `s.len()` bytes of writes.
    #[inline(always)]
    unsafe fn ends<const N: usize>(s: &[u8], dst: *mut u8) {
        let n = s.len();
        let head: [u8; N] = s[..N].try_into().expect("N <= len");
        let tail: [u8; N] = s[n - N..].try_into().expect("N <= len");
        // SAFETY: the caller reserved `n` bytes at `dst`; both stores end
        // within them (N <= n).
        unsafe {
            dst.cast::<[u8; N]>().write_unaligned(head);
            dst.add(n - N).cast::<[u8; N]>().write_unaligned(tail);
        }
    }
    let n = s.len();
    if n > 64 {
        buf.extend_from_slice(s);
        return;
    }
    buf.reserve(n);
    let len = buf.len();
    // SAFETY: `reserve` made room for `n` more bytes after `len`; each arm
    // writes exactly bytes `len..len + n`, which are then initialised.
    unsafe {
        let dst = buf.as_mut_ptr().add(len);
        match n {
            0 => {}
            1 => *dst = s[0],
            2..4 => ends::<2>(s, dst),
            4..8 => ends::<4>(s, dst),
            8..16 => ends::<8>(s, dst),
            16..=32 => ends::<16>(s, dst),
            _ => ends::<32>(s, dst),
        }
        buf.set_len(len + n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_agrees_with_position() {
        let text = b"a,bc\",,\x80\xff,0123456789abcdef,,\"\"x,yz\x01\x81,";
        for start in 0..text.len() {
            for end in start..=text.len() {
                let s = &text[start..end];
                for c in [b',', b'"', b'x', 0x80, 0x81, 0x01, 0x00] {
                    assert_eq!(find(s, c), s.iter().position(|&b| b == c), "{c} in {s:?}");
                }
            }
        }
    }

    #[test]
    fn append_agrees_with_extend_from_slice() {
        let text: Vec<u8> = (0..70u8).map(|i| b'a' + i % 26).collect();
        for start in [0usize, 1, 7] {
            for n in 0..=text.len() {
                let mut buf = text[..start].to_vec();
                append(&mut buf, &text[..n]);
                let mut want = text[..start].to_vec();
                want.extend_from_slice(&text[..n]);
                assert_eq!(buf, want, "start {start}, {n} bytes");
            }
        }
    }

    #[test]
    fn agrees_with_slice_equality() {
        let words = [
            "",
            "a",
            "ab",
            "abc",
            "abcd",
            "abcde",
            "gender",
            "abcdefgh",
            "abcdefghijklmnop",
            "abcdefghijklmnopq",
        ];
        for x in words {
            for y in words {
                assert_eq!(same(x.as_bytes(), y.as_bytes()), x == y, "{x} {y}");
                let mut z = y.as_bytes().to_vec();
                if let Some(last) = z.last_mut() {
                    *last ^= 1;
                    assert!(!same(y.as_bytes(), &z), "{y}");
                    z[0] ^= 1;
                }
            }
        }
    }
}
