//! Delivery guarantees: concurrency, Redis outages, a full queue.

mod harness;

use harness::common::{agent_of, status_event, status_line};

use std::collections::HashMap;
use std::time::Duration;

use harness::core::{self, LoadedModule, OwnedEvent};
use harness::redis::{free_port, wait_until, RedisServer, Subscriber};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn ten_thousand_events_from_four_threads_arrive_exactly_once_in_per_thread_order() {
    let _g = core::exclusive();
    let redis = RedisServer::start();
    harness::config_for(redis.port, &[("queue-size", "20000")]);
    let sub = Subscriber::new(&redis, "callcenter_events");
    let module = LoadedModule::load().expect("load");

    const THREADS: usize = 4;
    const PER_THREAD: usize = 2500;
    let firing: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                let mut events: Vec<OwnedEvent> = (0..PER_THREAD)
                    .map(|i| status_event(&format!("t{t}-{i}")))
                    .collect();
                for ev in &mut events {
                    core::fire(ev);
                }
            })
        })
        .collect();
    for f in firing {
        f.join().unwrap();
    }

    let got = sub.take(THREADS * PER_THREAD, WAIT);
    let mut next_per_thread: HashMap<String, usize> = HashMap::new();
    for p in &got {
        let agent = agent_of(p);
        let (t, i) = agent.split_once('-').unwrap();
        let expected = next_per_thread.entry(t.to_owned()).or_default();
        assert_eq!(
            i.parse::<usize>().unwrap(),
            *expected,
            "order within thread {t}"
        );
        *expected += 1;
    }
    assert_eq!(next_per_thread.len(), THREADS);
    assert!(next_per_thread.values().all(|&n| n == PER_THREAD));
    assert_eq!(status_line("received"), 10_000);
    // A subscriber can see a message before the worker has read Redis's reply.
    assert!(wait_until(WAIT, || status_line("published") == 10_000));
    assert_eq!(status_line("dropped"), 0);
    module.unload();
}

#[test]
fn redis_down_at_load_then_up_delivers_everything_queued_in_order() {
    let _g = core::exclusive();
    let port = free_port();
    // The module authenticates as an ACL user that the server only gets once the
    // subscriber is ready, so the first PUBLISH cannot race the SUBSCRIBE.
    harness::config_for(
        port,
        &[
            ("username", "ccevents"),
            ("password", "s3cret"),
            ("reconnect-min-ms", "10"),
        ],
    );
    let module = LoadedModule::load().expect("loads although Redis is down");
    for i in 0..500 {
        core::fire(&mut status_event(&format!("a{i}")));
    }
    // The worker's first connect attempt fails and is reported.
    let failed = wait_until(WAIT, || {
        !core::api("cc_events", "status")
            .unwrap()
            .contains("last error: none")
    });
    assert!(failed);
    let status = core::api("cc_events", "status").unwrap();
    assert!(
        status.contains("redis:      NOT connected (127.0.0.1:"),
        "{status}"
    );
    assert!(status.contains("user ccevents (password set)"), "{status}");
    assert!(!status.contains("s3cret"), "{status}");
    assert!(
        status.contains("cannot connect to Redis at 127.0.0.1:"),
        "{status}"
    );
    assert_eq!(status_line("queued"), 500);

    let redis = RedisServer::start_on(port);
    let sub = Subscriber::new(&redis, "callcenter_events");
    add_acl_user(&redis);

    let got = sub.take(500, WAIT);
    let agents: Vec<String> = got.iter().map(|p| agent_of(p)).collect();
    let expected: Vec<String> = (0..500).map(|i| format!("a{i}")).collect();
    assert_eq!(agents, expected);
    assert!(wait_until(WAIT, || status_line("queued") == 0));
    assert_eq!(status_line("dropped"), 0);
    let status = core::api("cc_events", "status").unwrap();
    assert!(status.contains("redis:      connected"), "{status}");
    module.unload();
}

