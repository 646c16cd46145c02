//! The development issuer's signing keys: generated in memory, published as JWKs.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

pub(super) enum Signer {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// One signing key of the dev issuer.
pub(super) struct DevKey {
    pub(super) kid: String,
    pub(super) alg: Algorithm,
    pub(super) signer: Signer,
    pub(super) jwk: Value,
}

pub(super) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl DevKey {
    pub(super) fn generate(alg: Algorithm, kid: String, pin_alg: bool) -> DevKey {
        use Algorithm::*;
        let (signer, mut jwk) = match alg {
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => {
                let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key generation");
                let public = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
                let jwk = json!({"kty": "RSA", "n": b64(&public.n), "e": b64(&public.e)});
                (Signer::Rsa(pair), jwk)
            }
            ES256 | ES384 => {
                let (signing, crv, len) = if alg == ES256 {
                    (&sig::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", 32)
                } else {
                    (&sig::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384", 48)
                };
                let pair = EcdsaKeyPair::generate(signing).expect("EC key generation");
                let point = pair.public_key().as_ref();
                let (x, y) = point[1..].split_at(len);
                let jwk = json!({"kty": "EC", "crv": crv, "x": b64(x), "y": b64(y)});
                (Signer::Ec(pair), jwk)
            }
            EdDSA => {
                let pair = Ed25519KeyPair::generate().expect("Ed25519 key generation");
                let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())});
                (Signer::Ed(pair), jwk)
            }
            HS256 | HS384 | HS512 => panic!("the dev issuer signs with asymmetric keys only"),
            // `Algorithm` is non-exhaustive.
            #[allow(unreachable_patterns)]
            other => panic!("unsupported algorithm {other:?}"),
        };
        let fields = jwk.as_object_mut().expect("object");
        fields.insert("kid".into(), kid.clone().into());
        fields.insert("use".into(), "sig".into());
        if pin_alg {
            fields.insert("alg".into(), alg_name(alg).into());
        }
        DevKey { kid, alg, signer, jwk }
    }

    pub(super) fn sign(&self, alg: Algorithm, input: &[u8]) -> Vec<u8> {
        use Algorithm::*;
        let rng = SystemRandom::new();
        match &self.signer {
            Signer::Rsa(pair) => {
                let encoding: &'static dyn sig::RsaEncoding = match alg {
                    RS256 => &sig::RSA_PKCS1_SHA256,
                    RS384 => &sig::RSA_PKCS1_SHA384,
                    RS512 => &sig::RSA_PKCS1_SHA512,
                    PS256 => &sig::RSA_PSS_SHA256,
                    PS384 => &sig::RSA_PSS_SHA384,
                    _ => &sig::RSA_PSS_SHA512,
                };
                let mut out = vec![0; pair.public_modulus_len()];
                pair.sign(encoding, &rng, input, &mut out).expect("RSA signing");
                out
            }
            Signer::Ec(pair) => pair.sign(&rng, input).expect("EC signing").as_ref().to_vec(),
            Signer::Ed(pair) => pair.sign(input).as_ref().to_vec(),
        }
    }
}

/// The JOSE name of an algorithm.
pub fn alg_name(alg: Algorithm) -> &'static str {
    use Algorithm::*;
    match alg {
        HS256 => "HS256",
        HS384 => "HS384",
        HS512 => "HS512",
        RS256 => "RS256",
        RS384 => "RS384",
        RS512 => "RS512",
        PS256 => "PS256",
        PS384 => "PS384",
        PS512 => "PS512",
        ES256 => "ES256",
        ES384 => "ES384",
        EdDSA => "EdDSA",
        #[allow(unreachable_patterns)]
        _ => "unknown",
    }
}
