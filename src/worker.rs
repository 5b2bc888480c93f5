//! The worker thread: takes events off the queue, formats them, sends them
//! through the Redis link in pipelined batches, and decides what is confirmed.
//!
//! It is a small state machine. Disconnected: connect, or wait out a jittered
//! backoff. Connected: send batches; when idle, PING so that Redis's `timeout`
//! or a NAT does not close the connection, and reconnect quietly if it was
//! closed anyway. Draining (shutdown requested): keep sending until the queue
//! is empty or the flush deadline passes, then count what is left as lost.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::callcenter::CapturedEvent;
use crate::config::Settings;
use crate::health::{DropReporter, Health};
use crate::link::{resp, Failure, Link};
use crate::logger::{Level, LogFn};
use crate::queue::{Queue, Wait};
use crate::spares::Spares;
use crate::state::{self, Mirror, Source, StreamTarget};
use crate::stats::Stats;
use crate::stop::Stop;

/// A connection idle this long that the server closed is reopened quietly.
const QUIET_AFTER: Duration = Duration::from_secs(1);

/// How often an idle worker wakes to report drops.
const IDLE_WAKE: Duration = Duration::from_secs(1);

/// One event's commands, in RESP, and how many replies they get. The event is
/// confirmed only when every one of its replies succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub commands: Vec<u8>,
    pub replies: usize,
    /// The published name, for the per-event counts.
    pub name: Arc<str>,
    /// An event from the queue; false: the state mirror's own write (a seed,
    /// a refresh, an expiry), which no counter counts.
    pub event: bool,
    /// Published under `name` (false: an action only the state mirror applies).
    pub shown: bool,
}

/// How many events, from the first, are confirmed when the first `ok` replies
/// of the batch succeeded.
pub fn confirmed<'a>(batch: impl Iterator<Item = &'a Pending>, ok: usize) -> usize {
    let mut left = ok;
    batch
        .take_while(|p| {
            let whole = p.replies <= left;
            left = left.saturating_sub(p.replies);
            whole
        })
        .count()
}

pub struct Worker {
    pub queue: Arc<Queue<CapturedEvent>>,
    /// Where a formatted event's buffers go back for the callback.
    pub spares: Arc<Spares>,
    pub stats: Arc<Stats>,
    pub stop: Arc<Stop>,
    pub settings: Settings,
    pub log: LogFn,
    pub link: Box<dyn Link>,
    /// Makes the link for new connection settings (reload).
    pub new_link: fn(&crate::config::RedisSettings, Arc<Stop>) -> Box<dyn Link>,
    /// How the state mirror reaches mod_callcenter; None: no mirror possible.
    pub source: Option<Source>,
    /// What the mirror reports to `cc_events state`.
    pub state_report: Arc<state::Shared>,
}