#[test]
fn a_full_queue_counts_its_drops_exactly_and_warns() {
    let _g = core::exclusive();
    core::take_logs();
    let port = free_port(); // nothing listens here
    harness::config_for(port, &[("queue-size", "100"), ("shutdown-flush-ms", "50")]);
    let module = LoadedModule::load().expect("load");
    for i in 0..150 {
        core::fire(&mut status_event(&format!("a{i}")));
    }
    assert_eq!(status_line("received"), 150);
    assert_eq!(status_line("queued"), 100);
    assert_eq!(status_line("dropped"), 50);
    assert_eq!(status_line("published"), 0);
    let warned = wait_until(WAIT, || {
        core::logs()
            .iter()
            .any(|l| l.level == 4 && l.text.contains("queue full: dropped "))
    });
    assert!(warned, "{:?}", core::logs());

    module.unload();
    let logs = core::logs();
    assert!(
        logs.iter().any(|l| l
            .text
            .contains("0 events published, 150 lost (50 dropped because the queue was full, 100 not published when shutdown-flush-ms ran out)")),
        "{logs:?}"
    );
}

fn add_acl_user(redis: &RedisServer) {
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "ccevents", "on", ">s3cret", "+publish", "&*"])
        .query(&mut redis.connection())
        .unwrap();
}

#[test]
fn redis_restart_mid_stream_reconnects_and_keeps_order() {
    let _g = core::exclusive();
    let port = free_port();
    let mut redis = RedisServer::start_on(port);
    add_acl_user(&redis);
    harness::config_for(
        port,
        &[
            ("username", "ccevents"),
            ("password", "s3cret"),
            ("reconnect-min-ms", "10"),
        ],
    );
    let module = LoadedModule::load().expect("load");
    {
        let sub = Subscriber::new(&redis, "callcenter_events");
        core::fire(&mut status_event("before"));
        assert_eq!(agent_of(&sub.take(1, WAIT)[0]), "before");
    }
    redis.stop();
    for i in 0..200 {
        core::fire(&mut status_event(&format!("during{i}")));
    }
    // The restarted server knows the module's ACL user only once the subscriber
    // is in place, so no PUBLISH can race the SUBSCRIBE.
    let redis = RedisServer::start_on(port);
    let sub = Subscriber::new(&redis, "callcenter_events");
    add_acl_user(&redis);
    let got = sub.take(200, WAIT);
    let agents: Vec<String> = got.iter().map(|p| agent_of(p)).collect();
    let expected: Vec<String> = (0..200).map(|i| format!("during{i}")).collect();
    assert_eq!(agents, expected, "{:#?}", core::logs());
    assert!(wait_until(WAIT, || status_line("published") == 201));
    assert_eq!(status_line("reconnects"), 1);
    assert_eq!(status_line("dropped"), 0);
    drop(redis);
    module.unload();
}

#[test]
fn a_hung_redis_neither_hides_queued_events_nor_holds_up_unload() {
    let _g = core::exclusive();
    core::take_logs();
    let redis = RedisServer::start();
    harness::config_for(
        redis.port,
        &[
            ("io-timeout-ms", "200"),
            ("connect-timeout-ms", "200"),
            ("shutdown-flush-ms", "300"),
        ],
    );
    let module = LoadedModule::load().expect("load");
    assert!(wait_until(WAIT, || core::api("cc_events", "status")
        .unwrap()
        .contains("redis:      connected")));

    redis.pause();
    for i in 0..50 {
        core::fire(&mut status_event(&format!("a{i}")));
    }
    // The worker sent its batch and gave up waiting for the replies...
    assert!(wait_until(WAIT, || {
        core::api("cc_events", "status")
        .unwrap()
        .contains(
            &format!("Redis at 127.0.0.1:{} db 0 did not answer within io-timeout-ms (200 ms): it is stopped, overloaded or blocked by a slow command", redis.port)
        )
    }));
    // ...and the events it holds still count as queued, not as nothing.
    assert_eq!(status_line("queued"), 50);
    assert_eq!(status_line("published"), 0);

    // Unload waits for the flush time and one I/O timeout, not one per event
    // (50 x 200 ms before replies were read with one bound per batch).
    let started = std::time::Instant::now();
    module.unload();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "unload took {took:?}");
    assert!(
        core::logs().iter().any(|l| l
            .text
            .contains("0 events published, 50 lost (0 dropped because the queue was full, 50 not published when shutdown-flush-ms ran out")),
        "{:?}",
        core::logs()
    );
    redis.resume();
}
