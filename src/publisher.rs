//! The producer side: the bounded queue between FreeSWITCH's event threads and
//! the worker, `offer`, the counters, and shutdown. The worker itself is in
//! `worker.rs`; nothing here touches FreeSWITCH (the module hands in how to
//! log and how to start a thread).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::callcenter::CapturedEvent;
use crate::callcenter::Spare;
use crate::catalogue::Catalogue;
use crate::config::Settings;
use crate::link::Link;
use crate::logger::LogFn;
use crate::queue::Queue;
use crate::spares::Spares;
use crate::state::{self, Source};
use crate::stats::Stats;
use crate::stop::Stop;
use crate::worker::Worker;

/// Starts a named thread running the body; returns how to join it. In the
/// module this is a pthread (see `fs::thread`), so that `unload` can unmap us.
pub type Spawn = fn(&str, Box<dyn FnOnce() + Send>) -> io::Result<Box<dyn FnOnce() + Send>>;

fn new_link(redis: &crate::config::RedisSettings, stop: Arc<Stop>) -> Box<dyn Link> {
    crate::link::for_settings(redis, stop)
}

/// The producer side, owned by the module and shared with the event callback.
pub struct Publisher {
    queue: Arc<Queue<CapturedEvent>>,
    spares: Arc<Spares>,
    stats: Arc<Stats>,
    stop: Arc<Stop>,
    /// In a Mutex only so that the Publisher is Sync (the callback shares it).
    join: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    panicked: Arc<AtomicBool>,
    settings: RwLock<Arc<Settings>>,
    /// What the callback captures events with; replaced as a whole on reload.
    catalogue: RwLock<Arc<Catalogue>>,
    /// `queue-size`: what `held` may reach. Changes on reload.
    capacity: AtomicU64,
    /// The catalogue's `captured` bits, so that the callback can ignore an
    /// event without touching the shared catalogue.
    captured: AtomicU32,
    state_report: Arc<state::Shared>,
}

/// What a reload changed, for its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconfigured {
    /// Events already queued: they keep the settings they were captured with.
    pub queued: u64,
    /// The connection settings changed: the worker reconnects.
    pub reconnect: bool,
}

