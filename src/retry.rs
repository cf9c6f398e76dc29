//! Retry policies: how long to wait before the next attempt, and when to give up.
#![forbid(unsafe_code)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Decides the delay before each retry. A watcher asks it after every failed attempt and
/// resets it after a success.
pub trait RetryPolicy: Send {
    /// The delay before the next attempt, or `None` to give up.
    fn next_delay(&mut self) -> Option<Duration>;
    /// Called after a success: start over.
    fn reset(&mut self);
}

/// Exponential backoff with full-range jitter and a cap; retries forever unless
/// [`max_elapsed`](Self::max_elapsed) or [`max_attempts`](Self::max_attempts) is set.
#[derive(Debug, Clone)]
pub struct ExponentialBackoff {
    /// First delay (default 100 ms).
    pub initial: Duration,
    /// Largest delay (default 10 s).
    pub max: Duration,
    /// Growth factor per attempt (default 2).
    pub multiplier: f64,
    /// Relative jitter, 0..=1 (default 0.2: each delay is randomly shortened by up to 20 %).
    pub jitter: f64,
    /// Give up once this much time has passed since the first failure (default: never).
    pub max_elapsed: Option<Duration>,
    /// Give up after this many consecutive failures (default: never).
    pub max_attempts: Option<u32>,
    attempts: u32,
    first_failure: Option<Instant>,
    rng: u64,
}

impl Default for ExponentialBackoff {
    fn default() -> Self {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9_7f4a_7c15);
        ExponentialBackoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: 0.2,
            max_elapsed: None,
            max_attempts: None,
            attempts: 0,
            first_failure: None,
            rng: seed | 1,
        }
    }
}

impl ExponentialBackoff {
    /// The default policy with another initial and maximum delay.
    pub fn new(initial: Duration, max: Duration) -> Self {
        ExponentialBackoff {
            initial,
            max,
            ..Default::default()
        }
    }

    /// Gives up after `n` consecutive failures.
    pub fn with_max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n);
        self
    }

    /// Gives up once `d` has passed since the first failure.
    pub fn with_max_elapsed(mut self, d: Duration) -> Self {
        self.max_elapsed = Some(d);
        self
    }

    fn random_unit(&mut self) -> f64 {
        // xorshift64*: plenty for jitter
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl RetryPolicy for ExponentialBackoff {
    fn next_delay(&mut self) -> Option<Duration> {
        let first = *self.first_failure.get_or_insert_with(Instant::now);
        if self.max_attempts.is_some_and(|m| self.attempts >= m)
            || self.max_elapsed.is_some_and(|m| first.elapsed() >= m)
        {
            return None;
        }
        let exp = self.multiplier.max(1.0).powi(self.attempts.min(64) as i32);
        self.attempts += 1;
        let base = (self.initial.as_secs_f64() * exp).min(self.max.as_secs_f64());
        let jitter = self.jitter.clamp(0.0, 1.0) * self.random_unit();
        Some(Duration::from_secs_f64(base * (1.0 - jitter)))
    }

    fn reset(&mut self) {
        self.attempts = 0;
        self.first_failure = None;
    }
}

/// Never retries: the first failure is final.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRetry;

impl RetryPolicy for NoRetry {
    fn next_delay(&mut self) -> Option<Duration> {
        None
    }
    fn reset(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_resets() {
        let mut b = ExponentialBackoff {
            jitter: 0.0,
            max_attempts: Some(6),
            ..ExponentialBackoff::new(Duration::from_millis(100), Duration::from_millis(500))
        };
        let d: Vec<_> = std::iter::from_fn(|| b.next_delay()).collect();
        let ms: Vec<_> = d.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![100, 200, 400, 500, 500, 500]);
        b.reset();
        assert_eq!(b.next_delay(), Some(Duration::from_millis(100)));
    }

    #[test]
    fn jitter_stays_in_range() {
        let mut b = ExponentialBackoff::default();
        for _ in 0..100 {
            let d = b.next_delay().unwrap();
            assert!(d <= b.max);
        }
    }
}
