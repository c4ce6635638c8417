//! The queue's retry delay: exponential with full jitter, capped.

use std::time::Duration;

/// The delay before attempt `attempt + 1` after `attempt` failed: a uniform pick in
/// `[0, min(cap, base · 2^(attempt-1))]`. `unit` is the random pick in `[0, 1)`, passed in so
/// the function stays pure.
pub(crate) fn backoff(attempt: i64, base: Duration, cap: Duration, unit: f64) -> Duration {
    let exponent = u32::try_from(attempt.saturating_sub(1).clamp(0, 31)).unwrap_or(31);
    let ceiling = base.saturating_mul(1_u32 << exponent).min(cap);
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    const BASE: Duration = Duration::from_secs(5);
    const CAP: Duration = Duration::from_secs(3600);

    #[test]
    fn the_ceiling_doubles_per_attempt_until_the_cap() {
        assert_eq!(backoff(1, BASE, CAP, 1.0), Duration::from_secs(5));
        assert_eq!(backoff(2, BASE, CAP, 1.0), Duration::from_secs(10));
        assert_eq!(backoff(5, BASE, CAP, 1.0), Duration::from_secs(80));
        assert_eq!(backoff(20, BASE, CAP, 1.0), CAP);
        assert_eq!(backoff(1_000, BASE, CAP, 1.0), CAP);
    }

    #[test]
    fn full_jitter_spans_zero_to_the_ceiling() {
        assert_eq!(backoff(3, BASE, CAP, 0.0), Duration::ZERO);
        assert_eq!(backoff(3, BASE, CAP, 0.5), Duration::from_secs(10));
    }
}
