//! The bounded queue between FreeSWITCH's event threads and Redis, and the
//! worker thread that drains it: formats payloads, PUBLISHes them in pipelined
//! batches, reconnects with capped backoff and keeps the counters.
//!
//! Nothing here touches FreeSWITCH; the module hands in a log function.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::callcenter::CapturedEvent;
use crate::config::Settings;
use crate::health::{Cause, DropReporter, Health};
use crate::logger::{Level, LogFn};
use crate::redis_link::{connect, publish_batch};
use crate::stats::Stats;

/// How often an idle worker wakes to report drops.
const IDLE_WAKE: Duration = Duration::from_secs(1);

/// The producer side, owned by the module and shared with the event callback.
pub struct Publisher {
    tx: Option<SyncSender<CapturedEvent>>,
    stats: Arc<Stats>,
    stop: Arc<Stop>,
    /// Returns true when the worker panicked (and logged it).
    worker: Option<JoinHandle<bool>>,
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
            .spawn(move || worker.run_guarded())?;
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

    /// Counts a callcenter::info event that had no CC-Action; the worker logs the count.
    pub fn note_malformed(&self) {
        self.stats.malformed.fetch_add(1, Relaxed);
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
        let worker_panicked = self.stop_worker(self.settings.shutdown_flush);
        ShutdownReport {
            published: self.stats.published.load(Relaxed),
            lost: self.stats.lost.load(Relaxed),
            worker_panicked,
        }
    }
}

impl Publisher {
    /// Ends the queue, lets the worker flush for up to `flush`, and joins it.
    /// Returns true when the worker had panicked. Does nothing the second time.
    fn stop_worker(&mut self, flush: Duration) -> bool {
        // Dropping the only sender first lets the worker, once woken, see the end of the queue.
        self.tx = None;
        self.stop.request(Instant::now() + flush);
        self.worker.take().is_some_and(|h| h.join().unwrap_or(true))
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop_worker(Duration::ZERO);
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
    /// Runs the loop; a panic is logged at once (events stop being published
    /// until the module is reloaded) instead of surfacing only at unload.
    fn run_guarded(self) -> bool {
        let log = self.log.clone();
        let stats = self.stats.clone();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run()));
        if let Err(payload) = outcome {
            let why = crate::logger::panic_message(&*payload);
            stats.connected.store(false, Relaxed);
            let msg = format!("the Redis worker thread panicked: {why}; events are no longer published until `reload mod_cc_events`");
            stats.set_error(msg.clone());
            log(Level::Error, &msg);
            return true;
        }
        false
    }

    fn run(self) {
        let mut conn: Option<redis::Connection> = None;
        let mut backoff = Backoff::new(self.settings.reconnect_min, self.settings.reconnect_max);
        // Formatted payloads taken off the queue, in order, not yet accepted by Redis.
        let mut batch: Vec<Vec<u8>> = Vec::with_capacity(self.settings.batch_size);
        let mut drops = DropReporter::default();
        let mut health = Health::default();
        let mut ever_connected = false;

        loop {
            drops.report(&self.stats, &self.log);
            let deadline = self.stop.deadline();
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            // Shutting down with nothing left to send: no reason to wait for Redis.
            if deadline.is_some() && batch.is_empty() {
                match self.rx.try_recv() {
                    Ok(ev) => {
                        self.take(ev, &mut batch);
                        self.fill(&mut batch);
                    }
                    Err(TryRecvError::Disconnected) => break,
                    Err(TryRecvError::Empty) => {}
                }
            }

            let Some(c) = conn.as_mut() else {
                let limit = self.settings.redis.connect_timeout;
                let timeout = deadline.map_or(limit, |d| {
                    d.saturating_duration_since(Instant::now()).min(limit)
                });
                match connect(&self.settings.redis, timeout) {
                    Ok(c) => {
                        if ever_connected {
                            self.stats.reconnects.fetch_add(1, Relaxed);
                        }
                        ever_connected = true;
                        self.stats.connected.store(true, Relaxed);
                        if health.connected(&self.log, &self.settings.redis.describe()) {
                            backoff.reset();
                        }
                        conn = Some(c);
                    }
                    Err(e) => {
                        let msg = format!(
                            "cannot connect to Redis at {}: {e}; check host/port/username/password/db in cc_events.conf and that Redis is running",
                            self.settings.redis.describe()
                        );
                        health.failed(&self.log, &self.stats, msg, Cause::Connect);
                        self.pause(backoff.next_delay(), deadline);
                    }
                }
                continue;
            };

            if batch.is_empty() {
                match self.next_event(deadline.is_some()) {
                    Next::Got(ev) => self.take(ev, &mut batch),
                    Next::Idle => continue,
                    Next::Closed => break,
                }
                self.fill(&mut batch);
            }

            // One bound for the whole batch, and never past the shutdown flush.
            let io = self.settings.redis.io_timeout;
            let limit =
                deadline.map_or(io, |d| d.saturating_duration_since(Instant::now()).min(io));
            let (accepted, error) = publish_batch(c, &self.settings.channel, &mut batch, limit);
            self.stats.published.fetch_add(accepted as u64, Relaxed);
            match error {
                None => {
                    health.published();
                    backoff.reset();
                }
                Some(e) => {
                    let msg = format!("publishing to Redis failed: {e}; will reconnect and retry");
                    health.failed(&self.log, &self.stats, msg, Cause::Publish);
                    self.stats.connected.store(false, Relaxed);
                    conn = None;
                    self.pause(backoff.next_delay(), deadline);
                }
            }
        }

        self.stats.connected.store(false, Relaxed);
        let mut lost = batch.len() as u64;
        while self.rx.try_recv().is_ok() {
            lost += 1;
        }
        self.stats.lost.fetch_add(lost, Relaxed);
        drops.report(&self.stats, &self.log);
    }

    /// Tops the batch up from the queue without waiting.
    fn fill(&self, batch: &mut Vec<Vec<u8>>) {
        while batch.len() < self.settings.batch_size {
            let Ok(ev) = self.rx.try_recv() else { break };
            self.take(ev, batch);
        }
    }

    /// Moves one event from the queue into the batch, formatted.
    fn take(&self, ev: CapturedEvent, batch: &mut Vec<Vec<u8>>) {
        let mut payload = Vec::with_capacity(512);
        ev.write_seed_json(&mut payload);
        batch.push(payload);
    }

    /// Backoff between attempts: interruptible by shutdown, and never past the flush deadline.
    fn pause(&self, d: Duration, deadline: Option<Instant>) {
        match deadline {
            None => self.stop.sleep(d),
            Some(end) => std::thread::sleep(d.min(end.saturating_duration_since(Instant::now()))),
        }
    }

    fn next_event(&self, stopping: bool) -> Next {
        let got = if stopping {
            // Draining for shutdown: the sender is gone, so this never waits long.
            self.rx.recv_timeout(Duration::from_millis(10))
        } else {
            self.rx.recv_timeout(IDLE_WAKE)
        };
        match got {
            Ok(ev) => Next::Got(ev),
            Err(RecvTimeoutError::Timeout) => Next::Idle,
            Err(RecvTimeoutError::Disconnected) => Next::Closed,
        }
    }
}
