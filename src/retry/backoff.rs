//! The backoff schedule: an iterator of delays, `None` meaning give up.

use std::time::Duration;

/// How a delay is randomised (AWS "Exponential Backoff and Jitter").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Jitter {
    /// The exact exponential delay.
    #[default]
    None,
    /// Uniform in [0, delay].
    Full,
    /// delay/2 plus uniform in [0, delay/2].
    Equal,
}

/// Builds a [`Schedule`].
///
/// # Default
/// 3 attempts in all, base delay 1s, factor 2, no delay longer than 30s,
/// no jitter: the delays are 1s then 2s, as in the reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    attempts: u32,
    delay: Duration,
    factor: f64,
    max_delay: Duration,
    jitter: Jitter,
    seed: Option<u64>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            attempts: 3,
            delay: Duration::from_secs(1),
            factor: 2.0,
            max_delay: Duration::from_secs(30),
            jitter: Jitter::None,
            seed: None,
        }
    }
}

impl Backoff {
    /// Attempts in all, the first included (at least 1).
    pub fn with_attempts(mut self, n: u32) -> Self {
        self.attempts = n.max(1);
        self
    }
    /// The delay before the second attempt.
    pub fn with_delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
    /// The growth factor between delays.
    pub fn with_factor(mut self, f: f64) -> Self {
        self.factor = f;
        self
    }
    /// No single delay is longer than this.
    pub fn with_max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d;
        self
    }
    pub fn with_jitter(mut self, j: Jitter) -> Self {
        self.jitter = j;
        self
    }
    /// A fixed seed makes jittered schedules reproducible (tests).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }
    pub fn build(self) -> Schedule {
        let rng = match self.seed {
            Some(s) => fastrand::Rng::with_seed(s),
            None => fastrand::Rng::new(),
        };
        Schedule {
            cfg: self,
            retry: 0,
            rng,
        }
    }
}

/// The delays before attempts 2, 3, ...; it ends after `attempts - 1`.
#[derive(Debug, Clone)]
pub struct Schedule {
    cfg: Backoff,
    retry: u32,
    rng: fastrand::Rng,
}

impl Iterator for Schedule {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        if self.retry + 1 >= self.cfg.attempts {
            return None;
        }
        let exp = self.cfg.factor.powi(self.retry.min(1000) as i32);
        let raw = self.cfg.delay.as_secs_f64() * exp;
        let cap = self.cfg.max_delay.as_secs_f64();
        let v = if raw.is_finite() { raw.min(cap) } else { cap };
        self.retry += 1;
        let v = match self.cfg.jitter {
            Jitter::None => v,
            Jitter::Full => v * self.rng.f64(),
            Jitter::Equal => v / 2.0 + v / 2.0 * self.rng.f64(),
        };
        // Whole milliseconds: what the logs print is what is slept.
        Some(Duration::from_millis((v * 1000.0).round() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secs(v: &[f64]) -> Vec<Duration> {
        v.iter().map(|s| Duration::from_secs_f64(*s)).collect()
    }

    #[test]
    fn default_is_the_references_schedule() {
        let got: Vec<_> = Backoff::default().build().collect();
        assert_eq!(got, secs(&[1.0, 2.0]));
    }

    #[test]
    fn exponential_and_capped() {
        let got: Vec<_> = Backoff::default()
            .with_attempts(7)
            .with_delay(Duration::from_millis(500))
            .with_max_delay(Duration::from_secs(5))
            .build()
            .collect();
        assert_eq!(got, secs(&[0.5, 1.0, 2.0, 4.0, 5.0, 5.0]));
    }

    #[test]
    fn one_attempt_never_retries() {
        assert_eq!(Backoff::default().with_attempts(1).build().next(), None);
        assert_eq!(Backoff::default().with_attempts(0).attempts(), 1);
    }

    #[test]
    fn huge_attempt_counts_stay_capped() {
        let last = Backoff::default()
            .with_attempts(5000)
            .build()
            .last()
            .unwrap();
        assert_eq!(last, Duration::from_secs(30));
    }

    #[test]
    fn seeded_jitter_is_reproducible() {
        let b = Backoff::default()
            .with_attempts(6)
            .with_jitter(Jitter::Full)
            .with_seed(7);
        let a: Vec<_> = b.build().collect();
        let c: Vec<_> = b.build().collect();
        assert_eq!(a, c);
    }

    proptest! {
        #[test]
        fn jitter_stays_in_bounds(seed: u64, attempts in 1u32..40, base_ms in 1u64..10_000, cap_ms in 1u64..60_000) {
            let plain: Vec<_> = Backoff::default().with_attempts(attempts)
                .with_delay(Duration::from_millis(base_ms))
                .with_max_delay(Duration::from_millis(cap_ms)).build().collect();
            prop_assert_eq!(plain.len() as u32, attempts - 1);
            for (j, lo_frac) in [(Jitter::Full, 0.0), (Jitter::Equal, 0.5)] {
                let got: Vec<_> = Backoff::default().with_attempts(attempts)
                    .with_delay(Duration::from_millis(base_ms))
                    .with_max_delay(Duration::from_millis(cap_ms))
                    .with_jitter(j).with_seed(seed).build().collect();
                for (g, p) in got.iter().zip(&plain) {
                    prop_assert!(*g <= *p + Duration::from_millis(1));
                    prop_assert!(g.as_secs_f64() + 0.001 >= p.as_secs_f64() * lo_frac);
                    prop_assert!(*g <= Duration::from_millis(cap_ms) + Duration::from_millis(1));
                }
            }
        }
    }
}
