//! The client certificate of a request (RFC 8705 mutual TLS), as the layer sees it.
//!
//! Whoever terminates TLS puts a [`ClientCertificate`] in the request's extensions: a server
//! built on rustls hands over the peer's end-entity certificate, a gateway's forwarded header is
//! read into one by the layer when the user opts in. The layer compares its thumbprint with a
//! certificate-bound token's `cnf["x5t#S256"]`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use sha2::{Digest, Sha256};

/// The DER encoding of the client's end-entity certificate, as presented in the TLS handshake.
///
/// Insert it in the request extensions before the layer runs (for example from
/// `tokio_rustls::server::TlsStream::get_ref().1.peer_certificates()`).
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
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificate").field("x5t#S256", &self.thumbprint_sha256()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_is_base64url_sha256_of_the_der_bytes() {
        // SHA-256("abc") from FIPS 180-2, base64url without padding.
        let cert = ClientCertificate::from_der(&b"abc"[..]);
        assert_eq!(cert.thumbprint_sha256(), "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
    }
}
