//! A stand-in mod_callcenter for the state mirror's concurrent tests: a small
//! database that each operation updates before firing its event, as
//! mod_callcenter runs its SQL and then fires, and that answers
//! `callcenter_config` lists from what it holds, with mod_callcenter's row
//! shapes (every value a string, as its SQL rows give them).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::core::{self, OwnedEvent};

#[derive(Clone, Debug, Default)]
pub struct Agent {
    pub status: String,
    pub state: String,
    pub calls_answered: i64,
    pub last_status_change: i64,
}

#[derive(Clone, Debug, Default)]
pub struct Member {
    pub queue: String,
    pub session_uuid: String,
    pub cid_number: String,
    pub state: String,
    pub serving_agent: String,
    pub joined_epoch: i64,
    pub abandoned_epoch: i64,
}

#[derive(Clone, Debug, Default)]
pub struct Db {
    pub agents: BTreeMap<String, Agent>,
    /// (queue, agent, level, position, tier state)
    pub tiers: Vec<(String, String, i64, i64, String)>,
    pub queues: Vec<String>,
    pub members: BTreeMap<String, Member>,
    pub discard_abandoned_after: i64,
}

#[derive(Default)]
pub struct Callcenter {
    pub db: Mutex<Db>,
    sequence: AtomicU64,
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

impl Callcenter {
    /// `queues` queues of `per_queue` agents each (Logged Out), tiers in order.
    pub fn new(queues: usize, per_queue: usize) -> Arc<Callcenter> {
        let mut db = Db {
            discard_abandoned_after: 60,
            ..Db::default()
        };
        for q in 0..queues {
            let queue = format!("q{q}@test");
            for a in 0..per_queue {
                let agent = format!("agent-{q}-{a}@test");
                db.agents.insert(
                    agent.clone(),
                    Agent {
                        status: "Logged Out".into(),
                        state: "Waiting".into(),
                        ..Agent::default()
                    },
                );
                db.tiers
                    .push((queue.clone(), agent, 1, a as i64 + 1, "Ready".into()));
            }
            db.queues.push(queue);
        }
        Arc::new(Callcenter {
            db: Mutex::new(db),
            sequence: AtomicU64::new(1000),
        })
    }

    /// The next Event-Sequence: events fired so far + 1000.
    pub fn fired(&self) -> u64 {
        self.sequence.load(SeqCst)
    }

    /// Serves this database as the harness's mod_callcenter.
    pub fn serve(self: &Arc<Self>) {
        let me = self.clone();
        core::set_callcenter(Some(Arc::new(move |args: &str| me.list(args))));
    }

    pub fn list(&self, args: &str) -> Option<Value> {
        let db = self.db.lock().unwrap().clone();
        let rows: Vec<Value> = match args {
            "agent list" => db
                .agents
                .iter()
                .map(|(name, a)| {
                    json!({"name": name, "instance_id": "single_box", "uuid": "", "type": "callback",
                        "contact": format!("user/{name}"), "status": a.status, "state": a.state,
                        "max_no_answer": "3", "wrap_up_time": "0", "reject_delay_time": "0",
                        "busy_delay_time": "0", "no_answer_delay_time": "0",
                        "last_bridge_start": "0", "last_bridge_end": "0", "last_offered_call": "0",
                        "last_status_change": a.last_status_change.to_string(), "no_answer_count": "0",
                        "calls_answered": a.calls_answered.to_string(), "talk_time": "0",
                        "ready_time": "0", "external_calls_count": "0"})
                })
                .collect(),
            "queue list" => db
                .queues
                .iter()
                .map(|q| {
                    json!({"name": q, "strategy": "longest-idle-agent", "moh_sound": "local_stream://moh",
                        "discard_abandoned_after": db.discard_abandoned_after, "max_wait_time": 0})
                })
                .collect(),
            "tier list" => db
                .tiers
                .iter()
                .map(|(q, a, l, p, s)| {
                    json!({"queue": q, "agent": a, "state": s, "level": l.to_string(), "position": p.to_string()})
                })
                .collect(),
            "member list" => db
                .members
                .iter()
                .map(|(uuid, m)| {
                    json!({"queue": m.queue, "instance_id": "single_box", "uuid": uuid,
                        "session_uuid": m.session_uuid, "cid_number": m.cid_number, "cid_name": "Caller",
                        "system_epoch": m.joined_epoch.to_string(), "joined_epoch": m.joined_epoch.to_string(),
                        "rejoined_epoch": "0", "bridge_epoch": "0", "abandoned_epoch": m.abandoned_epoch.to_string(),
                        "base_score": "0", "skill_score": "0", "serving_agent": m.serving_agent,
                        "serving_system": "", "state": m.state, "score": "0"})
                })
                .collect(),
            _ => return None,
        };
        Some(Value::Array(rows))
    }

