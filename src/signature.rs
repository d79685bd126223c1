//! Request signatures, checked on the raw body bytes, in constant time, before anything parses
//! the body.
//!
//! GitHub's scheme lives here; the pieces every HMAC-SHA256 scheme shares (one header value, a
//! `<prefix><64 lower-case hex>` digest, the MAC over the raw bytes and its constant-time check)
//! are the crate-private helpers below, which `slack::signature` uses too: one way to do each.

use axum::http::{HeaderMap, HeaderValue};
use hmac::{KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = hmac::Hmac<Sha256>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing {0} header")]
    Missing(&'static str),
    #[error("more than one {0} header")]
    Duplicated(&'static str),
    #[error("malformed {header} header: expected {prefix} and 64 lower-case hex digits")]
    Malformed {
        header: &'static str,
        prefix: &'static str,
    },
    #[error("signature does not match the body")]
    Mismatch,
}

pub const GITHUB_HEADER: &str = "x-hub-signature-256";

/// Verifies GitHub's `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`.
pub fn verify_github(
    secret: &[u8],
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), SignatureError> {
    let digest = hex_digest(
        single_header(headers, GITHUB_HEADER)?,
        GITHUB_HEADER,
        "sha256=",
    )?;
    verify_mac(secret, &[body], &digest)
}

/// `sha256=<hex>` for `body`: what GitHub would send. Used by `slipway demo` to sign its push.
pub fn sign_github(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex_mac(secret, &[body]))
}

/// The one value of header `name`. Two values are refused rather than picking one: a proxy or
/// client that repeats a signature header is not something to guess about.
pub(crate) fn single_header<'h>(
    headers: &'h HeaderMap,
    name: &'static str,
) -> Result<&'h HeaderValue, SignatureError> {
    let mut values = headers.get_all(name).iter();
    let value = values.next().ok_or(SignatureError::Missing(name))?;
    if values.next().is_some() {
        return Err(SignatureError::Duplicated(name));
    }
    Ok(value)
}

/// The 32 bytes of a `<prefix><64 lower-case hex digits>` header value. Upper-case hex is
/// refused too, so a MAC has exactly one accepted spelling.
pub(crate) fn hex_digest(
    value: &HeaderValue,
    header: &'static str,
    prefix: &'static str,
) -> Result<Vec<u8>, SignatureError> {
    value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix(prefix))
        .filter(|hex| {
            hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        .and_then(|hex| hex::decode(hex).ok())
        .ok_or(SignatureError::Malformed { header, prefix })
}

/// HMAC-SHA256 keyed with `secret` over the concatenation of `parts`, fed one by one so a
/// scheme that prefixes the body (Slack's `v0:<timestamp>:`) never copies it.
fn mac(secret: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac
}

/// Checks `digest` against the MAC of `parts`.
pub(crate) fn verify_mac(
    secret: &[u8],
    parts: &[&[u8]],
    digest: &[u8],
) -> Result<(), SignatureError> {
    // `verify_slice` compares in constant time, so the time taken tells a forger nothing about
    // how many leading bytes of a guess were right.
    mac(secret, parts)
        .verify_slice(digest)
        .map_err(|_| SignatureError::Mismatch)
}

/// The lower-case hex MAC of `parts`, as the signing side sends it.
pub(crate) fn hex_mac(secret: &[u8], parts: &[&[u8]]) -> String {
    hex::encode(mac(secret, parts).finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    // GitHub's documented test vector (docs.github.com, "Validating webhook deliveries"; copied
    // in tests/fixtures/github/signature-vector.json).
    const SECRET: &[u8] = b"It's a Secret to Everybody";
    const PAYLOAD: &[u8] = b"Hello, World!";
    const SIGNATURE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(GITHUB_HEADER, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn githubs_documented_vector_verifies() {
        assert_eq!(
            verify_github(SECRET, &headers(&[SIGNATURE]), PAYLOAD),
            Ok(())
        );
        assert_eq!(sign_github(SECRET, PAYLOAD), SIGNATURE);
    }

    const MALFORMED: SignatureError = SignatureError::Malformed {
        header: GITHUB_HEADER,
        prefix: "sha256=",
    };

    #[test]
    fn everything_else_is_refused() {
        let upper = format!("sha256={}", SIGNATURE[7..].to_uppercase());
        let sha1 = SIGNATURE.replace("sha256=", "sha1=");
        let short = &SIGNATURE[..SIGNATURE.len() - 2];
        let cases: Vec<(HeaderMap, &[u8], SignatureError)> = vec![
            (
                headers(&[]),
                PAYLOAD,
                SignatureError::Missing(GITHUB_HEADER),
            ),
            (
                headers(&[SIGNATURE, SIGNATURE]),
                PAYLOAD,
                SignatureError::Duplicated(GITHUB_HEADER),
            ),
            (headers(&[&upper]), PAYLOAD, MALFORMED),
            (headers(&[&sha1]), PAYLOAD, MALFORMED),
            (headers(&[short]), PAYLOAD, MALFORMED),
            (
                headers(&[SIGNATURE]),
                b"Hello, World?",
                SignatureError::Mismatch,
            ),
            (headers(&[SIGNATURE]), b"", SignatureError::Mismatch),
        ];
        for (h, body, expected) in cases {
            assert_eq!(verify_github(SECRET, &h, body), Err(expected));
        }
        assert_eq!(
            verify_github(b"another secret", &headers(&[SIGNATURE]), PAYLOAD),
            Err(SignatureError::Mismatch)
        );
    }
}
