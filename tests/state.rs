//! The live state mirror (`state=true`) against a real redis-server, with
//! mod_callcenter's JSON API served from its recorded replies (or from a
//! stand-in database the test moves before firing each event, as
//! mod_callcenter updates its database before it fires).

mod harness;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use redis::Commands;
use serde_json::{json, Value};

use harness::callcenter::Callcenter;
use harness::core;
use harness::fixtures::{self, Fixture};
use harness::redis::wait_until;
use harness::state::{meta, recorded, serve_point, snapshot};

const WAIT: Duration = Duration::from_secs(10);
const P: &str = "cc_state";
const QUEUE: &str = "tenant-1@areski-queue";

fn seeded(con: &mut redis::Connection) -> bool {
    meta(con, P).contains_key("seeded_at")
}

/// Fires the recorded events `from..=to` (1-based, as the files are numbered)
/// and waits until the mirror has applied the last.
fn replay(events: &[Fixture], from: usize, to: usize, con: &mut redis::Connection) {
    for f in &events[from - 1..to] {
        core::fire(&mut f.event());
    }
    let last = events[to - 1].header("Event-Sequence").unwrap();
    assert!(
        wait_until(WAIT, || meta(con, P).get("sequence") == Some(&last)),
        "sequence {last} never applied: {:?}",
        meta(con, P)
    );
}

/// The fields an agent in the mirror shares with `callcenter_config agent list`
/// that do not depend on the clock of the run that recorded them.
const AGENT_FIELDS: &[&str] = &[
    "status",
    "state",
    "contact",
    "type",
    "calls_answered",
    "no_answer_count",
    "talk_time",
    "max_no_answer",
];

/// mod_callcenter's own agent, as the mirror spells it (numbers as numbers).
fn their_agent(point: &str, name: &str) -> Value {
    let list = recorded(point, "agent list");
    let a = list
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {point}"))
        .clone();
    let mut out = serde_json::Map::new();
    for k in AGENT_FIELDS {
        let v = &a[*k];
        let v = match v.as_str().and_then(|s| s.parse::<i64>().ok()) {
            Some(n) => json!(n),
            None => v.clone(),
        };
        out.insert(k.to_string(), v);
    }
    Value::Object(out)
}

fn our_agent(s: &BTreeMap<String, BTreeMap<String, Value>>, name: &str) -> Value {
    let a = &s["agents"][name];
    Value::Object(
        AGENT_FIELDS
            .iter()
            .map(|k| (k.to_string(), a[*k].clone()))
            .collect(),
    )
}

/// (state, serving_agent, cid_number, cid_name) of each member, sorted.
fn members_of(list: &[Value]) -> Vec<(String, String, String, String)> {
    let mut v: Vec<_> = list
        .iter()
        .map(|m| {
            let s = |k: &str| m[k].as_str().unwrap_or_default().to_string();
            (
                s("state"),
                s("serving_agent"),
                s("cid_number"),
                s("cid_name"),
            )
        })
        .collect();
    v.sort();
    v
}

fn their_members(point: &str) -> Vec<(String, String, String, String)> {
    let list = recorded(point, "member list");
    members_of(list.as_array().map(Vec::as_slice).unwrap_or_default())
}

fn our_members(
    s: &BTreeMap<String, BTreeMap<String, Value>>,
) -> Vec<(String, String, String, String)> {
    let list: Vec<Value> = s
        .get(&format!("members:{QUEUE}"))
        .map(|m| m.values().cloned().collect())
        .unwrap_or_default();
    members_of(&list)
}