/// The state mirror as the worker runs it.
struct StateRun {
    mirror: Mirror,
    /// A full seed (load, reload, a reconnect, dropped events) or a refresh.
    due: Option<Due>,
    next_refresh: Instant,
    /// Not before this: mod_callcenter was not there.
    retry_at: Instant,
    next_expiry: Instant,
    script_loaded: bool,
    /// Events taken before the seed in Redis was read: it holds their effect.
    skip: usize,
    /// `rejected` when the last seed was read: more means events were dropped.
    rejected_seen: u64,
    /// The state call of the events being taken into the batch.
    group: state::Group,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Due {
    Seed,
    Refresh,
}

impl StateRun {
    /// The read of mod_callcenter due now (`rejected`: the events dropped so
    /// far): a seed when events were dropped since the last one (the state
    /// missed them), else what is already due, else a refresh when its time
    /// has come.
    fn due_now(&self, now: Instant, rejected: u64) -> Option<Due> {
        let refresh = self.mirror.settings().refresh;
        if self.mirror.seeded && rejected != self.rejected_seen {
            Some(Due::Seed)
        } else if self.due.is_some() {
            self.due
        } else {
            (self.mirror.seeded && !refresh.is_zero() && now >= self.next_refresh)
                .then_some(Due::Refresh)
        }
    }
}

/// How often a mirror waiting for mod_callcenter asks again.
const STATE_RETRY: Duration = Duration::from_secs(1);

struct Run {
    w: Worker,
    backoff: Backoff,
    health: Health,
    drops: DropReporter,
    /// Formatted events taken off the queue, in order, not yet confirmed.
    batch: VecDeque<Pending>,
    /// Taken off the queue in one swap, not yet formatted into the batch.
    taken: VecDeque<CapturedEvent>,
    out: Vec<u8>,
    payload: Vec<u8>,
    last_io: Instant,
    ever_connected: bool,
    /// Written in the exchange the shutdown cut short.
    in_flight: usize,
    state: Option<StateRun>,
    /// The last connection was closed quietly (idle): no reseed needed.
    quiet: bool,
    /// The buffer of the last state call sent, for the next one.
    spare_group: Vec<u8>,
}

enum Next {
    Got,
    Idle,
    Closed,
}

impl Worker {
    /// Runs the loop; a panic is logged at once (events stop being published
    /// until the module is reloaded) instead of surfacing only at unload.
    /// Returns true when it panicked.
    pub fn run_guarded(self) -> bool {
        let log = self.log.clone();
        let stats = self.stats.clone();
        let queue = self.queue.clone();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run()));
        if let Err(payload) = outcome {
            let why = crate::logger::panic_message(&*payload);
            stats.connected.store(false, Relaxed);
            // Nothing more is admitted; what was queued or in the batch is lost, and counted.
            queue.close();
            let lost = queue.clear() as u64 + stats.in_batch.swap(0, Relaxed);
            stats.lost.fetch_add(lost, Relaxed);
            stats.held.fetch_sub(lost, Relaxed);
            let msg = format!("the Redis worker thread panicked: {why}; events are no longer published until `reload mod_cc_events`");
            stats.set_error(msg.clone());
            log.log(Level::Error, &msg);
            return true;
        }
        false
    }

    fn run(self) {
        let backoff = Backoff::new(
            self.settings.reconnect_min,
            self.settings.reconnect_max,
            Backoff::seed(),
        );
        let batch = VecDeque::with_capacity(self.settings.batch_size);
        let state = new_state(&self);
        let mut run = Run {
            w: self,
            backoff,
            health: Health::default(),
            drops: DropReporter::default(),
            batch,
            taken: VecDeque::new(),
            out: Vec::new(),
            payload: Vec::with_capacity(1024),
            last_io: Instant::now(),
            ever_connected: false,
            in_flight: 0,
            state,
            quiet: false,
            spare_group: Vec::new(),
        };
        run.report_state();
        run.main_loop();
        run.finish();
    }
}

/// A Redis Cluster link routes each command on its own, so a MULTI there
/// would not reach one node whole: the mirror writes a batch as one script
/// call instead.
fn transactions(redis: &crate::config::RedisSettings) -> bool {
    !matches!(redis.topology, crate::config::Topology::Cluster(_))
}

/// Sets how the mirror writes a batch, and says so in its report.
fn set_writes(mirror: &mut Mirror, redis: &crate::config::RedisSettings, allowed: bool) {
    mirror.transaction = transactions(redis) && allowed;
    mirror.report.writes = match (transactions(redis), allowed) {
        (true, true) => "one MULTI/EXEC transaction a batch",
        (true, false) => {
            "one script call a batch (the Redis user may not run MULTI/EXEC: add +multi +exec)"
        }
        (false, _) => "one script call a batch (Redis Cluster)",
    };
}

