//! The queue between FreeSWITCH's event threads and the worker: a deque under
//! a mutex, with a condvar the worker waits on. Unlike std's channels, waiting
//! here never asks std for the current thread's handle, which on a pthread
//! std did not start would register a pthread key whose destructor lives in
//! this library: one leaked key per load, until the process runs out. Pure.
//! The bound is not here: `Publisher::offer` admits at most `queue-size`.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

pub struct Queue<T> {
    inner: Mutex<Inner<T>>,
    ready: Condvar,
}

struct Inner<T> {
    items: VecDeque<T>,
    closed: bool,
    /// The worker is waiting: only then does a push pay for a notify.
    waiting: bool,
    /// Wake the worker even without an item (new settings).
    nudged: bool,
}

/// What a wait ended with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    Ready,
    TimedOut,
    Closed,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue {
            inner: Mutex::new(Inner {
                items: VecDeque::new(),
                closed: false,
                waiting: false,
                nudged: false,
            }),
            ready: Condvar::new(),
        }
    }
}

impl<T> Queue<T> {
    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an item; gives it back when the queue is closed. Never blocks
    /// beyond the mutex, which is only ever held for a few instructions.
    pub fn push(&self, item: T) -> Result<(), T> {
        let mut q = self.lock();
        if q.closed {
            return Err(item);
        }
        q.items.push_back(item);
        if q.waiting {
            q.waiting = false;
            self.ready.notify_one();
        }
        Ok(())
    }

    /// Moves every item into `out` (which must be empty) by swapping the two
    /// deques: the lock is held for a few instructions whatever the count,
    /// so a producer on FreeSWITCH's thread never queues behind the worker.
    /// `out`'s capacity goes to the producers, ready for the next items.
    pub fn take_all(&self, out: &mut VecDeque<T>) -> usize {
        debug_assert!(out.is_empty());
        let mut q = self.lock();
        std::mem::swap(&mut q.items, out);
        out.len()
    }

    /// Waits up to `limit` for an item, a nudge, or the close.
    pub fn wait(&self, limit: Duration) -> Wait {
        let mut q = self.lock();
        if q.items.is_empty() && !q.closed && !q.nudged {
            q.waiting = true;
            let (guard, _) = self
                .ready
                .wait_timeout_while(q, limit, |q| q.items.is_empty() && !q.closed && !q.nudged)
                .unwrap_or_else(|p| p.into_inner());
            q = guard;
            q.waiting = false;
        }
        q.nudged = false;
        if !q.items.is_empty() {
            Wait::Ready
        } else if q.closed {
            Wait::Closed
        } else {
            Wait::TimedOut
        }
    }

    /// Ends a wait early without an item.
    pub fn nudge(&self) {
        let mut q = self.lock();
        q.nudged = true;
        self.ready.notify_one();
    }

    /// No more pushes; a waiting worker wakes.
    pub fn close(&self) {
        let mut q = self.lock();
        q.closed = true;
        self.ready.notify_all();
    }

    #[cfg(test)]
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Empties the queue, returning how many items it held.
    pub fn clear(&self) -> usize {
        let mut q = self.lock();
        let n = q.items.len();
        q.items.clear();
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn items_come_out_in_order() {
        let q = Queue::default();
        for i in 0..5 {
            q.push(i).unwrap();
        }
        let mut out = VecDeque::new();
        assert_eq!(q.take_all(&mut out), 5);
        assert_eq!(out, [0, 1, 2, 3, 4]);
        q.push(5).unwrap();
        out.clear();
        assert_eq!(q.take_all(&mut out), 1);
        assert_eq!(out, [5]);
        assert_eq!(q.wait(Duration::from_millis(1)), Wait::TimedOut);
    }

    #[test]
    fn a_push_a_nudge_or_the_close_wakes_a_waiting_worker() {
        let q = Arc::new(Queue::default());
        for wake in 0..3 {
            let w = q.clone();
            let t = std::thread::spawn(move || w.wait(Duration::from_secs(30)));
            // Whether the wake lands before or during the wait, the wait ends at once.
            match wake {
                0 => q.push(1).unwrap(),
                1 => q.nudge(),
                _ => q.close(),
            }
            let got = t.join().unwrap();
            let expected = [Wait::Ready, Wait::TimedOut, Wait::Closed][wake];
            assert_eq!(got, expected, "wake {wake}");
            q.clear();
        }
        assert_eq!(q.push(2), Err(2), "closed");
        assert!(q.is_closed());
    }
}