/// Seeding from mod_callcenter's lists, then replaying the recorded events on
/// top, gives what mod_callcenter's own lists said at each point.
#[test]
fn seeding_and_replaying_the_recorded_scenario_matches_mod_callcenters_own_lists() {
    let t = harness::load_with_redis_after(&[("state", "true"), ("stream", "cc_stream")], || {
        serve_point("01-start")
    });
    fixtures::add_member_sessions();
    let mut con = t.redis.connection();
    assert!(wait_until(WAIT, || seeded(&mut con)));
    let s = snapshot(&mut con, P);
    for name in ["tenant-1@areski", "tenant-1@bob"] {
        assert_eq!(our_agent(&s, name), their_agent("01-start", name), "{name}");
    }
    let q = &s["queues"][QUEUE];
    assert_eq!(q["strategy"], "longest-idle-agent");
    assert_eq!(q["waiting"], 0);
    assert_eq!(q["longest_wait_since"], Value::Null);
    assert_eq!(
        q["agents"],
        json!([
            {"name": "tenant-1@areski", "level": 1, "position": 1, "tier_state": "Ready"},
            {"name": "tenant-1@bob", "level": 1, "position": 2, "tier_state": "Ready"},
        ])
    );
    let m = meta(&mut con, P);
    assert_eq!(m["host"], "harness");
    assert_eq!(m["core_uuid"], core::CORE_UUID.to_str().unwrap());
    assert!(m["stream_id"].contains('-'), "{m:?}");

    let events = fixtures::events();
    // Call 1: areski Available, the caller offered, answered ("In a queue call").
    replay(&events, 1, 8, &mut con);
    let s = snapshot(&mut con, P);
    assert_eq!(
        our_agent(&s, "tenant-1@areski"),
        their_agent("03-call-bridged", "tenant-1@areski")
    );
    assert_eq!(our_members(&s), their_members("03-call-bridged"));
    let member = s[&format!("members:{QUEUE}")].values().next().unwrap();
    assert_eq!(
        member["variables"],
        json!({"callrequest_id": "276547", "campaign_id": "295", "phonenumber": "34650844400", "callerid_number": "34650844400"}),
        "the member's channel variables come with it"
    );
    assert_eq!(s["queues"][QUEUE]["answering"], 1);
    assert_eq!(s["queues"][QUEUE]["waiting"], 0);

    // The call ends after 4 s: the member goes, areski is back to Waiting.
    replay(&events, 9, 11, &mut con);
    let s = snapshot(&mut con, P);
    for name in ["tenant-1@areski", "tenant-1@bob"] {
        assert_eq!(
            our_agent(&s, name),
            their_agent("04-after-call", name),
            "{name}"
        );
    }
    assert_eq!(our_members(&s), their_members("04-after-call"));
    assert_eq!(s["queues"][QUEUE]["answering"], 0);

    // Areski logs out; a second caller waits with no agent.
    replay(&events, 12, 17, &mut con);
    let s = snapshot(&mut con, P);
    assert_eq!(
        our_agent(&s, "tenant-1@areski"),
        their_agent("05-caller-waiting-no-agent", "tenant-1@areski")
    );
    assert_eq!(our_members(&s), their_members("05-caller-waiting-no-agent"));
    let q = &s["queues"][QUEUE];
    assert_eq!(q["waiting"], 1);
    let joined = events[15]
        .header("Event-Date-Timestamp")
        .unwrap()
        .parse::<i64>()
        .unwrap()
        / 1_000_000;
    assert_eq!(q["longest_wait_since"], joined);

    // Offered to bob, who does not answer; the caller gives up: Abandoned, as
    // mod_callcenter keeps it (until discard-abandoned-after).
    replay(&events, 18, 25, &mut con);
    let s = snapshot(&mut con, P);
    assert_eq!(our_members(&s), their_members("06-after-hangup"));
    assert_eq!(s["agents"]["tenant-1@bob"]["no_answer_count"], 1);
    assert_eq!(s["agents"]["tenant-1@bob"]["status"], "On Break");
    assert_eq!(s["queues"][QUEUE]["waiting"], 0);
    assert_eq!(s["queues"][QUEUE]["abandoned"], 1);

    // The caller comes back (member-queue-resume, same member UUID) and is answered.
    replay(&events, 26, 45, &mut con);
    let s = snapshot(&mut con, P);
    assert_eq!(our_members(&s), Vec::new(), "answered and gone");
    let areski = &s["agents"]["tenant-1@areski"];
    assert_eq!(
        areski["calls_answered"], 1,
        "reset on Available, then one call"
    );
    assert_eq!(areski["state"], "Waiting");
    assert_eq!(areski["status"], "Logged Out");
    assert_eq!(
        s["agents"]["tenant-1@carol"]["status"], "Logged Out",
        "agent-add"
    );
    assert_eq!(
        t.redis.connection().xlen::<_, usize>("cc_stream").unwrap(),
        1 + 45 - 3 - 1,
        "the seed, and every event but the three query replies and agent-max-no-answer (which changes nothing mod_callcenter's lists hold)"
    );
    t.module.unload();
}

/// The module loaded with the mirror on (and `extra`), serving `cc` as
/// mod_callcenter, once the first seed is in Redis.
fn start(cc: &Arc<Callcenter>, extra: &[(&str, &str)]) -> (harness::Loaded, redis::Connection) {
    let mut params = vec![("state", "true")];
    params.extend_from_slice(extra);
    let t = harness::load_with_redis_after(&params, || cc.serve());
    let mut con = t.redis.connection();
    assert!(wait_until(WAIT, || seeded(&mut con)), "never seeded");
    (t, con)
}

