//! Forwarding headers for the upstream: `X-Forwarded-For`/`-Proto`/`-Host` or RFC 7239
//! `Forwarded`. What a trusted front proxy sent is extended; what anyone else sent is replaced,
//! so a client cannot claim another address. From anyone else, the other headers upstream
//! frameworks read as the client's address, scheme, host or path go too ([`CLIENT_CLAIMS`], and
//! every `X-Forwarded-*`).

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;

use http::HeaderMap;
use http::header::{FORWARDED, HeaderName, HeaderValue};

use crate::file::ForwardedFile;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Headers that upstream frameworks take as the client's address (`X-Real-IP`, `True-Client-IP`,
/// ...), or as the path they should serve (`X-Original-URL`, `X-Rewrite-URL`): only a trusted
/// front proxy may send them. Every `X-Forwarded-*` header is treated alike (`-Port`, `-Prefix`,
/// `-Ssl`, `-Server`, ...).
const CLIENT_CLAIMS: [&str; 10] = [
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "forwarded-for",
    "x-forwarded",
    "x-original-url",
    "x-rewrite-url",
];

/// Which family of headers the upstream gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    XForwarded,
    Forwarded,
}

/// An address block (`10.0.0.0/8`, `::1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    bits: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, bits) = match text.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (text, None),
        };
        let addr: IpAddr =
            addr.parse().map_err(|_| format!("`{text}` is not an IP address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => b
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("`{text}`: bad prefix length"))?,
        };
        Ok(Cidr { addr, bits })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 peer on a dual-stack socket shows up as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.bits),
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.bits),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let (whole, rest) = ((bits / 8) as usize, bits % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[whole] & mask == b[whole] & mask
    }
}

/// The `[forwarded]` table, checked.
#[derive(Debug, Clone)]
pub struct Forwarding {
    pub style: Style,
    pub trusted: Vec<Cidr>,
}

impl Forwarding {
    pub fn from_file(file: &ForwardedFile) -> Result<Forwarding, (Range<usize>, &'static str, String)> {
        let style = match &file.style {
            None => Style::XForwarded,
            Some(s) => match s.get_ref().as_str() {
                "x-forwarded" => Style::XForwarded,
                "forwarded" => Style::Forwarded,
                other => {
                    return Err((
                        s.span(),
                        "forwarded.style",
                        format!("`{other}`: expected `x-forwarded` or `forwarded`"),
                    ));
                }
            },
        };
        let trusted = file
            .trusted_proxies
            .iter()
            .map(|t| Cidr::parse(t.get_ref()).map_err(|e| (t.span(), "forwarded.trusted_proxies", e)))
            .collect::<Result<_, _>>()?;
        Ok(Forwarding { style, trusted })
    }

