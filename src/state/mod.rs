//! The live state mirror (`state=true`): agents, queues and members in Redis
//! hashes under `<state-prefix>:`, seeded from mod_callcenter's JSON API and
//! kept current by every callcenter event, in the same batch and order as the
//! event's own PUBLISH/XADD. Everything here runs on the worker thread; the
//! module hands in how to reach mod_callcenter (`Source`).

pub mod model;
pub mod script;

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::callcenter::CapturedEvent;
use model::{Change, Counts, EventView, Lists, Model};
use script::{Call, Keys, Transaction};

/// `state`, `state-prefix`, `state-refresh-s`, `state-variables`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateSettings {
    /// `{host}` is the only placeholder; rendered once at start.
    pub prefix: String,
    /// A fresh read of mod_callcenter this often (tier changes fire no
    /// event); zero turns it off.
    pub refresh: Duration,
    /// Member channel variables kept with each member.
    pub variables: Vec<String>,
}

impl Default for StateSettings {
    fn default() -> Self {
        StateSettings {
            prefix: "cc_state".into(),
            refresh: Duration::from_secs(30),
            variables: crate::catalogue::SEED_VARS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

/// (name, value) pairs of a session's channel variables.
pub type Variables = Vec<(String, String)>;

/// How the worker reaches FreeSWITCH for the mirror; functions so that the
/// mirror stays testable without it.
#[derive(Clone, Copy)]
pub struct Source {
    /// `callcenter_config <args>` through mod_commands' `json` API: the JSON
    /// reply, or why there is none.
    pub query: fn(&str) -> Result<String, String>,
    /// Channel variables of a live session, by UUID and names.
    pub member_vars: fn(&str, &[String]) -> Variables,
    /// (switchname, core UUID).
    pub identity: fn() -> (String, String),
}

/// What `cc_events state` and `status` show; written by the worker.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub prefix: String,
    pub counts: Counts,
    /// µs since the epoch of the last seed written.
    pub seeded_at: Option<u64>,
    pub sequence: Option<u64>,
    /// Why the mirror is not seeded (mod_callcenter not loaded, a bad reply).
    pub waiting_for: Option<String>,
    pub seeds: u64,
    pub refreshes: u64,
    /// How a batch of events' writes reach Redis (`cc_events state`).
    pub writes: &'static str,
}

#[derive(Default)]
pub struct Shared {
    report: Mutex<Option<Report>>,
}

impl Shared {
    pub fn get(&self) -> Option<Report> {
        self.report.lock().ok().and_then(|r| r.clone())
    }

    pub fn set(&self, r: Option<Report>) {
        if let Ok(mut g) = self.report.lock() {
            *g = r;
        }
    }
}

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Renders `{host}` in the prefix.
pub fn render_prefix(prefix: &str, host: &str) -> String {
    prefix.replace("{host}", if host.is_empty() { "_" } else { host })
}

/// The stream a state call adds its entry to, with its MAXLEN.
pub struct StreamTarget<'a> {
    pub key: &'a str,
    pub maxlen: u64,
}

/// The state writes of consecutive events (a batch), sent as one atomic
/// step: a MULTI ... EXEC, or one script call on Redis Cluster. `meta` only
/// ever names the group's last event and entry: a reader sees the state
/// before the group or after it, never inside it. A field that several of
/// its events changed is written once.
#[derive(Default)]
pub struct Group {
    /// The batch as one script call (Redis Cluster).
    call: Call,
    /// The batch as one MULTI ... EXEC (any other Redis).
    tx: Transaction,
    changes: Vec<Change>,
    events: usize,
}

impl Group {
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }
}

/// The mirror as the worker drives it.
pub struct Mirror {
    pub keys: Keys,
    pub sha: String,
    settings: StateSettings,
    source: Source,
    model: Model,
    host: String,
    core_uuid: String,
    pub report: Report,
    /// Seeded in this process: events are applied only after this.
    pub seeded: bool,
    /// Members whose member-queue-end was captured before the last seed.
    pub ended_before_seed: std::collections::HashSet<String>,
    /// A batch's writes as MULTI ... EXEC (false: one script call, for a
    /// Redis Cluster, whose link routes each command on its own).
    pub transaction: bool,
}

