//! What the worker waits on besides the queue: the shutdown request with its
//! flush deadline, and the producer's "queue full" nudge. Pure.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::config::Settings;

#[derive(Default)]
pub struct Stop {
    deadline: Mutex<Option<Instant>>,
    wake: Condvar,
    /// Set by the producer when the queue overflowed; cleared by the worker
    /// once Redis accepts events again. While set, backoff waits are short.
    full: AtomicBool,
    /// New settings from `cc_events reload`, for the worker to apply.
    pending: Mutex<Option<Box<Settings>>>,
}

impl Stop {
    /// Asks the worker to stop by `deadline`, waking it wherever it waits.
    pub fn request(&self, deadline: Instant) {
        if let Ok(mut d) = self.deadline.lock() {
            *d = Some(deadline);
        }
        self.wake.notify_all();
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline.lock().ok().and_then(|d| *d)
    }

    /// `until`, or the shutdown deadline when that comes first.
    pub fn cap(&self, until: Instant) -> Instant {
        self.deadline().map_or(until, |d| d.min(until))
    }

    pub fn passed(&self) -> bool {
        self.deadline().is_some_and(|d| Instant::now() >= d)
    }

    /// Called from FreeSWITCH's event thread when the queue refused an event.
    /// Only the first refusal of an overflow takes the lock (briefly, no I/O).
    pub fn note_full(&self) {
        if !self.full.swap(true, Relaxed) {
            // Notifying under the lock cannot race with a worker about to wait.
            let _held = self.deadline.lock();
            self.wake.notify_all();
        }
    }

    /// Hands new settings to the worker and wakes it.
    pub fn reconfigure(&self, settings: Settings) {
        if let Ok(mut p) = self.pending.lock() {
            *p = Some(Box::new(settings));
        }
        let _held = self.deadline.lock();
        self.wake.notify_all();
    }

    pub fn take_reconfigure(&self) -> Option<Settings> {
        self.pending
            .lock()
            .ok()
            .and_then(|mut p| p.take())
            .map(|b| *b)
    }

    fn reconfigure_pending(&self) -> bool {
        self.pending.lock().is_ok_and(|p| p.is_some())
    }

    #[cfg(test)]
    pub fn is_full(&self) -> bool {
        self.full.load(Relaxed)
    }

    pub fn clear_full(&self) {
        self.full.store(false, Relaxed);
    }

    /// Sleeps up to `d`, returning early on shutdown. While the queue is full
    /// the sleep is at most `when_full`, and an overflow ends a longer one: a
    /// full queue must not leave the worker asleep once Redis is back.
    pub fn sleep(&self, d: Duration, when_full: Duration) {
        let Ok(guard) = self.deadline.lock() else {
            return;
        };
        let was_full = self.full.load(Relaxed);
        let d = if was_full { d.min(when_full) } else { d };
        let _ = self.wake.wait_timeout_while(guard, d, |dl| {
            dl.is_none() && (was_full || !self.full.load(Relaxed)) && !self.reconfigure_pending()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn an_overflow_wakes_a_sleeping_worker() {
        let stop = Arc::new(Stop::default());
        let s = stop.clone();
        let t = std::thread::spawn(move || {
            let started = Instant::now();
            s.sleep(Duration::from_secs(30), Duration::from_millis(100));
            started.elapsed()
        });
        // Whether the nudge lands before or during the sleep, the sleep must end.
        stop.note_full();
        assert!(t.join().unwrap() < Duration::from_secs(30));
        assert!(stop.is_full());
        let started = Instant::now();
        stop.sleep(Duration::from_secs(30), Duration::from_millis(1));
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "short while full"
        );
        stop.clear_full();
        assert!(!stop.is_full());
    }

    #[test]
    fn cap_takes_the_earlier_of_the_two() {
        let stop = Stop::default();
        let now = Instant::now();
        let later = now + Duration::from_secs(5);
        assert_eq!(stop.cap(later), later);
        stop.request(now);
        assert_eq!(stop.cap(later), now);
        assert!(stop.passed());
    }
}
