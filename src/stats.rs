//! Counters shared by the event callback, the worker and `cc_events status`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
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
    /// Of `lost`: written to Redis but not confirmed when the flush ran out,
    /// so Redis may still publish them.
    pub unconfirmed: AtomicU64,
    /// Accepted and not yet settled (published or lost): in the queue or in
    /// the batch being sent. Never above `queue-size`.
    pub held: AtomicU64,
    /// Of `held`: taken by the worker into the batch being sent.
    pub in_batch: AtomicU64,
    pub reconnects: AtomicU64,
    /// callcenter::info events without a CC-Action header.
    pub malformed: AtomicU64,
    pub connected: AtomicBool,
    /// Where the link connected last (the master Sentinel named, ...); shown
    /// while connected.
    target: Mutex<Option<String>>,
    last_error: Mutex<Option<(SystemTime, String)>>,
    /// Published events per published name, in order of first publication.
    by_name: Mutex<Vec<(Arc<str>, u64)>>,
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
    /// Where the link is connected, as it describes itself.
    pub target: Option<String>,
    pub last_error: Option<(SystemTime, String)>,
    pub by_name: Vec<(Arc<str>, u64)>,
}

impl Stats {
    /// Set before `connected`, so that a connected status never shows the
    /// previous connection's target.
    pub fn set_target(&self, target: String) {
        if let Ok(mut t) = self.target.lock() {
            *t = Some(target);
        }
    }

    pub fn set_error(&self, msg: String) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some((SystemTime::now(), msg));
        }
    }

    /// Counts published events by name (the worker, once per batch).
    pub fn count_published<'a>(&self, names: impl Iterator<Item = &'a Arc<str>>) {
        let Ok(mut by) = self.by_name.lock() else {
            return;
        };
        for name in names {
            match by.iter_mut().find(|(n, _)| n == name) {
                Some((_, c)) => *c += 1,
                None => by.push((name.clone(), 1)),
            }
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            received: self.received.load(Relaxed),
            published: self.published.load(Relaxed),
            dropped: self.rejected.load(Relaxed) + self.lost.load(Relaxed),
            queued: self.held.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
            connected: self.connected.load(Relaxed),
            target: self.target.lock().ok().and_then(|t| t.clone()),
            last_error: self.last_error.lock().ok().and_then(|e| e.clone()),
            by_name: self.by_name.lock().map(|b| b.clone()).unwrap_or_default(),
        }
    }
}
