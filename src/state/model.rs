//! The mirror's model of mod_callcenter: agents, queues (with their tiers) and
//! members, kept as the JSON values the Redis hashes hold. Seeded from
//! mod_callcenter's own JSON API, moved on by its events the way mod_callcenter
//! moves its database, and compared with a fresh seed to find drift. Pure.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

/// One of the mirror's hashes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, std::hash::Hash)]
pub enum Hash {
    Agents,
    Queues,
    /// `members:<queue>`.
    Members(String),
}

/// One hash field set (Some) or removed (None).
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub hash: Hash,
    pub field: String,
    /// The value as the hash holds it: compact JSON text, serialized once
    /// from the model for both the HSET and the stream entry's `state`.
    pub value: Option<String>,
}

/// What an event carries that the model needs, from whichever format captured it.
pub trait EventView {
    fn action(&self) -> &str;
    /// The value of header `CC-<name>`.
    fn header(&self, name: &str) -> Option<&str>;
    /// Event-Date-Timestamp, µs.
    fn timestamp_us(&self) -> Option<u64>;
    /// The member's channel variables the event carries, by name.
    fn variables(&self) -> Vec<(&str, &str)>;
}

/// Agent fields published, in mod_callcenter's `agent list` spelling.
const AGENT_TEXT: &[&str] = &["name", "type", "contact", "status", "state"];
const AGENT_NUMBERS: &[&str] = &[
    "max_no_answer",
    "wrap_up_time",
    "reject_delay_time",
    "busy_delay_time",
    "no_answer_delay_time",
    "last_bridge_start",
    "last_bridge_end",
    "last_offered_call",
    "last_status_change",
    "no_answer_count",
    "calls_answered",
    "talk_time",
    "ready_time",
];
/// Member fields published, in `member list` spelling (not `score`, which
/// mod_callcenter computes from the clock on every read).
const MEMBER_TEXT: &[&str] = &[
    "uuid",
    "queue",
    "session_uuid",
    "cid_number",
    "cid_name",
    "state",
    "serving_agent",
];
const MEMBER_NUMBERS: &[&str] = &[
    "joined_epoch",
    "rejoined_epoch",
    "bridge_epoch",
    "abandoned_epoch",
];
/// `queue list` values mod_callcenter gives as numbers or as numbers in strings.
const QUEUE_NUMBERS: &[&str] = &[
    "tier_rule_wait_second",
    "discard_abandoned_after",
    "max_wait_time",
    "max_wait_time_with_no_agent",
    "max_wait_time_with_no_agent_time_reached",
];
/// What mod_callcenter uses when a queue does not set it.
const DEFAULT_DISCARD_ABANDONED_AFTER: i64 = 60;

#[derive(Clone, Debug, Default, PartialEq)]
struct Tier {
    agent: String,
    state: String,
    level: i64,
    position: i64,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct QueueConf {
    /// `queue list`'s row, numbers as numbers, without `name`.
    config: Map<String, Value>,
    tiers: Vec<Tier>,
}

/// The four `callcenter_config` lists a seed reads, as JSON text.
pub struct Lists<'a> {
    pub agents: &'a str,
    pub queues: &'a str,
    pub tiers: &'a str,
    pub members: &'a str,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Model {
    agents: BTreeMap<String, Value>,
    queues: BTreeMap<String, QueueConf>,
    /// queue -> member uuid -> member
    members: BTreeMap<String, BTreeMap<String, Value>>,
    /// What the `queues` hash holds, derived from the above.
    rendered: BTreeMap<String, Value>,
    /// The sums of `rendered`'s `waiting` and `answering`, kept as queues
    /// are rendered: `counts` runs after every event, and a walk over every
    /// member there made each event cost as much as the call centre is big.
    waiting: usize,
    answering: usize,
}

/// A queue's members, as the `queues` hash shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Tally {
    /// Waiting or Trying.
    waiting: usize,
    answering: usize,
    abandoned: usize,
    /// The earliest `joined_epoch` of those waiting.
    oldest: Option<i64>,
}

/// Which of a queue's counts a member is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Column {
    /// Waiting or Trying.
    Waiting,
    Answering,
    Abandoned,
    Other,
}

/// What a member counts for in its queue's tally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Counted {
    column: Column,
    joined: i64,
}

fn counted(m: &Value) -> Counted {
    let column = match text(m.get("state")) {
        "Waiting" | "Trying" => Column::Waiting,
        "Answered" => Column::Answering,
        "Abandoned" => Column::Abandoned,
        _ => Column::Other,
    };
    Counted {
        column,
        joined: num(m.get("joined_epoch")),
    }
}

impl Tally {
    fn of(members: Option<&BTreeMap<String, Value>>) -> Tally {
        let none = Tally::default();
        members
            .into_iter()
            .flat_map(|m| m.values())
            .fold(none, |t, m| t.moved(None, Some(counted(m))).unwrap_or(t))
    }

    /// The tally after one member moved from `before` to `after` (None: not
    /// in the queue), without walking the queue's members. None when only a
    /// walk can tell: the longest waiting caller stopped waiting.
    fn moved(mut self, before: Option<Counted>, after: Option<Counted>) -> Option<Tally> {
        if let Some(b) = before {
            match b.column {
                Column::Waiting => {
                    self.waiting = self.waiting.checked_sub(1)?;
                    let still =
                        after.is_some_and(|a| a.column == Column::Waiting && a.joined == b.joined);
                    if self.waiting == 0 {
                        self.oldest = None;
                    } else if self.oldest == Some(b.joined) && !still {
                        return None;
                    }
                }
                Column::Answering => self.answering = self.answering.checked_sub(1)?,
                Column::Abandoned => self.abandoned = self.abandoned.checked_sub(1)?,
                Column::Other => {}
            }
        }
        if let Some(a) = after {
            match a.column {
                Column::Waiting => {
                    self.waiting += 1;
                    self.oldest = Some(self.oldest.map_or(a.joined, |o| o.min(a.joined)));
                }
                Column::Answering => self.answering += 1,
                Column::Abandoned => self.abandoned += 1,
                Column::Other => {}
            }
        }
        if self.waiting == 0 {
            self.oldest = None;
        }
        Some(self)
    }

    /// What `write` put into a rendered queue.
    fn read(v: &Map<String, Value>) -> Tally {
        let count = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0) as usize;
        Tally {
            waiting: count("waiting"),
            answering: count("answering"),
            abandoned: count("abandoned"),
            oldest: v.get("longest_wait_since").and_then(Value::as_i64),
        }
    }

    fn write(&self, v: &mut Map<String, Value>) {
        v.insert("waiting".into(), json!(self.waiting));
        v.insert("answering".into(), json!(self.answering));
        v.insert("abandoned".into(), json!(self.abandoned));
        v.insert("longest_wait_since".into(), json!(self.oldest));
    }
}

