//! The wallboard demo: a redis-server, the module loaded into the FreeSWITCH
//! host harness with the state mirror and a stream, the wallboard, and the
//! recorded call-center scenario replayed at a human pace, in a loop.
//!
//!     scripts/wallboard-demo.sh
//!     cargo run --release -p cc-wallboard --example wallboard-demo
//!
//! The wallboard's flags come from the environment as usual
//! (CC_WALLBOARD_LISTEN, CC_WALLBOARD_TOKEN, ...); Redis is the demo's own.

#[path = "../../tests/harness/mod.rs"]
mod harness;
#[path = "../tests/wallboard/scenario.rs"]
mod scenario;

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use harness::core::{self, LoadedModule};
use harness::fixtures;
use harness::redis::RedisServer;

/// Between two recorded events: slow enough to watch each change.
const PACE: Duration = Duration::from_millis(1500);

fn main() {
    let redis = RedisServer::start();
    harness::state::serve_point("01-start");
    harness::config_for(
        redis.port,
        &[("state", "true"), ("stream", "callcenter_stream")],
    );
    let module = LoadedModule::load()
        .unwrap_or_else(|e| panic!("could not load {}: {e:?}", core::module_path().display()));
    fixtures::add_member_sessions();
    println!("== redis-server on 127.0.0.1:{}, mod_cc_events loaded with state=true and stream=callcenter_stream", redis.port);

    let port = redis.port.to_string();
    let cfg = cc_wallboard::Config::parse_from(["cc-wallboard", "--redis-port", &port]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt.block_on(async {
        match tokio::net::TcpListener::bind(cfg.listen).await {
            Ok(l) => l,
            Err(e) => {
                println!(
                    "== {} is taken ({e}); using a free port instead",
                    cfg.listen
                );
                tokio::net::TcpListener::bind((cfg.listen.ip(), 0))
                    .await
                    .unwrap()
            }
        }
    });
    let addr = listener.local_addr().unwrap();
    let token = cfg
        .token
        .clone()
        .map(|t| format!("?token={t}"))
        .unwrap_or_default();
    rt.spawn(cc_wallboard::serve(listener, cfg));
    // Ctrl-C ends the loop, so that the module unloads and redis-server stops.
    let stop = Arc::new(AtomicBool::new(false));
    let on_stop = stop.clone();
    rt.spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_stop.store(true, SeqCst);
    });
    println!("== the wallboard: open http://{addr}/{token} in a browser (Ctrl-C to stop)");

    let events = fixtures::events();
    let mut round = 0u64;
    'demo: while !stop.load(SeqCst) {
        println!(
            "== replaying the {} recorded callcenter::info events (round {})",
            events.len(),
            round + 1
        );
        for f in &events {
            // Sequences keep growing from one round to the next.
            let f = scenario::retimed(f, round * 1000);
            let h = |n: &str| f.header(n).unwrap_or_default();
            println!(
                "   #{:<5} {:<22} {} {}",
                h("Event-Sequence"),
                h("CC-Action"),
                h("CC-Agent"),
                h("CC-Agent-Status") + &h("CC-Agent-State")
            );
            core::fire(&mut f.event());
            let until = Instant::now() + PACE;
            while Instant::now() < until {
                if stop.load(SeqCst) {
                    break 'demo;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // mod_callcenter back as it was at the start, and the mirror rebuilt
        // from it: the board starts over.
        harness::state::serve_point("01-start");
        let _ = core::api("cc_events", "reload");
        round += 1;
    }
    println!("== stopping");
    module.unload();
}
