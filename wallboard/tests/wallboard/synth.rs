//! A state mirror shaped like the module's, written straight into Redis, for
//! sizes the host harness cannot fire quickly: 1,000 agents in 100 queues,
//! thousands of events a second. The seed writes the hashes and `meta` as
//! the module's seed does; each entry is an XADD with the module's fields
//! and a `state` delta, as the module's script writes them.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

pub const CORE_UUID: &str = "5ynth5ynth-0000-4000-8000-000000000000";

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

pub fn queue_name(q: usize) -> String {
    format!("queue-{q}@synth")
}

pub fn agent_name(q: usize, a: usize) -> String {
    format!("agent-{q}-{a}@synth")
}

/// Every field the module keeps for an agent.
fn agent_json(name: &str, state: &str, calls: i64, updated: u64) -> Value {
    let now = (updated / 1_000_000) as i64;
    json!({"name": name, "type": "callback", "contact": format!("user/{name}"), "status": "Available",
        "state": state, "max_no_answer": 3, "wrap_up_time": 0, "reject_delay_time": 0, "busy_delay_time": 0,
        "no_answer_delay_time": 0, "last_bridge_start": now, "last_bridge_end": now, "last_offered_call": now,
        "last_status_change": now - 3600, "no_answer_count": 0, "calls_answered": calls, "talk_time": calls * 60,
        "ready_time": 0, "updated": updated})
}

/// One call in progress: which step of its life comes next.
#[derive(Clone)]
struct Call {
    n: usize,
    queue: usize,
    agent: usize,
    uuid: String,
    joined: u64,
    step: u8,
    /// Visits left before the next step: callers wait and agents talk for
    /// different times, so that the calls do not move in step.
    hold: u8,
}

pub struct Synth {
    pub prefix: String,
    pub stream: String,
    pub queues: usize,
    pub per_queue: usize,
    sequence: u64,
    calls: Vec<Call>,
    next_call: usize,
    /// (waiting, answering) per queue.
    counts: Vec<(i64, i64)>,
    /// The waiting callers' join times per queue, by call.
    joined: Vec<BTreeMap<usize, u64>>,
    answered: Vec<i64>,
}

impl Synth {
    /// `queues` queues of `per_queue` agents; `concurrent` calls in progress
    /// at any time, each spread over the queues and agents.
    pub fn new(queues: usize, per_queue: usize, concurrent: usize) -> Synth {
        let mut s = Synth {
            prefix: "cc_state".into(),
            stream: "callcenter_stream".into(),
            queues,
            per_queue,
            sequence: 1,
            calls: Vec::new(),
            next_call: 0,
            counts: vec![(0, 0); queues],
            joined: vec![BTreeMap::new(); queues],
            answered: vec![0; queues * per_queue],
        };
        s.calls = (0..concurrent).map(|_| s.new_call()).collect();
        s
    }

    /// Agents that take calls; with 5 or more per queue the last two are
    /// On Break and Logged Out, as on a real floor.
    fn on_duty(&self) -> usize {
        if self.per_queue >= 5 {
            self.per_queue - 2
        } else {
            self.per_queue
        }
    }