/// Counts for `cc_events state`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub agents: usize,
    pub queues: usize,
    pub waiting: usize,
    pub answering: usize,
}

fn num(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

fn text(v: Option<&Value>) -> &str {
    v.and_then(Value::as_str).unwrap_or("")
}

/// The `response` array of a `callcenter_config` JSON reply.
fn rows(reply: &str, what: &str) -> Result<Vec<Map<String, Value>>, String> {
    let v: Value = serde_json::from_str(reply).map_err(|e| {
        format!(
            "mod_callcenter's '{what}' reply is not JSON ({e}): {}",
            short(reply)
        )
    })?;
    if v["status"] != "success" {
        let why = v["message"].as_str().unwrap_or("no message");
        return Err(format!(
            "callcenter_config {what} failed: {why} (is mod_callcenter loaded?)"
        ));
    }
    match &v["response"] {
        Value::Array(a) => Ok(a.iter().filter_map(|r| r.as_object().cloned()).collect()),
        // mod_callcenter answers an empty list with no array at all.
        Value::Null => Ok(Vec::new()),
        other => Err(format!(
            "callcenter_config {what}: 'response' is not a list: {}",
            short(&other.to_string())
        )),
    }
}

fn short(s: &str) -> String {
    let mut end = s.len().min(200);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

fn pick(row: &Map<String, Value>, texts: &[&str], numbers: &[&str]) -> Map<String, Value> {
    let mut out = Map::new();
    for k in texts {
        out.insert((*k).into(), Value::String(text(row.get(*k)).into()));
    }
    for k in numbers {
        out.insert((*k).into(), json!(num(row.get(*k))));
    }
    out
}

fn epoch_s(us: Option<u64>) -> i64 {
    us.map_or(0, |us| (us / 1_000_000) as i64)
}

impl Model {
    /// A model from mod_callcenter's four lists. `vars` reads a member's
    /// channel variables by session UUID (the JSON API does not have them).
    pub fn seed(
        lists: &Lists<'_>,
        updated_us: u64,
        mut vars: impl FnMut(&str) -> Map<String, Value>,
    ) -> Result<Model, String> {
        let mut m = Model::default();
        for row in rows(lists.agents, "agent list")? {
            let name = text(row.get("name")).to_string();
            if name.is_empty() {
                continue;
            }
            let mut a = pick(&row, AGENT_TEXT, AGENT_NUMBERS);
            a.insert("updated".into(), json!(updated_us));
            m.agents.insert(name, Value::Object(a));
        }
        for row in rows(lists.queues, "queue list")? {
            let name = text(row.get("name")).to_string();
            if name.is_empty() {
                continue;
            }
            let mut config = row.clone();
            config.remove("name");
            for k in QUEUE_NUMBERS {
                if let Some(v) = config.get_mut(*k) {
                    *v = json!(num(Some(v)));
                }
            }
            m.queues.insert(
                name,
                QueueConf {
                    config,
                    tiers: Vec::new(),
                },
            );
        }
        for row in rows(lists.tiers, "tier list")? {
            let queue = text(row.get("queue")).to_string();
            let tier = Tier {
                agent: text(row.get("agent")).into(),
                state: text(row.get("state")).into(),
                level: num(row.get("level")),
                position: num(row.get("position")),
            };
            m.queues.entry(queue).or_default().tiers.push(tier);
        }
        for row in rows(lists.members, "member list")? {
            let queue = text(row.get("queue")).to_string();
            let uuid = text(row.get("uuid")).to_string();
            if uuid.is_empty() {
                continue;
            }
            let mut member = pick(&row, MEMBER_TEXT, MEMBER_NUMBERS);
            let session = text(row.get("session_uuid"));
            let v = if session.is_empty() {
                Map::new()
            } else {
                vars(session)
            };
            member.insert("variables".into(), Value::Object(v));
            m.queues.entry(queue.clone()).or_default();
            m.members
                .entry(queue)
                .or_default()
                .insert(uuid, Value::Object(member));
        }
        let names: Vec<String> = m.queues.keys().cloned().collect();
        for q in names {
            let v = m.render_queue(&q);
            if let Some(v) = v.as_object() {
                let t = Tally::read(v);
                m.waiting += t.waiting;
                m.answering += t.answering;
            }
            m.rendered.insert(q, v);
        }
        Ok(m)
    }

    /// Every field of every hash, for a full rewrite.
    pub fn all(&self) -> Vec<Change> {
        let mut out = Vec::new();
        for (name, v) in &self.agents {
            out.push(set(Hash::Agents, name, v));
        }
        for (name, v) in &self.rendered {
            out.push(set(Hash::Queues, name, v));
        }
        for (q, members) in &self.members {
            for (uuid, v) in members {
                out.push(set(Hash::Members(q.clone()), uuid, v));
            }
        }
        out
    }

    pub fn queue_names(&self) -> impl Iterator<Item = &String> {
        self.queues.keys()
    }

    pub fn counts(&self) -> Counts {
        Counts {
            agents: self.agents.len(),
            queues: self.queues.len(),
            waiting: self.waiting,
            answering: self.answering,
        }
    }

    /// What changed from `self` to `fresh`, ignoring `updated` (kept from
    /// `self` where nothing else changed); `self` becomes `fresh`.
    pub fn replace_with(&mut self, mut fresh: Model) -> Vec<Change> {
        for (name, a) in fresh.agents.iter_mut() {
            if let Some(old) = self.agents.get(name) {
                if same_but_updated(old, a) {
                    *a = old.clone();
                }
            }
        }
        let mut out = Vec::new();
        diff(&self.agents, &fresh.agents, Hash::Agents, &mut out);
        diff(&self.rendered, &fresh.rendered, Hash::Queues, &mut out);
        let queues: BTreeSet<&String> = self.members.keys().chain(fresh.members.keys()).collect();
        let empty = BTreeMap::new();
        for q in queues {
            diff(
                self.members.get(q).unwrap_or(&empty),
                fresh.members.get(q).unwrap_or(&empty),
                Hash::Members(q.clone()),
                &mut out,
            );
        }
        *self = fresh;
        out
    }

    /// Applies one event as mod_callcenter applied it to its database, and
    /// returns the fields that changed.
    pub fn apply(&mut self, ev: &dyn EventView) -> Vec<Change> {
        let now = epoch_s(ev.timestamp_us());
        let updated = ev.timestamp_us().unwrap_or(0);
        let agent = ev.header("Agent").unwrap_or("").to_string();
        let queue = ev.header("Queue").unwrap_or("").to_string();
        let member = ev.header("Member-UUID").unwrap_or("").to_string();
        let mut agent_changed = false;
        let mut member_queue = None;
        let existed = self.agents.contains_key(&agent);
        // The event's member as its queue counted it, to move the queue's
        // tally instead of walking every member after each event.
        let before = self.member(&queue, &member).map(counted);
        // An agent event without an agent changes no agent.
        let agent_event = matches!(
            ev.action(),
            "agent-status-change" | "agent-state-change" | "agent-contact-change"
        );
        if agent.is_empty() && agent_event {
            return Vec::new();
        }
        match ev.action() {
            "agent-add" if !agent.is_empty() && !self.agents.contains_key(&agent) => {
                let mut a = pick(&Map::new(), AGENT_TEXT, AGENT_NUMBERS);
                a.insert("name".into(), json!(agent));
                a.insert("type".into(), json!(ev.header("Agent-Type").unwrap_or("")));
                a.insert("status".into(), json!("Logged Out"));
                a.insert("state".into(), json!("Waiting"));
                self.agents.insert(agent.clone(), Value::Object(a));
                agent_changed = true;
            }
            "agent-status-change" => {
                let status = ev.header("Agent-Status").unwrap_or("");
                let a = self.agent(&agent);
                let was = text(a.get("status")).to_string();
                // mod_callcenter resets the counters on becoming Available,
                // and only when the status really changes.
                if status == "Available" {
                    if was != status {
                        for k in ["talk_time", "calls_answered", "no_answer_count"] {
                            a.insert(k.into(), json!(0));
                        }
                        a.insert("last_status_change".into(), json!(now));
                    }
                } else {
                    a.insert("last_status_change".into(), json!(now));
                }
                a.insert("status".into(), json!(status));
                agent_changed = true;
            }
            "agent-state-change" => {
                let state = ev.header("Agent-State").unwrap_or("");
                let a = self.agent(&agent);
                if state == "Receiving" {
                    a.insert("last_offered_call".into(), json!(now));
                }
                // mod_callcenter stamps last_bridge_start once the legs are
                // bridged, right before it sets this state; bridge-agent-start
                // fires before it bridges them, tens of ms earlier, sometimes
                // in the previous second.
                if state == "In a queue call"
                    && num(a.get("last_bridge_start")) > num(a.get("last_bridge_end"))
                {
                    a.insert("last_bridge_start".into(), json!(now));
                }
                a.insert("state".into(), json!(state));
                agent_changed = true;
            }
            "agent-contact-change" => {
                let contact = ev.header("Agent-Contact").unwrap_or("");
                self.agent(&agent).insert("contact".into(), json!(contact));
                agent_changed = true;
            }
            "member-queue-start" | "member-queue-resume" => {
                let resumed = self.member(&queue, &member).cloned();
                let mut m = pick(&Map::new(), MEMBER_TEXT, MEMBER_NUMBERS);
                m.insert("uuid".into(), json!(member));
                m.insert("queue".into(), json!(queue));
                for (k, h) in [
                    ("session_uuid", "Member-Session-UUID"),
                    ("cid_number", "Member-CID-Number"),
                    ("cid_name", "Member-CID-Name"),
                ] {
                    m.insert(k.into(), json!(ev.header(h).unwrap_or("")));
                }
                m.insert("state".into(), json!("Waiting"));
                match resumed.as_ref().and_then(Value::as_object) {
                    // A caller who comes back keeps the place they had.
                    Some(old) if ev.action() == "member-queue-resume" => {
                        m.insert("joined_epoch".into(), json!(num(old.get("joined_epoch"))));
                        m.insert("rejoined_epoch".into(), json!(now));
                    }
                    _ => {
                        m.insert("joined_epoch".into(), json!(now));
                    }
                }
                let vars: Map<String, Value> = ev
                    .variables()
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), json!(v)))
                    .collect();
                m.insert("variables".into(), Value::Object(vars));
                if !member.is_empty() {
                    self.queues.entry(queue.clone()).or_default();
                    self.members
                        .entry(queue.clone())
                        .or_default()
                        .insert(member.clone(), Value::Object(m));
                    member_queue = Some(queue.clone());
                }
            }
            "agent-offering" => {
                if let Some(m) = self.member_mut(&queue, &member) {
                    m.insert("state".into(), json!("Trying"));
                    m.insert("serving_agent".into(), json!(agent));
                    member_queue = Some(queue.clone());
                }
            }
            "bridge-agent-start" => {
                if let Some(m) = self.member_mut(&queue, &member) {
                    m.insert("state".into(), json!("Answered"));
                    m.insert("serving_agent".into(), json!(agent));
                    m.insert("bridge_epoch".into(), json!(now));
                    member_queue = Some(queue.clone());
                }
                let a = self.agent(&agent);
                // Counted once: a seed taken after the bridge already has it.
                if !agent.is_empty() && now > num(a.get("last_bridge_start")) {
                    let answered = num(a.get("calls_answered")) + 1;
                    a.insert("calls_answered".into(), json!(answered));
                    a.insert("last_bridge_start".into(), json!(now));
                    a.insert("no_answer_count".into(), json!(0));
                    agent_changed = true;
                }
            }
            "bridge-agent-end" => {
                let end = ev
                    .header("Bridge-Terminated-Time")
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(now);
                let a = self.agent(&agent);
                if !agent.is_empty() && end > num(a.get("last_bridge_end")) {
                    let talk = num(a.get("talk_time")) + (end - num(a.get("last_bridge_start")));
                    a.insert("talk_time".into(), json!(talk.max(0)));
                    a.insert("last_bridge_end".into(), json!(end));
                    agent_changed = true;
                }
            }
            "bridge-agent-fail" => {
                if let Some(m) = self.member_mut(&queue, &member) {
                    if text(m.get("state")) == "Trying" {
                        m.insert("state".into(), json!("Waiting"));
                    }
                    m.insert("serving_agent".into(), json!(""));
                    member_queue = Some(queue.clone());
                }
                let cause = ev.header("Hangup-Cause").unwrap_or("");
                let not_a_no_answer = [
                    "LOSE_RACE",
                    "ORIGINATOR_CANCEL",
                    "NORMAL_CIRCUIT_CONGESTION",
                    "USER_BUSY",
                    "CALL_REJECTED",
                    "USER_NOT_REGISTERED",
                ];
                if !agent.is_empty() && !not_a_no_answer.contains(&cause) {
                    let a = self.agent(&agent);
                    let n = num(a.get("no_answer_count")) + 1;
                    a.insert("no_answer_count".into(), json!(n));
                    agent_changed = true;
                }
            }
            "member-queue-end" => match ev.header("Cause").unwrap_or("") {
                "Cancel" => {
                    let left = ev
                        .header("Member-Leaving-Time")
                        .and_then(|t| t.parse().ok())
                        .unwrap_or(now);
                    if let Some(m) = self.member_mut(&queue, &member) {
                        m.insert("state".into(), json!("Abandoned"));
                        m.insert("session_uuid".into(), json!(""));
                        m.insert("abandoned_epoch".into(), json!(left));
                        member_queue = Some(queue.clone());
                    }
                }
                _ => {
                    if let Some(ms) = self.members.get_mut(&queue) {
                        if ms.remove(&member).is_some() {
                            member_queue = Some(queue.clone());
                        }
                    }
                }
            },
            "members-count" => {
                self.queues.entry(queue.clone()).or_default();
                member_queue = Some(queue.clone());
            }
            _ => {}
        }
        if agent.is_empty() {
            self.agents.remove("");
        } else if !existed && self.agents.contains_key(&agent) {
            agent_changed = true;
        }
        let mut out = Vec::new();
        if agent_changed {
            if let Some(a) = self.agents.get_mut(&agent).and_then(Value::as_object_mut) {
                a.insert("updated".into(), json!(updated));
            }
            if let Some(a) = self.agents.get(&agent) {
                out.push(set(Hash::Agents, &agent, a));
            }
        }
        if let Some(q) = member_queue {
            if !member.is_empty() {
                let value = self
                    .member(&q, &member)
                    .map(|m| serde_json::to_string(m).unwrap_or_default());
                out.push(Change {
                    hash: Hash::Members(q.clone()),
                    field: member.clone(),
                    value,
                });
            }
            let after = self.member(&q, &member).map(counted);
            self.queue_changed(&q, Some((before, after)), &mut out);
        }
        out
    }

    /// An event captured before the seed now in the model was read: the seed
    /// holds its effect, except for a caller who joined, because mod_callcenter
    /// fires member-queue-start before it inserts the member: a seed read in
    /// between misses it, so it is added if absent.
    /// `ended`: members whose member-queue-end was also captured before the
    /// seed (gone by then, not missed).
    pub fn apply_before_seed(
        &mut self,
        ev: &dyn EventView,
        ended: &std::collections::HashSet<String>,
    ) -> Vec<Change> {
        let joins = matches!(ev.action(), "member-queue-start" | "member-queue-resume");
        let queue = ev.header("Queue").unwrap_or("");
        let member = ev.header("Member-UUID").unwrap_or("");
        if joins && !ended.contains(member) && self.member(queue, member).is_none() {
            return self.apply(ev);
        }
        Vec::new()
    }

    /// Drops abandoned members as mod_callcenter does, silently, once
    /// `discard-abandoned-after` has passed (`now` in epoch seconds).
    pub fn expire(&mut self, now: i64) -> Vec<Change> {
        let mut out = Vec::new();
        let mut touched = Vec::new();
        for (q, members) in self.members.iter_mut() {
            let after = self
                .queues
                .get(q)
                .and_then(|c| c.config.get("discard_abandoned_after"))
                .map_or(DEFAULT_DISCARD_ABANDONED_AFTER, |v| num(Some(v)));
            let gone: Vec<String> = members
                .iter()
                .filter(|(_, m)| {
                    text(m.get("state")) == "Abandoned" && {
                        let at = num(m.get("abandoned_epoch"));
                        let at = if at == 0 {
                            num(m.get("joined_epoch"))
                        } else {
                            at
                        };
                        at + after < now
                    }
                })
                .map(|(u, _)| u.clone())
                .collect();
            for u in gone {
                members.remove(&u);
                out.push(Change {
                    hash: Hash::Members(q.clone()),
                    field: u,
                    value: None,
                });
                if !touched.contains(q) {
                    touched.push(q.clone());
                }
            }
        }
        for q in touched {
            self.queue_changed(&q, None, &mut out);
        }
        out
    }

    /// Re-renders queue `q` after its members changed. A queue's
    /// configuration and tiers change only with a seed, so a queue already
    /// rendered differs only in its tally: that is all that is recomputed,
    /// from the one member that moved when that is known (`moved`), else by
    /// walking the queue's members.
    fn queue_changed(
        &mut self,
        q: &str,
        moved: Option<(Option<Counted>, Option<Counted>)>,
        out: &mut Vec<Change>,
    ) {
        let was = match self.rendered.get(q) {
            Some(Value::Object(v)) => Some(Tally::read(v)),
            _ => None,
        };
        let was = match was {
            Some(was) => {
                let now = moved
                    .and_then(|(b, a)| was.moved(b, a))
                    .unwrap_or_else(|| Tally::of(self.members.get(q)));
                if was == now {
                    return;
                }
                if let Some(Value::Object(v)) = self.rendered.get_mut(q) {
                    now.write(v);
                }
                was
            }
            // Not rendered yet: none of it is counted.
            None => {
                let v = self.render_queue(q);
                self.rendered.insert(q.to_string(), v);
                Tally::default()
            }
        };
        let now = match self.rendered.get(q) {
            Some(Value::Object(v)) => Tally::read(v),
            _ => Tally::default(),
        };
        self.waiting = (self.waiting + now.waiting).saturating_sub(was.waiting);
        self.answering = (self.answering + now.answering).saturating_sub(was.answering);
        if let Some(v) = self.rendered.get(q) {
            out.push(set(Hash::Queues, q, v));
        }
    }

    fn render_queue(&self, q: &str) -> Value {
        let conf = self.queues.get(q).cloned().unwrap_or_default();
        let mut tiers = conf.tiers.clone();
        tiers.sort_by(|a, b| (a.level, a.position, &a.agent).cmp(&(b.level, b.position, &b.agent)));
        let agents: Vec<Value> = tiers
            .iter()
            .map(|t| {
                json!({"name": t.agent, "level": t.level, "position": t.position, "tier_state": t.state})
            })
            .collect();
        let mut v = conf.config.clone();
        v.insert("name".into(), json!(q));
        v.entry("strategy").or_insert(Value::Null);
        Tally::of(self.members.get(q)).write(&mut v);
        v.insert("agents".into(), Value::Array(agents));
        Value::Object(v)
    }

    /// The agent, created as mod_callcenter would have it if a seed missed it.
    fn agent(&mut self, name: &str) -> &mut Map<String, Value> {
        let v = self.agents.entry(name.to_string()).or_insert_with(|| {
            let mut a = pick(&Map::new(), AGENT_TEXT, AGENT_NUMBERS);
            a.insert("name".into(), json!(name));
            Value::Object(a)
        });
        if !v.is_object() {
            *v = Value::Object(Map::new());
        }
        v.as_object_mut().expect("just made an object")
    }

    fn member(&self, q: &str, uuid: &str) -> Option<&Value> {
        self.members.get(q)?.get(uuid)
    }

    fn member_mut(&mut self, q: &str, uuid: &str) -> Option<&mut Map<String, Value>> {
        self.members.get_mut(q)?.get_mut(uuid)?.as_object_mut()
    }
}

