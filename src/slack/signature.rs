//! Slack's request signatures: `X-Slack-Signature: v0=<hex HMAC-SHA256(secret, "v0:<ts>:<body>")>`
//! with `<ts>` from `X-Slack-Request-Timestamp`, checked on the raw body bytes, in constant time,
//! before anything parses the body (Slack docs, "Verifying requests from Slack").
//!
//! The header, hex and MAC handling is [`crate::signature`]'s; what is Slack's own is the
//! timestamp in the signed string and the replay window around it. The signing secret is used
//! as its UTF-8 bytes, not hex-decoded.

use axum::http::HeaderMap;

use crate::signature::{SignatureError, hex_digest, hex_mac, single_header, verify_mac};

pub const SIGNATURE_HEADER: &str = "x-slack-signature";
pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";

/// How far a request's timestamp may be from our clock, either way. Slack's SDKs use five
/// minutes. Past it a captured request could be replayed; before it (the future) only a
/// request signed with a wrong clock or forged for later use would arrive.
pub const REPLAY_WINDOW_SECS: u64 = 300;

/// Why a request was refused. The messages name the header and the rule; no variant holds the
/// secret or a received value, so none can be echoed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlackAuthError {
    /// A header is missing, repeated or malformed, or the signature does not match.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("malformed {TIMESTAMP_HEADER} header: expected unix time in whole seconds")]
    BadTimestamp,
    #[error(
        "the request was signed {age_secs} s ago, more than the {REPLAY_WINDOW_SECS} s allowed \
         (a replayed request, or a clock that is wrong)"
    )]
    Stale { age_secs: u64 },
    #[error(
        "the request is signed {ahead_secs} s in the future, more than the {REPLAY_WINDOW_SECS} s \
         allowed (a clock that is wrong)"
    )]
    Future { ahead_secs: u64 },
}

/// Checks a request from Slack. `now_unix` is the current unix time in seconds (a parameter, so
/// the window can be tested with a fixed clock).
pub fn verify(
    secret: &[u8],
    headers: &HeaderMap,
    body: &[u8],
    now_unix: i64,
) -> Result<(), SlackAuthError> {
    let digest = hex_digest(
        single_header(headers, SIGNATURE_HEADER)?,
        SIGNATURE_HEADER,
        "v0=",
    )?;
    let timestamp = single_header(headers, TIMESTAMP_HEADER)?.as_bytes();
    check_window(timestamp, now_unix)?;
    // The timestamp is signed exactly as received: it is only digits once `check_window` passed.
    verify_mac(secret, &[b"v0:", timestamp, b":", body], &digest)?;
    Ok(())
}

/// `v0=<hex>` for a body sent at `timestamp`: what Slack would put in [`SIGNATURE_HEADER`].
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let timestamp = timestamp.to_string();
    format!(
        "v0={}",
        hex_mac(secret, &[b"v0:", timestamp.as_bytes(), b":", body])
    )
}