    fn status(&self, a: usize) -> &'static str {
        match self.per_queue - a {
            1 if self.per_queue >= 5 => "Logged Out",
            2 if self.per_queue >= 5 => "On Break",
            _ => "Available",
        }
    }

    fn new_call(&mut self) -> Call {
        let n = self.next_call;
        self.next_call += 1;
        Call {
            n,
            queue: n % self.queues,
            agent: (n / self.queues) % self.on_duty(),
            uuid: format!("member-{n}"),
            joined: 0,
            step: 0,
            hold: 0,
        }
    }

    fn queue_json(&self, q: usize) -> Value {
        let longest = self.joined[q].values().min();
        let agents: Vec<Value> = (0..self.per_queue)
            .map(|a| json!({"name": agent_name(q, a), "level": 1, "position": a + 1, "tier_state": "Ready"}))
            .collect();
        let (waiting, answering) = self.counts[q];
        json!({"name": queue_name(q), "strategy": "longest-idle-agent", "waiting": waiting, "answering": answering,
            "abandoned": 0, "longest_wait_since": longest, "agents": agents, "moh_sound": "local_stream://moh",
            "discard_abandoned_after": 60, "max_wait_time": 0})
    }

    fn key(&self, what: &str) -> String {
        format!("{}:{what}", self.prefix)
    }

    /// Writes the mirror as the module's seed does: the hashes, a
    /// `state-seed` stream entry, and `meta` naming it.
    pub fn seed(&mut self, con: &mut redis::Connection) {
        let now = now_us();
        let mut pipe = redis::pipe();
        pipe.del(self.key("agents"))
            .del(self.key("queues"))
            .del(&self.stream)
            .ignore();
        let agents: Vec<(String, String)> = (0..self.queues * self.per_queue)
            .map(|i| {
                let name = agent_name(i / self.per_queue, i % self.per_queue);
                let mut json = agent_json(&name, "Waiting", 0, now);
                let status = self.status(i % self.per_queue);
                json["status"] = status.into();
                // Each agent in its state for a while already, as on a floor
                // in mid-shift: the board's timers differ from the start.
                let now_s = (now / 1_000_000) as i64;
                let (status_change, call_end) = match status {
                    "Logged Out" => (now_s - 7200, now_s - 9000),
                    "On Break" => (now_s - 420 - (i as i64 * 13) % 300, now_s - 1800),
                    _ => (now_s - 10_800, now_s - (i as i64 * 7919) % 1500),
                };
                json["last_status_change"] = status_change.into();
                json["last_bridge_end"] = call_end.into();
                let json = json.to_string();
                (name, json)
            })
            .collect();
        pipe.hset_multiple(self.key("agents"), &agents).ignore();
        let queues: Vec<(String, String)> = (0..self.queues)
            .map(|q| (queue_name(q), self.queue_json(q).to_string()))
            .collect();
        pipe.hset_multiple(self.key("queues"), &queues).ignore();
        pipe.query::<()>(con).unwrap();
        let id: String = redis::cmd("XADD")
            .arg(&self.stream)
            .arg("*")
            .arg(&[
                "event",
                "state-seed",
                "action",
                "state-seed",
                "core_uuid",
                CORE_UUID,
            ])
            .query(con)
            .unwrap();
        let meta = [
            ("host", "synth".to_string()),
            ("core_uuid", CORE_UUID.to_string()),
            ("seeded_at", now.to_string()),
            ("sequence", self.sequence.to_string()),
            ("stream_id", id),
        ];
        redis::cmd("HSET")
            .arg(self.key("meta"))
            .arg(&meta)
            .query::<()>(con)
            .unwrap();
    }

    /// The fields of the next stream entry: the next step of one of the
    /// calls in progress (a caller joins, the agent rings, answers, talks,
    /// and the call ends), with the `state` delta the module would write.
    pub fn next_entry(&mut self) -> Vec<(&'static str, String)> {
        // The calls move in a fixed but scattered order, so that at any time
        // they are at different steps (some ringing, some talking, ...).
        let mut slot = (self.sequence.wrapping_mul(2_654_435_761) >> 7) as usize % self.calls.len();
        while self.calls[slot].hold > 0 {
            self.calls[slot].hold -= 1;
            slot = (slot + 1) % self.calls.len();
        }
        self.sequence += 1;
        let now = now_us();
        let mut c = self.calls[slot].clone();
        let agent = agent_name(c.queue, c.agent);
        let members = self.key(&format!("members:{}", queue_name(c.queue)));
        let (uuid, qname, n) = (c.uuid.clone(), queue_name(c.queue), c.n);
        let member = |state: &str, serving: &str, joined: u64| {
            json!({"uuid": uuid, "queue": qname, "session_uuid": format!("s-{uuid}"),
                "cid_number": format!("34650{:06}", n % 1_000_000), "cid_name": "Caller",
                "joined_epoch": joined, "rejoined_epoch": 0, "bridge_epoch": 0, "abandoned_epoch": 0,
                "state": state, "serving_agent": serving, "variables": {"campaign_id": "7"}})
        };
        let a = c.queue * self.per_queue + c.agent;
        let (event, action, state) = match c.step {
            0 => {
                c.joined = now / 1_000_000;
                c.hold = (c.n % 4) as u8;
                self.counts[c.queue].0 += 1;
                self.joined[c.queue].insert(c.n, c.joined);
                let q = self.queue_json(c.queue);
                (
                    "Member-Queue-Start",
                    "member-queue-start",
                    json!({members: {&c.uuid: member("Waiting", "", c.joined)}, self.key("queues"): {queue_name(c.queue): q}}),
                )
            }
            1 => (
                "Agent-State-Change",
                "agent-state-change",
                json!({self.key("agents"): {&agent: agent_json(&agent, "Receiving", self.answered[a], now)}}),
            ),
            2 => {
                self.counts[c.queue].0 -= 1;
                self.counts[c.queue].1 += 1;
                self.joined[c.queue].remove(&c.n);
                self.answered[a] += 1;
                let q = self.queue_json(c.queue);
                (
                    "Connected-Call-Agent",
                    "bridge-agent-start",
                    json!({
                    members: {&c.uuid: member("Answered", &agent, c.joined)},
                    self.key("queues"): {queue_name(c.queue): q},
                    self.key("agents"): {&agent: agent_json(&agent, "Receiving", self.answered[a], now)}}),
                )
            }
            3 => {
                c.hold = 2 + (c.n % 9) as u8;
                (
                    "Agent-State-Change",
                    "agent-state-change",
                    json!({self.key("agents"): {&agent: agent_json(&agent, "In a queue call", self.answered[a], now)}}),
                )
            }
            _ => {
                self.counts[c.queue].1 -= 1;
                let q = self.queue_json(c.queue);
                (
                    "Member-Queue-End",
                    "member-queue-end",
                    json!({
                    members: {&c.uuid: null},
                    self.key("queues"): {queue_name(c.queue): q},
                    self.key("agents"): {&agent: agent_json(&agent, "Waiting", self.answered[a], now)}}),
                )
            }
        };
        c.step += 1;
        self.calls[slot] = if c.step == 5 { self.new_call() } else { c };
        vec![
            ("event", event.to_string()),
            ("action", action.to_string()),
            ("sequence", self.sequence.to_string()),
            ("core_uuid", CORE_UUID.to_string()),
            ("state", state.to_string()),
        ]
    }

    /// Adds the next entry's XADD to `pipe` (capped as the module caps it).
    pub fn xadd_next(&mut self, pipe: &mut redis::Pipeline) {
        let fields = self.next_entry();
        pipe.cmd("XADD")
            .arg(&self.stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(100_000)
            .arg("*")
            .arg(&fields);
    }
}
