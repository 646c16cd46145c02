//! Route rules: which requests are public, which need a token, which need scopes. The first
//! rule (in file order) whose method and path pattern match the normalised request decides;
//! a request no rule matches is denied (`403`, no challenge: no token would help).

use std::sync::Arc;

use http::Method;
use tower_bearer::RequireScope;

use crate::normalize::normalize;

/// What a matching request needs.
#[derive(Debug, Clone)]
pub enum Access {
    /// Nothing: no token is looked at (identity headers are still stripped).
    Public,
    /// A valid token.
    Authenticated,
    /// A valid token with these scopes (all of them, or any one), and how to say so in logs.
    Scopes(RequireScope, String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `*`: exactly one non-empty segment.
    Any,
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Access::Public => f.write_str("public"),
            Access::Authenticated => f.write_str("authenticated"),
            Access::Scopes(_, description) => f.write_str(description),
        }
    }
}

/// A path pattern: literal segments, `*` for one segment, and an optional `/**` suffix for any
/// number of further segments (including none: `/admin/**` matches `/admin`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    segments: Vec<Segment>,
    rest: bool,
}

impl Pattern {
    /// Parses a pattern; it must already be in normal form (see [`normalize`]).
    pub fn parse(raw: &str, case_insensitive: bool) -> Result<Pattern, String> {
        if !raw.starts_with('/') {
            return Err(format!("path pattern `{raw}` must start with `/`"));
        }
        let (body, rest) = match raw.strip_suffix("/**") {
            Some(body) => (body, true),
            None => (raw, false),
        };
        if body.contains("**") {
            return Err(format!("path pattern `{raw}`: `**` is only allowed as the last segment, as `/**`"));
        }
        // The pattern must be spelled the way requests are normalised, or it could never match.
        let probe = if body.is_empty() { "/".to_owned() } else { body.replace('*', "x") };
        // Parameters allowed: a pattern that names one is not malformed (requests with one are
        // refused before any rule when they are not allowed).
        match normalize(&probe, true) {
            Ok(normal) if normal == probe => {}
            Ok(normal) => {
                return Err(format!(
                    "path pattern `{raw}` is not in normal form (requests are matched as `{normal}`)"
                ));
            }
            Err(why) => return Err(format!("path pattern `{raw}` is not a valid path ({why})")),
        }
        let mut segments = Vec::new();
        if !body.is_empty() {
            for s in body[1..].split('/') {
                segments.push(match s {
                    "*" => Segment::Any,
                    s if s.contains('*') => {
                        return Err(format!("path pattern `{raw}`: `*` must be a whole segment"));
                    }
                    s if case_insensitive => Segment::Literal(s.to_ascii_lowercase()),
                    s => Segment::Literal(s.to_owned()),
                });
            }
        }
        Ok(Pattern { segments, rest })
    }

    /// Whether the normalised (and, if configured, lower-cased) `path` matches.
    pub fn matches(&self, path: &str) -> bool {
        self.matching(path, false)
    }

    /// Whether `path` matches, or is a matching path with one more trailing `/`.
    pub fn matches_with_slash(&self, path: &str) -> bool {
        self.matching(path, true)
    }

    fn matching(&self, path: &str, slash: bool) -> bool {
        let mut parts = path[1..].split('/');
        for segment in &self.segments {
            match (segment, parts.next()) {
                (_, None) => return false,
                (Segment::Any, Some(p)) if !p.is_empty() => {}
                (Segment::Literal(l), Some(p)) if l == p => {}
                _ => return false,
            }
        }
        self.rest
            || match (parts.next(), parts.next()) {
                (None, _) => true,
                (Some(""), None) => slash,
                _ => false,
            }
    }
}

/// One rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// `None`: any method. `GET` also covers `HEAD`.
    pub method: Option<Method>,
    pub pattern: Pattern,
    pub access: Access,
    /// The pattern as written, for logs.
    pub path: String,
    /// Position in the file (0-based), for logs.
    pub index: usize,
    /// The named upstream of the route (proxy mode); `None`: the `[upstream]` table.
    pub upstream: Option<String>,
}

impl Rule {
    fn matches(&self, method: &Method, path: &str) -> bool {
        let method_ok = match &self.method {
            None => true,
            Some(m) => m == method || (*m == Method::GET && *method == Method::HEAD),
        };
        // A rule that asks for a token also covers its path with one trailing `/` (`/admin`
        // covers `/admin/`): Express, Spring and others serve both alike, and a later catch-all
        // must not judge it instead. A public rule does not: a public page must not open its
        // directory form (an index, a listing) to anyone.
        let widened = !matches!(self.access, Access::Public);
        method_ok && (self.pattern.matches(path) || (widened && self.pattern.matches_with_slash(path)))
    }
}