fn set(hash: Hash, field: &str, v: &Value) -> Change {
    Change {
        hash,
        field: field.to_string(),
        // Straight into a String: Value's Display goes through the formatter
        // machinery, a third of the worker's time per event under load.
        value: Some(serde_json::to_string(v).unwrap_or_default()),
    }
}

fn same_but_updated(a: &Value, b: &Value) -> bool {
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => {
            a.len() == b.len() && a.iter().all(|(k, v)| k == "updated" || b.get(k) == Some(v))
        }
        _ => a == b,
    }
}

fn diff(
    old: &BTreeMap<String, Value>,
    new: &BTreeMap<String, Value>,
    hash: Hash,
    out: &mut Vec<Change>,
) {
    for (k, v) in new {
        if old.get(k) != Some(v) {
            out.push(set(hash.clone(), k, v));
        }
    }
    for k in old.keys() {
        if !new.contains_key(k) {
            out.push(Change {
                hash: hash.clone(),
                field: k.clone(),
                value: None,
            });
        }
    }
}

/// What the test modules below share: an event type and seeding.
#[cfg(test)]
mod test_support {
    use super::*;

    /// An event as the model reads it: `CC-<name>` headers by `<name>`.
    #[derive(Clone, Debug)]
    pub(super) struct Ev {
        pub(super) action: &'static str,
        pub(super) headers: Vec<(&'static str, String)>,
        pub(super) timestamp_us: Option<u64>,
        pub(super) variables: Vec<(&'static str, &'static str)>,
    }