fn published_all(fired: u64) -> bool {
    let s: Value = serde_json::from_str(&core::api("cc_events", "status json").unwrap()).unwrap();
    s["published"] == fired && s["queued"] == 0
}

/// A line of `cc_events state`; empty before the worker's first report.
fn state_line(name: &str) -> String {
    let out = core::api("cc_events", "state").unwrap();
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn seeds() -> u64 {
    let seed = state_line("last seed");
    seed.split('(')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Every read of the mirror, taken in one MULTI, agrees with itself: each
/// queue's counts match its members hash, and every agent is there.
fn consistent(s: &BTreeMap<String, BTreeMap<String, Value>>, agents: usize) -> Result<(), String> {
    if s["agents"].len() != agents {
        return Err(format!("{} agents, not {agents}", s["agents"].len()));
    }
    for (q, v) in &s["queues"] {
        let members = s.get(&format!("members:{q}")).cloned().unwrap_or_default();
        let count = |states: &[&str]| {
            members
                .values()
                .filter(|m| states.contains(&m["state"].as_str().unwrap_or_default()))
                .count()
        };
        if v["waiting"] != count(&["Waiting", "Trying"]) || v["answering"] != count(&["Answered"]) {
            return Err(format!("{q}: {v} but members {members:?}"));
        }
    }
    Ok(())
}

/// (state, serving agent) of every member, by UUID.
fn members_by_uuid(
    s: &BTreeMap<String, BTreeMap<String, Value>>,
) -> BTreeMap<String, (String, String)> {
    s.iter()
        .filter(|(k, _)| k.starts_with("members:"))
        .flat_map(|(_, h)| h.iter())
        .map(|(u, m)| {
            let f = |k: &str| m[k].as_str().unwrap_or_default().to_string();
            (u.clone(), (f("state"), f("serving_agent")))
        })
        .collect()
}

/// The mirror's members are mod_callcenter's; on failure, only the differences.
fn same_members(
    ours: &BTreeMap<String, (String, String)>,
    theirs: &BTreeMap<String, (String, String)>,
) {
    let diff: Vec<String> = ours
        .keys()
        .chain(theirs.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|k| ours.get(*k) != theirs.get(*k))
        .take(10)
        .map(|k| {
            format!(
                "{k}: ours {:?}, mod_callcenter {:?}",
                ours.get(k),
                theirs.get(k)
            )
        })
        .collect();
    assert!(
        diff.is_empty(),
        "{} vs {} members; first differences: {diff:#?}",
        ours.len(),
        theirs.len()
    );
}

fn db_members(cc: &Callcenter) -> BTreeMap<String, (String, String)> {
    cc.db
        .lock()
        .unwrap()
        .members
        .iter()
        .map(|(u, m)| (u.clone(), (m.state.clone(), m.serving_agent.clone())))
        .collect()
}

fn db_agents(cc: &Callcenter) -> BTreeMap<String, (String, String)> {
    cc.db
        .lock()
        .unwrap()
        .agents
        .iter()
        .map(|(n, a)| (n.clone(), (a.status.clone(), a.state.clone())))
        .collect()
}

fn our_agents(s: &BTreeMap<String, BTreeMap<String, Value>>) -> BTreeMap<String, (String, String)> {
    s["agents"]
        .iter()
        .map(|(n, a)| {
            let f = |k: &str| a[k].as_str().unwrap_or_default().to_string();
            (n.clone(), (f("status"), f("state")))
        })
        .collect()
}

/// Calls from 4 threads while `cc_events reload` rebuilds the mirror five
/// times: every read sees one whole state, no event is lost from the stream,
/// and the end state is mod_callcenter's.
#[test]
fn rebuilds_under_load_are_atomic_and_lose_nothing() {
    const ROUNDS: usize = 150;
    let cc = Callcenter::new(4, 2);
    let (t, mut con) = start(&cc, &[("stream", "cc_stream"), ("events", "all")]);
    let start = cc.fired();

    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        let mut con = t.redis.connection();
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(SeqCst) {
                consistent(&snapshot(&mut con, P), 8)?;
                reads += 1;
            }
            Ok::<usize, String>(reads)
        })
    };
    let threads: Vec<_> = (0..4)
        .map(|th| {
            let cc = cc.clone();
            std::thread::spawn(move || {
                for a in 0..2 {
                    cc.set_status(&format!("agent-{th}-{a}@test"), "Available");
                }
                for i in 0..ROUNDS {
                    cc.call(th, i);
                    if i % 10 == 9 {
                        let agent = format!("agent-{th}-{}@test", i % 2);
                        cc.set_status(&agent, if i % 20 == 9 { "On Break" } else { "Available" });
                    }
                }
            })
        })
        .collect();
    for n in 0..5 {
        let before = seeds();
        let out = core::api("cc_events", "reload").unwrap();
        assert!(out.starts_with("+OK"), "{out}");
        assert!(
            wait_until(WAIT, || seeds() > before),
            "reload {n} never reseeded"
        );
    }
    for th in threads {
        th.join().unwrap();
    }
    let fired = cc.fired() - start;
    assert!(
        wait_until(WAIT, || published_all(fired)),
        "{}",
        core::api("cc_events", "status").unwrap()
    );
    stop.store(true, SeqCst);
    let reads = reader
        .join()
        .unwrap()
        .expect("a read saw a half-written state");
    assert!(reads > 0);

    let s = snapshot(&mut con, P);
    assert_eq!(our_agents(&s), db_agents(&cc));
    same_members(&members_by_uuid(&s), &db_members(&cc));
    consistent(&s, 8).unwrap();
    // Every event is in the stream once, besides the seeds' markers.
    let entries: Vec<redis::streams::StreamId> = con
        .xrange_all::<_, redis::streams::StreamRangeReply>("cc_stream")
        .unwrap()
        .ids;
    let events = entries
        .iter()
        .filter(|e| e.get::<String>("action").as_deref() != Some("state-seed"))
        .count() as u64;
    assert_eq!(
        events,
        fired + start - 1000,
        "every event fired since the module loaded"
    );
    let last = entries.last().unwrap().id.clone();
    assert_eq!(
        meta(&mut con, P)["stream_id"],
        last,
        "meta names the last entry applied"
    );
    eprintln!("{fired} events, {reads} consistent reads during 5 rebuilds");
    t.module.unload();
}

