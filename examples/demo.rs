//! The quick-start demo: a real redis-server, the built module loaded into the
//! FreeSWITCH host harness, the recorded call-center scenario replayed into it,
//! and what a Redis subscriber receives.
//!
//!     cargo run --example demo

#[path = "../tests/harness/mod.rs"]
mod harness;

use std::time::Duration;

use harness::core::{self, LoadedModule};
use harness::fixtures;
use harness::redis::{RedisServer, Subscriber};

fn main() {
    let redis = RedisServer::start();
    println!("== redis-server started on 127.0.0.1:{}", redis.port);
    // The live state mirror too, seeded from mod_callcenter's recorded JSON replies.
    harness::state::serve_point("01-start");
    harness::config_for(redis.port, &[("state", "true")]);
    let sub = Subscriber::new(&redis, "callcenter_events");
    println!("== subscribed to 'callcenter_events' (like the Python example in README.md)");

    core::echo_logs(true);
    let module = LoadedModule::load()
        .unwrap_or_else(|e| panic!("could not load {}: {e:?}", core::module_path().display()));
    core::echo_logs(false);
    fixtures::add_member_sessions();
    // The recorded replies are mod_callcenter before the scenario: seed from
    // them first, as a real mod_callcenter would have been read before its
    // events (an event captured before a seed is taken as already in it).
    harness::redis::wait_until(Duration::from_secs(5), || {
        core::api("cc_events", "state")
            .unwrap_or_default()
            .contains("mod_callcenter: read")
    });

    let events = fixtures::events();
    println!(
        "== replaying {} callcenter::info events recorded from FreeSWITCH 1.10.12 mod_callcenter",
        events.len()
    );
    let mut expected = 0;
    for f in &events {
        let action = f.header("CC-Action").unwrap_or_default();
        let published = matches!(
            action.as_str(),
            "agent-offering" | "bridge-agent-start" | "agent-status-change"
        );
        expected += usize::from(published);
        let state_only = !published && !action.ends_with("-get") && action != "agent-max-no-answer";
        println!(
            "   fire #{:<4} {:<22} {}",
            f.header("Event-Sequence").unwrap_or_default(),
            action,
            if published {
                "-> published, and applied to the state mirror"
            } else if state_only {
                "-> applied to the state mirror"
            } else {
                "(ignored)"
            }
        );
        core::fire(&mut f.event());
    }

    println!("== the subscriber received {expected} messages:");
    for msg in sub.take(expected, Duration::from_secs(10)) {
        println!("{msg}");
    }

    // Redis forwards a message to subscribers before the worker reads its reply;
    // wait (bounded) until the counters have caught up.
    harness::redis::wait_until(Duration::from_secs(5), || {
        core::api("cc_events", "status")
            .unwrap_or_default()
            .contains("queued:     0 of")
    });
    println!("== fs_cli> cc_events status");
    print!("{}", core::api("cc_events", "status").unwrap_or_default());
    println!("== fs_cli> cc_events state");
    print!("{}", core::api("cc_events", "state").unwrap_or_default());
    let mut con = redis.connection();
    let areski: Option<String> =
        redis::Commands::hget(&mut con, "cc_state:agents", "tenant-1@areski").ok();
    println!("== redis-cli HGET cc_state:agents tenant-1@areski");
    println!("{}", areski.unwrap_or_default());
    core::echo_logs(true);
    module.unload();
    println!("== module unloaded; done");
}