fn new_state(w: &Worker) -> Option<StateRun> {
    let settings = w.settings.state.clone()?;
    let source = w.source?;
    let now = Instant::now();
    let mut mirror = Mirror::new(settings, source);
    set_writes(&mut mirror, &w.settings.redis, true);
    Some(StateRun {
        mirror,
        due: Some(Due::Seed),
        next_refresh: now,
        retry_at: now,
        next_expiry: now,
        script_loaded: false,
        skip: 0,
        rejected_seen: w.stats.rejected.load(Relaxed),
        group: state::Group::default(),
    })
}

impl Run {
    fn main_loop(&mut self) {
        loop {
            self.drops.report(&self.w.stats, &self.w.log);
            if let Some(new) = self.w.stop.take_reconfigure() {
                self.apply(new);
            }
            if self.w.stop.passed() {
                return;
            }
            let draining = self.w.stop.deadline().is_some();
            if draining && self.batch.is_empty() {
                // The sender is gone: an empty queue now means nothing more will come.
                self.fill();
                if self.batch.is_empty() {
                    return;
                }
            }
            if !self.w.link.is_connected() {
                self.connect();
                continue;
            }
            // A new connection loads the mirror's script before anything else:
            // a batch kept across a reconnect calls it, and would otherwise
            // meet NOSCRIPT on a restarted server again and again.
            let no_script = self.state.as_ref().is_some_and(|st| !st.script_loaded);
            if (self.batch.is_empty() || no_script) && !draining && self.state_work() {
                continue;
            }
            if self.batch.is_empty() {
                let next = if self.taken.is_empty() {
                    self.next_event()
                } else {
                    Next::Got
                };
                match next {
                    Next::Got => {}
                    Next::Idle => {
                        self.keep_alive();
                        continue;
                    }
                    Next::Closed => return,
                }
                // New settings (reload) apply before anything captured after them is sent.
                if let Some(new) = self.w.stop.take_reconfigure() {
                    self.apply(new);
                    if !self.w.link.is_connected() {
                        continue;
                    }
                }
                self.fill();
                if self.batch.is_empty() {
                    continue;
                }
            }
            if self.w.link.closed_by_peer() {
                self.closed_by_peer();
                continue;
            }
            self.send();
        }
    }

    fn connect(&mut self) {
        let until = self
            .w
            .stop
            .cap(Instant::now() + self.w.settings.redis.connect_timeout);
        match self.w.link.connect(until) {
            Ok(()) => {
                if self.ever_connected {
                    self.w.stats.reconnects.fetch_add(1, Relaxed);
                }
                if let Some(st) = &mut self.state {
                    st.script_loaded = false;
                    // Redis may have restarted empty: write the whole state again.
                    if self.ever_connected && !self.quiet {
                        st.due = Some(Due::Seed);
                    }
                }
                self.quiet = false;
                self.ever_connected = true;
                self.w.stats.set_target(self.w.link.describe());
                self.w.stats.connected.store(true, Relaxed);
                self.health.connected(&self.w.log, &self.w.link.describe());
                self.backoff.reset();
                self.last_io = Instant::now();
            }
            Err(f) => {
                // Not a routine idle close after all: the server is gone, and
                // may come back empty, so the next connection reseeds.
                self.quiet = false;
                self.w.stats.connected.store(false, Relaxed);
                self.health
                    .failed(&self.w.log, &self.w.stats, f.message().to_string());
                self.pause();
            }
        }
    }

    /// Settings from `cc_events reload`. Events already taken keep their own
    /// catalogue; the connection is replaced only if its settings changed.
    fn apply(&mut self, new: Settings) {
        if new.redis != self.w.settings.redis {
            self.w.link.close();
            self.w.link = (self.w.new_link)(&new.redis, self.w.stop.clone());
            self.w.stats.connected.store(false, Relaxed);
            self.w.log.log(
                Level::Info,
                &format!(
                    "cc_events reload: connection settings changed, reconnecting to Redis at {}",
                    new.redis.describe()
                ),
            );
        }
        self.backoff = Backoff::new(new.reconnect_min, new.reconnect_max, Backoff::seed());
        let same_state = new.state == self.w.settings.state;
        self.w.settings = new;
        match &mut self.state {
            // `cc_events reload` reseeds: the operator may have changed mod_callcenter too.
            Some(st) if same_state => {
                st.due = Some(Due::Seed);
                set_writes(&mut st.mirror, &self.w.settings.redis, true);
            }
            _ => {
                self.state = new_state(&self.w);
                self.report_state();
            }
        }
    }