/// mod_callcenter not loaded: `cc_events state` and `status` say so, events
/// are still published, and the mirror seeds as soon as it appears.
#[test]
fn without_mod_callcenter_the_mirror_waits_for_it_and_seeds_when_it_appears() {
    let t = harness::load_with_redis_after(&[("state", "true")], || core::set_callcenter(None));
    assert!(wait_until(WAIT, || state_line("mod_callcenter")
        .starts_with("NOT available")));
    let why = state_line("mod_callcenter");
    assert!(
        why.contains("Invalid request or non-existant command"),
        "{why}"
    );
    assert!(
        why.contains("mod_callcenter"),
        "tells the operator what to load: {why}"
    );
    assert!(harness::common::status().contains("state:      cc_state:* waiting for mod_callcenter"));
    assert_eq!(
        core::logs()
            .iter()
            .filter(|l| l.text.contains("state mirror: cannot read mod_callcenter"))
            .count(),
        1,
        "logged once, not every second"
    );
    core::fire(&mut harness::common::status_event("tenant-1@areski"));
    t.sub.take(1, WAIT);

    serve_point("02-areski-available");
    let mut con = t.redis.connection();
    assert!(wait_until(WAIT, || seeded(&mut con)));
    assert_eq!(state_line("mod_callcenter"), "read");
    assert_eq!(state_line("agents"), "2");
    let s = snapshot(&mut con, P);
    assert_eq!(s["agents"]["tenant-1@areski"]["status"], "Available");
    t.module.unload();
}

/// Redis is frozen while calls go on and the queue overflows: after it comes
/// back, the mirror is rebuilt and holds mod_callcenter's state again.
#[test]
fn after_an_outage_that_dropped_events_the_mirror_is_reseeded() {
    let cc = Callcenter::new(1, 2);
    let (t, mut con) = start(&cc, &[("queue-size", "20"), ("io-timeout-ms", "200")]);
    let before = seeds();
    t.redis.pause();
    for i in 0..100 {
        cc.set_status(
            "agent-0-0@test",
            if i % 2 == 0 { "Available" } else { "On Break" },
        );
        cc.set_status("agent-0-1@test", "Available");
    }
    cc.set_status("agent-0-0@test", "On Break");
    t.redis.resume();
    assert!(
        harness::common::status_line("dropped") > 0,
        "the outage dropped events"
    );
    assert!(
        wait_until(WAIT, || seeds() > before),
        "no reseed after the outage"
    );
    assert!(
        wait_until(WAIT, || our_agents(&snapshot(&mut con, P))
            == db_agents(&cc)),
        "{:?}",
        snapshot(&mut con, P)["agents"]
    );
    t.module.unload();
}

