//! `${VAR}` and `${VAR:-default}` in pipeline files, expanded from the
//! environment in every string value (`$$` is a literal `$`).

use toml::Spanned;
use toml::de::DeValue;

use super::diagnostic::Diagnostics;

/// Replaces `${VAR}` (and `${VAR:-default}`) in every string value; `$$` is
/// a literal `$`.
pub(super) fn interpolate(
    value: &mut Spanned<DeValue>,
    env: &dyn Fn(&str) -> Option<String>,
    diag: &mut Diagnostics<'_>,
) {
    let span = value.span();
    match value.get_mut() {
        DeValue::String(s) if s.contains('$') => match substitute(s, env) {
            Ok(new) => *s = new.into(),
            Err(msg) => diag.at(span, msg),
        },
        DeValue::Array(items) => {
            for item in items.iter_mut() {
                interpolate(item, env, diag);
            }
        }
        DeValue::Table(t) => {
            for (_, v) in t.iter_mut() {
                interpolate(v, env, diag);
            }
        }
        _ => {}
    }
}

/// Expands environment references in one string.
pub fn substitute(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unterminated `${{` in {text:?}"))?;
            let inner = &body[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("invalid variable name `{name}` in {text:?}"));
            }
            match (env(name), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!(
                        "environment variable `{name}` is not set (use `${{{name}:-default}}` for a default)"
                    ));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "HOME_DIR").then(|| "/home/x".to_owned())
    }

    #[test]
    fn substitution() {
        assert_eq!(substitute("${HOME_DIR}/a", &env).unwrap(), "/home/x/a");
        assert_eq!(substitute("$${HOME_DIR}", &env).unwrap(), "${HOME_DIR}");
        assert_eq!(substitute("${NOPE:-d}", &env).unwrap(), "d");
        assert!(
            substitute("${NOPE}", &env)
                .unwrap_err()
                .contains("`NOPE` is not set")
        );
        assert!(substitute("${A", &env).is_err());
        assert_eq!(substitute("cost $5", &env).unwrap(), "cost $5");
    }
}
