//! Signature checks with keys parsed once, when the key set is loaded.
//!
//! `jsonwebtoken::crypto::verify` clones its `DecodingKey`, boxes a verifier and has the backend
//! rebuild the RSA or EC key from its components on every call: for RS256 that setup costs a
//! sizeable share of the verification itself. With the `aws-lc-rs` feature each JWK becomes
//! aws-lc-rs `ParsedPublicKey`s once, and a token costs the signature check alone. Otherwise (the
//! `rust-crypto` backend, or an application that installed its own jsonwebtoken provider) the
//! `DecodingKey` path stays.

use std::sync::atomic::{AtomicBool, Ordering};

use jsonwebtoken::{Algorithm, DecodingKey};

/// Whether this crate installed jsonwebtoken's crypto provider itself. Only then are the
/// prepared keys used: an application that installed its own provider first keeps it.
static OURS: AtomicBool = AtomicBool::new(false);

/// Installs jsonwebtoken's crypto provider explicitly, so a dependency tree that enables both of
/// its backends does not panic at the first verification.
pub(crate) fn ensure_crypto_provider() {
    #[cfg(feature = "aws-lc-rs")]
    let provider = &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
    #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc-rs")))]
    let provider = &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
    // Err means a provider is already installed (by us, or by the application): keep it.
    if provider.install_default().is_ok() {
        OURS.store(true, Ordering::Release);
    }
}

/// Largest signature accepted: RSA-8192, the largest modulus the verifiers allow.
const MAX_SIGNATURE_BYTES: usize = 1024;

/// Checks `signature` (base64url, as in the token) over `message`: with `prepared` when there is
/// one and this crate's provider is in charge, with jsonwebtoken and `decoding` otherwise.
/// `None`: the signature is not base64url (or too long to be one), which is a malformed token.
pub(crate) fn verify(
    prepared: Option<&PreparedKey>,
    decoding: &DecodingKey,
    alg: Algorithm,
    message: &[u8],
    signature: &str,
) -> Option<bool> {
    match prepared {
        Some(key) if OURS.load(Ordering::Acquire) => {
            let mut buf = [0u8; MAX_SIGNATURE_BYTES];
            // The same strictness (no padding, no trailing bits) as jsonwebtoken's decoding.
            let signature = crate::base64url::decode_into(signature, &mut buf)?;
            Some(key.verify(alg, message, signature))
        }
        _ => match jsonwebtoken::crypto::verify(signature, message, decoding, alg) {
            Ok(valid) => Some(valid),
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::Base64(_)) => None,
            Err(_) => Some(false),
        },
    }
}

#[cfg(feature = "aws-lc-rs")]
pub(crate) use native::PreparedKey;

/// Without aws-lc-rs nothing is prepared: [`verify`] takes the `DecodingKey` path.
#[cfg(not(feature = "aws-lc-rs"))]
#[derive(Clone)]
pub(crate) enum PreparedKey {}

#[cfg(not(feature = "aws-lc-rs"))]
impl PreparedKey {
    pub(crate) fn rsa(_: &[u8], _: &[u8], _: Option<Algorithm>) -> Option<Self> {
        None
    }
    pub(crate) fn ec(_: Algorithm, _: &[u8], _: &[u8]) -> Option<Self> {
        None
    }
    pub(crate) fn ed25519(_: &[u8]) -> Option<Self> {
        None
    }
    fn verify(&self, _: Algorithm, _: &[u8], _: &[u8]) -> bool {
        match *self {}
    }
}

#[cfg(feature = "aws-lc-rs")]
mod native {
    use std::sync::Arc;

    use aws_lc_rs::signature::{self as sig, ParsedPublicKey, RsaParameters, RsaPublicKeyComponents};
    use jsonwebtoken::Algorithm;

    /// RSA algorithms, in the order of [`PreparedKey::Rsa`]'s slots. The same parameters as
    /// jsonwebtoken's aws-lc verifiers: 2048 to 8192-bit moduli, checked at verification.
    const RSA: [(Algorithm, &RsaParameters); 6] = [
        (Algorithm::RS256, &sig::RSA_PKCS1_2048_8192_SHA256),
        (Algorithm::RS384, &sig::RSA_PKCS1_2048_8192_SHA384),
        (Algorithm::RS512, &sig::RSA_PKCS1_2048_8192_SHA512),
        (Algorithm::PS256, &sig::RSA_PSS_2048_8192_SHA256),
        (Algorithm::PS384, &sig::RSA_PSS_2048_8192_SHA384),
        (Algorithm::PS512, &sig::RSA_PSS_2048_8192_SHA512),
    ];

    /// A verifying key parsed once, cheap to clone. A slot left empty (the JWK pins another
    /// algorithm, or aws-lc refused the parameters) verifies nothing, as jsonwebtoken's
    /// per-call parse would have failed.
    #[derive(Clone)]
    pub(crate) enum PreparedKey {
        /// One parsed key per RSA algorithm: aws-lc binds the padding and digest to the key.
        Rsa(Arc<[Option<ParsedPublicKey>; 6]>),
        /// ES256 or ES384 (fixed-size `r || s` signatures; DER is refused), or Ed25519.
        Single(Algorithm, Option<Arc<ParsedPublicKey>>),
    }

    impl PreparedKey {
        pub(crate) fn rsa(n: &[u8], e: &[u8], pinned: Option<Algorithm>) -> Option<Self> {
            let components = RsaPublicKeyComponents { n, e };
            let slots = RSA.map(|(alg, params)| {
                pinned
                    .is_none_or(|p| p == alg)
                    .then(|| components.to_parsed_public_key(params).ok())
                    .flatten()
            });
            Some(PreparedKey::Rsa(Arc::new(slots)))
        }

        /// `x` and `y` are the affine coordinates, already checked to have the curve's size.
        pub(crate) fn ec(alg: Algorithm, x: &[u8], y: &[u8]) -> Option<Self> {
            let algorithm: &'static sig::EcdsaVerificationAlgorithm = match alg {
                Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
                Algorithm::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
                _ => return None,
            };
            // SEC 1 uncompressed point: 0x04 || x || y (what jsonwebtoken builds from a JWK too).
            let point = [&[4u8][..], x, y].concat();
            Some(PreparedKey::Single(alg, ParsedPublicKey::new(algorithm, point).ok().map(Arc::new)))
        }

        pub(crate) fn ed25519(x: &[u8]) -> Option<Self> {
            Some(PreparedKey::Single(
                Algorithm::EdDSA,
                ParsedPublicKey::new(&sig::ED25519, x).ok().map(Arc::new),
            ))
        }

        pub(super) fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
            let key = match self {
                PreparedKey::Rsa(slots) => {
                    RSA.iter().position(|(a, _)| *a == alg).and_then(|i| slots[i].as_ref())
                }
                PreparedKey::Single(its, key) if *its == alg => key.as_deref(),
                PreparedKey::Single(..) => None,
            };
            key.is_some_and(|key| key.verify_sig(message, signature).is_ok())
        }
    }
}
