//! Writing results the way users' existing consumers expect: the
//! [`Format`] setting, numbers printed as Python prints them, and numbers
//! appended to JSON output without the formatting machinery of `write!`
//! (a plugin's output is often mostly numbers).

/// How a plugin writes its results: its `format` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object per result (the default).
    #[default]
    Json,
    /// The text the users' original ("seed") jobs printed, for the
    /// consumers that read it today.
    Seed,
}

mod int;

pub use int::Int;

/// Appends the decimal text of `n`.
///
/// ```
/// let mut buf = b"n=".to_vec();
/// weir_plugin::format::push_int(&mut buf, -1700000000123i64);
/// assert_eq!(buf, b"n=-1700000000123");
/// ```
#[inline]
pub fn push_int<I: Int>(buf: &mut Vec<u8>, n: I) {
    let (negative, magnitude) = n.sign_and_magnitude();
    int::push(buf, negative, magnitude);
}

/// Appends `x` as serde_json writes it: the shortest digits that read back
/// as the same float (`24.0`, `0.30000000000000004`, `1e16`), and `null`
/// for NaN and the infinities, which JSON cannot hold.
///
/// ```
/// let mut buf = Vec::new();
/// weir_plugin::format::push_json_float(&mut buf, 23.6);
/// weir_plugin::format::push_json_float(&mut buf, f64::NAN);
/// assert_eq!(buf, b"23.6null");
/// ```
#[inline]
pub fn push_json_float(buf: &mut Vec<u8>, x: f64) {
    if x.is_finite() {
        crate::bytes::append(buf, zmij::Buffer::new().format_finite(x).as_bytes());
    } else {
        buf.extend_from_slice(b"null");
    }
}

/// Formats `x` exactly as Python's `repr(float)` does: the shortest
/// digits that read back as the same float, a `.0` on integral values
/// (`24.0`, not `24`), and exponent notation below `1e-4` and from `1e16`
/// (`1e-05`, `1.5e+16`), `nan`, `inf`, `-inf`.
///
/// ```
/// use weir_plugin::format::python_float;
/// assert_eq!(python_float(23.6), "23.6");
/// assert_eq!(python_float(24.0), "24.0");
/// assert_eq!(python_float(0.1 + 0.2), "0.30000000000000004");
/// assert_eq!(python_float(1e16), "1e+16");
/// assert_eq!(python_float(0.00001), "1e-05");
/// ```
pub fn python_float(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    // Rust's `{:e}` is the shortest round-trip representation: d.ddde±x.
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("exponent is an integer");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if x < 0.0 { "-" } else { "" };
    if !(-4..16).contains(&exp) {
        let mut m = digits[..1].to_owned();
        if digits.len() > 1 {
            m.push('.');
            m.push_str(&digits[1..]);
        }
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{m}e{esign}{:02}", exp.abs());
    }
    let point = exp + 1; // digits before the decimal point
    let body = if point <= 0 {
        format!("0.{}{}", "0".repeat((-point) as usize), digits)
    } else if point as usize >= digits.len() {
        format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
    } else {
        format!(
            "{}.{}",
            &digits[..point as usize],
            &digits[point as usize..]
        )
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_numbers_match_serde_json() {
        for x in [
            0.0,
            -0.0,
            24.0,
            23.6795,
            0.1 + 0.2,
            1e16,
            1e-7,
            -1.5e300,
            5e-324,
            f64::NAN,
            f64::INFINITY,
        ] {
            let mut buf = Vec::new();
            push_json_float(&mut buf, x);
            assert_eq!(buf, serde_json::to_vec(&x).unwrap(), "{x:?}");
        }
        for n in [0i64, -1, 7, i64::MIN, i64::MAX] {
            let mut buf = Vec::new();
            push_int(&mut buf, n);
            assert_eq!(buf, n.to_string().as_bytes());
        }
    }

    #[test]
    fn matches_python_repr() {
        // Expected strings are what CPython 3.11 prints for repr(x).
        let cases: &[(f64, &str)] = &[
            (23.6795, "23.6795"),
            (864.35, "864.35"),
            (488.8, "488.8"),
            (3.0, "3.0"),
            (-2.5, "-2.5"),
            (100.0, "100.0"),
            (0.0001, "0.0001"),
            (0.00012, "0.00012"),
            (0.000012, "1.2e-05"),
            (1234567890123456.0, "1234567890123456.0"),
            (12345678901234567.0, "1.2345678901234568e+16"),
            (1e22, "1e+22"),
            (0.0047478887347541295, "0.0047478887347541295"),
            (1.0 / 3.0, "0.3333333333333333"),
            (2.0 / 3.0, "0.6666666666666666"),
            (-0.0, "-0.0"),
            (f64::NAN, "nan"),
            (f64::NEG_INFINITY, "-inf"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
        ];
        for (x, want) in cases {
            assert_eq!(python_float(*x), *want, "repr({x:?})");
        }
    }
}
