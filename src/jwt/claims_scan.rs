//! A quick reader for the usual shape of access-token claims, in front of serde_json.
//!
//! After the signature, serde_json's pass over the claims is the largest piece of our own work
//! on a token never seen before (about 2.7 % of an RS256 verification). Nearly every token an
//! issuer signs has the same plain shape: one flat object, strings without escapes, integer
//! dates. For that shape alone this reader gives the [`RegisteredClaims`] serde_json would, in
//! one pass over the bytes with no generic visitor machinery.
//!
//! It never decides anything: whatever it does not fully understand (an escape, a float, `null`
//! in a registered claim, a duplicate, deep nesting, `cnf`, an ID token's claims, anything that
//! is not JSON) makes it answer `None`, and serde_json reads the text as before, errors
//! included. So its only duty is to agree with serde_json where it answers, which the tests
//! below check against serde_json itself (on generated texts, plain and broken).

use std::borrow::Cow;

use crate::principal::Confirmation;

use super::policy::{OneOrMany, RegisteredClaims, Str};

/// Values nested deeper than this are left to serde_json (its own limit is 128).
const MAX_DEPTH: u32 = 16;

/// Integers of more digits are left to serde_json: up to 18 always fit an `i64`.
const MAX_DIGITS: usize = 18;

/// The registered claims of `json`, when it is a JSON object of the plain shape described
/// above; `None` otherwise (serde_json then decides).
pub(crate) fn read(json: &str) -> Option<RegisteredClaims<'_>> {
    let mut scan = Scan { text: json, at: 0 };
    let mut claims = RegisteredClaims {
        iss: None,
        sub: None,
        aud: None,
        exp: None,
        nbf: None,
        iat: None,
        client_id: None,
        azp: None,
        scope: None,
        scp: None,
        cnf: Confirmation::None,
        nonce: None,
        at_hash: None,
        c_hash: None,
    };
    scan.space();
    scan.items(b'{', b'}', |scan| match scan.name()? {
        "iss" => once(&mut claims.iss, scan.string().map(borrowed)),
        "sub" => once(&mut claims.sub, scan.string().map(borrowed)),
        "client_id" => once(&mut claims.client_id, scan.string().map(borrowed)),
        "azp" => once(&mut claims.azp, scan.string().map(borrowed)),
        "aud" => once(&mut claims.aud, scan.strings()),
        "scope" => once(&mut claims.scope, scan.strings()),
        "scp" => once(&mut claims.scp, scan.strings()),
        "exp" => once(&mut claims.exp, scan.date()),
        "nbf" => once(&mut claims.nbf, scan.date()),
        "iat" => once(&mut claims.iat, scan.date()),
        // Read by their own rules (the confirmation's, or `null` meaning absent): rare on
        // access tokens, and serde_json's to decide.
        "cnf" | "nonce" | "at_hash" | "c_hash" => None,
        _ => scan.skip_value(0),
    })?;
    scan.space();
    (scan.at == json.len()).then_some(claims)
}

/// A second member of the same registered name is an error to serde_json: not ours to answer.
fn once<T>(slot: &mut Option<T>, value: Option<T>) -> Option<()> {
    match slot {
        Some(_) => None,
        None => {
            *slot = Some(value?);
            Some(())
        }
    }
}

fn borrowed(text: &str) -> Str<'_> {
    Str(Cow::Borrowed(text))
}