    impl EventView for Ev {
        fn action(&self) -> &str {
            self.action
        }

        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        }

        fn timestamp_us(&self) -> Option<u64> {
            self.timestamp_us
        }

        fn variables(&self) -> Vec<(&str, &str)> {
            self.variables.clone()
        }
    }

    /// An event at `at_us` microseconds, with no channel variables.
    pub(super) fn ev_us(action: &'static str, at_us: u64, headers: &[(&'static str, &str)]) -> Ev {
        Ev {
            action,
            headers: headers.iter().map(|(n, v)| (*n, v.to_string())).collect(),
            timestamp_us: Some(at_us),
            variables: Vec::new(),
        }
    }

    /// An event at `secs` seconds, with no channel variables.
    pub(super) fn ev(action: &'static str, secs: u64, headers: &[(&'static str, &str)]) -> Ev {
        ev_us(action, secs * 1_000_000, headers)
    }

    /// The model seeded from the four `callcenter_config` replies, with no
    /// member variables.
    pub(super) fn seed(
        agents: &str,
        queues: &str,
        tiers: &str,
        members: &str,
        updated_us: u64,
    ) -> Model {
        seed_with(agents, queues, tiers, members, updated_us, |_| Map::new())
    }

    /// `seed`, with `vars` giving each member's variables.
    pub(super) fn seed_with(
        agents: &str,
        queues: &str,
        tiers: &str,
        members: &str,
        updated_us: u64,
        vars: impl FnMut(&str) -> Map<String, Value>,
    ) -> Model {
        let lists = Lists {
            agents,
            queues,
            tiers,
            members,
        };
        Model::seed(&lists, updated_us, vars).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{seed_with, Ev};
    use super::*;

    /// `test_support::ev`, with the channel variable campaign_id=295.
    fn ev(action: &'static str, secs: u64, headers: &[(&'static str, &'static str)]) -> Ev {
        Ev {
            variables: vec![("campaign_id", "295")],
            ..super::test_support::ev(action, secs, headers)
        }
    }

    fn reply(rows: Value) -> String {
        json!({"command": "callcenter_config", "status": "success", "response": rows}).to_string()
    }

    fn seeded() -> Model {
        let agents = reply(json!([
            {"name": "a1", "type": "callback", "contact": "user/1", "status": "Available", "state": "Waiting",
             "calls_answered": "2", "last_bridge_start": "100", "last_bridge_end": "110", "no_answer_count": "1", "talk_time": "10"},
            {"name": "a2", "type": "callback", "contact": "user/2", "status": "Logged Out", "state": "Waiting"}
        ]));
        let queues =
            reply(json!([{"name": "q", "strategy": "ring-all", "discard_abandoned_after": 60}]));
        let tiers = reply(json!([
            {"queue": "q", "agent": "a2", "state": "Ready", "level": "1", "position": "2"},
            {"queue": "q", "agent": "a1", "state": "Ready", "level": "1", "position": "1"}
        ]));
        let members = reply(json!([
            {"queue": "q", "uuid": "m1", "session_uuid": "s1", "cid_number": "1", "cid_name": "C",
             "joined_epoch": "200", "state": "Waiting", "serving_agent": "", "score": "9"}
        ]));
        seed_with(&agents, &queues, &tiers, &members, 5, |s| {
            let mut m = Map::new();
            m.insert("session".into(), json!(s));
            m
        })
    }

    fn agent(m: &Model, name: &str) -> Value {
        m.agents[name].clone()
    }

    #[test]
    fn a_seed_takes_mod_callcenters_rows_with_numbers_as_numbers() {
        let m = seeded();
        let a1 = agent(&m, "a1");
        assert_eq!(a1["calls_answered"], 2);
        assert_eq!(a1["updated"], 5);
        assert_eq!(a1["status"], "Available");
        let q = &m.rendered["q"];
        assert_eq!(q["waiting"], 1);
        assert_eq!(q["longest_wait_since"], 200);
        assert_eq!(q["agents"][0]["name"], "a1", "by level, then position");
        let member = &m.members["q"]["m1"];
        assert_eq!(member["variables"], json!({"session": "s1"}));
        assert!(member.get("score").is_none(), "score moves with the clock");
        assert_eq!(m.counts().waiting, 1);
    }

    #[test]
    fn a_reply_that_is_not_a_success_says_what_to_check() {
        let bad = json!({"status": "error", "message": "Invalid request or non-existant command"})
            .to_string();
        let ok = reply(json!([]));
        let e = Model::seed(
            &Lists {
                agents: &bad,
                queues: &ok,
                tiers: &ok,
                members: &ok,
            },
            0,
            |_| Map::new(),
        )
        .unwrap_err();
        assert!(
            e.contains("non-existant command") && e.contains("mod_callcenter"),
            "{e}"
        );
        let e = Model::seed(
            &Lists {
                agents: "-ERR no reply",
                queues: &ok,
                tiers: &ok,
                members: &ok,
            },
            0,
            |_| Map::new(),
        )
        .unwrap_err();
        assert!(e.contains("not JSON"), "{e}");
    }

    #[test]
    fn becoming_available_resets_the_counters_only_when_the_status_changes() {
        let mut m = seeded();
        m.apply(&ev(
            "agent-status-change",
            300,
            &[("Agent", "a1"), ("Agent-Status", "Available")],
        ));
        assert_eq!(agent(&m, "a1")["calls_answered"], 2, "already Available");
        m.apply(&ev(
            "agent-status-change",
            301,
            &[("Agent", "a1"), ("Agent-Status", "On Break")],
        ));
        assert_eq!(agent(&m, "a1")["last_status_change"], 301);
        let c = m.apply(&ev(
            "agent-status-change",
            302,
            &[("Agent", "a1"), ("Agent-Status", "Available")],
        ));
        let a1 = agent(&m, "a1");
        assert_eq!(
            (a1["calls_answered"].clone(), a1["talk_time"].clone()),
            (json!(0), json!(0))
        );
        assert_eq!(a1["updated"], 302_000_000u64);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].hash, Hash::Agents);
    }

    #[test]
    fn a_call_moves_the_member_and_counts_once() {
        let mut m = seeded();
        m.apply(&ev(
            "agent-state-change",
            300,
            &[("Agent", "a1"), ("Agent-State", "Receiving")],
        ));
        assert_eq!(agent(&m, "a1")["last_offered_call"], 300);
        let c = m.apply(&ev(
            "agent-offering",
            300,
            &[("Queue", "q"), ("Agent", "a1"), ("Member-UUID", "m1")],
        ));
        assert_eq!(m.members["q"]["m1"]["state"], "Trying");
        assert_eq!(m.members["q"]["m1"]["serving_agent"], "a1");
        assert!(
            c.iter().all(|c| c.hash != Hash::Queues),
            "Trying still waits: {c:?}"
        );
        let start = ev(
            "bridge-agent-start",
            301,
            &[("Queue", "q"), ("Agent", "a1"), ("Member-UUID", "m1")],
        );
        m.apply(&start);
        assert_eq!(agent(&m, "a1")["calls_answered"], 3);
        assert_eq!(m.rendered["q"]["answering"], 1);
        assert_eq!(m.rendered["q"]["waiting"], 0);
        // The same bridge again (a seed that already had it, then the event): counted once.
        m.apply(&start);
        assert_eq!(agent(&m, "a1")["calls_answered"], 3);
        m.apply(&ev(
            "bridge-agent-end",
            305,
            &[("Queue", "q"), ("Agent", "a1"), ("Member-UUID", "m1")],
        ));
        assert_eq!(agent(&m, "a1")["talk_time"], 14);
        assert_eq!(agent(&m, "a1")["last_bridge_end"], 305);
        let c = m.apply(&ev(
            "member-queue-end",
            305,
            &[
                ("Queue", "q"),
                ("Member-UUID", "m1"),
                ("Cause", "Terminated"),
            ],
        ));
        assert!(c.contains(&Change {
            hash: Hash::Members("q".into()),
            field: "m1".into(),
            value: None
        }));
        assert_eq!(m.rendered["q"]["answering"], 0);
    }

    #[test]
    fn a_caller_who_gives_up_is_abandoned_then_discarded_and_may_resume() {
        let mut m = seeded();
        m.apply(&ev(
            "member-queue-end",
            400,
            &[
                ("Queue", "q"),
                ("Member-UUID", "m1"),
                ("Cause", "Cancel"),
                ("Member-Leaving-Time", "400"),
            ],
        ));
        let m1 = &m.members["q"]["m1"];
        assert_eq!(
            (m1["state"].clone(), m1["session_uuid"].clone()),
            (json!("Abandoned"), json!(""))
        );
        assert_eq!(m.rendered["q"]["abandoned"], 1);
        assert_eq!(m.rendered["q"]["longest_wait_since"], Value::Null);
        // Back within discard-abandoned-after: the same place in the queue.
        m.apply(&ev(
            "member-queue-resume",
            420,
            &[
                ("Queue", "q"),
                ("Member-UUID", "m1"),
                ("Member-Session-UUID", "s9"),
            ],
        ));
        let m1 = &m.members["q"]["m1"];
        assert_eq!(m1["joined_epoch"], 200);
        assert_eq!(m1["rejoined_epoch"], 420);
        assert_eq!(m1["variables"], json!({"campaign_id": "295"}));
        m.apply(&ev(
            "member-queue-end",
            430,
            &[("Queue", "q"), ("Member-UUID", "m1"), ("Cause", "Cancel")],
        ));
        assert!(
            m.expire(430 + 60).is_empty(),
            "not before discard-abandoned-after has passed"
        );
        let c = m.expire(430 + 61);
        assert_eq!(c[0].value, None);
        assert!(m.members["q"].is_empty());
        assert_eq!(m.rendered["q"]["abandoned"], 0);
    }

    #[test]
    fn a_failed_offer_puts_the_caller_back_and_counts_a_no_answer_unless_busy() {
        let mut m = seeded();
        m.apply(&ev(
            "agent-offering",
            300,
            &[("Queue", "q"), ("Agent", "a2"), ("Member-UUID", "m1")],
        ));
        m.apply(&ev(
            "bridge-agent-fail",
            310,
            &[
                ("Queue", "q"),
                ("Agent", "a2"),
                ("Member-UUID", "m1"),
                ("Hangup-Cause", "USER_BUSY"),
            ],
        ));
        assert_eq!(m.members["q"]["m1"]["state"], "Waiting");
        assert_eq!(m.members["q"]["m1"]["serving_agent"], "");
        assert_eq!(agent(&m, "a2")["no_answer_count"], 0);
        m.apply(&ev(
            "bridge-agent-fail",
            320,
            &[
                ("Queue", "q"),
                ("Agent", "a2"),
                ("Member-UUID", "m1"),
                ("Hangup-Cause", "ALLOTTED_TIMEOUT"),
            ],
        ));
        assert_eq!(agent(&m, "a2")["no_answer_count"], 1);
    }

    #[test]
    fn a_refresh_reports_only_the_drift_and_keeps_updated() {
        let mut m = seeded();
        let same = seeded();
        assert!(m.replace_with(same).is_empty());
        let mut fresh = seeded();
        fresh.queues.get_mut("q").unwrap().tiers[0].state = "Active Inbound".into();
        let v = fresh.render_queue("q");
        fresh.rendered.insert("q".into(), v);
        if let Some(a) = fresh.agents.get_mut("a2").and_then(Value::as_object_mut) {
            a.insert("updated".into(), json!(99));
        }
        fresh.members.get_mut("q").unwrap().clear();
        let c = m.replace_with(fresh);
        assert_eq!(c.len(), 2, "{c:?}");
        assert!(c.iter().any(|c| c.hash == Hash::Queues));
        assert!(c
            .iter()
            .any(|c| c.hash == Hash::Members("q".into()) && c.value.is_none()));
    }

    #[test]
    fn agent_add_adds_once_and_unknown_names_are_created_not_lost() {
        let mut m = seeded();
        let c = m.apply(&ev(
            "agent-add",
            1,
            &[("Agent", "a3"), ("Agent-Type", "callback")],
        ));
        assert_eq!(agent(&m, "a3")["status"], "Logged Out");
        assert_eq!(c.len(), 1);
        assert!(m.apply(&ev("agent-add", 2, &[("Agent", "a3")])).is_empty());
        m.apply(&ev(
            "agent-contact-change",
            3,
            &[("Agent", "a9"), ("Agent-Contact", "user/9")],
        ));
        assert_eq!(agent(&m, "a9")["contact"], "user/9");
        // Members of a queue the seed did not list still count.
        m.apply(&ev(
            "member-queue-start",
            4,
            &[("Queue", "new"), ("Member-UUID", "x")],
        ));
        assert_eq!(m.rendered["new"]["waiting"], 1);
        assert_eq!(m.rendered["new"]["strategy"], Value::Null);
    }

    /// An event from a small world (3 agents, 2 queues, 3 members) with any
    /// action and odd values, for the property below.
    fn any_event() -> impl proptest::strategy::Strategy<Value = Ev> {
        use proptest::prelude::*;
        const ACTIONS: &[&str] = &[
            "agent-add",
            "agent-status-change",
            "agent-state-change",
            "agent-contact-change",
            "member-queue-start",
            "member-queue-resume",
            "agent-offering",
            "bridge-agent-start",
            "bridge-agent-end",
            "bridge-agent-fail",
            "member-queue-end",
            "members-count",
        ];
        let value = prop_oneof![
            Just(String::new()),
            Just("Available".to_string()),
            Just("Terminated".to_string()),
            Just("Cancel".to_string()),
            Just("-5".to_string()),
            Just("99999999999999999999".to_string()),
            "[a-z0-9 ]{0,6}",
        ];
        (
            0..ACTIONS.len(),
            0..3usize,
            0..2usize,
            0..3usize,
            proptest::option::of(0..2_000_000_000u64),
            value.clone(),
            value,
        )
            .prop_map(|(a, agent, queue, member, ts, v1, v2)| Ev {
                action: ACTIONS[a],
                headers: vec![
                    ("Agent", format!("a{agent}")),
                    ("Queue", ["q", "other"][queue].to_string()),
                    ("Member-UUID", format!("m{member}")),
                    ("Agent-Status", v1.clone()),
                    ("Agent-State", v1.clone()),
                    ("Cause", v1),
                    ("Bridge-Terminated-Time", v2.clone()),
                    ("Member-Leaving-Time", v2),
                ],
                timestamp_us: ts.map(|s| s * 1000),
                variables: Vec::new(),
            })
    }

    fn as_map(changes: Vec<Change>) -> BTreeMap<(Hash, String), String> {
        changes
            .into_iter()
            .filter_map(|c| Some(((c.hash, c.field), c.value?)))
            .collect()
    }

    #[test]
    fn before_the_seed_only_a_join_the_seed_missed_is_applied() {
        let mut m = seeded();
        let join = ev(
            "member-queue-start",
            500,
            &[("Queue", "q"), ("Member-UUID", "m7")],
        );
        let mut ended = std::collections::HashSet::new();
        ended.insert("m7".to_string());
        assert!(
            m.apply_before_seed(&join, &ended).is_empty(),
            "gone before the seed"
        );
        ended.clear();
        assert_eq!(
            m.apply_before_seed(&join, &ended).len(),
            2,
            "the member and its queue"
        );
        assert_eq!(m.members["q"]["m7"]["state"], "Waiting");
        // A join the seed has (and may have moved on from) is left alone.
        m.apply(&ev(
            "agent-offering",
            501,
            &[("Queue", "q"), ("Agent", "a1"), ("Member-UUID", "m7")],
        ));
        assert!(m.apply_before_seed(&join, &ended).is_empty());
        assert_eq!(m.members["q"]["m7"]["state"], "Trying");
        let status = ev(
            "agent-status-change",
            502,
            &[("Agent", "a1"), ("Agent-Status", "On Break")],
        );
        assert!(m.apply_before_seed(&status, &ended).is_empty());
    }

    proptest::proptest! {
        /// What a stream consumer does, applying each event's changes to its
        /// copy, always gives the model's whole state; and each queue's counts
        /// are its members'. Whatever the events: none panics.
        #[test]
        fn applying_the_changes_always_gives_the_whole_state(
            events in proptest::collection::vec(any_event(), 1..80),
            expire_at in 0..2_000_000i64,
        ) {
            let mut m = seeded();
            let mut copy = as_map(m.all());
            for (i, e) in events.iter().enumerate() {
                let changes = if i == events.len() / 2 {
                    m.expire(expire_at)
                } else {
                    m.apply(e)
                };
                for c in changes {
                    match c.value {
                        Some(v) => copy.insert((c.hash, c.field), v),
                        None => copy.remove(&(c.hash, c.field)),
                    };
                }
                proptest::prop_assert_eq!(&copy, &as_map(m.all()));
                for (q, v) in &m.rendered {
                    let ms = m.members.get(q).cloned().unwrap_or_default();
                    let n = |states: &[&str]| ms.values().filter(|m| states.contains(&text(m.get("state")))).count();
                    proptest::prop_assert_eq!(v["waiting"].as_u64(), Some(n(&["Waiting", "Trying"]) as u64));
                    proptest::prop_assert_eq!(v["answering"].as_u64(), Some(n(&["Answered"]) as u64));
                    // The tally moved member by member equals a walk over
                    // the members (the abandoned, the longest wait too).
                    proptest::prop_assert_eq!(Some(v), Some(&m.render_queue(q)), "queue {}", q);
                }
            }
        }
    }
}

