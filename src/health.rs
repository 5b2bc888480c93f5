//! What the worker logs: one line per change of Redis health, and throttled
//! warnings for counters that grow on FreeSWITCH's threads.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crate::logger::{Level, LogFn};
use crate::stats::Stats;

/// At most one warning per counter per this interval.
const WARN_EVERY: Duration = Duration::from_secs(5);

/// Keeps the log to one line per change of state: an outage is one error line
/// (and another only if the reason changes), the recovery one info line.
#[derive(Default)]
pub struct Health {
    /// The message of the failure in progress.
    failing: Option<String>,
    ever_connected: bool,
}

impl Health {
    pub fn failed(&mut self, log: &LogFn, stats: &Stats, msg: String) {
        if self.failing.as_ref() != Some(&msg) {
            log.log(Level::Error, &msg);
        }
        stats.set_error(msg.clone());
        self.failing = Some(msg);
    }

    /// A connection is up (Redis answered PING). Logs the first connect and
    /// the end of an outage.
    pub fn connected(&mut self, log: &LogFn, target: &str) {
        if !self.ever_connected || self.failing.is_some() {
            log.log(Level::Info, &format!("connected to Redis at {target}"));
        }
        self.ever_connected = true;
        self.failing = None;
    }

    /// Redis accepted a batch. Ends a refusal (NOPERM, BUSY, ...) that did
    /// not cost the connection.
    pub fn published(&mut self, log: &LogFn, target: &str) {
        if self.failing.take().is_some() {
            log.log(
                Level::Info,
                &format!("Redis at {target} accepts events again"),
            );
        }
    }

    #[cfg(test)]
    pub fn is_failing(&self) -> bool {
        self.failing.is_some()
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
            log.log(Level::Warning,
                &format!(
                    "queue full: dropped {new} events ({dropped} in total); Redis is too slow or unreachable, or raise queue-size"
                ),
            );
        }
        let malformed = stats.malformed.load(Relaxed);
        if let Some(new) = self.malformed.due(malformed) {
            log.log(Level::Warning,
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
        let log = LogFn::new(move |l, m, _| sink.lock().unwrap().push((l, m.to_string())));
        (log, lines)
    }

    #[test]
    fn an_outage_is_one_error_line_and_the_recovery_one_info_line() {
        let (log, lines) = collecting();
        let stats = Stats::default();
        let mut h = Health::default();
        h.connected(&log, "r:1");
        for _ in 0..50 {
            h.failed(&log, &stats, "refused".into());
        }
        h.failed(&log, &stats, "timed out".into());
        h.connected(&log, "r:1");
        h.published(&log, "r:1");
        h.connected(&log, "r:1");
        let lines = lines.lock().unwrap();
        let levels: Vec<Level> = lines.iter().map(|(l, _)| *l).collect();
        assert_eq!(
            levels,
            [Level::Info, Level::Error, Level::Error, Level::Info]
        );
        assert_eq!(lines[2].1, "timed out");
        assert_eq!(lines[3].1, "connected to Redis at r:1");
        assert_eq!(stats.snapshot().last_error.unwrap().1, "timed out");
    }

    #[test]
    fn a_refusal_that_keeps_the_connection_logs_its_end_on_the_next_success() {
        let (log, lines) = collecting();
        let stats = Stats::default();
        let mut h = Health::default();
        h.connected(&log, "r:1");
        h.failed(&log, &stats, "NOPERM".into());
        assert!(h.is_failing());
        h.published(&log, "r:1");
        h.published(&log, "r:1");
        let lines = lines.lock().unwrap();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[1], (Level::Error, "NOPERM".to_string()));
        assert_eq!(lines[2].1, "Redis at r:1 accepts events again");
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
