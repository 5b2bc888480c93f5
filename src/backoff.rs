//! Capped exponential backoff with jitter between Redis reconnect attempts. Pure.
//!
//! Jitter keeps a fleet of FreeSWITCH servers that lost the same Redis from
//! reconnecting in lockstep: each wait is drawn from [base/2, base], where the
//! base doubles from `min` up to `max`. So no wait is ever longer than `max`.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    base: Duration,
    rng: u64,
}

impl Backoff {
    /// `seed` picks the jitter sequence; give each process a different one.
    pub fn new(min: Duration, max: Duration, seed: u64) -> Self {
        let min = min.min(max);
        Backoff {
            min,
            max,
            base: min,
            // xorshift must not start at zero.
            rng: seed | 1,
        }
    }

    /// A seed that differs between processes and between loads.
    pub fn seed() -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        (now.as_nanos() as u64) ^ (u64::from(std::process::id()) << 32)
    }

    /// The wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.base;
        self.base = (self.base * 2).min(self.max);
        let half = base / 2;
        let span = (base - half).as_micros() as u64;
        half + Duration::from_micros(if span == 0 {
            0
        } else {
            self.random() % (span + 1)
        })
    }

    /// A wait drawn from [d/2, d], for short fixed waits that a fleet should
    /// not take in lockstep either.
    pub fn jittered(&mut self, d: Duration) -> Duration {
        let half = d / 2;
        let span = (d - half).as_micros() as u64;
        half + Duration::from_micros(if span == 0 {
            0
        } else {
            self.random() % (span + 1)
        })
    }

    /// After a success the next failure starts again from `min`.
    pub fn reset(&mut self) {
        self.base = self.min;
    }

    fn random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn each_wait_is_within_half_to_full_of_a_doubling_capped_base() {
        let mut b = Backoff::new(MS(100), MS(1000), 42);
        let bases = [100, 200, 400, 800, 1000, 1000, 1000];
        for base in bases {
            let d = b.next_delay();
            assert!(d >= MS(base) / 2 && d <= MS(base), "{d:?} for base {base}");
        }
        b.reset();
        assert!(b.next_delay() <= MS(100));
    }

    #[test]
    fn different_seeds_do_not_move_in_lockstep() {
        let run = |seed| {
            let mut b = Backoff::new(MS(100), MS(5000), seed);
            (0..8).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_ne!(run(1), run(2));
        assert_eq!(run(7), run(7), "same seed, same sequence");
    }

    #[test]
    fn short_waits_are_jittered_too() {
        let mut b = Backoff::new(MS(100), MS(1000), 9);
        let waits: Vec<Duration> = (0..8).map(|_| b.jittered(MS(100))).collect();
        assert!(waits.iter().all(|d| *d >= MS(50) && *d <= MS(100)));
        assert!(waits.windows(2).any(|w| w[0] != w[1]));
    }

    #[test]
    fn min_above_max_is_clamped() {
        let mut b = Backoff::new(MS(500), MS(50), 3);
        for _ in 0..4 {
            assert!(b.next_delay() <= MS(50));
        }
    }
}