struct Scan<'a> {
    text: &'a str,
    /// Always on a character boundary: it only ever moves past ASCII bytes, or to the closing
    /// quote of a string.
    at: usize,
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    fn eat(&mut self, byte: u8) -> bool {
        let here = self.peek() == Some(byte);
        self.at += usize::from(here);
        here
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.eat(byte).then_some(())
    }

    /// `open`, then items read by `item` and separated by `,`, then `close`, with JSON
    /// whitespace between them all; `None` as soon as anything else comes.
    fn items(&mut self, open: u8, close: u8, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.expect(open)?;
        self.space();
        if self.eat(close) {
            return Some(());
        }
        loop {
            item(self)?;
            self.space();
            match self.next()? {
                b',' => self.space(),
                byte if byte == close => return Some(()),
                _ => return None,
            }
        }
    }

    /// A member's name, and the `:` after it.
    fn name(&mut self) -> Option<&'a str> {
        let name = self.string()?;
        self.space();
        self.expect(b':')?;
        self.space();
        Some(name)
    }

    /// JSON's whitespace (RFC 8259 §2), nothing else.
    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// A string without escapes, as the slice between its quotes. A backslash is left to
    /// serde_json; a control character is not JSON at all.
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.at;
        let rest = &self.text.as_bytes()[start..];
        let len = rest.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        if rest[len] != b'"' {
            return None;
        }
        self.at = start + len + 1;
        // The bytes around are ASCII quotes: both ends are character boundaries.
        self.text.get(start..start + len)
    }

    /// A string, or an array of strings (`aud`, `scope`, `scp`).
    fn strings(&mut self) -> Option<OneOrMany<'a>> {
        if self.peek() != Some(b'[') {
            return self.string().map(|s| OneOrMany::One(borrowed(s)));
        }
        let mut many = Vec::new();
        self.items(b'[', b']', |scan| {
            many.push(borrowed(scan.string()?));
            Some(())
        })?;
        Some(OneOrMany::Many(many))
    }

    /// The digits of a non-negative integer without leading zeros, at most [`MAX_DIGITS`] of
    /// them, not followed by a fraction or an exponent (floats are serde_json's).
    fn digits(&mut self) -> Option<&'a str> {
        let start = self.at;
        let rest = &self.text.as_bytes()[start..];
        let len = rest.iter().position(|b| !b.is_ascii_digit()).unwrap_or(rest.len());
        if len == 0 || len > MAX_DIGITS || (len > 1 && rest[0] == b'0') {
            return None;
        }
        if matches!(rest.get(len), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        self.at = start + len;
        self.text.get(start..start + len)
    }

    /// A NumericDate written as a non-negative integer (negative and fractional dates, legal
    /// but odd, go to serde_json).
    fn date(&mut self) -> Option<i64> {
        self.digits()?.parse().ok()
    }

    /// Any value of the plain shape, skipped: strings without escapes, integers, `true`,
    /// `false`, `null`, and arrays and objects of those up to [`MAX_DEPTH`].
    fn skip_value(&mut self, depth: u32) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'-' => {
                self.at += 1;
                self.digits().map(drop)
            }
            b'0'..=b'9' => self.digits().map(drop),
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'n' => self.literal("null"),
            b'[' if depth < MAX_DEPTH => self.items(b'[', b']', |scan| scan.skip_value(depth + 1)),
            b'{' if depth < MAX_DEPTH => self.items(b'{', b'}', |scan| {
                scan.name()?;
                scan.skip_value(depth + 1)
            }),
            _ => None,
        }
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        let end = self.at + word.len();
        (self.text.as_bytes().get(self.at..end)? == word.as_bytes()).then(|| self.at = end)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// serde_json's reading of `json`, the one the validator falls back to.
    fn by_serde(json: &str) -> Option<RegisteredClaims<'_>> {
        serde_json::from_str(json).ok()
    }

    /// Both readings, compared where the quick one answers; `true` when it did.
    fn agrees(json: &str) -> bool {
        let Some(quick) = read(json) else { return false };
        let serde = by_serde(json).unwrap_or_else(|| panic!("read {json:?}, which serde_json refuses"));
        assert_eq!(format!("{quick:?}"), format!("{serde:?}"), "{json:?}");
        // Whatever it accepts, the principal keeps as JSON text: it must be JSON.
        assert!(serde_json::from_str::<serde::de::IgnoredAny>(json).is_ok(), "{json:?}");
        // Every string it gives is a slice of the text (the principal keeps them as ranges).
        let text = json.as_bytes().as_ptr_range();
        let within = |s: &Str<'_>| {
            let part = s.as_bytes().as_ptr_range();
            matches!(&s.0, Cow::Borrowed(_)) && text.start <= part.start && part.end <= text.end
        };
        let all = [&quick.iss, &quick.sub, &quick.client_id, &quick.azp].into_iter().flatten();
        let lists =
            [&quick.aud, &quick.scope, &quick.scp].into_iter().flatten().flat_map(OneOrMany::as_slice);
        assert!(all.chain(lists).all(within), "{json:?}");
        true
    }

    #[test]
    fn reads_an_issuers_usual_claims_as_serde_json_does() {
        let usual = r#"{"aud":"tower-bearer-dev","client_id":"dev-client","exp":1796097290,"iat":1796093690,"iss":"http://127.0.0.1:40459","jti":"T5TOn7YvZl2IUaeS7jkM2w","scope":"items:read","sub":"user-0"}"#;
        assert!(agrees(usual));
        let claims = read(usual).unwrap();
        assert_eq!(claims.exp, Some(1796097290));
        assert_eq!(claims.sub.as_deref(), Some("user-0"));
        // Other issuers' shapes: arrays, nested objects, `scp` lists, whitespace, non-ASCII.
        for json in [
            r#"{}"#,
            " {\n\t\"aud\" : [ \"a\" , \"b\" ] ,\r\n \"scp\":[],\"exp\":0 } \n",
            r#"{"realm_access":{"roles":["x","y"]},"resource_access":{"a":{"roles":[]}},"email_verified":true,"n":-12,"z":null,"sub":"ünï"}"#,
            r#"{"scope":"a b  c","azp":"x","nbf":100,"iat":99,"ext":[1,[2,[3,{}]]]}"#,
            r#"{"sub":"","iss":"","aud":""}"#,
            r#"{"exp":999999999999999999}"#,
        ] {
            assert!(agrees(json), "{json:?} is the plain shape");
        }
    }

    /// What it leaves to serde_json: each of these reads as `None` here, whether serde_json
    /// accepts it or refuses it.
    #[test]
    fn leaves_anything_else_to_serde_json() {
        for json in [
            r#"{"sub":"a\"b"}"#,
            r#"{"sub":"\u0041"}"#,
            r#"{"\u0073ub":"x"}"#,
            r#"{"x":"\n"}"#,
            "{\"x\":\"a\u{1}b\"}",
            r#"{"exp":1.5}"#,
            r#"{"exp":1e3}"#,
            r#"{"exp":-1}"#,
            r#"{"exp":01}"#,
            r#"{"exp":1234567890123456789}"#,
            r#"{"exp":null}"#,
            r#"{"iss":null}"#,
            r#"{"aud":["a",1]}"#,
            r#"{"aud":["a",]}"#,
            r#"{"sub":"a","sub":"b"}"#,
            r#"{"exp":1,"exp":1}"#,
            r#"{"cnf":{"jkt":"k"}}"#,
            r#"{"nonce":"n"}"#,
            r#"{"nonce":null}"#,
            r#"{"x":1.0}"#,
            r#"{"x":-}"#,
            r#"{"x":tru}"#,
            r#"{"x":[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]}"#,
            r#"{"a":1,}"#,
            r#"{"a":1}x"#,
            r#"{"a":1"#,
            r#"{"a" 1}"#,
            r#"["a"]"#,
            "{\u{a0}}",
            "",
        ] {
            assert!(read(json).is_none(), "{json:?}");
        }
        // Duplicates of other members are JSON, and ignored alike.
        assert!(agrees(r#"{"jti":"a","jti":"b","sub":"s"}"#));
    }

    /// Texts built from the pieces claims are made of, plain and not, joined right and wrong:
    /// wherever the quick reader answers, serde_json accepts the text and reads the same claims.
    #[test]
    fn agrees_with_serde_json_on_generated_claims() {
        let names = [
            "iss",
            "sub",
            "aud",
            "exp",
            "nbf",
            "iat",
            "client_id",
            "azp",
            "scope",
            "scp",
            "jti",
            "x",
            "cnf",
            "nonce",
            "s\\u0075b",
            "",
            "ünï",
            "is",
            "a\u{1f}b",
        ];
        let values = [
            "\"v\"",
            "\"a b\"",
            "\"\"",
            "\"é\"",
            "\"a\\\"b\"",
            "\"\\u00e9\"",
            "1",
            "0",
            "-3",
            "01",
            "1.5",
            "2e3",
            "1796097290",
            "99999999999999999999",
            "true",
            "false",
            "null",
            "[]",
            "[\"a\"]",
            "[\"a\",\"b\"]",
            "[\"a\",1]",
            "{}",
            "{\"k\":[1,{\"j\":null}]}",
            "[",
            "\"open",
            "tru",
            "-",
            // The integer bounds, signs and exponents; control characters; nesting and its limit.
            "999999999999999999",
            "1234567890123456789",
            "-0",
            "-01",
            "1E3",
            "1e-3",
            "\"a\u{1f}b\"",
            "[ 1 , [ 2 , { \"k\" : [ ] } ] ]",
            "[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]",
            "[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]",
        ];
        // JSON whitespace first; the rest is wrong wherever it goes.
        let glue = ["", " ", "\n\t", "\r ", ",", ":", "}", "\u{a0}"];
        let plain = 4;
        let member = (0..names.len(), 0..values.len(), 0..glue.len(), 0..8u8);
        let (answered, cases) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
        proptest!(ProptestConfig { cases: 4000, ..ProptestConfig::default() }, |(
            members in proptest::collection::vec(member, 0..8),
            lead in 0..glue.len(),
            tail in 0..glue.len(),
        )| {
            // Mostly the plain glue, now and then any.
            let pick = |i: usize, odds: u8| if odds == 0 { glue[i] } else { glue[i % plain] };
            let mut json = format!("{}{{", pick(lead, (tail % 3) as u8));
            for (i, &(name, value, space, odds)) in members.iter().enumerate() {
                if i > 0 {
                    json.push_str(if odds == 0 { glue[space] } else { "," });
                }
                let space = pick(space, odds);
                json.push_str(&format!("{space}\"{}\"{space}:{space}{}{space}", names[name], values[value]));
            }
            json.push('}');
            json.push_str(pick(tail, (lead % 3) as u8));
            cases.set(cases.get() + 1);
            answered.set(answered.get() + usize::from(agrees(&json)));
        });
        let (answered, cases) = (answered.get(), cases.get());
        // The generator reaches both sides: not a test that passes by answering nothing.
        assert!(answered > cases / 20 && answered < cases, "{answered} of {cases} answered");
    }
}