/// The rules, in file order.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub rules: Vec<Arc<Rule>>,
    pub case_insensitive: bool,
    /// Whether request paths may carry `;parameters` (see [`normalize`]).
    pub allow_path_parameters: bool,
}

impl Rules {
    /// The first rule matching `method` and the normalised `path`.
    pub fn find(&self, method: &Method, path: &str) -> Option<&Arc<Rule>> {
        if self.case_insensitive {
            let lower = path.to_ascii_lowercase();
            self.rules.iter().find(|r| r.matches(method, &lower))
        } else {
            self.rules.iter().find(|r| r.matches(method, path))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(raw: &str) -> Pattern {
        Pattern::parse(raw, false).unwrap()
    }

    #[test]
    fn literal_patterns() {
        assert!(p("/").matches("/"));
        assert!(!p("/").matches("/a"));
        assert!(p("/items").matches("/items"));
        assert!(!p("/items").matches("/items/"));
        assert!(p("/items").matches_with_slash("/items/"));
        assert!(!p("/items").matches_with_slash("/items//"));
        assert!(!p("/items").matches_with_slash("/items/1"));
        assert!(!p("/items").matches("/items/1"));
        assert!(!p("/items").matches("/itemsx"));
        assert!(p("/items/").matches("/items/"));
    }

    #[test]
    fn star_is_one_segment() {
        let star = p("/items/*");
        assert!(star.matches("/items/1"));
        assert!(!star.matches("/items/"));
        assert!(!star.matches("/items"));
        assert!(star.matches_with_slash("/items/1/"));
        assert!(!star.matches("/items/1/2"));
        assert!(p("/*/x").matches("/a/x"));
    }

    #[test]
    fn double_star_is_any_rest() {
        let admin = p("/admin/**");
        assert!(admin.matches("/admin"));
        assert!(admin.matches("/admin/"));
        assert!(admin.matches("/admin/a/b"));
        assert!(!admin.matches("/administrator"));
        assert!(!admin.matches("/"));
        let all = p("/**");
        assert!(all.matches("/"));
        assert!(all.matches("/anything/at/all"));
    }

    #[test]
    fn bad_patterns() {
        assert!(Pattern::parse("admin", false).is_err());
        assert!(Pattern::parse("/a/**/b", false).is_err());
        assert!(Pattern::parse("/a*", false).is_err());
        assert!(Pattern::parse("//a", false).is_err());
        assert!(Pattern::parse("/a/../b", false).is_err());
        assert!(Pattern::parse("/%61", false).is_err());
        assert!(Pattern::parse("/a%2Fb", false).is_err());
    }

    /// `/admin/` is judged by the rule for `/admin` when that rule asks for a token, not by a
    /// later catch-all; a public rule keeps to its own path.
    #[test]
    fn trailing_slash_widens_protected_rules_only() {
        let rule = |path: &str, access: Access, index| {
            Arc::new(Rule {
                upstream: None,
                method: None,
                pattern: Pattern::parse(path, false).unwrap(),
                access,
                path: path.into(),
                index,
            })
        };
        let rules = Rules {
            rules: vec![
                rule("/admin", Access::Scopes(RequireScope::any(["admin"]), "any admin".into()), 0),
                rule("/docs", Access::Public, 1),
                rule("/**", Access::Authenticated, 2),
            ],
            case_insensitive: false,
            allow_path_parameters: false,
        };
        let index = |path| rules.find(&Method::GET, path).map(|r| r.index);
        assert_eq!(index("/admin"), Some(0));
        assert_eq!(index("/admin/"), Some(0), "not the catch-all");
        assert_eq!(index("/admin/x"), Some(2));
        assert_eq!(index("/docs"), Some(1));
        assert_eq!(index("/docs/"), Some(2), "a public rule is not widened");
    }

    #[test]
    fn case_insensitive_rules() {
        let rules = Rules {
            rules: vec![Arc::new(Rule {
                upstream: None,
                method: Some(Method::GET),
                pattern: Pattern::parse("/Admin/**", true).unwrap(),
                access: Access::Authenticated,
                path: "/Admin/**".into(),
                index: 0,
            })],
            case_insensitive: true,
            allow_path_parameters: false,
        };
        assert!(rules.find(&Method::GET, "/ADMIN/x").is_some());
        assert!(rules.find(&Method::HEAD, "/admin").is_some());
        assert!(rules.find(&Method::POST, "/admin").is_none());
    }
}
