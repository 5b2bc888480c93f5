//! The state model: what the page shows, projected from the mirror's hashes,
//! and how one stream entry's `state` moves it. Pure: no I/O, no clock.
//!
//! Only the fields the page draws are kept, so that a browser's first
//! snapshot stays small at a thousand agents.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::Value;

/// An agent as the page draws it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Agent {
    pub status: String,
    pub state: String,
    /// When the current (status, state) began, epoch ms; `None` if unknown.
    pub since: Option<u64>,
    pub answered: i64,
}

/// One agent's place in a queue (the tier), in tier order.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Tier {
    pub name: String,
    pub tier_state: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Queue {
    pub waiting: i64,
    pub answering: i64,
    pub abandoned: i64,
    /// The oldest waiting caller's join, epoch s.
    pub longest_wait_since: Option<i64>,
    pub agents: Vec<Tier>,
}

/// A caller in a queue.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Member {
    pub state: String,
    /// Joined (or rejoined) the queue, epoch s.
    pub since: i64,
    pub cid_number: String,
    pub cid_name: String,
    pub agent: String,
}

/// One line of the page's ticker.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Tick {
    /// The stream entry's time, epoch ms.
    pub at: u64,
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// The agent's status or state after the event, or the caller's state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
}

/// What the mirror holds, as the page draws it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Model {
    pub agents: BTreeMap<String, Agent>,
    pub queues: BTreeMap<String, Queue>,
    /// Queue -> member UUID -> caller.
    pub members: BTreeMap<String, BTreeMap<String, Member>>,
    /// The last stream entry the model holds.
    pub id: String,
}

/// Changes since the last push to browsers, coalesced: a later change of the
/// same agent, queue or caller replaces the earlier one. `None` = removed.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Delta {
    pub agents: BTreeMap<String, Option<Agent>>,
    pub queues: BTreeMap<String, Option<Queue>>,
    pub members: BTreeMap<String, BTreeMap<String, Option<Member>>>,
    pub ticker: Vec<Tick>,
    /// The first and last stream entries folded in (the benchmark times them).
    pub from: String,
    pub to: String,
}

/// Ticker lines kept for the page (and for a browser's first snapshot).
pub const TICKER_LEN: usize = 12;

impl Delta {
    pub fn is_empty(&self) -> bool {
        self.to.is_empty()
    }
}

/// The mirror's hashes as one MULTI read them (values still JSON text).
#[derive(Clone, Debug, Default)]
pub struct RawSnapshot {
    pub meta: HashMap<String, String>,
    pub agents: HashMap<String, String>,
    pub queues: HashMap<String, String>,
    /// (queue, its members hash)
    pub members: Vec<(String, HashMap<String, String>)>,
}

/// A stream entry's fields the model reads.
#[derive(Clone, Debug, Default)]
pub struct Entry {
    pub id: String,
    pub action: String,
    /// `{"<key>": {"<field>": value or null}}`; absent on entries that change nothing.
    pub state: Option<String>,
}

/// What applying an entry asks of the follower.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    Done,
    /// A `state-seed` entry: the module rebuilt the mirror; read it again.
    Reseed,
}

/// The millisecond part of a stream entry ID (`<ms>-<seq>`): when Redis added it.
pub fn id_ms(id: &str) -> u64 {
    id.split('-')
        .next()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0)
}