    /// Closed after a real idle period is routine (Redis `timeout`, a proxy's
    /// idle limit): reconnect quietly. Closed right after use is a failure
    /// (a proxy without a backend, Redis shutting down): log it and back off.
    fn closed_by_peer(&mut self) {
        if self.last_io.elapsed() >= QUIET_AFTER {
            return self.quiet_reconnect("the server closed the idle connection");
        }
        // Described before closing: a Sentinel link names its master only while connected.
        let target = self.w.link.describe();
        self.w.link.close();
        self.w.stats.connected.store(false, Relaxed);
        let msg = format!(
            "Redis at {target} closed the connection right after accepting it; reconnecting"
        );
        self.health.failed(&self.w.log, &self.w.stats, msg);
        self.pause();
    }

    /// An idle connection found closed is routine (Redis `timeout`, a proxy):
    /// reconnect at once, without a warning or an error in status.
    fn quiet_reconnect(&mut self, why: &str) {
        self.quiet = true;
        let target = self.w.link.describe();
        self.w.link.close();
        self.w.stats.connected.store(false, Relaxed);
        self.w
            .log
            .log(Level::Debug, &format!("{why} ({target}); reconnecting"));
    }

    /// Commands outside a batch (PING, SCRIPT LOAD, the MULTI/EXEC check)
    /// and their `replies`, bounded by io-timeout-ms.
    fn exchange_outside(&mut self, commands: &[u8], replies: usize) -> crate::link::Exchange {
        let until = self
            .w
            .stop
            .cap(Instant::now() + self.w.settings.redis.io_timeout);
        let ex = self.w.link.exchange(commands, replies, until);
        self.last_io = Instant::now();
        ex
    }

    fn keep_alive(&mut self) {
        let every = self.w.settings.idle_ping;
        if every.is_zero() || self.last_io.elapsed() < every {
            return;
        }
        if self.w.link.closed_by_peer() {
            return self.closed_by_peer();
        }
        let mut ping = Vec::with_capacity(14);
        resp::command(&mut ping, &[b"PING"]);
        let ex = self.exchange_outside(&ping, 1);
        match ex.failure {
            // Any answer, even NOPERM from a strict ACL, shows the link is alive.
            None | Some(Failure::Refused(_)) => {}
            // The link closed itself and says why (a Redis Cluster node that
            // died while idle, which no socket check before the PING shows).
            Some(Failure::Broken(m)) if !self.w.link.is_connected() => {
                self.w.stats.connected.store(false, Relaxed);
                self.health
                    .failed(&self.w.log, &self.w.stats, format!("{m}; reconnecting"));
                self.pause();
            }
            Some(Failure::Broken(_)) => self.closed_by_peer(),
            Some(f) => {
                self.w
                    .stats
                    .connected
                    .store(self.w.link.is_connected(), Relaxed);
                let msg = format!("{}; reconnecting", f.message());
                self.health.failed(&self.w.log, &self.w.stats, msg);
            }
        }
    }