    fn fire(&self, headers: &[(&str, &str)]) {
        let seq = self.sequence.fetch_add(1, SeqCst).to_string();
        let ts = now_us().to_string();
        let mut all: Vec<(&[u8], &[u8])> = vec![
            (b"Event-Name", b"CUSTOM"),
            (b"Core-UUID", core::CORE_UUID.to_bytes()),
            (b"FreeSWITCH-Switchname", core::switchname().to_bytes()),
            (b"Event-Date-Timestamp", ts.as_bytes()),
            (b"Event-Sequence", seq.as_bytes()),
        ];
        all.extend(headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())));
        core::fire(&mut OwnedEvent::custom("callcenter::info", &all));
    }

    pub fn set_status(&self, agent: &str, status: &str) {
        {
            let mut db = self.db.lock().unwrap();
            let a = db.agents.entry(agent.to_string()).or_default();
            if status != "Available" || a.status != status {
                a.last_status_change = (now_us() / 1_000_000) as i64;
            }
            if status == "Available" && a.status != status {
                a.calls_answered = 0;
            }
            a.status = status.to_string();
        }
        self.fire(&[
            ("CC-Agent", agent),
            ("CC-Action", "agent-status-change"),
            ("CC-Agent-Status", status),
        ]);
    }

    pub fn set_state(&self, agent: &str, state: &str) {
        self.db
            .lock()
            .unwrap()
            .agents
            .entry(agent.to_string())
            .or_default()
            .state = state.to_string();
        self.fire(&[
            ("CC-Agent", agent),
            ("CC-Action", "agent-state-change"),
            ("CC-Agent-State", state),
        ]);
    }

    fn count(&self, queue: &str) {
        let n = {
            let db = self.db.lock().unwrap();
            db.members
                .values()
                .filter(|m| m.queue == queue && (m.state == "Waiting" || m.state == "Trying"))
                .count()
        };
        self.fire(&[
            ("CC-Queue", queue),
            ("CC-Action", "members-count"),
            ("CC-Count", &n.to_string()),
            ("CC-Selection", "Single-Queue"),
        ]);
    }

    /// A caller joins `queue` (member-queue-start, then members-count).
    pub fn join(&self, queue: &str, uuid: &str, session: &str, number: &str) {
        self.db.lock().unwrap().members.insert(
            uuid.to_string(),
            Member {
                queue: queue.into(),
                session_uuid: session.into(),
                cid_number: number.into(),
                state: "Waiting".into(),
                joined_epoch: (now_us() / 1_000_000) as i64,
                ..Member::default()
            },
        );
        self.fire(&[
            ("CC-Queue", queue),
            ("CC-Action", "member-queue-start"),
            ("CC-Member-UUID", uuid),
            ("CC-Member-Session-UUID", session),
            ("CC-Member-CID-Name", "Caller"),
            ("CC-Member-CID-Number", number),
            ("variable_campaign_id", "7"),
        ]);
        self.count(queue);
    }

    /// The caller is offered to `agent`.
    pub fn offer(&self, queue: &str, uuid: &str, agent: &str) {
        if let Some(m) = self.db.lock().unwrap().members.get_mut(uuid) {
            m.state = "Trying".into();
            m.serving_agent = agent.into();
        }
        self.fire(&[
            ("CC-Queue", queue),
            ("CC-Action", "agent-offering"),
            ("CC-Agent", agent),
            ("CC-Member-UUID", uuid),
        ]);
    }

    /// `agent` answers: the member is Answered.
    pub fn answer(&self, queue: &str, uuid: &str, agent: &str) {
        {
            let mut db = self.db.lock().unwrap();
            if let Some(m) = db.members.get_mut(uuid) {
                m.state = "Answered".into();
            }
        }
        self.fire(&[
            ("CC-Queue", queue),
            ("CC-Action", "bridge-agent-start"),
            ("CC-Agent", agent),
            ("CC-Member-UUID", uuid),
        ]);
        self.count(queue);
    }

    /// The answered call ends: the member is gone.
    pub fn end(&self, queue: &str, uuid: &str, agent: &str) {
        self.db.lock().unwrap().members.remove(uuid);
        self.fire(&[
            ("CC-Queue", queue),
            ("CC-Action", "bridge-agent-end"),
            ("CC-Agent", agent),
            ("CC-Member-UUID", uuid),
        ]);
        self.fire(&[
            ("CC-Queue", queue),
            ("CC-Action", "member-queue-end"),
            ("CC-Cause", "Terminated"),
            ("CC-Agent", agent),
            ("CC-Member-UUID", uuid),
        ]);
        self.count(queue);
    }

    /// The caller hangs up while waiting: Abandoned.
    pub fn abandon(&self, queue: &str, uuid: &str) {
        let left = (now_us() / 1_000_000) as i64;
        if let Some(m) = self.db.lock().unwrap().members.get_mut(uuid) {
            m.state = "Abandoned".into();
            m.session_uuid.clear();
            m.serving_agent.clear();
            m.abandoned_epoch = left;
        }
        self.fire(&[
            ("CC-Queue", queue),
            ("CC-Action", "member-queue-end"),
            ("CC-Cause", "Cancel"),
            ("CC-Cancel-Reason", "BREAK_OUT"),
            ("CC-Member-UUID", uuid),
            ("CC-Member-Leaving-Time", &left.to_string()),
        ]);
        self.count(queue);
    }

    /// mod_callcenter drops abandoned members after discard-abandoned-after, silently.
    pub fn discard(&self, uuid: &str) {
        self.db.lock().unwrap().members.remove(uuid);
    }

    /// One caller's whole life on thread `t`, round `i`: joins, is offered,
    /// answered and ends; or gives up (every third round).
    pub fn call(&self, t: usize, i: usize) {
        let queue = format!("q{t}@test");
        let agent = format!("agent-{t}-{}@test", i % 2);
        let uuid = format!("m-{t}-{i}");
        let session = format!("s-{t}-{i}");
        self.join(&queue, &uuid, &session, &format!("555{t}{i:04}"));
        if i % 3 == 2 {
            return self.abandon(&queue, &uuid);
        }
        self.set_state(&agent, "Receiving");
        self.offer(&queue, &uuid, &agent);
        self.answer(&queue, &uuid, &agent);
        self.set_state(&agent, "In a queue call");
        if i % 4 != 3 {
            self.end(&queue, &uuid, &agent);
            self.set_state(&agent, "Waiting");
        }
    }
}