fn read<T: Clone>(lock: &RwLock<T>) -> T {
    match lock.read() {
        Ok(v) => v.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

fn write<T>(lock: &RwLock<T>, value: T) {
    match lock.write() {
        Ok(mut v) => *v = value,
        Err(poisoned) => *poisoned.into_inner() = value,
    }
}

/// What shutdown managed to do, for its log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    pub published: u64,
    /// Dropped because the queue was full (or the worker was gone).
    pub rejected: u64,
    /// Still queued or unconfirmed when the flush ran out.
    pub lost: u64,
    /// Of `lost`: written to Redis but unconfirmed; Redis may still publish them.
    pub unconfirmed: u64,
    pub worker_panicked: bool,
}

impl Publisher {
    /// `source`: how the state mirror reaches mod_callcenter (None: it cannot).
    pub fn start(
        settings: Settings,
        log: LogFn,
        spawn: Spawn,
        source: Option<Source>,
    ) -> io::Result<Publisher> {
        // `held` bounds what is waiting to queue-size exactly, so the queue
        // needs no bound of its own (and queue-size can change on reload).
        let queue = Arc::new(Queue::default());
        let spares = Arc::new(Spares::default());
        let stats = Arc::new(Stats::default());
        let stop = Arc::new(Stop::default());
        let panicked = Arc::new(AtomicBool::new(false));
        let state_report = Arc::new(state::Shared::default());
        let worker = Worker {
            source,
            state_report: state_report.clone(),
            queue: queue.clone(),
            spares: spares.clone(),
            stats: stats.clone(),
            stop: stop.clone(),
            settings: settings.clone(),
            log,
            link: new_link(&settings.redis, stop.clone()),
            new_link,
        };
        let catalogue = settings.catalogue();
        let flag = panicked.clone();
        let join = spawn(
            "cc_events-redis",
            Box::new(move || flag.store(worker.run_guarded(), Relaxed)),
        )?;
        Ok(Publisher {
            queue,
            spares,
            stats,
            stop,
            join: Mutex::new(Some(join)),
            panicked,
            state_report,
            captured: AtomicU32::new(catalogue.captured),
            catalogue: RwLock::new(Arc::new(catalogue)),
            capacity: AtomicU64::new(settings.queue_size as u64),
            settings: RwLock::new(Arc::new(settings)),
        })
    }

    /// Called on FreeSWITCH's event thread: never blocks, never touches the network.
    pub fn offer(&self, event: CapturedEvent) {
        self.stats.received.fetch_add(1, Relaxed);
        let capacity = self.capacity.load(Relaxed);
        // Admit only below capacity: never above queue-size, even for a moment.
        let admitted = self
            .stats
            .held
            .fetch_update(Relaxed, Relaxed, |h| (h < capacity).then_some(h + 1))
            .is_ok();
        if !admitted {
            return self.reject();
        }
        if self.queue.push(event).is_err() {
            self.stats.held.fetch_sub(1, Relaxed);
            self.reject();
        }
    }

    fn reject(&self) {
        self.stats.rejected.fetch_add(1, Relaxed);
        self.stop.note_full();
    }

    /// The state mirror's report; None when `state` is off.
    pub fn state(&self) -> Option<state::Report> {
        self.state_report.get()
    }

    /// Counts a callcenter::info event that had no CC-Action; the worker logs the count.
    pub fn note_malformed(&self) {
        self.stats.malformed.fetch_add(1, Relaxed);
    }

    /// The buffers of an event the worker is done with, if one is free now.
    pub fn spare(&self) -> Option<Spare> {
        self.spares.get()
    }

    /// Bit `i` set when `catalogue::ACTIONS[i]` is captured (published, or kept for the state).
    pub fn captured(&self) -> u32 {
        self.captured.load(Relaxed)
    }

    /// The catalogue events are captured with now.
    pub fn catalogue(&self) -> Arc<Catalogue> {
        read(&self.catalogue)
    }

    /// Applies validated settings without unbinding: events captured from
    /// now on use the new catalogue, format and routes; the worker picks up
    /// the connection settings (and reconnects if they changed).
    pub fn reconfigure(&self, settings: Settings) -> Reconfigured {
        let old = self.settings();
        let reconnect = old.redis != settings.redis;
        let catalogue = Arc::new(settings.catalogue());
        // Both bits and catalogue are checked per event: the catalogue decides.
        self.captured.fetch_or(catalogue.captured, Relaxed);
        write(&self.catalogue, catalogue.clone());
        self.captured.store(catalogue.captured, Relaxed);
        self.capacity.store(settings.queue_size as u64, Relaxed);
        if reconnect {
            self.stats.connected.store(false, Relaxed);
        }
        self.stop.reconfigure(settings.clone());
        // The worker applies them before it sends anything captured from now on.
        self.queue.nudge();
        write(&self.settings, Arc::new(settings));
        Reconfigured {
            queued: self.stats.held.load(Relaxed),
            reconnect,
        }
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    pub fn settings(&self) -> Arc<Settings> {
        read(&self.settings)
    }

    /// Gives the worker `shutdown-flush-ms` to publish what is queued, then
    /// joins it. Every wait of the worker is bounded by that deadline, so this
    /// returns within it plus one wait slice (50 ms).
    /// The caller must have stopped calling `offer` (unbound the event callback).
    pub fn shutdown(mut self) -> ShutdownReport {
        self.stop_worker(self.settings().shutdown_flush);
        ShutdownReport {
            published: self.stats.published.load(Relaxed),
            rejected: self.stats.rejected.load(Relaxed),
            lost: self.stats.lost.load(Relaxed),
            unconfirmed: self.stats.unconfirmed.load(Relaxed),
            worker_panicked: self.panicked.load(Relaxed),
        }
    }

    /// Ends the queue, lets the worker flush for up to `flush`, and joins it.
    /// Does nothing the second time.
    fn stop_worker(&mut self, flush: Duration) {
        // Closing first lets the worker, once woken, see the end of the queue.
        self.queue.close();
        self.stop.request(Instant::now() + flush);
        let join = self
            .join
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(join) = join {
            join();
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop_worker(Duration::ZERO);
    }
}
