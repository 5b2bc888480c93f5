//! `cc_events reload`, `cc_events status json` and `cc_events test` through
//! the harness, against real redis-servers.

mod harness;

use harness::common::{agent_of, config, status_event};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use harness::core::{self, LoadedModule};
use harness::redis::{wait_until, RedisServer, Subscriber};

const WAIT: Duration = Duration::from_secs(20);

fn reload() -> String {
    core::api("cc_events", "reload").unwrap()
}

#[test]
fn reload_under_traffic_from_four_threads_loses_and_duplicates_nothing() {
    let _g = core::exclusive();
    let redis = RedisServer::start();
    config(redis.port, &[("channel", "cc_a"), ("queue-size", "20000")]);
    let sub_a = Subscriber::new(&redis, "cc_a");
    let sub_b = Subscriber::new(&redis, "cc_b");
    let module = LoadedModule::load().expect("load");

    const THREADS: usize = 4;
    const PER_THREAD: usize = 2500;
    let reloaded = Arc::new(AtomicBool::new(false));
    let firing: Vec<_> = (0..THREADS)
        .map(|t| {
            let reloaded = reloaded.clone();
            std::thread::spawn(move || {
                let mut first_after = None;
                for i in 0..PER_THREAD {
                    if first_after.is_none() && reloaded.load(SeqCst) {
                        first_after = Some(i);
                    }
                    core::fire(&mut status_event(&format!("t{t}-{i}")));
                    if i % 100 == 0 {
                        // Pacing, so that the reload lands mid-stream.
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                first_after
            })
        })
        .collect();
    // Mid-stream: a new channel and format.
    let published = || {
        let s = core::api("cc_events", "status").unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("published:"))
            .unwrap()
            .trim()
            .parse::<usize>()
            .unwrap()
    };
    assert!(wait_until(WAIT, || published() > 1000));
    config(
        redis.port,
        &[
            ("channel", "cc_b"),
            ("format", "envelope"),
            ("queue-size", "20000"),
        ],
    );
    let reply = reload();
    reloaded.store(true, SeqCst);
    assert!(reply.starts_with("+OK reloaded: "), "{reply}");
    assert!(reply.contains("connection settings unchanged"), "{reply}");
    let first_after: Vec<Option<usize>> = firing.into_iter().map(|f| f.join().unwrap()).collect();

    let total = THREADS * PER_THREAD;
    assert!(wait_until(WAIT, || published() == total));
    let (mut a, mut b) = (Vec::new(), Vec::new());
    assert!(wait_until(WAIT, || {
        a.extend(sub_a.drain());
        b.extend(sub_b.drain());
        a.len() + b.len() >= total
    }));
    assert!(
        !a.is_empty() && !b.is_empty(),
        "a {} b {}",
        a.len(),
        b.len()
    );
    if let Some(p) = b.iter().find(|p| !p.starts_with("{\"event\":")) {
        panic!("cc_b has envelopes only, not {p}");
    }
    assert!(a.iter().all(|p| p.starts_with("{\"Agent-Status-Change:\"")));
    let mut seen: HashMap<String, &str> = HashMap::new();
    for (ch, list) in [("a", &a), ("b", &b)] {
        for p in list.iter() {
            assert!(seen.insert(agent_of(p), ch).is_none(), "duplicate {p}");
        }
    }
    assert_eq!(seen.len(), total, "nothing lost");
    // Every event fired after the reload returned went out with the new settings.
    for (t, first) in first_after.iter().enumerate() {
        let first = first.expect("the reload happened while every thread was firing");
        for i in first..PER_THREAD {
            assert_eq!(seen[&format!("t{t}-{i}")], "b", "t{t}-{i}");
        }
    }
    module.unload();
}

#[test]
fn an_invalid_reload_keeps_the_running_settings_and_names_the_param() {
    let _g = core::exclusive();
    core::take_logs();
    let redis = RedisServer::start();
    config(redis.port, &[("channel", "cc_a")]);
    let sub = Subscriber::new(&redis, "cc_a");
    let module = LoadedModule::load().expect("load");
    let before = core::api("cc_events", "status").unwrap();

    config(
        redis.port,
        &[
            ("channel", "cc_b"),
            ("events", "agent-offering,agent-bogus"),
        ],
    );
    let reply = reload();
    assert!(
        reply.starts_with("-ERR cc_events.conf: param 'events' has invalid value"),
        "{reply}"
    );
    assert!(
        reply.contains("'agent-bogus' is not a mod_callcenter CC-Action"),
        "{reply}"
    );
    assert!(
        reply.contains("agent-offering, bridge-agent-start"),
        "lists the valid ones: {reply}"
    );
    assert!(
        reply.contains("the running settings are unchanged"),
        "{reply}"
    );
    assert!(core::logs()
        .iter()
        .any(|l| l.level == 3 && l.text.contains("param 'events'")));

    core::fire(&mut status_event("still-a"));
    assert_eq!(agent_of(&sub.take(1, WAIT)[0]), "still-a");
    let after = core::api("cc_events", "status").unwrap();
    let channel = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("channel:"))
            .unwrap()
            .to_string()
    };
    assert_eq!(channel(&before), channel(&after));
    module.unload();
}

