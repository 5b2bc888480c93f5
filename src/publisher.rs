//! The bounded queue between FreeSWITCH's event threads and Redis, and the
//! worker thread that drains it: formats payloads, PUBLISHes them in pipelined
//! batches, reconnects with capped backoff and keeps the counters.
//!
//! Nothing here touches FreeSWITCH; the module hands in a log function.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::callcenter::CapturedEvent;
use crate::config::{RedisSettings, Settings};
use crate::logger::{Level, LogFn};
use crate::stats::Stats;

/// How often an idle worker wakes to report drops.
const IDLE_WAKE: Duration = Duration::from_secs(1);
/// At most one "queue full" warning per this interval.
const DROP_WARN_EVERY: Duration = Duration::from_secs(5);

/// The producer side, owned by the module and shared with the event callback.
pub struct Publisher {
    tx: Option<SyncSender<CapturedEvent>>,
    stats: Arc<Stats>,
    stop: Arc<Stop>,
    worker: Option<JoinHandle<()>>,
    settings: Settings,
}

/// What shutdown managed to do, for its log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    pub published: u64,
    pub lost: u64,
    pub worker_panicked: bool,
}

impl Publisher {
    pub fn start(settings: Settings, log: LogFn) -> std::io::Result<Publisher> {
        let (tx, rx) = mpsc::sync_channel(settings.queue_size);
        let stats = Arc::new(Stats::default());
        let stop = Arc::new(Stop::default());
        let worker = Worker {
            rx,
            stats: stats.clone(),
            stop: stop.clone(),
            settings: settings.clone(),
            log,
        };
        let handle = std::thread::Builder::new()
            .name("cc_events-redis".into())
            .spawn(move || worker.run())?;
        Ok(Publisher {
            tx: Some(tx),
            stats,
            stop,
            worker: Some(handle),
            settings,
        })
    }