    fn send(&mut self) {
        self.out.clear();
        // Up to the next batch's state call, which waits until everything
        // before it is confirmed: after a refusal (a PUBLISH, say) the events
        // before it are sent again, and Redis would run the state call behind
        // them again every time, adding its stream entries once more.
        let written = self
            .batch
            .iter()
            .skip(1)
            .position(|p| !p.event)
            .map_or(self.batch.len(), |i| i + 1);
        let mut replies = 0;
        for p in self.batch.iter().take(written) {
            self.out.extend_from_slice(&p.commands);
            replies += p.replies;
        }
        let io_timeout = self.w.settings.redis.io_timeout;
        let until = self.w.stop.cap(Instant::now() + io_timeout);
        let ex = match self.w.link.write(&self.out, replies, until) {
            Some(done) => done,
            None => {
                // Redis runs this batch while the next one is formatted.
                self.fill_ahead();
                let until = self.w.stop.cap(Instant::now() + io_timeout);
                self.w.link.read(replies, until)
            }
        };
        self.last_io = Instant::now();
        let n = confirmed(self.batch.iter().take(written), ex.ok);
        let done = self.batch.iter().take(n).filter(|p| p.event);
        self.w
            .stats
            .count_published(done.clone().filter(|p| p.shown).map(|p| &p.name));
        let events = done.count() as u64;
        for p in self.batch.drain(..n) {
            // A state call's buffer, big and kept for the next one.
            if !p.event && p.commands.capacity() > self.spare_group.capacity() {
                self.spare_group = p.commands;
            }
        }
        self.note_in_batch();
        self.w.stats.published.fetch_add(events, Relaxed);
        self.w.stats.held.fetch_sub(events, Relaxed);
        if n > 0 {
            self.report_state();
        }
        let connected = self.w.link.is_connected();
        self.w.stats.connected.store(connected, Relaxed);
        let Some(f) = ex.failure else {
            self.health.published(&self.w.log, &self.w.link.describe());
            self.backoff.reset();
            self.w.stop.clear_full();
            return;
        };
        if self.w.stop.passed() {
            // Cut short by the shutdown: these were written, and Redis may
            // still publish them, but nobody confirmed them.
            self.in_flight = self
                .batch
                .iter()
                .take(written - n)
                .filter(|p| p.event)
                .count();
            return;
        }
        if let (Some(st), Failure::Refused(e)) = (&mut self.state, &f) {
            // SCRIPT FLUSH, or a failover to a server that never saw it.
            if e.starts_with("NOSCRIPT") {
                st.script_loaded = false;
            }
        }
        let msg = match f {
            Failure::Refused(e) => format!(
                "Redis refused a command: {e}; that event and the ones after it are kept and sent again, in order"
            ),
            other => format!("{}; reconnecting", other.message()),
        };
        self.health.failed(&self.w.log, &self.w.stats, msg);
        self.pause();
    }

    /// Backoff between attempts: interruptible by shutdown, never past the
    /// flush deadline, and short while the queue is full.
    fn pause(&mut self) {
        let d = self.backoff.next_delay();
        let d = match self.w.stop.deadline() {
            Some(end) => d.min(end.saturating_duration_since(Instant::now())),
            None => d,
        };
        let when_full = self.backoff.jittered(self.w.settings.reconnect_min);
        self.w.stop.sleep(d, when_full);
    }

    fn next_event(&mut self) -> Next {
        let every = self.w.settings.idle_ping;
        let wait = if every.is_zero() {
            IDLE_WAKE
        } else {
            every
                .saturating_sub(self.last_io.elapsed())
                .clamp(Duration::from_millis(1), IDLE_WAKE)
        };
        match self.w.queue.wait(wait) {
            Wait::Ready => Next::Got,
            Wait::TimedOut => Next::Idle,
            Wait::Closed => Next::Closed,
        }
    }

    /// Tops the batch up from the queue without waiting.
    fn fill(&mut self) {
        let first = self.batch.len();
        self.take_into_batch(first + self.w.settings.batch_size);
    }

    /// While a batch is in flight: formats the events waiting behind it, to
    /// be sent once its replies are in. Holds at most one batch more than
    /// it sends (so a Redis that keeps refusing does not pull the queue into
    /// the batch), and leaves the turn to the mirror's own work when due.
    fn fill_ahead(&mut self) {
        let limit = 2 * self.w.settings.batch_size;
        if self.batch.len() >= limit || self.state_wants_turn() {
            return;
        }
        self.take_into_batch(limit);
    }

