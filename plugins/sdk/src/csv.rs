//! Splitting one CSV record into fields.
//!
//! Fields are separated by commas; a field may be quoted with `"`, and `""`
//! inside quotes is a literal quote. Unquoted fields are borrowed from the
//! line, quoted ones only allocate when they contain `""`.
//!
//! ```
//! use std::borrow::Cow;
//! let mut fields = Vec::new();
//! weir_plugin::csv::split(br#""1","2015-02-04 17:51:00",23.18,"say ""hi""""#, &mut fields).unwrap();
//! assert_eq!(fields[1].as_ref(), b"2015-02-04 17:51:00");
//! assert_eq!(fields[3].as_ref(), br#"say "hi""#);
//! ```

use std::borrow::Cow;

use crate::bytes::find;

/// Splits `line` (without its line ending; a trailing `\r` is dropped) into
/// `out`, replacing its contents.
pub fn split<'a>(line: &'a [u8], out: &mut Vec<Cow<'a, [u8]>>) -> Result<(), String> {
    out.clear();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut i = 0;
    loop {
        if line.get(i) == Some(&b'"') {
            let start = i + 1;
            let mut j = start;
            let mut owned: Option<Vec<u8>> = None;
            loop {
                // To the next quote: the field's end, or the first of `""`.
                let Some(p) = find(&line[j..], b'"') else {
                    return Err("unterminated quoted field".into());
                };
                if let Some(buf) = owned.as_mut() {
                    buf.extend_from_slice(&line[j..j + p]);
                }
                j += p;
                if line.get(j + 1) != Some(&b'"') {
                    break;
                }
                let buf = owned.get_or_insert_with(|| line[start..j].to_vec());
                buf.push(b'"');
                j += 2;
            }
            let mut field = match owned {
                Some(buf) => Cow::Owned(buf),
                None => Cow::Borrowed(&line[start..j]),
            };
            i = j + 1;
            // Text after the closing quote, up to the next comma, belongs to
            // the field (lenient, like most CSV readers).
            let tail_end = find(&line[i..], b',').map_or(line.len(), |p| i + p);
            if tail_end > i {
                field.to_mut().extend_from_slice(&line[i..tail_end]);
            }
            out.push(field);
            i = tail_end;
        } else {
            let end = find(&line[i..], b',').map_or(line.len(), |p| i + p);
            out.push(Cow::Borrowed(&line[i..end]));
            i = end;
        }
        if i >= line.len() {
            return Ok(());
        }
        i += 1; // the comma
        if i == line.len() {
            out.push(Cow::Borrowed(&line[i..]));
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(line: &str) -> Vec<String> {
        let mut out = Vec::new();
        split(line.as_bytes(), &mut out).unwrap();
        out.iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect()
    }

    #[test]
    fn splits_quoted_and_plain_fields() {
        assert_eq!(fields("a,\"b,\"\"c\"\"\",,d\r"), ["a", "b,\"c\"", "", "d"]);
        assert_eq!(fields("x,"), ["x", ""]);
        assert_eq!(fields(""), [""]);
        assert_eq!(fields("\"广西\",2"), ["广西", "2"]);
        // Long fields, quotes at and across the eight-byte steps.
        assert_eq!(
            fields("\"2015-02-04 17:51:00\",23.18,\"ab\"\"cdefgh\"\"ijklmnop\"\"\",\"x\"tail,last"),
            [
                "2015-02-04 17:51:00",
                "23.18",
                "ab\"cdefgh\"ijklmnop\"",
                "xtail",
                "last"
            ]
        );
        assert!(split(b"\"0123456789\"\"", &mut Vec::new()).is_err());
        let mut out = Vec::new();
        assert!(split(b"\"open", &mut out).is_err());
    }

    #[test]
    fn unescaped_quoted_fields_are_borrowed() {
        let mut out = Vec::new();
        split(b"\"abc\",\"a\"\"b\"", &mut out).unwrap();
        assert!(matches!(out[0], Cow::Borrowed(_)));
        assert!(matches!(out[1], Cow::Owned(_)));
    }
}