impl EventView for CapturedEvent {
    fn action(&self) -> &str {
        CapturedEvent::action(self)
    }

    fn header(&self, name: &str) -> Option<&str> {
        CapturedEvent::header(self, name)
    }

    fn timestamp_us(&self) -> Option<u64> {
        self.meta.timestamp_us
    }

    fn variables(&self) -> Vec<(&str, &str)> {
        CapturedEvent::variables(self).collect()
    }
}

impl Mirror {
    pub fn new(settings: StateSettings, source: Source) -> Mirror {
        let (host, core_uuid) = (source.identity)();
        let keys = Keys {
            prefix: render_prefix(&settings.prefix, &host),
        };
        let report = Report {
            prefix: keys.prefix.clone(),
            ..Report::default()
        };
        Mirror {
            keys,
            sha: script::sha(),
            settings,
            source,
            model: Model::default(),
            host,
            core_uuid,
            report,
            seeded: false,
            ended_before_seed: Default::default(),
            transaction: true,
        }
    }

    pub fn settings(&self) -> &StateSettings {
        &self.settings
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// Reads mod_callcenter's state now. On the worker thread: the JSON API
    /// runs SQL in mod_callcenter, never on FreeSWITCH's event threads.
    pub fn read(&mut self) -> Result<Model, String> {
        let q = self.source.query;
        let (agents, queues, tiers, members) = (
            q("agent list")?,
            q("queue list")?,
            q("tier list")?,
            q("member list")?,
        );
        let names = &self.settings.variables;
        let vars = self.source.member_vars;
        let fresh = Model::seed(
            &Lists {
                agents: &agents,
                queues: &queues,
                tiers: &tiers,
                members: &members,
            },
            now_us(),
            |session| {
                vars(session, names)
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect::<Map<String, Value>>()
            },
        );
        match fresh {
            Ok(m) => {
                self.report.waiting_for = None;
                Ok(m)
            }
            Err(e) => Err(e),
        }
    }

    pub fn not_available(&mut self, why: String) {
        self.report.waiting_for = Some(why);
    }

    /// A full rewrite from `fresh`, with a `state-seed` entry in the stream
    /// that tells followers to read the snapshot again.
    pub fn seed(&mut self, fresh: Model, stream: Option<StreamTarget<'_>>, out: &mut Vec<u8>) {
        let seeded_at = now_us();
        let mut call = Call::default();
        if let Some(s) = &stream {
            let at = seeded_at.to_string();
            self.own_entry(
                &mut call,
                s,
                "State-Seed",
                "state-seed",
                (b"seeded_at", at.as_bytes()),
            );
        }
        call.clear(&self.keys, fresh.queue_names().cloned());
        call.changes(&self.keys, &fresh.all());
        self.model = fresh;
        self.write_meta(&mut call, Some(seeded_at));
        call.encode(&self.sha, out);
        self.seeded = true;
        self.report.seeded_at = Some(seeded_at);
        self.report.seeds += 1;
        self.report.counts = self.model.counts();
    }

    /// The drift between the model and a fresh read, as one `state-update`
    /// call; nothing when there is none.
    pub fn refresh(
        &mut self,
        fresh: Model,
        stream: Option<StreamTarget<'_>>,
        out: &mut Vec<u8>,
    ) -> bool {
        let changes = self.model.replace_with(fresh);
        self.report.refreshes += 1;
        self.report.counts = self.model.counts();
        if changes.is_empty() {
            return false;
        }
        self.update(&changes, stream, out);
        true
    }

    /// Drops abandoned members whose `discard-abandoned-after` has passed.
    pub fn expire(&mut self, stream: Option<StreamTarget<'_>>, out: &mut Vec<u8>) -> bool {
        if !self.seeded {
            return false;
        }
        let changes = self.model.expire((now_us() / 1_000_000) as i64);
        if changes.is_empty() {
            return false;
        }
        self.report.counts = self.model.counts();
        self.update(&changes, stream, out);
        true
    }

    /// The stream entry of one of the mirror's own writes (a seed, an update).
    fn own_entry(
        &self,
        call: &mut Call,
        s: &StreamTarget<'_>,
        event: &str,
        action: &str,
        (field, value): (&[u8], &[u8]),
    ) {
        let maxlen = s.maxlen.to_string();
        call.xadd(
            s.key,
            &[
                b"MAXLEN",
                b"~",
                maxlen.as_bytes(),
                b"*",
                b"event",
                event.as_bytes(),
                b"action",
                action.as_bytes(),
                b"core_uuid",
                self.core_uuid.as_bytes(),
                field,
                value,
            ],
        );
    }

    fn update(&mut self, changes: &[Change], stream: Option<StreamTarget<'_>>, out: &mut Vec<u8>) {
        let mut call = Call::default();
        if let Some(s) = &stream {
            let delta = script::delta(&self.keys, changes);
            self.own_entry(
                &mut call,
                s,
                "State-Update",
                "state-update",
                (b"state", delta.as_bytes()),
            );
        }
        call.changes(&self.keys, changes);
        self.write_meta(&mut call, None);
        call.encode(&self.sha, out);
    }

    /// One event's part of a group call: its stream entry (`xadd`: the
    /// stream and the entry's fields without `state`) and its changes.
    /// `apply` false: captured before the seed that is in Redis, which
    /// already holds its effect (but see `Model::apply_before_seed`).
    pub fn event(
        &mut self,
        ev: &CapturedEvent,
        apply: bool,
        xadd: Option<(&str, Vec<&[u8]>)>,
        group: &mut Group,
    ) {
        let test = ev.header("Test") == Some("true");
        let changes = match (apply, self.seeded && !test) {
            (true, true) => self.model.apply(ev),
            (false, true) => self.model.apply_before_seed(ev, &self.ended_before_seed),
            (_, false) => Vec::new(),
        };
        if ev.meta.sequence.is_some() {
            self.report.sequence = ev.meta.sequence;
        }
        if let Some((stream, mut fields)) = xadd {
            let delta = script::delta(&self.keys, &changes);
            fields.push(b"state");
            fields.push(delta.as_bytes());
            if self.transaction {
                group.tx.xadd(stream, &fields);
            } else {
                group.call.xadd(stream, &fields);
            }
        }
        group.events += 1;
        group.changes.extend(changes);
    }

    /// The group's call: its stream entries, then each changed field once
    /// with its last value, then `meta` (the last event's sequence and entry).
    /// Leaves `group` empty, its buffers kept for the next batch: a batch's
    /// writes run to hundreds of kB, which the allocator would otherwise map
    /// and fault in afresh every time. Returns how many replies they get.
    pub fn write_group(&mut self, group: &mut Group, out: &mut Vec<u8>) -> usize {
        let replies = if self.transaction {
            let seq = self.report.sequence.map(|s| s.to_string());
            let meta: Vec<(&str, &str)> = seq.iter().map(|s| ("sequence", s.as_str())).collect();
            group.tx.finish(&self.keys, &group.changes, &meta, out)
        } else {
            group.call.changes(&self.keys, &group.changes);
            self.write_meta(&mut group.call, None);
            group.call.encode(&self.sha, out);
            group.call.reset();
            1
        };
        if !group.changes.is_empty() {
            self.report.counts = self.model.counts();
        }
        group.changes.clear();
        group.events = 0;
        replies
    }

    fn write_meta(&self, call: &mut Call, seeded_at: Option<u64>) {
        let seq = self.report.sequence.map(|s| s.to_string());
        let at = seeded_at.map(|s| s.to_string());
        let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(4);
        if let Some(at) = &at {
            pairs.push(("host", &self.host));
            pairs.push(("core_uuid", &self.core_uuid));
            pairs.push(("seeded_at", at));
        }
        if let Some(seq) = &seq {
            pairs.push(("sequence", seq));
        }
        call.meta(&self.keys, &pairs);
    }
}
