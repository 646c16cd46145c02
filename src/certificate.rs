//! The client certificate of a request (RFC 8705 mutual TLS), as the layer sees it.
//!
//! Whoever terminates TLS puts a [`ClientCertificate`] in the request's extensions: a server
//! built on rustls hands over the peer's end-entity certificate, a gateway's forwarded header is
//! read into one by the layer when the user opts in
//! ([`BearerLayer::trust_client_certificate_header`](crate::BearerLayer::trust_client_certificate_header)).
//! The layer compares its thumbprint with a certificate-bound token's `cnf["x5t#S256"]`.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{HeaderMap, HeaderName};
use sha2::{Digest, Sha256};

use crate::error::{AuthError, InvalidRequest};

/// The DER encoding of the client's end-entity certificate, as presented in the TLS handshake.
///
/// Insert it in the request extensions before the layer runs, once per connection: with
/// tokio-rustls, from the accepted stream
///
/// ```no_run
/// # use tower_bearer::ClientCertificate;
/// # async fn accept(acceptor: tokio_rustls::TlsAcceptor, tcp: tokio::net::TcpStream) -> std::io::Result<()> {
/// let tls = acceptor.accept(tcp).await?;
/// let cert = tls.get_ref().1.peer_certificates()
///     .and_then(|chain| chain.first())
///     .map(|der| ClientCertificate::from_der(der.to_vec()));
/// // then, for every request of this connection (hyper-util / axum):
/// // if let Some(cert) = &cert { req.extensions_mut().insert(cert.clone()); }
/// # drop(cert);
/// # Ok(()) }
/// ```
///
/// `examples/mtls.rs` is a complete axum server doing this.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    der: Bytes,
}

impl ClientCertificate {
    /// Wraps a certificate's DER bytes. Nothing is parsed: the thumbprint is over these bytes.
    pub fn from_der(der: impl Into<Bytes>) -> Self {
        ClientCertificate { der: der.into() }
    }

    /// The DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// `x5t#S256`: base64url (no padding) of the SHA-256 of the DER bytes (RFC 8705 §3.1).
    pub fn thumbprint_sha256(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(&self.der))
    }

    /// Whether this is the certificate a token's `cnf["x5t#S256"]` names (exact string
    /// comparison: the thumbprint is public, no constant time needed).
    pub(crate) fn matches(&self, x5t: &str) -> bool {
        let mut buf = [0u8; 43];
        let n = URL_SAFE_NO_PAD.encode_slice(Sha256::digest(&self.der), &mut buf).unwrap_or(0);
        n == 43 && buf.as_slice() == x5t.as_bytes()
    }
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificate").field("x5t#S256", &self.thumbprint_sha256()).finish()
    }
}

/// How a gateway that terminates TLS writes the client certificate into the header it forwards
/// ([`BearerLayer::trust_client_certificate_header`](crate::BearerLayer::trust_client_certificate_header)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertificateHeader {
    /// The PEM certificate, percent-encoded: nginx's `$ssl_client_escaped_cert`.
    EscapedPem,
    /// The DER bytes in standard base64: Caddy's
    /// `{http.request.tls.client.certificate_der_base64}`. An unreplaced placeholder (`{…}`,
    /// what Caddy 2.6 sends when the client had no certificate) is no certificate.
    DerBase64,
    /// Envoy's `x-forwarded-client-cert` with the `Cert` key (`set_current_client_cert_details:
    /// { cert: true }`) and a single element (`forward_client_cert_details: SANITIZE_SET`).
    EnvoyXfcc,
}

/// Largest forwarded certificate header read, in bytes.
pub(crate) const MAX_CERTIFICATE_HEADER_BYTES: usize = 16 * 1024;

/// A trusted forwarded-certificate header: its name and encoding.
#[derive(Debug, Clone)]
pub(crate) struct ForwardedCertificate {
    pub(crate) name: HeaderName,
    pub(crate) format: CertificateHeader,
}