/// Redis restarts empty (no persistence): the module writes the whole mirror
/// into it again, whether its link was idle when Redis went (the keep-alive
/// finds it closed) or events were waiting to be sent (their state writes
/// need the script the new server does not have yet).
#[test]
fn a_restarted_redis_gets_the_whole_mirror_again_from_an_idle_or_a_busy_link() {
    for busy in [false, true] {
        let _exclusive = core::exclusive();
        let cc = Callcenter::new(1, 2);
        cc.serve();
        let mut redis = harness::redis::RedisServer::start();
        harness::config_for(redis.port, &[("state", "true"), ("stream", "cc_stream")]);
        let module = core::LoadedModule::load().expect("load");
        let mut con = redis.connection();
        assert!(wait_until(WAIT, || seeded(&mut con)), "never seeded");
        cc.set_status("agent-0-0@test", "Available");
        assert!(wait_until(WAIT, || published_all(1)));
        if !busy {
            // The case itself, not a wait for something: a link idle for
            // longer than idle-ping-ms (1 s), which the keep-alive checks.
            std::thread::sleep(Duration::from_millis(1500));
        }
        let port = redis.port;
        redis.stop();
        if busy {
            cc.set_status("agent-0-1@test", "On Break");
        } else {
            assert!(
                wait_until(WAIT, || core::api("cc_events", "status")
                    .unwrap()
                    .contains("NOT connected")),
                "the keep-alive never found Redis gone"
            );
        }
        let redis = harness::redis::RedisServer::start_on(port);
        let mut con = redis.connection();
        assert!(
            wait_until(WAIT, || seeded(&mut con)
                && our_agents(&snapshot(&mut con, P)) == db_agents(&cc)),
            "busy: {busy}: the restarted Redis holds {:?}\n{}{:#?}",
            snapshot(&mut con, P),
            core::api("cc_events", "status").unwrap(),
            core::logs()
                .iter()
                .map(|l| l.text.trim_end().to_string())
                .collect::<Vec<_>>()
        );
        drop(redis);
        module.unload();
    }
}

