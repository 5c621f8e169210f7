//! Small byte-string helpers for hot paths in plugins.
//!
//! In the sandbox every function call and loop iteration carries the
//! host's deadline check, so comparing two short strings through `memcmp`
//! costs several times the comparison. These helpers stay inline and
//! loop-free for the short strings that keys and field names are.

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

#[cfg(test)]
mod tests {
    use super::*;

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