impl ForwardedCertificate {
    /// The certificate the gateway forwarded, if any. Several headers are refused; an empty one
    /// is no certificate (what a gateway sends when the client presented none).
    pub(crate) fn read(&self, headers: &HeaderMap) -> Result<Option<ClientCertificate>, AuthError> {
        let mut values = headers.get_all(&self.name).iter();
        let Some(value) = values.next() else { return Ok(None) };
        if values.next().is_some() {
            return Err(InvalidRequest::MultipleClientCertificates.into());
        }
        let malformed = || AuthError::from(InvalidRequest::MalformedClientCertificate);
        if value.len() > MAX_CERTIFICATE_HEADER_BYTES {
            return Err(malformed());
        }
        let value = value.to_str().map_err(|_| malformed())?.trim();
        if value.is_empty() {
            return Ok(None);
        }
        // Not base64 (`{` is no base64 symbol), so it cannot hide a certificate.
        if self.format == CertificateHeader::DerBase64 && value.starts_with('{') && value.ends_with('}') {
            return Ok(None);
        }
        let der = match self.format {
            CertificateHeader::EscapedPem => pem_der(&percent_decode(value).ok_or_else(malformed)?),
            CertificateHeader::DerBase64 => STANDARD.decode(value).ok(),
            CertificateHeader::EnvoyXfcc => {
                xfcc_cert(value).and_then(|cert| percent_decode(&cert)).and_then(|pem| pem_der(&pem))
            }
        };
        match der {
            // A DER certificate is a SEQUENCE.
            Some(der) if der.first() == Some(&0x30) => Ok(Some(ClientCertificate::from_der(der))),
            _ => Err(malformed()),
        }
    }
}

/// `%XX` escapes decoded; `+` stays `+` (it is base64, not a space).
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The DER bytes of a PEM text holding exactly one `CERTIFICATE`.
fn pem_der(pem: &str) -> Option<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let rest = pem.trim().strip_prefix(BEGIN)?;
    let (body, tail) = rest.split_once(END)?;
    if !tail.trim().is_empty() {
        return None;
    }
    let body: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD.decode(body).ok()
}

/// The `Cert` value of a single-element XFCC header (`key=value;…`, values maybe quoted).
fn xfcc_cert(xfcc: &str) -> Option<String> {
    let mut cert = None;
    let mut elements = 0;
    for element in split_unquoted(xfcc, ',') {
        elements += 1;
        for pair in split_unquoted(&element, ';') {
            let (key, value) = pair.split_once('=')?;
            if key.trim().eq_ignore_ascii_case("cert") {
                if cert.is_some() {
                    return None;
                }
                cert = Some(unquote(value.trim())?);
            }
        }
    }
    // Several elements: more than one proxy appended; which one is the client's is unclear.
    if elements != 1 {
        return None;
    }
    cert
}

/// Splits at `sep` outside double quotes (a `\` escapes the next character inside them).
fn split_unquoted(s: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let (mut quoted, mut escaped) = (false, false);
    for c in s.chars() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(std::mem::take(&mut current));
            continue;
        }
        current.push(c);
    }
    parts.push(current);
    parts
}