/// Tier changes fire no event: the periodic refresh finds them, writes only
/// the difference, and puts it in the stream as a state-update entry.
#[test]
fn the_periodic_refresh_picks_up_what_fires_no_event() {
    let cc = Callcenter::new(1, 2);
    let (t, mut con) = start(&cc, &[("stream", "cc_stream"), ("state-refresh-s", "1")]);
    let refreshes = || {
        let seed = state_line("last seed");
        seed.split(", ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Nothing changed: a refresh writes nothing.
    let n = refreshes();
    assert!(wait_until(WAIT, || refreshes() > n));
    assert_eq!(
        con.xlen::<_, usize>("cc_stream").unwrap(),
        1,
        "only the seed's entry"
    );

    cc.db.lock().unwrap().tiers[1].4 = "Active Inbound".into();
    assert!(wait_until(WAIT, || {
        snapshot(&mut con, P)["queues"]["q0@test"]["agents"][1]["tier_state"] == "Active Inbound"
    }));
    let entries: redis::streams::StreamRangeReply = con.xrange_all("cc_stream").unwrap();
    let update = entries.ids.last().unwrap();
    assert_eq!(update.get::<String>("action").unwrap(), "state-update");
    let delta: Value = serde_json::from_str(&update.get::<String>("state").unwrap()).unwrap();
    assert_eq!(
        delta[format!("{P}:queues")]["q0@test"]["agents"][1]["tier_state"],
        "Active Inbound"
    );
    assert_eq!(
        delta.as_object().unwrap().len(),
        1,
        "only the queue changed: {delta}"
    );
    assert_eq!(meta(&mut con, P)["stream_id"], update.id);
    t.module.unload();
}

/// mod_callcenter forgets an abandoned caller after discard-abandoned-after
/// without an event; so does the mirror.
#[test]
fn abandoned_callers_are_dropped_after_discard_abandoned_after() {
    let cc = Callcenter::new(1, 1);
    cc.db.lock().unwrap().discard_abandoned_after = 1;
    let t = harness::load_with_redis_after(&[("state", "true"), ("stream", "cc_stream")], || {
        cc.serve()
    });
    let mut con = t.redis.connection();
    assert!(wait_until(WAIT, || seeded(&mut con)));
    cc.join("q0@test", "m-1", "s-1", "5550001");
    cc.abandon("q0@test", "m-1");
    assert!(wait_until(WAIT, || {
        snapshot(&mut con, P)
            .get("members:q0@test")
            .and_then(|m| m.get("m-1"))
            .is_some_and(|m| m["state"] == "Abandoned")
    }));
    assert_eq!(snapshot(&mut con, P)["queues"]["q0@test"]["abandoned"], 1);
    assert!(wait_until(WAIT, || snapshot(&mut con, P)
        .get("members:q0@test")
        .is_none_or(|m| m.is_empty())));
    assert_eq!(snapshot(&mut con, P)["queues"]["q0@test"]["abandoned"], 0);
    let entries: redis::streams::StreamRangeReply = con.xrange_all("cc_stream").unwrap();
    let last = entries.ids.last().unwrap();
    assert_eq!(last.get::<String>("action").unwrap(), "state-update");
    let delta: Value = serde_json::from_str(&last.get::<String>("state").unwrap()).unwrap();
    assert_eq!(delta[format!("{P}:members:q0@test")]["m-1"], Value::Null);
    t.module.unload();
}

/// The README's recipe, `examples/state_follow.py` run by python3 with
/// redis-py: it reads the snapshot while calls come from 4 threads and a
/// reload rebuilds the mirror, follows the stream, and ends with exactly the
/// module's snapshot.
#[test]
#[cfg_attr(
    not(python_redis),
    ignore = "needs python3 with redis-py (Debian: apt-get install python3-redis), then cargo clean -p mod_cc_events"
)]
fn the_readme_recipe_in_python_ends_with_the_modules_snapshot() {
    const ROUNDS: usize = 100;
    let cc = Callcenter::new(4, 2);
    let (t, mut con) = start(&cc, &[("stream", "cc_stream"), ("events", "all")]);
    let start = cc.fired();
    let calls = |rounds: std::ops::Range<usize>| -> Vec<std::thread::JoinHandle<()>> {
        (0..4)
            .map(|th| {
                let cc = cc.clone();
                let rounds = rounds.clone();
                std::thread::spawn(move || {
                    for i in rounds {
                        cc.call(th, i);
                        if i % 10 == 0 {
                            let status = if i % 20 == 0 { "Available" } else { "On Break" };
                            cc.set_status(&format!("agent-{th}-0@test"), status);
                        }
                    }
                })
            })
            .collect()
    };
    for th in calls(0..ROUNDS / 2) {
        th.join().unwrap();
    }
    // The consumer reads the snapshot mid-way, says so in cc_test:ready, and
    // stops once it has applied the entry the test names in cc_test:stop.
    let driver = format!(
        r#"
import json, sys
sys.path.insert(0, {examples:?})
import redis
import state_follow
from state_follow import follow
r = redis.Redis(port={port}, decode_responses=True)
seeds, entries = 0, 0
apply = state_follow.apply
def counting(state, fields):
    global seeds, entries
    entries += 1
    seeds += fields.get("action") == "state-seed"
    return apply(state, fields)
state_follow.apply = counting
for state, last in follow(r, "{P}", "cc_stream", block_ms=100):
    r.set("cc_test:ready", "1")
    stop = r.get("cc_test:stop")
    if stop is not None and last == stop:
        break
print(json.dumps({{"seeds": seeds, "entries": entries, "state": {{k: v for k, v in state.items() if v}}}}))
"#,
        examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples"),
        port = t.redis.port,
    );
    let python = env!("CC_EVENTS_PYTHON");
    let child = std::process::Command::new(python)
        .args(["-c", &driver])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_until(WAIT, || con
        .exists::<_, bool>("cc_test:ready")
        .unwrap()));
    // The second half, with a rebuild in the middle: the consumer meets a
    // state-seed entry and reads the snapshot again.
    let threads = calls(ROUNDS / 2..ROUNDS);
    let before = seeds();
    assert!(core::api("cc_events", "reload").unwrap().starts_with("+OK"));
    assert!(wait_until(WAIT, || seeds() > before));
    for th in threads {
        th.join().unwrap();
    }
    let fired = cc.fired() - start;
    assert!(wait_until(WAIT, || published_all(fired)));
    let last = meta(&mut con, P)["stream_id"].clone();
    let () = con.set("cc_test:stop", &last).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let theirs: BTreeMap<String, BTreeMap<String, Value>> =
        serde_json::from_value(report["state"].clone()).unwrap();
    assert!(
        report["seeds"].as_u64().unwrap() >= 1,
        "{}",
        report["seeds"]
    );
    assert!(
        report["entries"].as_u64().unwrap() > 100,
        "{}",
        report["entries"]
    );
    let ours: BTreeMap<String, BTreeMap<String, Value>> = snapshot(&mut con, P)
        .into_iter()
        .filter(|(_, h)| !h.is_empty())
        .map(|(k, h)| (format!("{P}:{k}"), h))
        .collect();
    assert_eq!(
        theirs.keys().collect::<Vec<_>>(),
        ours.keys().collect::<Vec<_>>()
    );
    for (k, h) in &ours {
        assert_eq!(&theirs[k], h, "{k}");
    }
    assert!(ours[&format!("{P}:members:q0@test")].len() > 1);
    eprintln!(
        "python consumer matched after {fired} events from 4 threads and a rebuild ({} entries applied, {} reseeds)",
        report["entries"], report["seeds"]
    );
    t.module.unload();
}

