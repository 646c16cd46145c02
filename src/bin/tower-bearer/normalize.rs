//! The request path that route rules see: one canonical spelling per resource, so that
//! `/public/../admin`, `/%61dmin`, `//admin` and `/admin/./` are all judged as `/admin`.
//!
//! In order:
//! 1. the path must start with `/` and hold only visible ASCII (no raw `\`);
//! 2. percent-escapes of unreserved characters (RFC 3986 §2.3: `A-Z a-z 0-9 - . _ ~`) are
//!    decoded; every other escape is kept, with upper-case hex digits. `%2F` (`/`), `%5C` (`\`)
//!    and `%00` are refused: upstreams disagree on what they mean;
//! 3. empty segments (`//`) and `.` segments are dropped, `..` removes the segment before it
//!    (never climbing above `/`), as in RFC 3986 §5.2.4;
//! 4. a `;` in any segment is refused unless the configuration allows path parameters
//!    (`allow_path_parameters`): servlet containers cut `;parameter` off each segment before they
//!    route, so `/admin;x/users` would pass a rule for `/**` and reach the upstream's
//!    `/admin/users`. Where they are allowed, a segment that is `.` or `..` once its parameter
//!    is cut off (`..;x`, `.;`) is still refused: servlet containers read it as a dot segment.
//!
//! A trailing `/` is kept. Case folding, when configured, is up to the caller (the forwarded
//! path keeps its case).

use std::fmt;

/// Why a path was refused (answered with `400`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Does not start with `/`.
    NotAbsolute,
    /// A byte outside visible ASCII, or a raw `\`.
    ForbiddenByte,
    /// `%` not followed by two hex digits.
    BadEscape,
    /// `%2F`: an encoded `/`.
    EncodedSlash,
    /// `%5C`: an encoded `\`.
    EncodedBackslash,
    /// `%00`.
    EncodedNul,
    /// A dot segment with a `;` parameter (`..;`).
    DotSegmentWithParameter,
    /// A `;` parameter in a segment, where they are not allowed.
    Parameter,
}

