//! Mutations of a valid token's segments: replace, insert or delete characters (biased towards
//! the base64url alphabet and the segment separator) and flip bits of the decoded segments.
//! Any change must be refused.
#![no_main]

#[path = "../fixture.rs"]
mod fixture;

use libfuzzer_sys::fuzz_target;

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/~";

fuzz_target!(|input: (bool, Vec<(u16, u8, u8)>)| {
    let (which, edits) = input;
    let original = fixture::TOKENS[usize::from(which)];
    let mut token = original.as_bytes().to_vec();
    for (at, kind, byte) in edits {
        let byte = if kind & 0x10 == 0 { ALPHABET[usize::from(byte) % ALPHABET.len()] } else { byte };
        let at = usize::from(at);
        match kind % 4 {
            0 if !token.is_empty() => {
                let at = at % token.len();
                token[at] = byte;
            }
            1 => token.insert(at % (token.len() + 1), byte),
            2 if !token.is_empty() => {
                token.remove(at % token.len());
            }
            _ => {
                // Flip bits inside one decoded segment and re-encode it.
                use base64::Engine;
                use base64::engine::general_purpose::URL_SAFE_NO_PAD;
                let Ok(text) = std::str::from_utf8(&token) else { continue };
                let mut segments: Vec<String> = text.split('.').map(str::to_owned).collect();
                let index = at % segments.len();
                let Ok(mut decoded) = URL_SAFE_NO_PAD.decode(&segments[index]) else { continue };
                if decoded.is_empty() || byte == 0 {
                    continue;
                }
                let pos = usize::from(kind) % decoded.len();
                decoded[pos] ^= byte;
                segments[index] = URL_SAFE_NO_PAD.encode(decoded);
                token = segments.join(".").into_bytes();
            }
        }
    }
    if let Ok(token) = std::str::from_utf8(&token) {
        fixture::check(token);
    }
});