/// The stream `cc_stream`: each entry's ID and its value of `field`.
fn stream_field(con: &mut redis::Connection, field: &str) -> Vec<(String, String)> {
    let all: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg("cc_stream")
        .arg("-")
        .arg("+")
        .query(con)
        .unwrap();
    all.into_iter()
        .filter_map(|(id, f)| {
            let v = f.into_iter().find(|(k, _)| k == field)?.1;
            Some((id, v))
        })
        .collect()
}

/// The user `ccevents` with `password`, allowed `channels` and `commands`
/// on the mirror's keys and `cc_stream`.
fn acl_user(redis: &harness::redis::RedisServer, password: &str, channels: &str, commands: &str) {
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("ccevents")
        .arg("on")
        .arg(format!(">{password}"))
        .arg("resetchannels")
        .arg(channels)
        .arg("resetkeys")
        .arg("~cc_state:*")
        .arg("~cc_stream")
        .arg("-@all")
        .arg(commands.split(' ').collect::<Vec<_>>())
        .query(&mut redis.connection())
        .unwrap();
}

/// The module with the mirror and `cc_stream`, as the user `ccevents`.
fn load_as_user(redis: &harness::redis::RedisServer, password: &str) -> core::LoadedModule {
    harness::config_for(
        redis.port,
        &[
            ("state", "true"),
            ("stream", "cc_stream"),
            ("username", "ccevents"),
            ("password", password),
        ],
    );
    harness::core::note_secret(password);
    core::LoadedModule::load().expect("load")
}

/// The README's commands for the mirror with a stream (its ACL rule).
const STATE_COMMANDS: &str =
    "+publish +ping +xadd +multi +exec +eval +evalsha +script|load +hset +hdel +del +hkeys";

/// A batch's state call goes ahead of its PUBLISHes: while Redis refuses a
/// PUBLISH (the user may not use the channel), the batch's stream entries and
/// state are already written, and once the channel is allowed every event
/// arrives, in order, without its stream entry written a second time.
#[test]
fn a_refused_publish_is_sent_again_without_writing_the_state_twice() {
    let _exclusive = core::exclusive();
    let cc = Callcenter::new(1, 2);
    cc.serve();
    let redis = harness::redis::RedisServer::start();
    let rule = |channels: &str| acl_user(&redis, "s3cret-state", channels, STATE_COMMANDS);
    rule("&other");
    let sub = harness::redis::Subscriber::new(&redis, "callcenter_events");
    let module = load_as_user(&redis, "s3cret-state");
    let mut con = redis.connection();
    assert!(wait_until(WAIT, || seeded(&mut con)), "never seeded");
    let statuses = ["Available", "On Break", "Available", "Logged Out"];
    let fire = |i: usize| cc.set_status(&format!("agent-0-{}@test", i % 2), statuses[i]);
    fire(0);
    assert!(
        wait_until(WAIT, || harness::common::status().contains("NOPERM")),
        "{}",
        harness::common::status()
    );
    let entries = |con: &mut redis::Connection| -> Vec<String> {
        stream_field(con, "sequence")
            .into_iter()
            .map(|(_, v)| v)
            .collect()
    };
    // The first event's batch is refused: its state call went through all
    // the same.
    assert_eq!(entries(&mut con).len(), 1);
    // The next events' batch is formatted while the first is retried, and
    // waits behind it: their state call is not run (again and again) with
    // each retry of the refused PUBLISH.
    for i in 1..statuses.len() {
        fire(i);
    }
    let refused = |con: &mut redis::Connection| -> u64 {
        let info: String = redis::cmd("INFO").arg("commandstats").query(con).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("cmdstat_publish:"))
            .and_then(|l| {
                l.split(',')
                    .find_map(|kv| kv.strip_prefix("rejected_calls="))
            })
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let before = refused(&mut con);
    assert!(
        wait_until(WAIT, || refused(&mut con) >= before + 3),
        "the refused PUBLISH was not retried"
    );
    assert_eq!(entries(&mut con).len(), 1, "{:?}", entries(&mut con));
    rule("&callcenter_events");
    let got = sub.take(statuses.len(), WAIT);
    let said: Vec<String> = got
        .iter()
        .map(|p| {
            serde_json::from_str::<Value>(p).unwrap()["Agent-Status-Change:"]["CC_Agent_Status"]
                .to_string()
        })
        .collect();
    assert_eq!(
        said,
        statuses
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
    );
    assert!(wait_until(WAIT, || published_all(statuses.len() as u64)));
    let seqs = entries(&mut con);
    let mut unique = seqs.clone();
    unique.dedup();
    assert_eq!(seqs.len(), statuses.len(), "one entry per event: {seqs:?}");
    assert_eq!(unique, seqs);
    assert_eq!(meta(&mut con, P).get("sequence"), seqs.last());
    assert_eq!(state_line("writes"), "one MULTI/EXEC transaction a batch");
    assert_eq!(our_agents(&snapshot(&mut con, P)), db_agents(&cc));
    module.unload();
}