/// The bridge's timing against the recorded lists.
#[cfg(test)]
mod bridge_timing {
    use super::test_support::{ev_us as ev, seed};
    use super::*;

    const ARESKI: &str = "tenant-1@areski";

    /// The recorded lists with areski Available, before the first call.
    fn available() -> Model {
        let json = |what: &str| {
            std::fs::read_to_string(format!(
                "{}/tests/fixtures/callcenter-json/02-areski-available.{what}.json",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap()
        };
        seed(
            &json("agent-list"),
            &json("queue-list"),
            &json("tier-list"),
            &json("member-list"),
            0,
        )
    }

    /// mod_callcenter fires bridge-agent-start before it bridges the legs, and
    /// only once they are bridged sets last_bridge_start (then "In a queue
    /// call"); talk_time counts from there. A bridge that straddles a second
    /// boundary must not leave the mirror a second early, in both.
    #[test]
    fn last_bridge_start_is_when_the_legs_were_bridged_not_when_the_agent_answered() {
        let mut m = available();
        let s = 1_795_606_668u64;
        let agent = [("Agent", ARESKI)];
        m.apply(&ev(
            "agent-state-change",
            s * 1_000_000 + 900_000,
            &[("Agent", ARESKI), ("Agent-State", "Receiving")],
        ));
        m.apply(&ev("bridge-agent-start", s * 1_000_000 + 980_000, &agent));
        assert_eq!(m.agents[ARESKI]["calls_answered"], 1);
        m.apply(&ev(
            "agent-state-change",
            (s + 1) * 1_000_000 + 20_000,
            &[("Agent", ARESKI), ("Agent-State", "In a queue call")],
        ));
        let a = &m.agents[ARESKI];
        assert_eq!(a["last_bridge_start"], s + 1, "{a}");
        assert_eq!(a["last_offered_call"], s, "{a}");
        assert_eq!(a["calls_answered"], 1, "counted once: {a}");
        let end = (s + 5).to_string();
        m.apply(&ev(
            "bridge-agent-end",
            (s + 5) * 1_000_000,
            &[("Agent", ARESKI), ("Bridge-Terminated-Time", &end)],
        ));
        let a = &m.agents[ARESKI];
        assert_eq!(
            (&a["talk_time"], &a["last_bridge_end"]),
            (&json!(4), &json!(s + 5)),
            "{a}"
        );

        // "In a queue call" set by hand, with no bridge under way, is only a state.
        m.apply(&ev(
            "agent-state-change",
            (s + 9) * 1_000_000,
            &[("Agent", ARESKI), ("Agent-State", "In a queue call")],
        ));
        assert_eq!(m.agents[ARESKI]["last_bridge_start"], s + 1);
    }
}

/// The kept counts against a full recount.
#[cfg(test)]
mod tally_tests {
    use super::test_support::{ev, seed};
    use super::*;

    fn seeded() -> Model {
        seed(
            r#"{"status":"success","response":[{"name":"a1","status":"Available","state":"Waiting"},{"name":"a2","status":"Available","state":"Waiting"}]}"#,
            r#"{"status":"success","response":[{"name":"q1","strategy":"ring-all","discard_abandoned_after":"10"},{"name":"q2"}]}"#,
            r#"{"status":"success","response":[{"queue":"q1","agent":"a2","state":"Ready","level":"1","position":"2"},{"queue":"q1","agent":"a1","state":"Ready","level":"1","position":"1"}]}"#,
            r#"{"status":"success","response":[{"queue":"q1","uuid":"m0","session_uuid":"","state":"Waiting","joined_epoch":"90"},{"queue":"q2","uuid":"m9","state":"Answered","joined_epoch":"95"}]}"#,
            1,
        )
    }

    /// What the kept figures must equal: everything counted and rendered again.
    fn check(m: &Model) {
        let (mut waiting, mut answering) = (0, 0);
        for member in m.members.values().flat_map(|q| q.values()) {
            match text(member.get("state")) {
                "Waiting" | "Trying" => waiting += 1,
                "Answered" => answering += 1,
                _ => {}
            }
        }
        let c = m.counts();
        assert_eq!((c.waiting, c.answering), (waiting, answering));
        assert_eq!((c.agents, c.queues), (m.agents.len(), m.queues.len()));
        for q in m.queues.keys() {
            assert_eq!(m.rendered.get(q), Some(&m.render_queue(q)), "queue {q}");
        }
    }

    #[test]
    fn counts_and_queues_kept_as_events_move_the_members_match_a_full_recount() {
        let mut m = seeded();
        check(&m);
        assert_eq!(m.counts().waiting, 1);
        assert_eq!(m.counts().answering, 1);
        let call = |uuid: &'static str, queue: &'static str| {
            vec![
                ("Queue", queue),
                ("Member-UUID", uuid),
                ("Member-Session-UUID", "s"),
                ("Agent", "a1"),
            ]
        };
        let steps = [
            ev("member-queue-start", 100, &call("m1", "q1")),
            ev("members-count", 100, &[("Queue", "q1")]),
            ev("agent-offering", 101, &call("m1", "q1")),
            ev("member-queue-start", 102, &call("m2", "q1")),
            ev("bridge-agent-start", 103, &call("m1", "q1")),
            ev("agent-offering", 104, &call("m2", "q1")),
            ev("bridge-agent-fail", 105, &call("m2", "q1")),
            ev("member-queue-start", 106, &call("m3", "q3")),
            ev(
                "member-queue-end",
                107,
                &[&call("m1", "q1")[..], &[("Cause", "Terminated")]].concat(),
            ),
            ev(
                "member-queue-end",
                108,
                &[&call("m2", "q1")[..], &[("Cause", "Cancel")]].concat(),
            ),
            ev(
                "member-queue-end",
                109,
                &[&call("m9", "q2")[..], &[("Cause", "Terminated")]].concat(),
            ),
        ];
        for e in &steps {
            let changes = m.apply(e);
            check(&m);
            // A queue is written exactly when its rendering changed.
            for c in changes.iter().filter(|c| c.hash == Hash::Queues) {
                assert_eq!(c.value, m.rendered.get(&c.field).map(Value::to_string));
            }
        }
        let c = m.counts();
        assert_eq!(
            (c.waiting, c.answering, c.queues),
            (2, 0, 3),
            "m0 and m3 wait"
        );
        assert_eq!(m.rendered["q1"]["abandoned"], 1);
        // members-count on a queue whose members did not change writes nothing.
        assert!(m
            .apply(&ev("members-count", 110, &[("Queue", "q1")]))
            .is_empty());
        // m2 abandoned at 108; q1 discards after 10 s.
        let gone = m.expire(200);
        assert_eq!(gone.len(), 2, "the member and its queue: {gone:?}");
        check(&m);
        let fresh = seeded();
        m.replace_with(fresh);
        check(&m);
        assert_eq!(m.counts().waiting, 1);
    }
}