    /// Formats taken events into the batch until it holds `limit`.
    fn take_into_batch(&mut self, limit: usize) {
        if self.taken.is_empty() {
            self.w.queue.take_all(&mut self.taken);
        }
        let first = self.batch.len();
        while self.batch.len() < limit {
            let Some(ev) = self.taken.pop_front() else {
                break;
            };
            self.take(ev);
        }
        self.write_group(first);
        self.note_in_batch();
    }

    /// True when the mirror has work of its own due (a seed, a refresh, an
    /// expiry, its script), which runs only once the batch is empty.
    fn state_wants_turn(&self) -> bool {
        let Some(st) = &self.state else { return false };
        let now = Instant::now();
        // A read of mod_callcenter is due, and allowed (not while waiting for
        // it to come back, once a second).
        let read = now >= st.retry_at
            && st
                .due_now(now, self.w.stats.rejected.load(Relaxed))
                .is_some();
        !st.script_loaded || read || now >= st.next_expiry
    }

    /// The mirror's one call for the events just taken, ahead of their
    /// PUBLISHes: a subscriber that hears of an event finds the mirror (and
    /// the stream) already holding it, and a PUBLISH that Redis refuses is
    /// sent again without writing the state twice.
    fn write_group(&mut self, first: usize) {
        let Some(st) = &mut self.state else { return };
        if st.group.is_empty() {
            return;
        }
        let mut commands = std::mem::take(&mut self.spare_group);
        commands.clear();
        let replies = st.mirror.write_group(&mut st.group, &mut commands);
        self.batch.insert(
            first,
            Pending {
                commands,
                replies,
                name: Arc::from("State-Update"),
                event: false,
                shown: false,
            },
        );
    }

    /// What the worker holds (taken off the queue, or in the batch), for the
    /// accounting after a panic.
    fn note_in_batch(&self) {
        let events = self.batch.iter().filter(|p| p.event).count();
        self.w
            .stats
            .in_batch
            .store((events + self.taken.len()) as u64, Relaxed);
    }

    /// Formats one event into the commands it needs.
    fn take(&mut self, ev: CapturedEvent) {
        if self.state.is_some() {
            return self.take_with_state(ev);
        }
        // The payload is only a step towards the commands: one scratch buffer.
        self.payload.clear();
        ev.catalogue.format.format().write(&ev, &mut self.payload);
        let mut commands = Vec::with_capacity(self.payload.len() + 64);
        let replies = ev
            .catalogue
            .routes
            .commands(&ev, &self.payload, &mut commands);
        let name = ev.catalogue.entry(ev.entry).name.clone();
        self.w.spares.put(ev.into_spare());
        self.batch.push_back(Pending {
            commands,
            replies,
            name,
            event: true,
            shown: true,
        });
    }

    /// With the mirror on: the event's PUBLISH (when published) is its own
    /// part of the batch; its XADD and hash writes join the group call that
    /// `write_group` puts ahead of the batch's PUBLISHes.
    fn take_with_state(&mut self, ev: CapturedEvent) {
        let Some(st) = &mut self.state else { return };
        let entry = ev.catalogue.entry(ev.entry);
        let routes = &ev.catalogue.routes;
        let mut commands = Vec::new();
        let mut replies = 0;
        self.payload.clear();
        if entry.publish {
            ev.catalogue.format.format().write(&ev, &mut self.payload);
            commands.reserve(self.payload.len() + 64);
            replies += routes.publish(&ev, &self.payload, &mut commands);
        }
        let payload = entry.publish.then_some(self.payload.as_slice());
        let stream = routes.stream_entry(&ev);
        let apply = if st.skip > 0 {
            st.skip -= 1;
            false
        } else {
            true
        };
        let xadd = stream
            .as_ref()
            .map(|s| (s.key.as_str(), s.args(&ev, payload)));
        st.mirror.event(&ev, apply, xadd, &mut st.group);
        let name = entry.name.clone();
        let shown = entry.publish;
        self.w.spares.put(ev.into_spare());
        // With no PUBLISH (an action only the mirror applies), no reply of its
        // own: it is confirmed with the group call before it.
        self.batch.push_back(Pending {
            commands,
            replies,
            name,
            event: true,
            shown,
        });
    }

