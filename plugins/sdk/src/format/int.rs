//! Decimal text of integers, eight digits at a time, without loops.
//!
//! A plugin's output is often mostly integers: 13-digit timestamps in
//! milliseconds, counts. The usual way to print a `u64` divides it by a
//! constant four digits at a time. Compilers turn a 64-bit division by a
//! constant into the high half of a 64 × 64-bit product, one instruction on
//! x86-64 and AArch64 but, in 32-bit WebAssembly, a call to the 128-bit
//! multiply helper `__multi3`, whose result goes through memory. Here a
//! number is cut into chunks of eight digits (one such division per chunk,
//! by 10^8, done in 32-bit WebAssembly with four 64-bit multiplies inline),
//! and the eight digits of a chunk are found together in the lanes of one
//! 64-bit word. No loop means no deadline check in the sandbox either.

/// An integer type that [`super::push_int`] writes.
pub trait Int: Copy {
    /// Whether the value is negative, and its magnitude.
    #[doc(hidden)]
    fn sign_and_magnitude(self) -> (bool, u64);
}

macro_rules! unsigned {
    ($($t:ty),*) => {$(
        impl Int for $t {
            #[inline(always)]
            fn sign_and_magnitude(self) -> (bool, u64) {
                (false, self as u64)
            }
        }
    )*};
}

macro_rules! signed {
    ($($t:ty),*) => {$(
        impl Int for $t {
            #[inline(always)]
            fn sign_and_magnitude(self) -> (bool, u64) {
                (self < 0, self.unsigned_abs() as u64)
            }
        }
    )*};
}

unsigned!(u8, u16, u32, u64, usize);
signed!(i8, i16, i32, i64, isize);

const E8: u64 = 100_000_000;
const E16: u64 = E8 * E8;
/// ASCII `0` in every byte.
const ZEROS: u64 = u64::from_le_bytes([b'0'; 8]);

/// Appends `-` when `negative`, then the digits of `n`.
#[inline]
pub(super) fn push(buf: &mut Vec<u8>, negative: bool, n: u64) {
    // A sign, then at most 4 + 8 + 8 digits; every store below writes a
    // whole word of 8 bytes, the last ending at most 21 bytes in.
    buf.reserve(24);
    let len = buf.len();
    // SAFETY: `reserve` made room for 24 bytes after `len`. Each store is
    // of 8 bytes at an offset that is at most 13 (see above), and exactly
    // the bytes up to `len + written` are initialised digits or the sign.
    unsafe {
        let start = buf.as_mut_ptr().add(len);
        let sign = usize::from(negative);
        // Written either way: without a sign, the digits overwrite it.
        *start = b'-';
        let dst = start.add(sign);
        let written = if n < E8 {
            leading(dst, n as u32)
        } else if n < E16 {
            let (high, low) = div_rem_e8(n);
            let k = leading(dst, high as u32);
            store(dst.add(k), digits(low));
            k + 8
        } else {
            let (high, low) = div_rem_e8(n);
            let (top, middle) = div_rem_e8(high);
            let k = leading(dst, top as u32);
            store(dst.add(k), digits(middle));
            store(dst.add(k + 8), digits(low));
            k + 16
        };
        buf.set_len(len + sign + written);
    }
}

/// Writes `n` (below 10^8) without leading zeros, as 8 bytes of which the
/// first returned count are its digits.
///
/// # Safety
/// `dst` must be valid for 8 bytes of writes.
#[inline(always)]
unsafe fn leading(dst: *mut u8, n: u32) -> usize {
    let d = digits(n);
    // The most significant digit is the lowest byte: the zero bytes at the
    // bottom are leading zeros. Zero itself keeps its last digit.
    let zeros = ((d | 1 << 56).trailing_zeros() / 8) as usize;
    // SAFETY: the caller's promise.
    unsafe { store(dst, d >> (8 * zeros)) };
    8 - zeros
}

/// Stores the digit values of `d` as ASCII, lowest byte first.
///
/// # Safety
/// `dst` must be valid for 8 bytes of writes.
#[inline(always)]
unsafe fn store(dst: *mut u8, d: u64) {
    // SAFETY: the caller's promise; unaligned store.
    unsafe {
        dst.cast::<[u8; 8]>()
            .write_unaligned((d + ZEROS).to_le_bytes())
    };
}

