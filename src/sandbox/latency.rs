//! Simulated network and server time: every DingTalk API answer waits `base` ± `jitter`,
//! as calls to the real service take tens to hundreds of milliseconds.

use std::time::Duration;

use rand::Rng;

/// How long a DingTalk API call takes to answer: `base` plus or minus up to `jitter`, drawn
/// uniformly per call (never below zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Latency {
    /// The typical time per call.
    pub base: Duration,
    /// The most a call deviates from `base`, either way.
    pub jitter: Duration,
}

impl Latency {
    /// A fixed `base` per call, no jitter.
    pub fn fixed(base: Duration) -> Latency {
        Latency {
            base,
            jitter: Duration::ZERO,
        }
    }

    /// The delay for one call.
    pub(crate) fn sample(&self) -> Duration {
        if self.jitter.is_zero() {
            return self.base;
        }
        let low = self.base.saturating_sub(self.jitter);
        let high = self.base.saturating_add(self.jitter);
        rand::rng().random_range(low..=high)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_stay_within_base_plus_or_minus_jitter_and_vary() {
        let latency = Latency {
            base: Duration::from_millis(150),
            jitter: Duration::from_millis(50),
        };
        let samples: Vec<Duration> = (0..1000).map(|_| latency.sample()).collect();
        assert!(
            samples
                .iter()
                .all(|d| (Duration::from_millis(100)..=Duration::from_millis(200)).contains(d))
        );
        assert!(samples.iter().any(|d| *d < Duration::from_millis(140)));
        assert!(samples.iter().any(|d| *d > Duration::from_millis(160)));
    }

    #[test]
    fn jitter_larger_than_the_base_never_goes_below_zero() {
        let latency = Latency {
            base: Duration::from_millis(10),
            jitter: Duration::from_millis(50),
        };
        assert!((0..200).all(|_| latency.sample() <= Duration::from_millis(60)));
        assert_eq!(
            Latency::fixed(Duration::from_millis(7)).sample(),
            Duration::from_millis(7)
        );
    }
}