#[test]
fn a_reload_that_changes_the_connection_reconnects_to_the_new_redis() {
    let _g = core::exclusive();
    let old = RedisServer::start();
    let new = RedisServer::start();
    config(old.port, &[]);
    let module = LoadedModule::load().expect("load");
    let sub = Subscriber::new(&new, "callcenter_events");
    config(new.port, &[]);
    let reply = reload();
    assert!(
        reply.contains("connection settings changed: reconnecting"),
        "{reply}"
    );
    assert!(wait_until(WAIT, || core::api("cc_events", "status")
        .unwrap()
        .contains(&format!("connected (127.0.0.1:{} db 0)", new.port))));
    core::fire(&mut status_event("on-new"));
    assert_eq!(agent_of(&sub.take(1, WAIT)[0]), "on-new");
    module.unload();
}

#[test]
fn test_publishes_a_marked_event_and_status_json_counts_it() {
    let _g = core::exclusive();
    let redis = RedisServer::start();
    config(redis.port, &[("events", "all")]);
    let sub = Subscriber::new(&redis, "callcenter_events");
    let module = LoadedModule::load().expect("load");
    let reply = core::api("cc_events", "test").unwrap();
    assert!(
        reply.starts_with("+OK test event Agent-Status-Change queued"),
        "{reply}"
    );
    let got = sub.take(1, WAIT);
    assert_eq!(
        got[0],
        r#"{"Agent-Status-Change:" : {"CC_Agent": "cc_events-test", "CC_Agent_Status": "Test"}}"#
    );
    let reply = core::api("cc_events", "test members-count").unwrap();
    assert!(
        reply.starts_with("+OK test event Members-Count queued"),
        "{reply}"
    );
    assert!(sub.take(1, WAIT)[0].contains(r#""CC_Test": "true""#));
    let reply = core::api("cc_events", "test agent-status-get").unwrap();
    assert!(
        reply.starts_with("-ERR 'agent-status-get' is not published"),
        "{reply}"
    );

    assert!(wait_until(WAIT, || {
        let json: serde_json::Value =
            serde_json::from_str(&core::api("cc_events", "status json").unwrap()).unwrap();
        json["published"] == 2
    }));
    let json: serde_json::Value =
        serde_json::from_str(&core::api("cc_events", "status json").unwrap()).unwrap();
    assert_eq!(json["connected"], true);
    assert_eq!(json["published_by_event"]["Agent-Status-Change"], 1);
    assert_eq!(json["published_by_event"]["Members-Count"], 1);
    assert_eq!(json["channel"], "callcenter_events");
    assert_eq!(json["format"], "seed");
    module.unload();
}