fn unquote(v: &str) -> Option<String> {
    let Some(inner) = v.strip_prefix('"') else { return Some(v.to_owned()) };
    let inner = inner.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' { chars.next()? } else { c });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn thumbprint_is_base64url_sha256_of_the_der_bytes() {
        // SHA-256("abc") from FIPS 180-2, base64url without padding.
        let cert = ClientCertificate::from_der(&b"abc"[..]);
        assert_eq!(cert.thumbprint_sha256(), "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
        assert!(cert.matches("ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"));
        assert!(!cert.matches("ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0="));
        assert!(!cert.matches("ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa"));
        assert!(!cert.matches(""));
    }

    // Not a real certificate: the layer hashes bytes, it never parses X.509.
    const DER: &[u8] = &[0x30, 0x03, 0x02, 0x01, 0xfb, 0xff, 0x3e];

    fn read(format: CertificateHeader, values: &[&str]) -> Result<Option<ClientCertificate>, AuthError> {
        let name = HeaderName::from_static("x-client-cert");
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(&name, HeaderValue::from_str(v).unwrap());
        }
        ForwardedCertificate { name, format }.read(&headers)
    }

    fn pem() -> String {
        format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", STANDARD.encode(DER))
    }

    fn escape(s: &str) -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b == b'-' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }

    #[test]
    fn each_gateway_format_gives_the_same_certificate() {
        let want = Some(ClientCertificate::from_der(DER));
        let b64 = STANDARD.encode(DER);
        assert!(b64.contains('+') || b64.contains('/'), "the sample should exercise base64 symbols");
        assert_eq!(read(CertificateHeader::DerBase64, &[&b64]), Ok(want.clone()));
        assert_eq!(read(CertificateHeader::EscapedPem, &[&escape(&pem())]), Ok(want.clone()));
        // nginx leaves `+` and `/` alone: they must survive.
        let lax = pem().replace('\n', "%0A").replace(' ', "%20");
        assert_eq!(read(CertificateHeader::EscapedPem, &[&lax]), Ok(want.clone()));
        let xfcc = format!(
            "By=spiffe://api;Hash=abc;Cert=\"{}\";Subject=\"CN=a,O=b\";URI=spiffe://client",
            escape(&pem())
        );
        assert_eq!(read(CertificateHeader::EnvoyXfcc, &[&xfcc]), Ok(want));
    }

    #[test]
    fn absent_or_empty_is_no_certificate() {
        assert_eq!(read(CertificateHeader::DerBase64, &[]), Ok(None));
        assert_eq!(read(CertificateHeader::EscapedPem, &[""]), Ok(None));
        let caddy = "{http.request.tls.client.certificate_der_base64}";
        assert_eq!(read(CertificateHeader::DerBase64, &[caddy]), Ok(None));
        assert!(read(CertificateHeader::EscapedPem, &[caddy]).is_err());
    }

    #[test]
    fn duplicates_and_garbage_are_refused() {
        let multiple = Err(AuthError::from(InvalidRequest::MultipleClientCertificates));
        let malformed = Err(AuthError::from(InvalidRequest::MalformedClientCertificate));
        let b64 = STANDARD.encode(DER);
        assert_eq!(read(CertificateHeader::DerBase64, &[&b64, &b64]), multiple);
        assert_eq!(read(CertificateHeader::DerBase64, &[&b64, ""]), multiple);
        for (format, value) in [
            (CertificateHeader::DerBase64, "not base64!".to_owned()),
            (CertificateHeader::DerBase64, STANDARD.encode(b"not DER")),
            (CertificateHeader::DerBase64, "A".repeat(MAX_CERTIFICATE_HEADER_BYTES + 4)),
            (CertificateHeader::EscapedPem, b64.clone()),
            (CertificateHeader::EscapedPem, "%ZZ".into()),
            (CertificateHeader::EscapedPem, "%E".into()),
            (CertificateHeader::EscapedPem, escape(&format!("{}{}", pem(), pem()))),
            (CertificateHeader::EnvoyXfcc, "Hash=abc".into()),
            (CertificateHeader::EnvoyXfcc, format!("Cert={0};Cert={0}", escape(&pem()))),
            (CertificateHeader::EnvoyXfcc, format!("Cert={0},Cert={0}", escape(&pem()))),
            (CertificateHeader::EnvoyXfcc, "Cert=\"unterminated".into()),
            (CertificateHeader::EnvoyXfcc, "Cert".into()),
        ] {
            assert_eq!(read(format, &[&value]), malformed, "{format:?} {value:.40}");
        }
    }
}
