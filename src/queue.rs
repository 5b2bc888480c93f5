//! The queue between FreeSWITCH's event threads and the worker.
//!
//! Producers push into std's lock-free unbounded channel and never take a
//! lock while the worker is busy: a lock there would let a preempted worker
//! stall FreeSWITCH's dispatch thread (priority inversion). The worker only
//! ever uses the channel without blocking: a blocking receive would make std
//! look up the worker's thread handle, which on a pthread std did not start
//! registers a pthread key whose destructor lives in this library. When
//! idle, the worker sleeps on a condvar instead, and a producer takes its
//! mutex only to wake a sleeping worker. Pure.
//! The bound is not here: `Publisher::offer` admits at most `queue-size`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

pub struct Queue<T> {
    tx: Sender<T>,
    /// Only the worker receives; the mutex just makes the queue shareable.
    rx: Mutex<Receiver<T>>,
    /// An item taken by `wait` to see whether one was there, given back first.
    peeked: Mutex<Option<T>>,
    closed: AtomicBool,
    sleeping: AtomicBool,
    nudged: AtomicBool,
    sleep: Mutex<()>,
    wake: Condvar,
}

/// How long an idle worker looks for the next event before it sleeps.
const SPIN: Duration = Duration::from_micros(50);

/// What a wait ended with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    Ready,
    TimedOut,
    Closed,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel();
        Queue {
            tx,
            rx: Mutex::new(rx),
            peeked: Mutex::new(None),
            closed: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
            nudged: AtomicBool::new(false),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<T> Queue<T> {
    /// Adds an item; gives it back when the queue is closed.
    pub fn push(&self, item: T) -> Result<(), T> {
        if self.closed.load(SeqCst) {
            return Err(item);
        }
        self.tx.send(item).map_err(|e| e.0)?;
        // Orders the send before reading `sleeping` (the worker stores it,
        // then looks at the channel): one of the two always sees the other.
        std::sync::atomic::fence(SeqCst);
        self.wake_sleeper();
        Ok(())
    }

    fn wake_sleeper(&self) {
        if self.sleeping.load(SeqCst) {
            // The worker holds this mutex until it is really waiting, so the
            // notify cannot slip in between its last look and its wait.
            let _held = lock(&self.sleep);
            self.sleeping.store(false, SeqCst);
            self.wake.notify_one();
        }
    }

    /// Moves every item into `out`, without waiting (the worker only).
    pub fn take_all(&self, out: &mut VecDeque<T>) -> usize {
        let before = out.len();
        if let Some(item) = lock(&self.peeked).take() {
            out.push_back(item);
        }
        let rx = lock(&self.rx);
        while let Ok(item) = rx.try_recv() {
            out.push_back(item);
        }
        out.len() - before
    }

    /// Whether an item is there, keeping it for `take_all`.
    fn has_item(&self) -> bool {
        let mut peeked = lock(&self.peeked);
        if peeked.is_some() {
            return true;
        }
        match lock(&self.rx).try_recv() {
            Ok(item) => {
                *peeked = Some(item);
                true
            }
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => false,
        }
    }

    /// Waits up to `limit` for an item, a nudge, or the close (the worker only).
    pub fn wait(&self, limit: Duration) -> Wait {
        // Under steady traffic the next event is microseconds away: look for
        // it briefly before sleeping, so that producers rarely find the
        // worker asleep and need the lock to wake it.
        let spin_until = std::time::Instant::now() + SPIN.min(limit);
        while std::time::Instant::now() < spin_until {
            if self.has_item() {
                return Wait::Ready;
            }
            if self.closed.load(SeqCst) || self.nudged.load(SeqCst) {
                break;
            }
            std::hint::spin_loop();
        }
        let guard = lock(&self.sleep);
        self.sleeping.store(true, SeqCst);
        let ready = |q: &Self| q.has_item() || q.closed.load(SeqCst) || q.nudged.load(SeqCst);
        let guard = if ready(self) {
            guard
        } else {
            self.wake
                .wait_timeout_while(guard, limit, |_| !ready(self))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0)
        };
        self.sleeping.store(false, SeqCst);
        drop(guard);
        self.nudged.store(false, SeqCst);
        if self.has_item() {
            Wait::Ready
        } else if self.closed.load(SeqCst) {
            Wait::Closed
        } else {
            Wait::TimedOut
        }
    }

    /// Ends a wait early without an item.
    pub fn nudge(&self) {
        self.nudged.store(true, SeqCst);
        let _held = lock(&self.sleep);
        self.wake.notify_one();
    }

    /// No more pushes; a waiting worker wakes.
    pub fn close(&self) {
        self.closed.store(true, SeqCst);
        let _held = lock(&self.sleep);
        self.wake.notify_all();
    }

    #[cfg(test)]
    pub fn is_closed(&self) -> bool {
        self.closed.load(SeqCst)
    }

    /// Empties the queue, returning how many items it held.
    pub fn clear(&self) -> usize {
        let mut all = VecDeque::new();
        self.take_all(&mut all)
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
        assert_eq!(q.wait(Duration::from_millis(1)), Wait::Ready);
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

    #[test]
    fn many_producers_one_sleepy_consumer_lose_nothing() {
        let q = Arc::new(Queue::default());
        let producers: Vec<_> = (0..4)
            .map(|p| {
                let q = q.clone();
                std::thread::spawn(move || {
                    for i in 0..5000 {
                        q.push(p * 10_000 + i).unwrap();
                    }
                })
            })
            .collect();
        let mut got = VecDeque::new();
        while got.len() < 20_000 {
            if q.wait(Duration::from_secs(10)) == Wait::TimedOut {
                panic!("a push did not wake the consumer; got {}", got.len());
            }
            q.take_all(&mut got);
        }
        for p in producers {
            p.join().unwrap();
        }
        for p in 0..4 {
            let mine: Vec<_> = got.iter().filter(|v| **v / 10_000 == p).collect();
            assert!(mine.windows(2).all(|w| w[0] < w[1]), "per-producer order");
        }
    }
}
