//! Request signatures, checked on the raw body bytes, in constant time, before anything parses
//! the body.

use axum::http::HeaderMap;
use hmac::{KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = hmac::Hmac<Sha256>;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing {0} header")]
    Missing(&'static str),
    #[error("more than one {0} header")]
    Duplicated(&'static str),
    #[error("malformed {0} header: expected sha256= and 64 lower-case hex digits")]
    Malformed(&'static str),
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
    let mut values = headers.get_all(GITHUB_HEADER).iter();
    let value = values
        .next()
        .ok_or(SignatureError::Missing(GITHUB_HEADER))?;
    if values.next().is_some() {
        return Err(SignatureError::Duplicated(GITHUB_HEADER));
    }
    let digest = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("sha256="))
        .filter(|hex| {
            hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        .and_then(|hex| hex::decode(hex).ok())
        .ok_or(SignatureError::Malformed(GITHUB_HEADER))?;
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&digest)
        .map_err(|_| SignatureError::Mismatch)
}

/// `sha256=<hex>` for `body`: what GitHub would send. Used by `slipway demo` to sign its push.
pub fn sign_github(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
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
            (
                headers(&[&upper]),
                PAYLOAD,
                SignatureError::Malformed(GITHUB_HEADER),
            ),
            (
                headers(&[&sha1]),
                PAYLOAD,
                SignatureError::Malformed(GITHUB_HEADER),
            ),
            (
                headers(&[short]),
                PAYLOAD,
                SignatureError::Malformed(GITHUB_HEADER),
            ),
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