/// A command that fails inside the batch's MULTI ... EXEC (here every XADD:
/// the stream's key holds a string) makes the whole transaction refused and
/// sent again, in order, until it goes through: nothing is confirmed that
/// Redis did not store.
#[test]
fn a_transaction_with_a_failed_command_is_refused_and_sent_again() {
    let cc = Callcenter::new(1, 2);
    let (t, mut con) = start(&cc, &[("stream", "cc_stream")]);
    let _: () = con.del("cc_stream").unwrap();
    let _: () = con.set("cc_stream", "not a stream").unwrap();
    cc.set_status("agent-0-0@test", "Available");
    cc.set_status("agent-0-1@test", "On Break");
    assert!(
        wait_until(WAIT, || harness::common::status().contains("WRONGTYPE")),
        "{}",
        harness::common::status()
    );
    assert!(!published_all(2), "confirmed what Redis refused");
    let _: () = con.del("cc_stream").unwrap();
    assert!(wait_until(WAIT, || published_all(2)));
    let entries = stream_field(&mut con, "action");
    let actions: Vec<&str> = entries.iter().map(|(_, a)| a.as_str()).collect();
    assert_eq!(actions, ["agent-status-change", "agent-status-change"]);
    assert_eq!(
        meta(&mut con, P).get("stream_id"),
        entries.last().map(|(id, _)| id)
    );
    assert_eq!(our_agents(&snapshot(&mut con, P)), db_agents(&cc));
    t.module.unload();
}

/// A Redis user set up by an earlier README (no `+multi +exec`): the module
/// says so once, at Warning, and writes each batch as one script call
/// instead; every event arrives once and the mirror stays whole.
#[test]
fn a_user_without_multi_gets_each_batch_as_one_script_call() {
    let _exclusive = core::exclusive();
    let cc = Callcenter::new(1, 2);
    cc.serve();
    let redis = harness::redis::RedisServer::start();
    // The earlier README's rule: STATE_COMMANDS without +multi +exec +eval.
    acl_user(
        &redis,
        "s3cret-older",
        "&callcenter_events",
        "+publish +ping +xadd +evalsha +script|load +hset +hdel +del +hkeys",
    );
    core::take_logs();
    let module = load_as_user(&redis, "s3cret-older");
    let mut con = redis.connection();
    assert!(wait_until(WAIT, || seeded(&mut con)), "never seeded");
    for (i, s) in ["Available", "On Break", "Available", "Logged Out"]
        .iter()
        .enumerate()
    {
        cc.set_status(&format!("agent-0-{}@test", i % 2), s);
    }
    assert!(wait_until(WAIT, || published_all(4)));
    let entries = stream_field(&mut con, "action");
    let actions: Vec<&str> = entries.iter().map(|(_, a)| a.as_str()).collect();
    assert_eq!(
        actions,
        [
            "state-seed",
            "agent-status-change",
            "agent-status-change",
            "agent-status-change",
            "agent-status-change"
        ]
    );
    assert_eq!(
        meta(&mut con, P).get("stream_id"),
        entries.last().map(|(id, _)| id)
    );
    assert_eq!(our_agents(&snapshot(&mut con, P)), db_agents(&cc));
    let logs = core::logs();
    let said: Vec<_> = logs
        .iter()
        .filter(|l| l.text.contains("may not run MULTI/EXEC"))
        .collect();
    assert_eq!(said.len(), 1, "{logs:#?}");
    // SWITCH_LOG_WARNING
    assert_eq!(said[0].level, 4);
    assert!(said[0].text.contains("add +multi +exec"));
    assert_eq!(
        state_line("writes"),
        "one script call a batch (the Redis user may not run MULTI/EXEC: add +multi +exec)"
    );
    module.unload();
}
