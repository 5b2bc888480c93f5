//! Capped exponential backoff between Redis reconnect attempts. Pure.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        let min = min.min(max);
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// The wait before the next attempt; doubles each call up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// After a successful connect the next failure starts again from `min`.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_then_caps_then_resets() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(1000));
        let got: Vec<_> = (0..6).map(|_| b.next_delay()).collect();
        assert_eq!(
            got,
            [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]
        );
        b.reset();
        assert_eq!(b.next_delay(), ms(100));
    }

    #[test]
    fn min_above_max_is_clamped() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(500), ms(50));
        assert_eq!(b.next_delay(), ms(50));
        assert_eq!(b.next_delay(), ms(50));
    }
}
