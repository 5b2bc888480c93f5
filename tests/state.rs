//! The live state mirror (`state=true`) against a real redis-server, with
//! mod_callcenter's JSON API served from its recorded replies (or from a
//! stand-in database the test moves before firing each event, as
//! mod_callcenter updates its database before it fires).

mod harness;

use std::collections::BTreeMap;
use std::time::Duration;

use redis::Commands;
use serde_json::{json, Value};

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
    serve_point("01-start");
    let t = harness::load_with_redis(&[("state", "true"), ("stream", "cc_stream")]);
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