/// The eight decimal digits of `n` (below 10^8, leading zeros included) as
/// the bytes of a word, most significant digit in the lowest byte.
#[inline(always)]
fn digits(n: u32) -> u64 {
    // Two 32-bit lanes of four digits, the first four in the low lane.
    let x = u64::from(n / 10_000) | u64::from(n % 10_000) << 32;
    // Each lane divided by 100 (v * 10486 >> 20 is v / 100 for v < 10^4,
    // and stays inside its lane): four 16-bit lanes of two digits each.
    let hundreds = ((x * 10_486) >> 20) & 0x0000_007F_0000_007F;
    let x = hundreds | (x - hundreds * 100) << 16;
    // Each 16-bit lane divided by 10 (v * 103 >> 10 is v / 10 for
    // v < 100): eight bytes of one digit each.
    let tens = ((x * 103) >> 10) & 0x000F_000F_000F_000F;
    tens | (x - tens * 10) << 8
}

/// `n` divided by 10^8, and the remainder.
#[inline(always)]
fn div_rem_e8(n: u64) -> (u64, u32) {
    #[cfg(target_arch = "wasm32")]
    let q = div_e8_by_multiplying(n);
    #[cfg(not(target_arch = "wasm32"))]
    let q = n / E8;
    (q, (n - q * E8) as u32)
}

/// `n / 10^8` as the high half of a product built from 32-bit halves:
/// 10^8 is 2^8 · 5^8, and `(n >> 8) · M >> (64 + 10)`, with `M` the
/// rounded-up 2^74 / 5^8, is the quotient for every `n >> 8` below 2^56.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
#[inline(always)]
fn div_e8_by_multiplying(n: u64) -> u64 {
    const M: u64 = 0x00ab_cc77_1184_61cf;
    let a = n >> 8;
    let (a0, a1) = (a & 0xFFFF_FFFF, a >> 32);
    let (m0, m1) = (M & 0xFFFF_FFFF, M >> 32);
    let low = a0 * m0;
    let cross1 = a1 * m0;
    let cross2 = a0 * m1;
    let carry = ((low >> 32) + (cross1 & 0xFFFF_FFFF) + (cross2 & 0xFFFF_FFFF)) >> 32;
    let high = a1 * m1 + (cross1 >> 32) + (cross2 >> 32) + carry;
    high >> 10
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(negative: bool, n: u64) -> String {
        let mut buf = b"x".to_vec();
        push(&mut buf, negative, n);
        String::from_utf8(buf).unwrap()
    }

    /// Every power of ten and its neighbours, the ends of the integer
    /// types, and a spread of others.
    fn samples() -> Vec<u64> {
        let mut v = vec![0, 1, 9, u64::MAX, u64::MAX - 1, i64::MAX as u64, 1 << 63];
        let mut p = 1u64;
        while let Some(next) = p.checked_mul(10) {
            p = next;
            v.extend([p - 1, p, p + 1, p / 2, p * 9 / 10 + 7]);
        }
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.push(x >> (x % 64));
        }
        v
    }

    #[test]
    fn digits_are_those_std_prints() {
        for n in samples() {
            assert_eq!(text(false, n), format!("x{n}"));
            assert_eq!(text(true, n), format!("x-{n}"));
        }
    }

    #[test]
    fn every_eight_digit_chunk_is_right() {
        for n in (0..E8 as u32).step_by(997).chain([E8 as u32 - 1]) {
            let d = digits(n);
            assert_eq!((d + ZEROS).to_le_bytes(), *format!("{n:08}").as_bytes());
        }
    }

    #[test]
    fn the_sandbox_division_is_exact() {
        for n in samples() {
            assert_eq!(div_e8_by_multiplying(n), n / E8, "{n}");
            // The largest remainders, where a rounding error would show.
            let q = n / E8;
            for m in [Some(q * E8), (q * E8).checked_add(E8 - 1)]
                .into_iter()
                .flatten()
            {
                assert_eq!(div_e8_by_multiplying(m), m / E8, "{m}");
            }
        }
    }
}