impl PathError {
    /// A stable reason code for logs.
    pub fn reason(self) -> &'static str {
        match self {
            PathError::NotAbsolute => "path_not_absolute",
            PathError::ForbiddenByte => "path_forbidden_byte",
            PathError::BadEscape => "path_bad_escape",
            PathError::EncodedSlash => "path_encoded_slash",
            PathError::EncodedBackslash => "path_encoded_backslash",
            PathError::EncodedNul => "path_encoded_nul",
            PathError::DotSegmentWithParameter => "path_dot_segment_parameter",
            PathError::Parameter => "path_parameter",
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The canonical form of `raw` (a path without query), or why it is refused. With
/// `allow_parameters`, segments may carry `;parameters` (kept as they are).
pub fn normalize(raw: &str, allow_parameters: bool) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    // Step 2: decode unreserved escapes.
    let mut decoded = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (Some(hi), Some(lo)) =
                (bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex))
            else {
                return Err(PathError::BadEscape);
            };
            let value = hi << 4 | lo;
            match value {
                b'/' => return Err(PathError::EncodedSlash),
                b'\\' => return Err(PathError::EncodedBackslash),
                0 => return Err(PathError::EncodedNul),
                v if is_unreserved(v) => decoded.push(char::from(v)),
                v => {
                    decoded.push('%');
                    decoded.push_str(&format!("{v:02X}"));
                }
            }
            i += 3;
            continue;
        }
        if !(0x21..=0x7e).contains(&b) || b == b'\\' {
            return Err(PathError::ForbiddenByte);
        }
        decoded.push(char::from(b));
        i += 1;
    }
    // Step 3 and 4: segments.
    let mut out: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in decoded[1..].split('/') {
        if let Some((bare, _)) = segment.split_once(';') {
            if !allow_parameters {
                return Err(PathError::Parameter);
            }
            if matches!(bare, "." | "..") {
                return Err(PathError::DotSegmentWithParameter);
            }
        }
        match segment {
            "" | "." => trailing_slash = true,
            ".." => {
                out.pop();
                trailing_slash = true;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut path = String::with_capacity(decoded.len());
    for s in &out {
        path.push('/');
        path.push_str(s);
    }
    if out.is_empty() || trailing_slash {
        path.push('/');
    }
    Ok(path)
}

/// Splits a request target into path and query (`None` without `?`), dropping a scheme and
/// authority (absolute-form) and any fragment.
pub fn split_target(target: &str) -> (&str, Option<&str>) {
    let target = target.split('#').next().unwrap_or_default();
    let target = match target.find("://") {
        Some(at) if !target.starts_with('/') => {
            let rest = &target[at + 3..];
            match rest.find(['/', '?']) {
                Some(p) if rest.as_bytes()[p] == b'/' => &rest[p..],
                Some(p) => &rest[p..],
                None => "/",
            }
        }
        _ => target,
    };
    match target.split_once('?') {
        Some((path, query)) => (if path.is_empty() { "/" } else { path }, Some(query)),
        None => (target, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn ok(raw: &str, want: &str) {
        assert_eq!(normalize(raw, false), Ok(want.to_owned()), "{raw}");
    }

    #[track_caller]
    fn err(raw: &str, want: PathError) {
        assert_eq!(normalize(raw, false), Err(want), "{raw}");
    }

    #[test]
    fn plain_paths_are_unchanged() {
        ok("/", "/");
        ok("/items", "/items");
        ok("/items/42", "/items/42");
        ok("/items/", "/items/");
        ok("/a-b_c.d~e", "/a-b_c.d~e");
        ok("/Admin", "/Admin");
    }

    #[test]
    fn dot_segments_are_removed() {
        ok("/public/../admin", "/admin");
        ok("/public/./../admin", "/admin");
        ok("/./admin", "/admin");
        ok("/admin/.", "/admin/");
        ok("/admin/..", "/");
        ok("/a/b/../../admin", "/admin");
        ok("/../admin", "/admin");
        ok("/../../../admin", "/admin");
        ok("/..", "/");
        ok("/.", "/");
        ok("/a/..b/c", "/a/..b/c");
        ok("/a/.b", "/a/.b");
        ok("/a/b..", "/a/b..");
    }

    #[test]
    fn repeated_slashes_collapse() {
        ok("//admin", "/admin");
        ok("///admin//x///", "/admin/x/");
        ok("//", "/");
        ok("/public//..//admin", "/admin");
    }

    #[test]
    fn unreserved_escapes_are_decoded() {
        ok("/%61dmin", "/admin");
        ok("/%41DMIN", "/ADMIN");
        ok("/%7e%2d%5F%2e", "/~-_.");
        ok("/public/%2e%2e/admin", "/admin");
        ok("/public/%2E%2E/admin", "/admin");
        ok("/public/.%2e/admin", "/admin");
        ok("/%2e/admin", "/admin");
    }

    #[test]
    fn reserved_escapes_are_kept_upper_case() {
        ok("/a%20b", "/a%20b");
        ok("/a%3bb", "/a%3Bb");
        ok("/a%3Fb", "/a%3Fb");
        ok("/%25", "/%25");
        // Double encoding is decoded once only: `%252e` stays data, never a dot segment.
        ok("/public/%252e%252e/admin", "/public/%252e%252e/admin");
        ok("/caf%C3%A9", "/caf%C3%A9");
    }

    #[test]
    fn dangerous_escapes_are_refused() {
        err("/admin%2Fx", PathError::EncodedSlash);
        err("/public%2f..%2fadmin", PathError::EncodedSlash);
        err("/a%5Cb", PathError::EncodedBackslash);
        err("/a%00", PathError::EncodedNul);
        err("/a%0", PathError::BadEscape);
        err("/a%", PathError::BadEscape);
        err("/a%zz", PathError::BadEscape);
        err("/a%%41", PathError::BadEscape);
    }

    #[test]
    fn raw_bytes_are_checked() {
        err("/a\\..\\admin", PathError::ForbiddenByte);
        err("/a b", PathError::ForbiddenByte);
        err("/a\tb", PathError::ForbiddenByte);
        err("/a\u{7f}", PathError::ForbiddenByte);
        err("/caf\u{e9}", PathError::ForbiddenByte);
        err("admin", PathError::NotAbsolute);
        err("", PathError::NotAbsolute);
        err("*", PathError::NotAbsolute);
    }

    /// `;parameters` are refused by default: servlet containers cut them off each segment before
    /// they route, so a rule would judge another path than the upstream serves. An encoded `;`
    /// is data to them, and kept. Where parameters are allowed, dot segments with one are still
    /// refused.
    #[test]
    fn path_parameters() {
        for raw in ["/admin;x/users", "/items;v=1", "/a/b;", "/%61dmin;x", "/public/..;/admin", "/;"] {
            err(raw, PathError::Parameter);
        }
        ok("/admin%3bx/users", "/admin%3Bx/users");
        let allowed = |raw| normalize(raw, true);
        assert_eq!(allowed("/items;v=1"), Ok("/items;v=1".to_owned()));
        assert_eq!(allowed("/public/../items;v=1"), Ok("/items;v=1".to_owned()));
        for raw in ["/public/..;/admin", "/public/.;x/admin", "/public/%2e%2e;/admin"] {
            assert_eq!(allowed(raw), Err(PathError::DotSegmentWithParameter), "{raw}");
        }
    }

    #[test]
    fn normal_form_is_a_fixed_point() {
        for raw in ["/public/../admin", "//a//b/", "/%61/%2e/b/..", "/a%3bb/./c"] {
            let once = normalize(raw, false).unwrap();
            assert_eq!(normalize(&once, false).unwrap(), once, "{raw}");
        }
    }

    #[test]
    fn targets_split() {
        assert_eq!(split_target("/a/b?x=1"), ("/a/b", Some("x=1")));
        assert_eq!(split_target("/a/b"), ("/a/b", None));
        assert_eq!(split_target("/a#frag"), ("/a", None));
        assert_eq!(split_target("http://h.example/a?q"), ("/a", Some("q")));
        assert_eq!(split_target("http://h.example"), ("/", None));
        assert_eq!(split_target("http://h.example?q"), ("/", Some("q")));
        assert_eq!(split_target("/a?b?c"), ("/a", Some("b?c")));
    }
}