fn int(v: &Value, k: &str) -> i64 {
    match &v[k] {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        // mod_callcenter's own lists spell numbers as strings.
        Value::String(s) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

fn text(v: &Value, k: &str) -> String {
    match &v[k] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// When an agent's current (status, state) began, from the mirror's fields:
/// the status change, or the state's own stamp when that is later.
fn since_from_fields(a: &Value) -> Option<u64> {
    let by_state = match a["state"].as_str().unwrap_or_default() {
        "Receiving" => int(a, "last_offered_call"),
        "In a queue call" => int(a, "last_bridge_start"),
        "Waiting" | "Idle" => int(a, "last_bridge_end"),
        _ => 0,
    };
    let s = int(a, "last_status_change").max(by_state);
    (s > 0).then(|| s as u64 * 1000)
}

fn agent(a: &Value, since: Option<u64>) -> Agent {
    Agent {
        status: text(a, "status"),
        state: text(a, "state"),
        since,
        answered: int(a, "calls_answered"),
    }
}

fn queue(q: &Value) -> Queue {
    let agents = q["agents"]
        .as_array()
        .map(|tiers| {
            tiers
                .iter()
                .map(|t| Tier {
                    name: text(t, "name"),
                    tier_state: text(t, "tier_state"),
                })
                .collect()
        })
        .unwrap_or_default();
    Queue {
        waiting: int(q, "waiting"),
        answering: int(q, "answering"),
        abandoned: int(q, "abandoned"),
        longest_wait_since: q["longest_wait_since"].as_i64(),
        agents,
    }
}

fn member(m: &Value) -> Member {
    Member {
        state: text(m, "state"),
        since: int(m, "rejoined_epoch").max(int(m, "joined_epoch")),
        cid_number: text(m, "cid_number"),
        cid_name: text(m, "cid_name"),
        agent: text(m, "serving_agent"),
    }
}

fn parse(field: &str, json: &str) -> Result<Value, String> {
    serde_json::from_str(json).map_err(|e| format!("{field}: not JSON ({e})"))
}

impl Model {
    /// The model for a snapshot. An agent whose status and state are what
    /// `previous` had keeps its `since` (the fields only tell when the status
    /// changed, and a reread must not restart every timer).
    pub fn from_snapshot(raw: &RawSnapshot, previous: &Model) -> Result<Model, String> {
        let mut m = Model {
            id: raw.meta.get("stream_id").cloned().unwrap_or_default(),
            ..Model::default()
        };
        for (name, json) in &raw.agents {
            let v = parse(name, json)?;
            let mut a = agent(&v, since_from_fields(&v));
            if let Some(old) = previous.agents.get(name) {
                if old.status == a.status && old.state == a.state && old.since.is_some() {
                    a.since = old.since;
                }
            }
            m.agents.insert(name.clone(), a);
        }
        for (name, json) in &raw.queues {
            m.queues.insert(name.clone(), queue(&parse(name, json)?));
        }
        for (q, hash) in &raw.members {
            let mut members = BTreeMap::new();
            for (uuid, json) in hash {
                members.insert(uuid.clone(), member(&parse(uuid, json)?));
            }
            if !members.is_empty() {
                m.members.insert(q.clone(), members);
            }
        }
        Ok(m)
    }

    /// Applies one stream entry, recording what changed in `delta`.
    /// `prefix` is the mirror's state prefix; keys outside it are not ours.
    pub fn apply(&mut self, prefix: &str, e: &Entry, delta: &mut Delta) -> Result<Applied, String> {
        if e.action == "state-seed" {
            return Ok(Applied::Reseed);
        }
        if delta.from.is_empty() {
            delta.from = e.id.clone();
        }
        delta.to = e.id.clone();
        self.id = e.id.clone();
        let Some(state) = &e.state else {
            return Ok(Applied::Done);
        };
        let changes: HashMap<String, HashMap<String, Value>> = serde_json::from_str(state)
            .map_err(|err| {
                format!(
                    "stream entry {}: its state field is not the mirror's change map ({err})",
                    e.id
                )
            })?;
        let mut tick = Tick {
            at: id_ms(&e.id),
            action: e.action.clone(),
            ..Tick::default()
        };
        for (key, fields) in changes {
            let Some(kind) = key.strip_prefix(prefix).and_then(|k| k.strip_prefix(':')) else {
                continue;
            };
            for (field, value) in fields {
                self.change(kind, field, value, id_ms(&e.id), delta, &mut tick);
            }
        }
        if shown_in_ticker(&e.action) {
            delta.ticker.push(tick);
            if delta.ticker.len() > TICKER_LEN {
                delta.ticker.remove(0);
            }
        }
        Ok(Applied::Done)
    }

    fn change(
        &mut self,
        kind: &str,
        field: String,
        value: Value,
        at_ms: u64,
        delta: &mut Delta,
        tick: &mut Tick,
    ) {
        let gone = value.is_null();
        if kind == "agents" {
            let new = (!gone).then(|| {
                let old = self.agents.get(&field);
                let moved = old.is_none_or(|o| {
                    o.status != text(&value, "status") || o.state != text(&value, "state")
                });
                // A change seen live began at the event's time (`updated`, µs),
                // or failing that when Redis took the entry.
                let since = if moved {
                    Some(match int(&value, "updated") {
                        us if us > 0 => us as u64 / 1000,
                        _ => at_ms,
                    })
                } else {
                    old.and_then(|o| o.since)
                };
                agent(&value, since)
            });
            if let Some(a) = &new {
                match tick.action.as_str() {
                    "agent-state-change" => tick.detail = Some(a.state.clone()),
                    "agent-status-change" | "agent-add" => tick.detail = Some(a.status.clone()),
                    _ => {}
                }
            }
            tick.agent.get_or_insert(field.clone());
            match &new {
                Some(a) => self.agents.insert(field.clone(), a.clone()),
                None => self.agents.remove(&field),
            };
            delta.agents.insert(field, new);
        } else if kind == "queues" {
            let new = (!gone).then(|| queue(&value));
            tick.queue.get_or_insert(field.clone());
            match &new {
                Some(q) => self.queues.insert(field.clone(), q.clone()),
                None => self.queues.remove(&field),
            };
            delta.queues.insert(field, new);
        } else if let Some(q) = kind.strip_prefix("members:") {
            let new = (!gone).then(|| member(&value));
            let members = self.members.entry(q.to_string()).or_default();
            // A caller that leaves is named from what the model held.
            if let Some(m) = new.as_ref().or(members.get(&field)) {
                tick.caller = Some(if m.cid_number.is_empty() {
                    m.cid_name.clone()
                } else {
                    m.cid_number.clone()
                });
                if !m.agent.is_empty() {
                    tick.agent.get_or_insert(m.agent.clone());
                }
                tick.detail
                    .get_or_insert(if gone { "left".into() } else { m.state.clone() });
            }
            tick.queue = Some(q.to_string());
            match &new {
                Some(m) => members.insert(field.clone(), m.clone()),
                None => members.remove(&field),
            };
            if members.is_empty() {
                self.members.remove(q);
            }
            delta
                .members
                .entry(q.to_string())
                .or_default()
                .insert(field, new);
        }
    }
}

/// Actions a supervisor follows; counts, drift and rebuilds are not news.
fn shown_in_ticker(action: &str) -> bool {
    !matches!(action, "members-count" | "state-update" | "state-seed") && !action.ends_with("-get")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const P: &str = "cc_state";

    fn raw() -> RawSnapshot {
        let areski = json!({"name": "a", "status": "Available", "state": "Waiting", "last_status_change": 100,
            "last_bridge_end": 90, "calls_answered": 2, "updated": 5});
        let bob = json!({"status": "Logged Out", "state": "Waiting", "last_status_change": 0});
        let q = json!({"waiting": 1, "answering": 0, "abandoned": 0, "longest_wait_since": 120,
            "agents": [{"name": "a", "level": 1, "position": 1, "tier_state": "Ready"}]});
        let m = json!({"state": "Waiting", "joined_epoch": 120, "rejoined_epoch": 0, "cid_number": "555", "cid_name": "X", "serving_agent": ""});
        RawSnapshot {
            meta: [("stream_id".to_string(), "7-0".to_string())].into(),
            agents: [
                ("a".into(), areski.to_string()),
                ("bob".into(), bob.to_string()),
            ]
            .into(),
            queues: [("q".into(), q.to_string())].into(),
            members: vec![
                ("q".into(), [("m1".to_string(), m.to_string())].into()),
                ("empty".into(), HashMap::new()),
            ],
        }
    }

    fn entry(id: &str, action: &str, state: Value) -> Entry {
        Entry {
            id: id.into(),
            action: action.into(),
            state: Some(state.to_string()),
        }
    }

    #[test]
    fn a_snapshot_keeps_what_the_page_draws() {
        let m = Model::from_snapshot(&raw(), &Model::default()).unwrap();
        assert_eq!(m.id, "7-0");
        assert_eq!(
            m.agents["a"],
            Agent {
                status: "Available".into(),
                state: "Waiting".into(),
                since: Some(100_000),
                answered: 2
            }
        );
        assert_eq!(m.agents["bob"].since, None, "never changed: unknown");
        assert_eq!(m.queues["q"].longest_wait_since, Some(120));
        assert_eq!(
            m.queues["q"].agents,
            vec![Tier {
                name: "a".into(),
                tier_state: "Ready".into()
            }]
        );
        assert_eq!(m.members["q"]["m1"].cid_number, "555");
        assert!(!m.members.contains_key("empty"));
    }

    #[test]
    fn a_reread_keeps_the_timer_of_an_agent_that_did_not_move() {
        let mut before = Model::from_snapshot(&raw(), &Model::default()).unwrap();
        before.agents.get_mut("a").unwrap().since = Some(150_000);
        let again = Model::from_snapshot(&raw(), &before).unwrap();
        assert_eq!(again.agents["a"].since, Some(150_000));
        before.agents.get_mut("a").unwrap().state = "Receiving".into();
        let moved = Model::from_snapshot(&raw(), &before).unwrap();
        assert_eq!(moved.agents["a"].since, Some(100_000));
    }

    #[test]
    fn entries_move_the_model_and_the_delta_with_the_live_time() {
        let mut m = Model::from_snapshot(&raw(), &Model::default()).unwrap();
        let mut d = Delta::default();
        let receiving = json!({"cc_state:agents": {"a": {"status": "Available", "state": "Receiving", "updated": 200_000_000u64, "calls_answered": 2}}});
        assert_eq!(
            m.apply(P, &entry("300-0", "agent-state-change", receiving), &mut d),
            Ok(Applied::Done)
        );
        assert_eq!(m.agents["a"].state, "Receiving");
        assert_eq!(m.agents["a"].since, Some(200_000), "the event's time");
        assert_eq!(d.agents["a"], Some(m.agents["a"].clone()));
        assert_eq!(d.ticker[0].detail.as_deref(), Some("Receiving"));
        assert_eq!(d.ticker[0].agent.as_deref(), Some("a"));

        // The caller leaves: removed, named in the ticker from what was held.
        let gone = json!({"cc_state:members:q": {"m1": null}, "cc_state:queues": {"q": {"waiting": 0, "agents": []}}});
        m.apply(P, &entry("301-0", "member-queue-end", gone), &mut d)
            .unwrap();
        assert!(!m.members.contains_key("q"));
        assert_eq!(d.members["q"]["m1"], None);
        assert_eq!(d.queues["q"].as_ref().unwrap().waiting, 0);
        let t = &d.ticker[1];
        assert_eq!(
            (t.caller.as_deref(), t.queue.as_deref(), t.detail.as_deref()),
            (Some("555"), Some("q"), Some("left"))
        );
        assert_eq!(
            (d.from.as_str(), d.to.as_str(), m.id.as_str()),
            ("300-0", "301-0", "301-0")
        );
    }

    #[test]
    fn counts_are_not_news_and_other_prefixes_are_not_ours() {
        let mut m = Model::default();
        let mut d = Delta::default();
        let other = json!({"other:agents": {"x": {"status": "Available"}}, "cc_state:queues": {"q": {"waiting": 3}}});
        m.apply(P, &entry("1-0", "members-count", other), &mut d)
            .unwrap();
        assert!(m.agents.is_empty());
        assert_eq!(m.queues["q"].waiting, 3);
        assert!(d.ticker.is_empty());
    }

    #[test]
    fn a_seed_entry_asks_for_a_reread_and_bad_state_is_an_error() {
        let mut m = Model::default();
        let mut d = Delta::default();
        assert_eq!(
            m.apply(P, &entry("1-0", "state-seed", json!({})), &mut d),
            Ok(Applied::Reseed)
        );
        let bad = Entry {
            id: "2-0".into(),
            action: "x".into(),
            state: Some("[".into()),
        };
        assert!(m.apply(P, &bad, &mut d).unwrap_err().contains("2-0"));
    }
}
