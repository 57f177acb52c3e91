//! Path normalisation: the one path a route rule is matched against.
//!
//! [`normalize_path`] drops query and fragment (RFC 3986 §3.3–3.5), decodes
//! every percent-escape (§2.1, §6.2.2.2), merges repeated slashes, and removes
//! dot segments as in §5.2.4 (`remove_dot_segments`), which §6.2.2.3 applies
//! to normalisation. An encoded `/`, `\` or NUL is refused: after decoding, a
//! rule could not tell the path's segments apart, and the upstream might split
//! them differently than we did.

use std::borrow::Cow;

/// Longest `:path` (without its query) we normalise, in bytes.
pub const MAX_PATH_LEN: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path does not start with `/`")]
    NotAbsolute,
    #[error("the path is longer than {MAX_PATH_LEN} bytes")]
    TooLong,
    #[error(
        "the path has an invalid percent-escape (`%` must be followed by two hex digits encoding UTF-8)"
    )]
    BadEscape,
    #[error(
        "the path has an encoded `/`, `\\` or NUL (`%2F`, `%5C`, `%00`), which makes its segments ambiguous"
    )]
    EncodedSeparator,
    #[error("the path has a backslash, NUL or other control character")]
    BadCharacter,
    #[error(
        "the path has `;` parameters (`/a;x=1`), which upstreams read differently; they are refused here"
    )]
    Parameters,
}

/// What a `;` in a request path means (RFC 3986 §3.3 allows path segment
/// parameters; Tomcat, Jetty and Spring strip them before routing, others
/// do not), so a rule could match a path the upstream reads as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathParams {
    /// A path with `;` (raw or `%3B`) is refused: 400, `PATH_INVALID`.
    #[default]
    Refuse,
    /// Each segment's raw `;…` is cut off before matching, as a
    /// servlet container does; an encoded `%3B` stays part of the name.
    Strip,
}

impl PathParams {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "refuse" => Some(Self::Refuse),
            "strip" => Some(Self::Strip),
            _ => None,
        }
    }
}

/// [`normalize_path`] for a request a proxy describes, with `;` handled
/// as `params` says.
pub fn normalize_request_path(raw: &str, params: PathParams) -> Result<Cow<'_, str>, PathError> {
    let path = raw.split(['?', '#']).next().unwrap_or_default();
    match params {
        PathParams::Refuse => {
            let normal = normalize_path(path)?;
            if normal.contains(';') {
                return Err(PathError::Parameters);
            }
            Ok(normal)
        }
        PathParams::Strip if path.contains(';') => {
            let stripped: Vec<&str> = path
                .split('/')
                .map(|segment| segment.split(';').next().unwrap_or_default())
                .collect();
            normalize_path(&stripped.join("/")).map(|p| Cow::Owned(p.into_owned()))
        }
        PathParams::Strip => normalize_path(path),
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes every `%XX`, refusing what would make the path ambiguous.
fn percent_decode(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex_value);
            let lo = bytes.get(i + 2).copied().and_then(hex_value);
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(PathError::BadEscape);
            };
            match (hi << 4) | lo {
                b'/' | b'\\' | 0 => return Err(PathError::EncodedSeparator),
                // `%0A`, `%0D` and friends are header-smuggling material, and
                // refusing them keeps the output free of control characters.
                c if c.is_ascii_control() => return Err(PathError::BadCharacter),
                c => out.push(c),
            }
            i += 3;
        } else if b == b'\\' || b.is_ascii_control() {
            return Err(PathError::BadCharacter);
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| PathError::BadEscape)
}

/// Appends a decoded segment, re-encoding the characters that would mean
/// something else in a path (`%`, `?`, `#`), so normalising is idempotent.
fn push_segment(out: &mut String, segment: &str) {
    out.push('/');
    for c in segment.chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3F"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
}

/// Normalises the `:path` of a request for matching against route templates.
///
/// `/v2/public/../admin` → `/v2/admin`, `/v2/%2e%2e/admin` → `/admin`,
/// `//a///b` → `/a/b`, `/a/b/..` → `/a/`. A `..` above the root stays at the
/// root (RFC 3986 §5.2.4). A trailing slash is kept. The result's only
/// escapes are `%25`, `%3F` and `%23`, for a decoded `%`, `?` or `#`.
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    let path = raw.split(['?', '#']).next().unwrap_or_default();
    if path.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    // Most paths Envoy sends are already normal: no copy, no allocation.
    if is_normal(path) {
        return Ok(Cow::Borrowed(path));
    }
    rebuild(path).map(Cow::Owned)
}

/// Is `path` (without query or fragment) its own normal form? True only for
/// what [`rebuild`] would return unchanged: absolute, no escapes, no
/// backslash or control character, no empty segment but a last one, no dot
/// segment.
pub(super) fn is_normal(path: &str) -> bool {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return false;
    }
    let mut start = 1;
    for (i, &b) in bytes.iter().enumerate().skip(1) {
        if b == b'%' || b == b'\\' || b.is_ascii_control() {
            return false;
        }
        if b == b'/' {
            if matches!(&bytes[start..i], b"" | b"." | b"..") {
                return false;
            }
            start = i + 1;
        }
    }
    !matches!(&bytes[start..], b"." | b"..")
}

/// The normal form of an absolute path or why it has none.
pub(super) fn rebuild(path: &str) -> Result<String, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let decoded = percent_decode(path)?;

    let mut kept: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in decoded.split('/').skip(1) {
        // A segment that ends the path without naming a resource (``, `.`,
        // `..`) leaves a directory: the output ends with a slash.
        trailing_slash = matches!(segment, "" | "." | "..");
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            name => kept.push(name),
        }
    }

    let mut out = String::with_capacity(decoded.len());
    for segment in &kept {
        push_segment(&mut out, segment);
    }
    if trailing_slash || kept.is_empty() {
        out.push('/');
    }
    Ok(out)
}