    /// Whether `ip` is one of the trusted front proxies (`trusted_proxies`).
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|c| c.contains(ip))
    }

    /// Sets the forwarding headers for a request that came from `peer` over `proto`, for `host`.
    pub fn apply(
        &self,
        headers: &mut HeaderMap,
        peer: SocketAddr,
        proto: &'static str,
        host: Option<HeaderValue>,
    ) {
        let trusted = self.trusts(peer.ip());
        let ip = match peer.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        // Joined into one line: several header lines of a list are one list (RFC 9110 §5.3).
        let joined = |headers: &HeaderMap, name: &HeaderName| -> Option<String> {
            let parts: Vec<&str> = headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
            (!parts.is_empty()).then(|| parts.join(", "))
        };
        let prior = |name: &HeaderName| if trusted { joined(headers, name) } else { None };
        let (xff, xproto, xhost, fwd) =
            (prior(&X_FORWARDED_FOR), prior(&X_FORWARDED_PROTO), prior(&X_FORWARDED_HOST), prior(&FORWARDED));
        for name in [&X_FORWARDED_FOR, &X_FORWARDED_PROTO, &X_FORWARDED_HOST, &FORWARDED] {
            headers.remove(name);
        }
        if !trusted {
            let claims: Vec<HeaderName> = headers
                .keys()
                .filter(|n| n.as_str().starts_with("x-forwarded-") || CLIENT_CLAIMS.contains(&n.as_str()))
                .cloned()
                .collect();
            for name in claims {
                headers.remove(name);
            }
        }
        let mut set = |name: HeaderName, value: String| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        };
        match self.style {
            Style::XForwarded => {
                set(
                    X_FORWARDED_FOR,
                    match xff {
                        Some(before) => format!("{before}, {ip}"),
                        None => ip.to_string(),
                    },
                );
                // The front proxy saw the client's scheme and host; we only saw its.
                set(X_FORWARDED_PROTO, xproto.unwrap_or_else(|| proto.to_owned()));
                if let Some(h) =
                    xhost.or_else(|| host.as_ref().and_then(|h| h.to_str().ok()).map(str::to_owned))
                {
                    set(X_FORWARDED_HOST, h);
                }
            }
            Style::Forwarded => {
                let node = match ip {
                    IpAddr::V4(v4) => v4.to_string(),
                    IpAddr::V6(v6) => format!("\"[{v6}]\""),
                };
                let mut element = format!("for={node};proto={proto}");
                if let Some(h) = host.as_ref().and_then(|h| h.to_str().ok()) {
                    // quoted-string: a host has no `"` or `\` worth keeping.
                    if !h.contains(['"', '\\']) {
                        element.push_str(&format!(";host=\"{h}\""));
                    }
                }
                set(
                    FORWARDED,
                    match fwd {
                        Some(before) => format!("{before}, {element}"),
                        None => element,
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(Cidr::parse("127.0.0.1").unwrap().contains("127.0.0.1".parse().unwrap()));
        assert!(!Cidr::parse("127.0.0.1").unwrap().contains("127.0.0.2".parse().unwrap()));
        assert!(Cidr::parse("fd00::/8").unwrap().contains("fd12::1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/12").unwrap().contains("10.15.0.1".parse().unwrap()));
        assert!(!Cidr::parse("10.0.0.0/12").unwrap().contains("10.16.0.1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "x", "10.0.0.0/", "::1/129"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    fn run(style: Style, trusted: bool, sent: &[(&str, &str)]) -> HeaderMap {
        let f = Forwarding {
            style,
            trusted: if trusted { vec![Cidr::parse("192.0.2.0/24").unwrap()] } else { vec![] },
        };
        let mut h = HeaderMap::new();
        for (n, v) in sent {
            h.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        f.apply(
            &mut h,
            "192.0.2.7:5000".parse().unwrap(),
            "https",
            Some(HeaderValue::from_static("api.example")),
        );
        h
    }

    #[test]
    fn x_forwarded() {
        let sent = [
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-proto", "http"),
        ];
        let h = run(Style::XForwarded, true, &sent);
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 10.0.0.1, 192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "api.example");
        let claims = [
            ("x-forwarded-port", "443"),
            ("x-forwarded-prefix", "//evil.example"),
            ("x-real-ip", "127.0.0.1"),
            ("true-client-ip", "127.0.0.1"),
            ("x-original-url", "/admin"),
            ("x-request-id", "kept"),
        ];
        let h = run(Style::XForwarded, true, &claims);
        assert_eq!(h.len(), claims.len() + 3, "a trusted proxy's claims are kept: {h:?}");
        let sent = [("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=1.2.3.4")];
        let h = run(Style::XForwarded, false, &[&sent[..], &claims[..]].concat());
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert!(h.get("forwarded").is_none());
        assert_eq!(h["x-request-id"], "kept");
        assert_eq!(h.len(), 4, "only ours and x-request-id: {h:?}");
    }

    #[test]
    fn rfc_7239() {
        let h = run(Style::Forwarded, true, &[("forwarded", "for=203.0.113.9")]);
        assert_eq!(h["forwarded"], "for=203.0.113.9, for=192.0.2.7;proto=https;host=\"api.example\"");
        let h = run(Style::Forwarded, false, &[("forwarded", "for=1.2.3.4"), ("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(h["forwarded"], "for=192.0.2.7;proto=https;host=\"api.example\"");
        assert!(h.get("x-forwarded-for").is_none());
    }
}
