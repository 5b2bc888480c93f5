//! Event buffers the worker is done with, for the callback's next events.
//! Without it every event is allocated on FreeSWITCH's thread and freed on
//! the worker's, and glibc makes the two queue on the allocating thread's
//! arena lock: the callback's rare 20-40 µs stalls. Pure.

use std::sync::Mutex;

use crate::callcenter::Spare;

/// How many buffers to keep, and the largest worth keeping.
const KEEP: usize = 1024;
const MAX_BYTES: usize = 8 * 1024;

#[derive(Default)]
pub struct Spares {
    pool: Mutex<Vec<Spare>>,
}

impl Spares {
    /// A buffer to reuse, if one is free right now: never waits (a busy pool
    /// just means a fresh allocation).
    pub fn get(&self) -> Option<Spare> {
        self.pool.try_lock().ok()?.pop()
    }

    /// Keeps a modest buffer for later (the worker only).
    pub fn put(&self, spare: Spare) {
        if spare.bytes() > MAX_BYTES {
            return;
        }
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < KEEP {
            pool.push(spare);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_modest_buffers_up_to_a_bound() {
        let s = Spares::default();
        assert!(s.get().is_none());
        let big = Spare {
            buf: String::with_capacity(MAX_BYTES + 1),
            fields: Vec::new(),
        };
        s.put(big);
        assert!(s.get().is_none(), "too big to keep");
        for _ in 0..KEEP + 10 {
            s.put(Spare {
                buf: String::with_capacity(100),
                fields: Vec::new(),
            });
        }
        assert_eq!(s.pool.lock().unwrap().len(), KEEP);
        assert!(s.get().is_some_and(|sp| sp.buf.capacity() >= 100));
    }
}
