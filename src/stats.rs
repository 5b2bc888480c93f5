//! Counters shared by the event callback, the worker and `cc_events status`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::SystemTime;

#[derive(Default)]
pub struct Stats {
    /// Events of a published kind offered to the queue.
    pub received: AtomicU64,
    /// Refused by the queue: full, or the worker is gone.
    pub rejected: AtomicU64,
    pub published: AtomicU64,
    /// Taken off the queue but never published (shutdown flush ran out).
    pub lost: AtomicU64,
    pub reconnects: AtomicU64,
    /// callcenter::info events without a CC-Action header.
    pub malformed: AtomicU64,
    pub connected: AtomicBool,
    last_error: Mutex<Option<(SystemTime, String)>>,
}

/// A copy for printing; counters are read one by one, not atomically together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub received: u64,
    pub published: u64,
    pub dropped: u64,
    pub queued: u64,
    pub reconnects: u64,
    pub connected: bool,
    pub last_error: Option<(SystemTime, String)>,
}

impl Stats {
    pub fn set_error(&self, msg: String) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some((SystemTime::now(), msg));
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        // Read the outflows before the inflow so that a concurrent event can
        // only make `queued` momentarily high, never wrap below zero.
        let published = self.published.load(Relaxed);
        let lost = self.lost.load(Relaxed);
        let rejected = self.rejected.load(Relaxed);
        let received = self.received.load(Relaxed);
        Snapshot {
            received,
            published,
            dropped: rejected + lost,
            // In the queue or in the worker's batch: everything not yet settled.
            queued: received.saturating_sub(rejected + published + lost),
            reconnects: self.reconnects.load(Relaxed),
            connected: self.connected.load(Relaxed),
            last_error: self.last_error.lock().ok().and_then(|e| e.clone()),
        }
    }
}
