//! Redis Cluster (`cluster=true`) against a real cluster: six redis-servers
//! on free loopback ports, three masters with a replica each, joined by
//! `redis-cli --cluster create`. Plain PUBLISH reaches subscribers on every
//! node; SPUBLISH (`sharded-pubsub=true`) reaches SSUBSCRIBE on the shard
//! that owns the channel; the stream and the state mirror land under one hash
//! tag; and when the master owning the stream is killed, publishing resumes on
//! its promoted replica with nothing lost.

mod harness;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use redis::Commands;
use serde_json::Value;

use harness::callcenter::Callcenter;
use harness::cluster::{losses, Cluster, ShardSubscriber};
use harness::common::{agent_of, status_event, status_line};
use harness::core::{self, LoadedModule};
use harness::redis::{wait_until, Subscriber};

const WAIT: Duration = Duration::from_secs(10);

/// The module configured for `cluster`'s seeds (`first` listed first) and loaded.
fn load(cluster: &Cluster, first: Option<usize>, extra: &[(&str, &str)]) -> LoadedModule {
    let seeds = cluster.seeds(first);
    let mut params = vec![
        ("cluster", "true"),
        ("cluster-nodes", seeds.as_str()),
        ("reconnect-max-ms", "200"),
    ];
    params.extend_from_slice(extra);
    harness::write_config(&params);
    LoadedModule::load().expect("load")
}

fn logged(what: &str) -> bool {
    core::logs().iter().any(|l| l.text.contains(what))
}

/// Plain PUBLISH in a cluster is broadcast over the cluster bus: a subscriber
/// on any node, master or replica, gets every event, whichever node the
/// module published on.
#[test]
fn publish_reaches_a_subscriber_on_every_node() {
    let _g = core::exclusive();
    let cluster = Cluster::start(&[]);
    let subs: Vec<Subscriber> = cluster
        .nodes
        .iter()
        .map(|n| Subscriber::new(n.as_ref().unwrap(), "callcenter_events"))
        .collect();
    let module = load(&cluster, None, &[]);
    const N: usize = 50;
    for i in 0..N {
        core::fire(&mut status_event(&format!("a-{i}")));
    }
    for (i, sub) in subs.iter().enumerate() {
        let got: Vec<String> = sub.take(N, WAIT).iter().map(|p| agent_of(p)).collect();
        let want: Vec<String> = (0..N).map(|i| format!("a-{i}")).collect();
        assert_eq!(got, want, "node {i}: every event, in order");
    }
    assert!(wait_until(WAIT, || status_line("published") == N as u64));
    assert!(
        logged("connected to Redis at cluster 127.0.0.1:") && logged("(3 masters)"),
        "{:?}",
        core::logs()
    );
    module.unload();
}

/// With `sharded-pubsub=true` each event is an SPUBLISH, delivered only by
/// the shard that owns the channel's slot: an SSUBSCRIBE there gets every
/// event, and a plain SUBSCRIBE gets none of them.
#[test]
fn spublish_reaches_ssubscribe_on_the_channels_shard() {
    let _g = core::exclusive();
    let cluster = Cluster::start(&[]);
    let owner = cluster.master_for("callcenter_events");
    let shard = ShardSubscriber::new(&cluster, owner, "callcenter_events");
    let plain = Subscriber::new(cluster.nodes[owner].as_ref().unwrap(), "callcenter_events");
    let module = load(&cluster, None, &[("sharded-pubsub", "true")]);
    const N: usize = 50;
    for i in 0..N {
        core::fire(&mut status_event(&format!("s-{i}")));
    }
    let got: Vec<String> = shard.take(N, WAIT).iter().map(|p| agent_of(p)).collect();
    let want: Vec<String> = (0..N).map(|i| format!("s-{i}")).collect();
    assert_eq!(got, want, "every event, in order, on the owning shard");
    assert!(wait_until(WAIT, || status_line("published") == N as u64));
    assert_eq!(
        plain.drain(),
        Vec::<String>::new(),
        "SPUBLISH is not PUBLISH"
    );
    // Another shard does not serve the channel: SSUBSCRIBE there is redirected.
    let other = (0..6)
        .find(|&i| i != owner && cluster.is_master(i))
        .unwrap();
    let mut con = cluster.con(other);
    let e = redis::cmd("SSUBSCRIBE")
        .arg("callcenter_events")
        .query::<redis::Value>(&mut con)
        .map(|_| ())
        .unwrap_err();
    assert_eq!(e.code(), Some("MOVED"), "{e}");
    module.unload();
}

