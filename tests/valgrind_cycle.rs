//! The load → traffic → `cc_events status` → unload cycle that tests/valgrind.sh
//! runs under valgrind memcheck. Ignored in a plain `cargo test`: without
//! valgrind watching it checks nothing lifecycle.rs does not already check.
//!
//!     bash tests/valgrind.sh
//!
//! Every other load is done from a thread that exits right after, as when
//! FreeSWITCH loads a module from an event-socket or fs_cli thread.

mod harness;

use harness::common::worker_threads;

use std::collections::HashSet;
use std::time::Duration;

use harness::core::{self, LoadedModule, OwnedEvent};
use harness::fixtures;
use harness::redis::{wait_until, RedisServer, Subscriber};

/// Generous: everything runs 20 to 50 times slower under memcheck.
const WAIT: Duration = Duration::from_secs(120);
const CYCLES: usize = 20;
const FIRING_THREADS: usize = 3;

fn counter(status: &str, name: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {status}"))
}

#[test]
#[ignore = "run by tests/valgrind.sh under valgrind"]
fn load_traffic_status_unload_cycles() {
    let _g = core::exclusive();
    let redis = RedisServer::start();
    harness::config_for(redis.port, &[]);
    let sub = Subscriber::new(&redis, "callcenter_events");
    let expected: HashSet<String> =
        std::fs::read_to_string(fixtures::dir().join("expected-payloads.txt"))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
    // What one pass over the recorded events publishes (13 payloads, see tests/payloads.rs).
    let per_pass = std::fs::read_to_string(fixtures::dir().join("expected-payloads.txt"))
        .unwrap()
        .lines()
        .count();

    for cycle in 0..CYCLES {
        // The member channels the Offering/Connected events look up, live again
        // (their pools hold the values copied by the previous cycle's lookups).
        fixtures::add_member_sessions();
        let from_thread = cycle % 2 == 1;
        let module = if from_thread {
            std::thread::spawn(LoadedModule::load)
                .join()
                .expect("loading thread")
        } else {
            LoadedModule::load()
        }
        .unwrap_or_else(|e| panic!("cycle {cycle}: load: {e:?}"));

        // Traffic: every recorded event, from several threads at once.
        let firing: Vec<_> = (0..FIRING_THREADS)
            .map(|_| {
                let mut events: Vec<OwnedEvent> =
                    fixtures::events().iter().map(|f| f.event()).collect();
                std::thread::spawn(move || {
                    for ev in &mut events {
                        core::fire(ev);
                    }
                })
            })
            .collect();
        for f in firing {
            f.join().expect("firing thread");
        }
        let want = per_pass * FIRING_THREADS;
        for msg in sub.take(want, WAIT) {
            assert!(expected.contains(&msg), "cycle {cycle}: unexpected {msg}");
        }
        // The subscriber can see a message before the worker has read Redis's reply.
        assert!(
            wait_until(WAIT, || {
                let st = core::api("cc_events", "status").unwrap();
                counter(&st, "published:") == want as u64 && counter(&st, "queued:") == 0
            }),
            "cycle {cycle}: {}",
            core::api("cc_events", "status").unwrap()
        );
        let status = core::api("cc_events", "status").unwrap();
        assert!(
            status.contains("redis:      connected"),
            "cycle {cycle}: {status}"
        );
        assert_eq!(counter(&status, "dropped:"), 0, "cycle {cycle}: {status}");

        assert_eq!(module.unload(), 0, "cycle {cycle}: unload");
        assert_eq!(worker_threads(), 0, "cycle {cycle}: worker left running");
        assert_eq!(core::bound_callbacks(), 0, "cycle {cycle}: callback bound");
        assert!(sub.drain().is_empty(), "cycle {cycle}: extra messages");
        eprintln!(
            "cycle {cycle}: loaded from {}, {want} published",
            if from_thread {
                "a thread that exited"
            } else {
                "the test thread"
            }
        );
    }
    assert_eq!(core::session_locks_held(), 0);
    assert_eq!(core::open_xml_trees(), 0);
    assert!(
        !core::logs().iter().any(|l| l.text.contains("panic")),
        "no panics"
    );
    core::clear_sessions();
}