    /// Called on FreeSWITCH's event thread: never blocks, never allocates beyond the event.
    pub fn offer(&self, event: CapturedEvent) {
        self.stats.received.fetch_add(1, Relaxed);
        let Some(tx) = &self.tx else {
            self.stats.rejected.fetch_add(1, Relaxed);
            return;
        };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = tx.try_send(event) {
            self.stats.rejected.fetch_add(1, Relaxed);
        }
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Gives the worker `shutdown_flush` to publish what is queued, then joins it.
    /// The caller must have stopped calling `offer` (unbound the event callback).
    pub fn shutdown(mut self) -> ShutdownReport {
        self.stop
            .request(Instant::now() + self.settings.shutdown_flush);
        // Dropping the only sender lets the worker see the end of the queue.
        self.tx = None;
        let worker_panicked = self.worker.take().map(|h| h.join().is_err()) == Some(true);
        ShutdownReport {
            published: self.stats.published.load(Relaxed),
            lost: self.stats.lost.load(Relaxed),
            worker_panicked,
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        if self.worker.is_some() {
            self.stop.request(Instant::now());
            self.tx = None;
            if let Some(h) = self.worker.take() {
                let _ = h.join();
            }
        }
    }
}

/// Shutdown request with its flush deadline; wakes a worker sleeping in backoff.
#[derive(Default)]
struct Stop {
    deadline: Mutex<Option<Instant>>,
    wake: Condvar,
}

impl Stop {
    fn request(&self, deadline: Instant) {
        if let Ok(mut d) = self.deadline.lock() {
            *d = Some(deadline);
        }
        self.wake.notify_all();
    }

    fn deadline(&self) -> Option<Instant> {
        self.deadline.lock().ok().and_then(|d| *d)
    }

    /// Sleeps up to `d`, returning early when shutdown is requested.
    fn sleep(&self, d: Duration) {
        let Ok(guard) = self.deadline.lock() else {
            return;
        };
        let _ = self.wake.wait_timeout_while(guard, d, |dl| dl.is_none());
    }
}

struct Worker {
    rx: Receiver<CapturedEvent>,
    stats: Arc<Stats>,
    stop: Arc<Stop>,
    settings: Settings,
    log: LogFn,
}

/// The worker's view of the queue after one wait.
enum Next {
    Got(CapturedEvent),
    Idle,
    Closed,
}

impl Worker {
    fn run(self) {
        let mut conn: Option<redis::Connection> = None;
        let mut backoff = Backoff::new(self.settings.reconnect_min, self.settings.reconnect_max);
        // Formatted payloads taken off the queue, in order, not yet confirmed by Redis.
        let mut batch: Vec<Vec<u8>> = Vec::with_capacity(self.settings.batch_size);
        let mut drops = DropReporter::default();
        let mut ever_connected = false;
        let mut failing_since: Option<String> = None;

        loop {
            drops.report(&self.stats, &self.log);
            let deadline = self.stop.deadline();
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }

            let Some(c) = conn.as_mut() else {
                let timeout = match deadline {
                    Some(d) => d
                        .saturating_duration_since(Instant::now())
                        .min(self.settings.redis.connect_timeout),
                    None => self.settings.redis.connect_timeout,
                };
                match connect(&self.settings.redis, timeout) {
                    Ok(c) => {
                        if ever_connected {
                            self.stats.reconnects.fetch_add(1, Relaxed);
                        }
                        ever_connected = true;
                        failing_since = None;
                        backoff.reset();
                        self.stats.connected.store(true, Relaxed);
                        (self.log)(
                            Level::Info,
                            &format!("connected to Redis at {}", self.settings.redis.describe()),
                        );
                        conn = Some(c);
                    }
                    Err(e) => {
                        let msg = format!(
                            "cannot connect to Redis at {}: {e}; check host/port/username/password/db in cc_events.conf and that Redis is running",
                            self.settings.redis.describe()
                        );
                        // One line per failure streak (and when the reason changes), not one per retry.
                        if failing_since.as_deref() != Some(msg.as_str()) {
                            (self.log)(Level::Error, &msg);
                            failing_since = Some(msg.clone());
                        }
                        self.stats.set_error(msg);
                        let pause = backoff.next_delay();
                        match deadline {
                            None => self.stop.sleep(pause),
                            Some(d) => std::thread::sleep(
                                pause.min(d.saturating_duration_since(Instant::now())),
                            ),
                        }
                    }
                }
                continue;
            };

            if batch.is_empty() {
                match self.next_event(deadline.is_some()) {
                    Next::Got(ev) => batch.push(ev.seed_json().into_bytes()),
                    Next::Idle => continue,
                    Next::Closed => break,
                }
                while batch.len() < self.settings.batch_size {
                    match self.rx.try_recv() {
                        Ok(ev) => {
                            self.stats.dequeued.fetch_add(1, Relaxed);
                            batch.push(ev.seed_json().into_bytes());
                        }
                        Err(_) => break,
                    }
                }
            }

            match publish_batch(c, &self.settings.channel, &batch) {
                Ok(()) => {
                    self.stats.published.fetch_add(batch.len() as u64, Relaxed);
                    batch.clear();
                }
                Err(e) => {
                    // The batch is kept and sent again after reconnecting, so
                    // nothing is lost; Redis may see part of it twice.
                    let msg =
                        format!("lost the Redis connection while publishing: {e}; reconnecting");
                    (self.log)(Level::Warning, &msg);
                    self.stats.set_error(msg);
                    self.stats.connected.store(false, Relaxed);
                    conn = None;
                }
            }
        }

        self.stats.connected.store(false, Relaxed);
        let mut lost = batch.len() as u64;
        while self.rx.try_recv().is_ok() {
            self.stats.dequeued.fetch_add(1, Relaxed);
            lost += 1;
        }
        self.stats.lost.fetch_add(lost, Relaxed);
        drops.report(&self.stats, &self.log);
    }

    fn next_event(&self, stopping: bool) -> Next {
        let got = if stopping {
            // Draining for shutdown: the sender is gone, so this never waits long.
            self.rx.recv_timeout(Duration::from_millis(10))
        } else {
            self.rx.recv_timeout(IDLE_WAKE)
        };
        match got {
            Ok(ev) => {
                self.stats.dequeued.fetch_add(1, Relaxed);
                Next::Got(ev)
            }
            Err(RecvTimeoutError::Timeout) => Next::Idle,
            Err(RecvTimeoutError::Disconnected) => Next::Closed,
        }
    }
}

fn connect(s: &RedisSettings, timeout: Duration) -> redis::RedisResult<redis::Connection> {
    use redis::IntoConnectionInfo;
    let mut redis_info = redis::RedisConnectionInfo::default()
        .set_db(s.db)
        .set_lib_name("mod_cc_events", env!("CARGO_PKG_VERSION"));
    if let Some(u) = &s.username {
        redis_info = redis_info.set_username(u);
    }
    if let Some(p) = &s.password {
        redis_info = redis_info.set_password(p);
    }
    let info = redis::ConnectionAddr::Tcp(s.host.clone(), s.port)
        .into_connection_info()?
        .set_redis_settings(redis_info);
    let client = redis::Client::open(info)?;
    let conn = client.get_connection_with_timeout(timeout.max(Duration::from_millis(1)))?;
    conn.set_read_timeout(Some(s.io_timeout))?;
    conn.set_write_timeout(Some(s.io_timeout))?;
    Ok(conn)
}

/// One round trip for the whole batch.
fn publish_batch(
    conn: &mut redis::Connection,
    channel: &str,
    batch: &[Vec<u8>],
) -> redis::RedisResult<()> {
    let mut pipe = redis::pipe();
    for payload in batch {
        pipe.cmd("PUBLISH")
            .arg(channel)
            .arg(payload.as_slice())
            .ignore();
    }
    pipe.exec(conn)
}

/// Turns the drop counter into at most one warning per interval.
#[derive(Default)]
struct DropReporter {
    reported: u64,
    last: Option<Instant>,
}

impl DropReporter {
    fn report(&mut self, stats: &Stats, log: &LogFn) {
        let dropped = stats.rejected.load(Relaxed);
        if dropped == self.reported || self.last.is_some_and(|t| t.elapsed() < DROP_WARN_EVERY) {
            return;
        }
        log(
            Level::Warning,
            &format!(
                "queue full: dropped {} events ({} in total); Redis is too slow or unreachable, or raise queue-size",
                dropped - self.reported,
                dropped
            ),
        );
        self.reported = dropped;
        self.last = Some(Instant::now());
    }
}