    /// The mirror's own writes, when the batch is empty: load the script on a
    /// new connection, then a seed or refresh when due, then expiries. True
    /// when it queued or sent something (the loop goes round again).
    fn state_work(&mut self) -> bool {
        let Some(st) = &mut self.state else {
            return false;
        };
        if !st.script_loaded {
            let mut load = Vec::new();
            state::script::load(&mut load);
            let ex = self.exchange_outside(&load, 1);
            let Some(st) = &mut self.state else {
                return false;
            };
            match ex.failure {
                None => {
                    st.script_loaded = true;
                    self.probe_transactions();
                }
                Some(f) => {
                    let msg = match f {
                        Failure::Refused(e) => format!(
                            "Redis refused to load the state mirror's script: {e}; with state=true the module's Redis user needs +evalsha and +script|load (see the README's ACL)"
                        ),
                        other => format!("{}; reconnecting", other.message()),
                    };
                    self.w
                        .stats
                        .connected
                        .store(self.w.link.is_connected(), Relaxed);
                    self.health.failed(&self.w.log, &self.w.stats, msg);
                    self.pause();
                }
            }
            return true;
        }
        let now = Instant::now();
        let rejected = self.w.stats.rejected.load(Relaxed);
        st.due = st.due_now(now, rejected);
        let refresh = st.mirror.settings().refresh;
        let stream_key = self
            .w
            .settings
            .routes
            .stream
            .as_ref()
            .and_then(|t| t.render_host(st.mirror.host()));
        let maxlen = self.w.settings.routes.stream_maxlen;
        let target = || {
            stream_key
                .as_deref()
                .map(|key| StreamTarget { key, maxlen })
        };
        let mut commands = Vec::new();
        let mut name = "State-Update";
        // Only a read changes what `cc_events state` shows between batches.
        let mut attempted = false;
        if let (Some(due), true) = (st.due, now >= st.retry_at) {
            attempted = true;
            match st.mirror.read() {
                Err(why) => {
                    if st.mirror.report.waiting_for.as_deref() != Some(why.as_str()) {
                        self.w.log.log(
                            Level::Warning,
                            &format!("state mirror: cannot read mod_callcenter's state: {why}; retrying every second"),
                        );
                    }
                    st.mirror.not_available(why);
                    st.retry_at = now + STATE_RETRY;
                }
                Ok(fresh) => {
                    // Everything captured so far is in what was just read.
                    self.w.queue.take_all(&mut self.taken);
                    st.skip = self.taken.len();
                    st.mirror.ended_before_seed = self
                        .taken
                        .iter()
                        .filter(|e| e.action() == "member-queue-end")
                        .filter_map(|e| e.header("Member-UUID").map(str::to_string))
                        .collect();
                    st.rejected_seen = rejected;
                    st.due = None;
                    st.next_refresh = now + refresh;
                    let first = !st.mirror.seeded || st.mirror.report.waiting_for.is_some();
                    if due == Due::Seed || !st.mirror.seeded {
                        st.mirror.seed(fresh, target(), &mut commands);
                        name = "State-Seed";
                        let c = st.mirror.report.counts;
                        self.w.log.log(
                            if first { Level::Info } else { Level::Notice },
                            &format!(
                                "state mirror seeded under '{}:*': {} agents, {} queues, {} waiting",
                                st.mirror.keys.prefix, c.agents, c.queues, c.waiting
                            ),
                        );
                    } else {
                        st.mirror.refresh(fresh, target(), &mut commands);
                    }
                }
            }
        }
        if attempted {
            self.w.state_report.set(Some(st.mirror.report.clone()));
        }
        if commands.is_empty() && now >= st.next_expiry {
            st.next_expiry = now + IDLE_WAKE;
            st.mirror.expire(target(), &mut commands);
        }
        if commands.is_empty() {
            return false;
        }
        self.batch.push_back(Pending {
            commands,
            replies: 1,
            name: Arc::from(name),
            event: false,
            shown: false,
        });
        self.send();
        true
    }

