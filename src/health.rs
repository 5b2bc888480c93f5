//! What the worker logs: one line per change of Redis health, and throttled
//! warnings for counters that grow on FreeSWITCH's threads.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crate::logger::{Level, LogFn};
use crate::stats::Stats;

/// At most one warning per counter per this interval.
const WARN_EVERY: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Connect,
    Publish,
}

/// Keeps the log to one line per change of state: an outage is one error line
/// (and another only if the reason changes), the recovery one info line.
#[derive(Default)]
pub struct Health {
    failing: Option<(Cause, String)>,
    announced: bool,
}

impl Health {
    pub fn failed(&mut self, log: &LogFn, stats: &Stats, msg: String, cause: Cause) {
        if self.failing.as_ref().map(|(_, m)| m) != Some(&msg) {
            let level = if cause == Cause::Connect {
                Level::Error
            } else {
                Level::Warning
            };
            log(level, &msg);
        }
        stats.set_error(msg.clone());
        self.failing = Some((cause, msg));
        if cause == Cause::Connect {
            self.announced = false;
        }
    }

    /// Returns true when this connect ends an outage (so backoff starts over).
    pub fn connected(&mut self, log: &LogFn, target: &str) -> bool {
        if !self.announced {
            log(Level::Info, &format!("connected to Redis at {target}"));
            self.announced = true;
        }
        matches!(self.failing, None | Some((Cause::Connect, _)))
    }

    pub fn published(&mut self) {
        self.failing = None;
    }
}

/// Turns the drop and malformed-event counters into at most one warning each
/// per interval: counted on FreeSWITCH's threads, logged from the worker.
#[derive(Default)]
pub struct DropReporter {
    dropped: Throttled,
    malformed: Throttled,
}

#[derive(Default)]
struct Throttled {
    reported: u64,
    last: Option<Instant>,
}

impl Throttled {
    /// The count not yet reported, when it is time to report it.
    fn due(&mut self, total: u64) -> Option<u64> {
        if total == self.reported || self.last.is_some_and(|t| t.elapsed() < WARN_EVERY) {
            return None;
        }
        let new = total - self.reported;
        self.reported = total;
        self.last = Some(Instant::now());
        Some(new)
    }
}

impl DropReporter {
    pub fn report(&mut self, stats: &Stats, log: &LogFn) {
        let dropped = stats.rejected.load(Relaxed);
        if let Some(new) = self.dropped.due(dropped) {
            log(
                Level::Warning,
                &format!(
                    "queue full: dropped {new} events ({dropped} in total); Redis is too slow or unreachable, or raise queue-size"
                ),
            );
        }
        let malformed = stats.malformed.load(Relaxed);
        if let Some(new) = self.malformed.due(malformed) {
            log(
                Level::Warning,
                &format!(
                    "ignored {new} callcenter::info events without a CC-Action header ({malformed} in total); something other than mod_callcenter fires that subclass"
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    type Lines = Arc<Mutex<Vec<(Level, String)>>>;

    fn collecting() -> (LogFn, Lines) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let log: LogFn = Arc::new(move |l, m| sink.lock().unwrap().push((l, m.to_string())));
        (log, lines)
    }

    #[test]
    fn an_outage_is_one_error_line_and_the_recovery_one_info_line() {
        let (log, lines) = collecting();
        let stats = Stats::default();
        let mut h = Health::default();
        assert!(
            h.connected(&log, "r:1"),
            "first connect starts backoff over"
        );
        for _ in 0..50 {
            h.failed(&log, &stats, "refused".into(), Cause::Connect);
        }
        h.failed(&log, &stats, "timed out".into(), Cause::Connect);
        assert!(h.connected(&log, "r:1"));
        h.published();
        let lines = lines.lock().unwrap();
        let levels: Vec<Level> = lines.iter().map(|(l, _)| *l).collect();
        assert_eq!(
            levels,
            [Level::Info, Level::Error, Level::Error, Level::Info]
        );
        assert_eq!(lines[2].1, "timed out");
        assert_eq!(stats.snapshot().last_error.unwrap().1, "timed out");
    }

    #[test]
    fn a_refused_publish_does_not_reset_backoff_on_reconnect() {
        let (log, _) = collecting();
        let stats = Stats::default();
        let mut h = Health::default();
        h.connected(&log, "r:1");
        h.failed(&log, &stats, "NOPERM".into(), Cause::Publish);
        assert!(!h.connected(&log, "r:1"), "still failing: keep backing off");
        h.published();
        h.failed(&log, &stats, "refused".into(), Cause::Connect);
        assert!(h.connected(&log, "r:1"));
    }

    #[test]
    fn counters_are_reported_at_most_once_per_interval() {
        let mut t = Throttled::default();
        assert_eq!(t.due(0), None);
        assert_eq!(t.due(3), Some(3));
        assert_eq!(t.due(10), None, "within the interval");
        t.last = Some(Instant::now() - WARN_EVERY);
        assert_eq!(t.due(10), Some(7));
    }
}
