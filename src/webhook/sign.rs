//! The webhook signature: HMAC-SHA256 with the producer's secret over `"{timestamp}.{body}"`,
//! sent as `v1=<hex>`; and its verification, for receivers and tests.
//!
//! A receiver reads the raw body bytes (before any JSON parsing), takes the
//! `X-Approval-Worker-Timestamp` header (unix milliseconds, decimal) and the
//! `X-Approval-Worker-Signature` header, and checks that one `v1=` entry of the latter (a
//! comma-separated list, so a later version can send several during a secret rotation) equals
//! hex(HMAC-SHA256(secret, timestamp + "." + body)), and that the timestamp is recent, which
//! bounds replays. `X-Approval-Worker-Delivery` is the same for every attempt of one delivery:
//! receivers deduplicate on it.

#[cfg(test)]
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Unix milliseconds of the attempt, signed with the body.
pub(crate) const TIMESTAMP_HEADER: &str = "x-approval-worker-timestamp";
/// `v1=<hex HMAC-SHA256>`.
pub(crate) const SIGNATURE_HEADER: &str = "x-approval-worker-signature";
/// The delivery's id, stable across retries.
pub(crate) const DELIVERY_HEADER: &str = "x-approval-worker-delivery";

/// The version tag of the one signature scheme so far.
const VERSION: &str = "v1";

/// Why a signature does not verify.
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum VerifyError {
    #[error("the timestamp is not unix milliseconds")]
    MalformedTimestamp,
    #[error("the timestamp is {skew_ms} ms away from now, more than allowed")]
    Stale { skew_ms: u64 },
    #[error("the signature header has no v1 entry")]
    MalformedSignature,
    #[error("no v1 signature matches the body")]
    Mismatch,
}

/// Hex HMAC-SHA256 of `"{timestamp_ms}.{body}"` under `secret`.
pub(crate) fn sign(secret: &[u8], timestamp_ms: i64, body: &[u8]) -> String {
    hex::encode(mac(secret, timestamp_ms, body).finalize().into_bytes())
}

/// The value of [`SIGNATURE_HEADER`].
pub(crate) fn signature_header(secret: &[u8], timestamp_ms: i64, body: &[u8]) -> String {
    format!("{VERSION}={}", sign(secret, timestamp_ms, body))
}

/// Checks a delivery as a receiver would: `timestamp` and `signature` are the header values,
/// `body` the raw bytes received. The comparison takes constant time. It is the reference
/// for receivers (README), checked by the tests.
#[cfg(test)]
pub(crate) fn verify(
    secret: &[u8],
    timestamp: &str,
    body: &[u8],
    signature: &str,
    now_ms: i64,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    let timestamp_ms: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::MalformedTimestamp)?;
    let skew_ms = now_ms.abs_diff(timestamp_ms);
    if u128::from(skew_ms) > tolerance.as_millis() {
        return Err(VerifyError::Stale { skew_ms });
    }
    let candidates: Vec<&str> = signature
        .split(',')
        .filter_map(|entry| entry.trim().split_once('='))
        .filter(|(version, _)| *version == VERSION)
        .map(|(_, value)| value.trim())
        .collect();
    if candidates.is_empty() {
        return Err(VerifyError::MalformedSignature);
    }
    let matches = candidates.iter().any(|candidate| {
        hex::decode(candidate)
            .is_ok_and(|bytes| mac(secret, timestamp_ms, body).verify_slice(&bytes).is_ok())
    });
    if matches {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

fn mac(secret: &[u8], timestamp_ms: i64, body: &[u8]) -> Hmac<Sha256> {
    // True invariant: HMAC takes keys of any length (long ones are hashed first), so
    // new_from_slice cannot fail.
    #[allow(clippy::expect_used)]
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(timestamp_ms.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec-test";
    const BODY: &[u8] = br#"{"instanceId":"INST-1","outcome":"approved"}"#;
    const AT: i64 = 1_700_000_000_000;
    const FIVE_MINUTES: Duration = Duration::from_secs(300);

    #[test]
    fn the_signature_is_hex_hmac_sha256_over_timestamp_dot_body() {
        // Computed independently: Python's hmac.new(key, b"1700000000000." + body, sha256).
        assert_eq!(
            sign(SECRET, AT, BODY),
            "854960402d0b5faecb5d87b914a8dcfa7849e8c74ddfd2f097267efe0b33b754"
        );
        assert_eq!(
            signature_header(SECRET, AT, BODY),
            format!("v1={}", sign(SECRET, AT, BODY))
        );
    }

    #[test]
    fn a_signed_body_verifies_within_the_tolerance_and_among_other_entries() {
        let header = signature_header(SECRET, AT, BODY);
        assert_eq!(
            verify(
                SECRET,
                "1700000000000",
                BODY,
                &header,
                AT + 1000,
                FIVE_MINUTES
            ),
            Ok(())
        );
        let several = format!("v0=abc, {header} ,v2=zz");
        assert_eq!(
            verify(
                SECRET,
                "1700000000000",
                BODY,
                &several,
                AT - 1000,
                FIVE_MINUTES
            ),
            Ok(())
        );
    }

    #[test]
    fn a_wrong_secret_a_changed_body_or_timestamp_do_not_verify() {
        let header = signature_header(SECRET, AT, BODY);
        let check = |secret: &[u8], timestamp: &str, body: &[u8]| {
            verify(secret, timestamp, body, &header, AT, FIVE_MINUTES)
        };
        assert_eq!(
            check(b"other", "1700000000000", BODY),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            check(SECRET, "1700000000000", b"{}"),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            check(SECRET, "1700000000001", BODY),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            check(SECRET, "soon", BODY),
            Err(VerifyError::MalformedTimestamp)
        );
    }

    #[test]
    fn old_or_future_timestamps_and_headers_without_v1_are_refused() {
        let header = signature_header(SECRET, AT, BODY);
        let late = verify(
            SECRET,
            "1700000000000",
            BODY,
            &header,
            AT + 300_001,
            FIVE_MINUTES,
        );
        assert_eq!(late, Err(VerifyError::Stale { skew_ms: 300_001 }));
        let early = verify(
            SECRET,
            "1700000000000",
            BODY,
            &header,
            AT - 300_001,
            FIVE_MINUTES,
        );
        assert_eq!(early, Err(VerifyError::Stale { skew_ms: 300_001 }));
        for bad in ["", "sha256=abc", "v1", &sign(SECRET, AT, BODY)] {
            assert_eq!(
                verify(SECRET, "1700000000000", BODY, bad, AT, FIVE_MINUTES),
                Err(VerifyError::MalformedSignature),
                "{bad:?}"
            );
        }
        assert_eq!(
            verify(
                SECRET,
                "1700000000000",
                BODY,
                "v1=not-hex",
                AT,
                FIVE_MINUTES
            ),
            Err(VerifyError::Mismatch)
        );
    }
}