    /// On each new connection: may the user run MULTI/EXEC? A user set up
    /// for an earlier version (the README's rule had no `+multi +exec`) gets
    /// each batch as one script call instead, slower but whole: a refused
    /// MULTI would leave the commands after it running one by one, then the
    /// batch refused and sent again, and again.
    fn probe_transactions(&mut self) {
        let Some(st) = &self.state else { return };
        let was_allowed = st.mirror.transaction;
        if !transactions(&self.w.settings.redis) {
            return;
        }
        let mut probe = Vec::with_capacity(32);
        resp::command(&mut probe, &[b"MULTI"]);
        resp::command(&mut probe, &[b"EXEC"]);
        let ex = self.exchange_outside(&probe, 2);
        let refused = matches!(&ex.failure, Some(Failure::Refused(e)) if e.starts_with("NOPERM"));
        if refused && was_allowed {
            self.w.log.log(
                Level::Warning,
                "state mirror: the Redis user may not run MULTI/EXEC, so each batch of events is written as one script call instead, which costs Redis about twice as much; add +multi +exec to the user (see the README's ACL rule)",
            );
        }
        if let Some(st) = &mut self.state {
            set_writes(&mut st.mirror, &self.w.settings.redis, !refused);
        }
        self.report_state();
    }

    /// Publishes the mirror's report for `cc_events state`.
    fn report_state(&self) {
        let r = self.state.as_ref().map(|st| st.mirror.report.clone());
        self.w.state_report.set(r);
    }

    fn finish(&mut self) {
        self.w.link.close();
        self.w.stats.connected.store(false, Relaxed);
        self.w.queue.close();
        let held = self.batch.iter().filter(|p| p.event).count();
        let lost = (held + self.taken.len() + self.w.queue.clear()) as u64;
        self.w.stats.in_batch.store(0, Relaxed);
        self.w.stats.lost.fetch_add(lost, Relaxed);
        self.w
            .stats
            .unconfirmed
            .fetch_add(self.in_flight as u64, Relaxed);
        self.w.stats.held.fetch_sub(lost, Relaxed);
        self.drops.report(&self.w.stats, &self.w.log);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(replies: &[usize]) -> VecDeque<Pending> {
        replies
            .iter()
            .map(|&r| Pending {
                commands: Vec::new(),
                replies: r,
                name: Arc::from("x"),
                event: true,
                shown: true,
            })
            .collect()
    }

    #[test]
    fn only_events_whose_every_reply_came_before_the_first_failure_are_confirmed() {
        let b = batch(&[1, 1, 1, 1]);
        assert_eq!(confirmed(b.iter(), 0), 0);
        assert_eq!(confirmed(b.iter(), 2), 2);
        assert_eq!(confirmed(b.iter(), 4), 4);
        // An event with several commands (PUBLISH + XADD) needs all of them.
        let b = batch(&[2, 3, 1]);
        assert_eq!(confirmed(b.iter(), 1), 0);
        assert_eq!(confirmed(b.iter(), 2), 1);
        assert_eq!(confirmed(b.iter(), 4), 1);
        assert_eq!(confirmed(b.iter(), 5), 2);
        assert_eq!(confirmed(b.iter(), 6), 3);
    }
}