/// Each member's state, by UUID.
fn members(s: &BTreeMap<String, BTreeMap<String, Value>>) -> BTreeMap<String, String> {
    s.iter()
        .filter(|(k, _)| k.starts_with("members:"))
        .flat_map(|(_, h)| h.iter())
        .map(|(u, m)| {
            (
                u.clone(),
                m["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// With the state mirror on, each event's writes are one EVALSHA over the
/// stream and the state keys, which Redis Cluster runs only when they share a
/// slot: under one hash tag (`{cc}`) they all land on the master that owns
/// it, and stay equal to mod_callcenter's state. A master that lost the
/// script (SCRIPT FLUSH, or a replica promoted since) gets it again by EVAL,
/// without a refusal.
#[test]
fn the_stream_and_the_state_mirror_land_under_one_hash_tag() {
    const P: &str = "{cc}:state";
    let _g = core::exclusive();
    let cc = Callcenter::new(2, 2);
    cc.serve();
    let cluster = Cluster::start(&[]);
    let module = load(
        &cluster,
        None,
        &[
            ("state", "true"),
            ("state-prefix", P),
            ("stream", "{cc}:stream"),
            ("events", "all"),
        ],
    );
    let owner = cluster.master_for("{cc}");
    let mut con = cluster.con(owner);
    let applied = |con: &mut redis::Connection, cc: &Callcenter| {
        let last = (cc.fired() - 1).to_string();
        wait_until(WAIT, || {
            harness::state::meta(con, P).get("sequence") == Some(&last)
        })
    };
    assert!(
        wait_until(WAIT, || harness::state::meta(&mut con, P)
            .contains_key("seeded_at")),
        "never seeded: {:?}",
        core::logs()
    );
    cc.set_status("agent-0-0@test", "Available");
    cc.set_status("agent-1-1@test", "On Break");
    for i in 0..6 {
        cc.call(i % 2, i);
    }
    assert!(
        applied(&mut con, &cc),
        "{:?}",
        harness::state::meta(&mut con, P)
    );

    let check = |con: &mut redis::Connection| {
        let s = harness::state::snapshot(con, P);
        let db = cc.db.lock().unwrap().clone();
        for (name, a) in &db.agents {
            let ours = &s["agents"][name];
            assert_eq!(ours["status"], a.status.as_str(), "{name}: {ours}");
            assert_eq!(ours["state"], a.state.as_str(), "{name}: {ours}");
        }
        let theirs: BTreeMap<String, String> = db
            .members
            .iter()
            .map(|(u, m)| (u.clone(), m.state.clone()))
            .collect();
        assert_eq!(members(&s), theirs);
        // The stream is the mirror's change log: its last entry is meta's stream_id.
        let last: redis::streams::StreamRangeReply =
            con.xrevrange_count("{cc}:stream", "+", "-", 1).unwrap();
        assert_eq!(
            Some(&last.ids[0].id),
            harness::state::meta(con, P).get("stream_id")
        );
    };
    check(&mut con);

    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query::<()>(&mut con)
        .unwrap();
    cc.set_status("agent-0-1@test", "Available");
    cc.call(0, 7);
    assert!(applied(&mut con, &cc));
    check(&mut con);
    assert!(
        !logged("NOSCRIPT") && !logged("refused"),
        "the EVAL fallback is silent: {:?}",
        core::logs()
    );
    // Every key of the mirror is on the owner: nothing went elsewhere.
    for k in ["agents", "queues", "meta"] {
        let n: i64 = con.exists(format!("{P}:{k}")).unwrap();
        assert_eq!(n, 1, "{P}:{k}");
    }
    assert_eq!(status_line("dropped"), 0);
    module.unload();
}

/// Publishing at a steady 200 events a second to a stream, SIGKILL the
/// master that owns the stream's slot (listed first in cluster-nodes), and
/// measure how long until the module writes again (on the promoted replica)
/// and what was lost. Nothing may be dropped by the module; an event may be
/// missing from the new master only if the old one had acknowledged it
/// before it died and not yet replicated it (Redis replicates
/// asynchronously): so every missing event was fired before the kill.
#[test]
fn when_the_streams_master_dies_publishing_resumes_on_its_replica() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use std::sync::Arc;
    const KEY: &str = "{cc}:failover";
    const RATE: u32 = 200;
    let _g = core::exclusive();
    let mut cluster = Cluster::start(&[]);
    let doomed = cluster.master_for(KEY);
    let heir = cluster.replica_of(doomed);
    let module = load(
        &cluster,
        Some(doomed),
        &[
            ("channel", ""),
            ("stream", KEY),
            ("io-timeout-ms", "500"),
            ("connect-timeout-ms", "500"),
        ],
    );

    let stop = Arc::new(AtomicBool::new(false));
    let firing = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut times = Vec::new();
            while !stop.load(SeqCst) {
                // Pacing, not synchronisation: one event every 5 ms.
                let due = start + Duration::from_secs(1) * times.len() as u32 / RATE;
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                core::fire(&mut status_event(&format!("f-{}", times.len())));
                times.push(Instant::now());
            }
            times
        })
    };
    let xlen = |c: &Cluster, i: usize| -> usize { c.con(i).xlen(KEY).unwrap_or(0) };
    assert!(
        wait_until(WAIT, || status_line("published") >= RATE as u64),
        "not publishing: {:?}",
        core::logs()
    );
    assert!(wait_until(WAIT, || cluster.in_sync(heir)));

    let killed = Instant::now();
    cluster.kill(doomed);
    let mut promoted = None;
    let mut base = 0;
    let flowing = wait_until(Duration::from_secs(15), || {
        if promoted.is_none() && cluster.is_master(heir) {
            promoted = Some(killed.elapsed());
            base = xlen(&cluster, heir);
        }
        promoted.is_some() && xlen(&cluster, heir) > base
    });
    let resumed = killed.elapsed();
    assert!(
        flowing,
        "no writes on the promoted replica within 15 s of the kill (promoted: {promoted:?}): {:?}",
        core::logs()
    );
    let promoted = promoted.unwrap();
    // A second of steady publishing on the new master, then stop.
    let at = status_line("published");
    assert!(wait_until(WAIT, || status_line("published") >= at + RATE as u64));
    stop.store(true, SeqCst);
    let times = firing.join().unwrap();
    let fired = times.len();
    assert!(
        wait_until(WAIT, || status_line("published") == fired as u64),
        "published {} of {fired}",
        status_line("published")
    );

    let entries: redis::streams::StreamRangeReply = cluster.con(heir).xrange_all(KEY).unwrap();
    let got: Vec<usize> = entries
        .ids
        .iter()
        .map(|e| {
            let payload: String = e.get("payload").unwrap();
            agent_of(&payload)["f-".len()..].parse().unwrap()
        })
        .collect();
    let (missing, dups) = losses(fired, &got);
    let during = times.iter().filter(|t| **t >= killed).count();
    eprintln!(
        "failover: replica promoted {promoted:?} after the SIGKILL; events flowing again {resumed:?} after it ({:?} after the promotion); fired {fired} at {RATE}/s ({during} after the kill), lost {}, duplicated {dups}, dropped {}, reconnects {}",
        resumed.saturating_sub(promoted),
        missing.len(),
        status_line("dropped"),
        status_line("reconnects"),
    );
    for l in core::logs().iter().filter(|l| l.level <= 4) {
        eprintln!("  log: {}", l.text);
    }
    assert_eq!(status_line("dropped"), 0, "the queue held the outage");
    assert!(
        missing.iter().all(|&i| times[i] < killed),
        "only what the old master had acknowledged may be missing: {missing:?}"
    );
    // Loopback replication lags by well under a second's events.
    assert!(missing.len() < RATE as usize, "{missing:?}");
    module.unload();
}
