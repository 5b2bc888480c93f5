//! Redis Cluster (`cluster=true`) against a real cluster: six redis-servers
//! on free loopback ports, three masters with a replica each, joined by
//! `redis-cli --cluster create`. Plain PUBLISH reaches subscribers on every
//! node; SPUBLISH (`sharded-pubsub=true`) reaches SSUBSCRIBE on the shard
//! that owns the channel; the stream and the state mirror land under one hash
//! tag; and when the master owning the stream is killed, publishing resumes on
//! its promoted replica with nothing lost.

mod harness;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::JoinHandle;
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

/// Fires `status_event("<prefix>-<i>")` at a steady rate on its own thread
/// until stopped, and tells when each was fired.
struct Firing {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<Instant>>>,
}

impl Firing {
    fn start(prefix: &'static str, rate: u32) -> Firing {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut times = Vec::new();
            while !stop2.load(SeqCst) {
                // Pacing, not synchronisation.
                let due = start + Duration::from_secs(1) * times.len() as u32 / rate;
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                core::fire(&mut status_event(&format!("{prefix}-{}", times.len())));
                times.push(Instant::now());
            }
            times
        });
        Firing {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> Vec<Instant> {
        self.stop.store(true, SeqCst);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Firing {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The indices of the events in `key`'s stream on node `i`, in stream order.
fn stream_events(cluster: &Cluster, i: usize, key: &str, prefix: &str) -> Vec<usize> {
    let entries: redis::streams::StreamRangeReply = cluster.con(i).xrange_all(key).unwrap();
    entries
        .ids
        .iter()
        .map(|e| {
            let payload: String = e.get("payload").unwrap();
            agent_of(&payload)[prefix.len() + 1..].parse().unwrap()
        })
        .collect()
}

/// What node `i` counted for `field` in an INFO `section`: an error's count
/// (errorstats) or a command's calls (commandstats).
fn stat(cluster: &Cluster, i: usize, section: &str, field: &str) -> u64 {
    cluster
        .info(i, "INFO", section)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| {
            v.split(',')
                .find_map(|kv| kv.strip_prefix("count=").or(kv.strip_prefix("calls=")))
        })
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// Plain PUBLISH in a cluster is broadcast over the cluster bus: a subscriber
/// on any node, master or replica, gets every event, whichever node the
/// module published on.
#[test]
fn publish_reaches_a_subscriber_on_every_node() {
    let _g = core::exclusive();
    core::take_logs();
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
    // A master killed while the module is idle is found by the idle PING,
    // which goes to every master, and said as such.
    drop(subs);
    let mut cluster = cluster;
    let seeds = cluster.seeds(None);
    let victim = cluster.master_for("callcenter_events");
    let victim_port = cluster.port(victim);
    cluster.kill(victim);
    assert!(
        wait_until(WAIT, || harness::common::status()
            .contains("redis:      NOT connected")),
        "{}",
        harness::common::status()
    );
    assert!(
        logged(&format!("cannot reach a node of Redis Cluster {seeds}: "))
            && logged(&format!("127.0.0.1:{victim_port}: Connection refused"))
            && !logged("closed the connection right after accepting it"),
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
    core::take_logs();
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

/// The README's ACL rule for a cluster with the stream and the state mirror.
const ACL: &str = "ACL SETUSER cc_events on >CHANGE-ME resetchannels &callcenter_events resetkeys ~{cc}:* -@all +publish +ping +xadd +evalsha +eval +script|load +hset +hdel +del +hkeys +cluster|slots +cluster|info +asking";

/// With the state mirror on, a batch's writes are one EVALSHA over the
/// stream and the state keys, which Redis Cluster runs only when they share a
/// slot: under one hash tag (`{cc}`) they all land on the master that owns
/// it, and stay equal to mod_callcenter's state. A master that lost the
/// script (SCRIPT FLUSH, or a replica promoted since) gets it again by EVAL,
/// without a refusal.
#[test]
fn the_stream_and_the_state_mirror_land_under_one_hash_tag() {
    const P: &str = "{cc}:state";
    let _g = core::exclusive();
    core::take_logs();
    let cc = Callcenter::new(2, 2);
    cc.serve();
    let cluster = Cluster::start(&[]);
    // The README's least-privilege user for the cluster, on every node (a
    // cluster does not share ACLs).
    for i in 0..6 {
        let mut args: Vec<&str> = ACL.split_whitespace().skip(2).collect();
        args[0] = "cc_events";
        args[2] = ">s3cret";
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg(&args)
            .query::<()>(&mut cluster.con(i))
            .unwrap();
    }
    let module = load(
        &cluster,
        None,
        &[
            ("state", "true"),
            ("state-prefix", P),
            ("stream", "{cc}:stream"),
            ("events", "all"),
            ("username", "cc_events"),
            ("password", "s3cret"),
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
        !logged("NOSCRIPT") && !logged("Redis refused"),
        "the EVAL fallback is silent: {:?}",
        core::logs()
    );
    // Every key of the mirror is on the owner: nothing went elsewhere.
    for k in ["agents", "queues", "meta"] {
        let n: i64 = con.exists(format!("{P}:{k}")).unwrap();
        assert_eq!(n, 1, "{P}:{k}");
    }
    assert_eq!(status_line("dropped"), 0);
    // The user can do nothing else: not even read the mirror.
    let client = redis::Client::open(format!(
        "redis://cc_events:s3cret@127.0.0.1:{}/",
        cluster.port(owner)
    ))
    .unwrap();
    let e = client
        .get_connection()
        .unwrap()
        .hgetall::<_, BTreeMap<String, String>>(format!("{P}:agents"))
        .unwrap_err();
    assert_eq!(e.code(), Some("NOPERM"), "{e}");
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
    const KEY: &str = "{cc}:failover";
    const RATE: u32 = 200;
    let _g = core::exclusive();
    core::take_logs();
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

    let firing = Firing::start("f", RATE);
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
    let times = firing.stop();
    let fired = times.len();
    assert!(
        wait_until(WAIT, || status_line("published") == fired as u64),
        "published {} of {fired}",
        status_line("published")
    );

    let got = stream_events(&cluster, heir, KEY, "f");
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

/// Resharding under load: the stream's slot moves to another master while
/// events flow. During the move the old master answers ASK for the stream
/// (already migrated), then MOVED once the slot is the new master's. The
/// crate follows both: every event lands once, in order, on the new master,
/// with no error logged.
#[test]
fn moving_the_streams_slot_to_another_master_follows_ask_and_moved() {
    const KEY: &str = "{mv}:stream";
    const RATE: u32 = 200;
    let _g = core::exclusive();
    core::take_logs();
    let cluster = Cluster::start(&[]);
    let slot = cluster.slot_of(KEY);
    let from = cluster.master_for(KEY);
    let to = (0..6).find(|&i| i != from && cluster.is_master(i)).unwrap();
    let view = cluster.nodes_view();
    let id = |i: usize| {
        let port = cluster.port(i);
        view.iter().find(|n| n.port == port).unwrap().id.clone()
    };
    let (from_id, to_id) = (id(from), id(to));
    let module = load(&cluster, None, &[("channel", ""), ("stream", KEY)]);
    let firing = Firing::start("m", RATE);
    assert!(wait_until(WAIT, || status_line("published") >= 50));

    let setslot = |i: usize, how: &str, node: &str| {
        redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg(how)
            .arg(node)
            .query::<()>(&mut cluster.con(i))
            .unwrap()
    };
    setslot(to, "IMPORTING", &from_id);
    setslot(from, "MIGRATING", &to_id);
    redis::cmd("MIGRATE")
        .arg("127.0.0.1")
        .arg(cluster.port(to))
        .arg("")
        .arg(0)
        .arg(5000)
        .arg("KEYS")
        .arg(KEY)
        .query::<()>(&mut cluster.con(from))
        .unwrap();
    // While the slot is half moved, the old master sends the module on with ASK.
    let at = status_line("published");
    assert!(wait_until(WAIT, || status_line("published") >= at + 50));
    for i in [to, from] {
        setslot(i, "NODE", &to_id);
    }
    for i in (0..6).filter(|&i| i != to && i != from && cluster.is_master(i)) {
        setslot(i, "NODE", &to_id);
    }
    let at = status_line("published");
    assert!(wait_until(WAIT, || status_line("published") >= at + 50));
    let fired = firing.stop().len();
    assert!(wait_until(WAIT, || status_line("published") == fired as u64));

    let got = stream_events(&cluster, to, KEY, "m");
    let (missing, dups) = losses(fired, &got);
    let (asks, moved) = (
        stat(&cluster, from, "errorstats", "errorstat_ASK"),
        stat(&cluster, from, "errorstats", "errorstat_MOVED"),
    );
    eprintln!(
        "slot {slot} moved under {RATE} events/s: fired {fired}, lost {}, duplicated {dups}; the old master answered ASK {asks} and MOVED {moved} times, the new one took ASKING {}",
        missing.len(),
        stat(&cluster, to, "commandstats", "cmdstat_asking"),
    );
    assert!(asks > 0 && moved > 0, "both redirects were met");
    assert_eq!((missing, dups), (vec![], 0), "every event once");
    assert_eq!(got, (0..fired).collect::<Vec<_>>(), "in order");
    let errors: Vec<_> = core::logs().into_iter().filter(|l| l.level == 3).collect();
    assert!(errors.is_empty(), "{errors:?}");
    module.unload();
}

/// A master that hangs (SIGSTOP: its sockets stay open, nothing answers)
/// cannot hold unload past shutdown-flush-ms, even with io-timeout-ms and
/// connect-timeout-ms far longer: every node operation the crate makes is
/// bounded by the worker's deadlines.
#[test]
fn unload_returns_within_shutdown_flush_ms_while_a_master_hangs() {
    const FLUSH_MS: u64 = 500;
    let _g = core::exclusive();
    core::take_logs();
    let cluster = Cluster::start(&[]);
    let owner = cluster.master_for("callcenter_events");
    let module = load(
        &cluster,
        None,
        &[
            ("io-timeout-ms", "30000"),
            ("connect-timeout-ms", "30000"),
            ("shutdown-flush-ms", &FLUSH_MS.to_string()),
        ],
    );
    core::fire(&mut status_event("first"));
    assert!(wait_until(WAIT, || status_line("published") == 1));
    cluster.nodes[owner].as_ref().unwrap().pause();
    for i in 0..50 {
        core::fire(&mut status_event(&format!("a{i}")));
    }
    // The worker has written the batch and waits for replies that never come.
    assert!(wait_until(WAIT, || status_line("queued") == 50));
    let started = Instant::now();
    module.unload();
    let took = started.elapsed();
    eprintln!(
        "hung master, io-timeout-ms 30000, shutdown-flush-ms {FLUSH_MS}: unload took {took:?}"
    );
    assert!(
        took < Duration::from_millis(FLUSH_MS + 500),
        "unload took {took:?}"
    );
    assert!(
        logged("1 events published, 50 lost (0 dropped because the queue was full, 50 not published when shutdown-flush-ms ran out"),
        "{:#?}",
        core::logs()
    );
}

/// The README's consumer, `examples/cluster_ssubscribe.py` run by python3
/// with redis-py (Debian's 4.3): it finds the channel's shard from a seed
/// node, SSUBSCRIBEs there, and prints every event.
#[test]
#[cfg_attr(
    not(python_redis),
    ignore = "needs python3 with redis-py (Debian: apt-get install python3-redis), then cargo clean -p mod_cc_events"
)]
fn the_readme_ssubscribe_consumer_gets_every_event() {
    const N: usize = 20;
    let _g = core::exclusive();
    core::take_logs();
    let cluster = Cluster::start(&[]);
    let owner = cluster.master_for("callcenter_events");
    let module = load(&cluster, None, &[("sharded-pubsub", "true")]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/cluster_ssubscribe.py"
    );
    // Seeded from a node that does not own the channel: the script must look it up.
    let seed = (0..6).find(|&i| i != owner).unwrap();
    let mut child = std::process::Command::new(env!("CC_EVENTS_PYTHON"))
        .arg(script)
        .arg(format!("127.0.0.1:{}", cluster.port(seed)))
        .arg("callcenter_events")
        .arg(N.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut admin = cluster.con(owner);
    let subscribed = wait_until(WAIT, || {
        let (_, n): (String, i64) = redis::cmd("PUBSUB")
            .arg("SHARDNUMSUB")
            .arg("callcenter_events")
            .query(&mut admin)
            .unwrap();
        n >= 1
    });
    if !subscribed {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the script did not SSUBSCRIBE within {WAIT:?}");
    }
    for i in 0..N {
        core::fire(&mut status_event(&format!("py-{i}")));
    }
    let mut status = None;
    let done = wait_until(WAIT, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if !done {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the script did not get {N} events within {WAIT:?}");
    }
    assert!(status.unwrap().success());
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    let got: Vec<String> = out.lines().map(agent_of).collect();
    let want: Vec<String> = (0..N).map(|i| format!("py-{i}")).collect();
    assert_eq!(got, want);
    module.unload();
}

/// Throughput, for the README: 20,000 events fired at once, each a PUBLISH
/// and an XADD, until all are confirmed; against one standalone server, then
/// a cluster with everything under one hash tag (the whole batch is one run,
/// one pipeline), then with a channel per agent (the PUBLISHes' slots differ,
/// so runs are short and a batch takes a round trip per run).
#[test]
#[ignore = "a measurement: cargo test --release --test cluster -- --ignored --nocapture"]
fn throughput_standalone_and_cluster() {
    const N: usize = 20_000;
    let measure = |what: &str, params: &[(&str, &str)]| {
        let mut p = vec![("queue-size", "30000"), ("stream-maxlen", "100000")];
        p.extend_from_slice(params);
        harness::write_config(&p);
        let module = LoadedModule::load().expect("load");
        core::fire(&mut status_event("warm-up"));
        assert!(wait_until(WAIT, || status_line("published") == 1));
        let mut events: Vec<_> = (0..N).map(|i| status_event(&format!("t-{i}"))).collect();
        let t = Instant::now();
        for ev in &mut events {
            core::fire(ev);
        }
        assert!(wait_until(Duration::from_secs(60), || status_line(
            "published"
        ) == N as u64 + 1));
        let took = t.elapsed();
        eprintln!(
            "{what}: {N} events in {took:?}, {:.0} events/s",
            N as f64 / took.as_secs_f64()
        );
        module.unload();
    };
    let _g = core::exclusive();
    core::take_logs();
    {
        let redis = harness::redis::RedisServer::start();
        let port = redis.port.to_string();
        measure(
            "standalone, channel + stream",
            &[("port", &port), ("stream", "cc_stream")],
        );
    }
    let cluster = Cluster::start(&[]);
    let seeds = cluster.seeds(None);
    let base = [("cluster", "true"), ("cluster-nodes", seeds.as_str())];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut p = base.to_vec();
        p.extend_from_slice(extra);
        p
    };
    measure(
        "cluster, channel + stream under one hash tag",
        &with(&[("channel", "{cc}:events"), ("stream", "{cc}:stream")]),
    );
    measure(
        "cluster, a channel per agent + one stream",
        &with(&[("channel", "cc:{agent}"), ("stream", "{cc}:stream")]),
    );
}

/// TLS to every node (`tls=true` with `cluster=true`): six nodes with a
/// `tls-port`, the bus and replication over TLS too, the module given only
/// the TLS ports. Its node connections shake hands by the address the
/// cluster announces (127.0.0.1, in the certificate). Events are published
/// and written to the stream, and `CLIENT LIST` on each master shows the
/// module's connection on its TLS port.
#[test]
fn over_tls_events_are_published_and_the_stream_is_written_on_every_master() {
    let _g = core::exclusive();
    core::take_logs();
    let certs = harness::tls::Certs::make();
    let cluster = Cluster::start_tls(&[], Some(&certs));
    let seeds: Vec<String> = cluster
        .tls_ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let seeds = seeds.join(",");
    let ca = certs.path("ca.crt");
    // A subscriber on a replica: PUBLISH crosses the (TLS) cluster bus.
    let replica = (0..cluster.nodes.len())
        .find(|&i| !cluster.is_master(i))
        .unwrap();
    let sub = Subscriber::new(
        cluster.nodes[replica].as_ref().unwrap(),
        "callcenter_events",
    );
    // One stream per master's slots, so that every master is written to.
    let keys = ["{a}:stream", "{b}:stream", "{c}:stream"];
    let masters: std::collections::BTreeSet<usize> =
        keys.iter().map(|k| cluster.master_for(k)).collect();
    assert_eq!(masters.len(), 3, "the three keys are on three masters");
    for (i, key) in keys.iter().enumerate() {
        harness::write_config(&[
            ("cluster", "true"),
            ("cluster-nodes", &seeds),
            ("reconnect-max-ms", "200"),
            ("tls", "true"),
            ("tls-ca-file", &ca),
            ("stream", key),
        ]);
        let module = LoadedModule::load().expect("load");
        const N: usize = 20;
        let t = Instant::now();
        for e in 0..N {
            core::fire(&mut status_event(&format!("t{i}-{e}")));
        }
        let got: Vec<String> = sub.take(N, WAIT).iter().map(|p| agent_of(p)).collect();
        let want: Vec<String> = (0..N).map(|e| format!("t{i}-{e}")).collect();
        assert_eq!(got, want, "every event over TLS, in order");
        let m = cluster.master_for(key);
        assert!(
            wait_until(WAIT, || stream_events(&cluster, m, key, &format!("t{i}"))
                == (0..N).collect::<Vec<_>>()),
            "{key} on node {m}: {:?}",
            stream_events(&cluster, m, key, &format!("t{i}"))
        );
        eprintln!(
            "cluster over TLS: {N} events published and in {key} within {:?}",
            t.elapsed()
        );
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query(&mut cluster.con(m))
            .unwrap();
        let tls_port = cluster.tls_ports[m];
        assert!(
            list.lines().any(|l| l.contains("name=mod_cc_events")
                && l.contains(&format!("laddr=127.0.0.1:{tls_port} "))),
            "the module's connection to node {m} is on its TLS port {tls_port}:\n{list}"
        );
        module.unload();
    }
    assert!(
        logged("connected to Redis at cluster 127.0.0.1:") && logged("(3 masters) tls"),
        "{:?}",
        core::logs()
    );
}