fn check_window(timestamp: &[u8], now_unix: i64) -> Result<(), SlackAuthError> {
    // Digits only: `i64::from_str` alone would also take `+5`, which Slack never sends.
    let seconds = Some(timestamp)
        .filter(|t| !t.is_empty() && t.iter().all(u8::is_ascii_digit))
        .and_then(|t| std::str::from_utf8(t).ok()?.parse::<i64>().ok())
        .ok_or(SlackAuthError::BadTimestamp)?;
    // `abs_diff` cannot overflow, whatever the two values.
    let distance = now_unix.abs_diff(seconds);
    if distance <= REPLAY_WINDOW_SECS {
        Ok(())
    } else if seconds < now_unix {
        Err(SlackAuthError::Stale { age_secs: distance })
    } else {
        Err(SlackAuthError::Future {
            ahead_secs: distance,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    /// Slack's documented example (copied in tests/fixtures/slack/, see SOURCES.md there).
    struct Vector {
        secret: String,
        timestamp: String,
        body: String,
        signature: String,
    }

    fn vector() -> Vector {
        let json: serde_json::Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/slack/signature-vector.json"
        ))
        .unwrap();
        let field = |name: &str| json[name].as_str().unwrap().to_owned();
        Vector {
            secret: field("signing_secret"),
            timestamp: field("x_slack_request_timestamp"),
            body: field("body"),
            signature: field("x_slack_signature"),
        }
    }

    fn headers(signatures: &[&str], timestamps: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in signatures {
            h.append(SIGNATURE_HEADER, HeaderValue::from_str(v).unwrap());
        }
        for v in timestamps {
            h.append(TIMESTAMP_HEADER, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn slacks_documented_vector_verifies() {
        let v = vector();
        let now: i64 = v.timestamp.parse().unwrap();
        let h = headers(&[&v.signature], &[&v.timestamp]);
        assert_eq!(
            verify(v.secret.as_bytes(), &h, v.body.as_bytes(), now),
            Ok(())
        );
        // The edges of the window, both ways.
        for now in [now - 300, now + 300] {
            assert_eq!(
                verify(v.secret.as_bytes(), &h, v.body.as_bytes(), now),
                Ok(())
            );
        }
        assert_eq!(
            sign(v.secret.as_bytes(), now, v.body.as_bytes()),
            v.signature
        );
    }

    #[test]
    fn everything_else_is_refused() {
        let v = vector();
        let (sig, ts) = (v.signature.as_str(), v.timestamp.as_str());
        let now: i64 = ts.parse().unwrap();
        let hex = &sig[3..];
        let upper = format!("v0={}", hex.to_uppercase());
        let v1 = format!("v1={hex}");
        let bare = hex.to_owned();
        let short = &sig[..sig.len() - 2];
        let long = format!("{sig}00");
        let not_hex = format!("v0={}", hex.replace('a', "g"));
        let malformed = SlackAuthError::Signature(SignatureError::Malformed {
            header: SIGNATURE_HEADER,
            prefix: "v0=",
        });
        let body = v.body.as_bytes();
        #[rustfmt::skip]
        let cases: Vec<(&str, HeaderMap, &[u8], i64, SlackAuthError)> = vec![
            ("no signature", headers(&[], &[ts]), body, now,
                SignatureError::Missing(SIGNATURE_HEADER).into()),
            ("no timestamp", headers(&[sig], &[]), body, now,
                SignatureError::Missing(TIMESTAMP_HEADER).into()),
            ("two signatures", headers(&[sig, sig], &[ts]), body, now,
                SignatureError::Duplicated(SIGNATURE_HEADER).into()),
            ("two timestamps", headers(&[sig], &[ts, ts]), body, now,
                SignatureError::Duplicated(TIMESTAMP_HEADER).into()),
            ("v1= prefix", headers(&[&v1], &[ts]), body, now, malformed.clone()),
            ("no prefix", headers(&[&bare], &[ts]), body, now, malformed.clone()),
            ("too short", headers(&[short], &[ts]), body, now, malformed.clone()),
            ("too long", headers(&[&long], &[ts]), body, now, malformed.clone()),
            ("not hex", headers(&[&not_hex], &[ts]), body, now, malformed.clone()),
            ("upper-case hex", headers(&[&upper], &[ts]), body, now, malformed.clone()),
            ("empty timestamp", headers(&[sig], &[""]), body, now, SlackAuthError::BadTimestamp),
            ("fractional timestamp", headers(&[sig], &["1531420618.5"]), body, now,
                SlackAuthError::BadTimestamp),
            ("signed timestamp", headers(&[sig], &["+1531420618"]), body, now,
                SlackAuthError::BadTimestamp),
            ("negative timestamp", headers(&[sig], &["-1"]), body, now,
                SlackAuthError::BadTimestamp),
            ("spaced timestamp", headers(&[sig], &[" 1531420618"]), body, now,
                SlackAuthError::BadTimestamp),
            ("word timestamp", headers(&[sig], &["yesterday"]), body, now,
                SlackAuthError::BadTimestamp),
            ("timestamp past i64", headers(&[sig], &["99999999999999999999"]), body, now,
                SlackAuthError::BadTimestamp),
            ("301 s old", headers(&[sig], &[ts]), body, now + 301,
                SlackAuthError::Stale { age_secs: 301 }),
            ("a day old", headers(&[sig], &[ts]), body, now + 86_400,
                SlackAuthError::Stale { age_secs: 86_400 }),
            ("301 s ahead", headers(&[sig], &[ts]), body, now - 301,
                SlackAuthError::Future { ahead_secs: 301 }),
            ("clock at i64::MIN", headers(&[sig], &[ts]), body, i64::MIN,
                SlackAuthError::Future { ahead_secs: now.abs_diff(i64::MIN) }),
            ("other body", headers(&[sig], &[ts]), b"token=x", now,
                SignatureError::Mismatch.into()),
            ("empty body", headers(&[sig], &[ts]), b"", now, SignatureError::Mismatch.into()),
            // Moving the timestamp inside the window still breaks the signature: it is signed.
            ("other timestamp", headers(&[sig], &["1531420619"]), body, now,
                SignatureError::Mismatch.into()),
        ];
        for (name, h, body, now, expected) in cases {
            assert_eq!(
                verify(v.secret.as_bytes(), &h, body, now),
                Err(expected),
                "{name}"
            );
        }
        let h = headers(&[sig], &[ts]);
        assert_eq!(
            verify(b"another secret", &h, body, now),
            Err(SignatureError::Mismatch.into())
        );
    }

    #[test]
    fn messages_say_what_was_wrong() {
        let v = vector();
        let now: i64 = v.timestamp.parse().unwrap();
        let stale = verify(
            v.secret.as_bytes(),
            &headers(&[&v.signature], &[&v.timestamp]),
            v.body.as_bytes(),
            now + 400,
        )
        .unwrap_err()
        .to_string();
        assert!(stale.contains("400 s ago"), "{stale}");
        let missing = SlackAuthError::from(SignatureError::Missing(TIMESTAMP_HEADER)).to_string();
        assert_eq!(missing, "missing x-slack-request-timestamp header");
        let malformed = SlackAuthError::from(SignatureError::Malformed {
            header: SIGNATURE_HEADER,
            prefix: "v0=",
        })
        .to_string();
        assert!(
            malformed.contains("expected v0= and 64 lower-case hex"),
            "{malformed}"
        );
    }
}
