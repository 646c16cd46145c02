//! JWT validation of arbitrary strings against a fixed key set: nothing but the fixture's own
//! tokens may pass, nothing may panic. Seed the corpus with the tokens of `fixture.rs`.
#![no_main]

#[path = "../fixture.rs"]
mod fixture;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = std::str::from_utf8(data) {
        fixture::check(token);
    }
});
