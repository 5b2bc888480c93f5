//! Load, shutdown, configuration errors, the fs_cli command, and 100
//! unload/load cycles while events keep flowing.

mod harness;

use harness::common::worker_threads;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use harness::core::{self, LoadedModule, OwnedEvent};
use harness::fixtures;
use harness::redis::{wait_until, RedisServer, Subscriber};

const WAIT: Duration = Duration::from_secs(10);
const SWITCH_LOG_ERROR: i32 = 3;
const SWITCH_LOG_WARNING: i32 = 4;
const SWITCH_LOG_NOTICE: i32 = 5;
const SWITCH_LOG_INFO: i32 = 6;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn rss_kb() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4
}

#[test]
fn invalid_param_fails_the_load_with_one_error_line_naming_it() {
    let _g = core::exclusive();
    harness::write_config(&[("host", "127.0.0.1"), ("port", "not-a-port")]);
    core::take_logs();
    let err = LoadedModule::load().err().expect("load must fail");
    assert_eq!(err.status, 1, "SWITCH_STATUS_FALSE");
    let errors: Vec<_> = core::logs()
        .into_iter()
        .filter(|l| l.level <= SWITCH_LOG_ERROR)
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        errors[0].text,
        "cc_events.conf: param 'port' has invalid value 'not-a-port': use a whole number from 1 to 65535; mod_cc_events not loaded\n"
    );
    assert_eq!(core::bound_callbacks(), 0);
    assert_eq!(worker_threads(), 0);
    assert_eq!(core::open_xml_trees(), 0, "the config was freed");
}

#[test]
fn missing_config_means_defaults_with_a_notice_and_unknown_params_warn() {
    let _g = core::exclusive();
    core::set_config_file(None);
    core::take_logs();
    let module = LoadedModule::load().expect("defaults load");
    let logs = core::take_logs();
    assert!(logs.iter().any(|l| l.level == SWITCH_LOG_NOTICE
        && l.text
            .starts_with("cc_events.conf not found: using defaults")));
    let info: Vec<_> = logs
        .iter()
        .filter(|l| l.level == SWITCH_LOG_INFO && l.text.contains("loaded:"))
        .collect();
    assert_eq!(info.len(), 1);
    assert!(info[0].text.starts_with(&format!("mod_cc_events {} loaded: redis 127.0.0.1:6379 db 0 channel 'callcenter_events' format seed events seed queue-size 10000", env!("CARGO_PKG_VERSION"))));
    module.unload();

    harness::write_config(&[("redis-host", "x"), ("password", "topsecret")]);
    let module = LoadedModule::load().expect("unknown params do not fail the load");
    let logs = core::take_logs();
    assert!(logs
        .iter()
        .any(|l| l.level == SWITCH_LOG_WARNING
            && l.text.contains("unknown param 'redis-host' ignored")));
    assert!(
        logs.iter().all(|l| !l.text.contains("topsecret")),
        "{logs:?}"
    );
    module.unload();
}

#[test]
fn status_command_usage_and_tab_completion() {
    let _g = core::exclusive();
    let redis = RedisServer::start();
    harness::config_for(
        redis.port,
        &[
            ("channel", "cc_test"),
            ("password", ""),
            ("queue-size", "500"),
        ],
    );
    let sub = Subscriber::new(&redis, "cc_test");
    let before = core::completions().len();
    let module = LoadedModule::load().expect("load");
    let added = &core::completions()[before..];
    for sub in [
        "status",
        "status json",
        "reload",
        "state",
        "test",
        "test agent-offering",
    ] {
        assert!(
            added.contains(&format!("add cc_events {sub}")),
            "{sub}: {added:?}"
        );
    }

    let status_changes: Vec<_> = fixtures::events()
        .into_iter()
        .filter(|f| f.header("CC-Action").as_deref() == Some("agent-status-change"))
        .collect();
    assert_eq!(status_changes.len(), 8);
    for f in &status_changes {
        core::fire(&mut f.event());
    }
    sub.take(8, WAIT);
    assert!(wait_until(WAIT, || core::api("cc_events", "status")
        .unwrap()
        .contains("published:  8\n")));
    let out = core::api("cc_events", "status").unwrap();
    let expected = format!(
        "mod_cc_events {}\n\
         redis:      connected (127.0.0.1:{} db 0)\n\
         channel:    cc_test\n\
         received:   8\n\
         published:  8\n\
         dropped:    0\n\
         queued:     0 of 500\n\
         reconnects: 0\n\
         last error: none\n\
         by event:   Agent-Status-Change 8\n\
         state:      off\n",
        env!("CARGO_PKG_VERSION"),
        redis.port
    );
    assert_eq!(out, expected);

    let usage = "-USAGE: cc_events status [json] | state | reload | test [<CC-Action>]\n";
    assert_eq!(core::api("cc_events", "").unwrap(), usage);
    assert_eq!(core::api("cc_events", "stats").unwrap(), usage);
    assert_eq!(core::api("cc_events", "status extra").unwrap(), usage);

    module.unload();
    assert_eq!(core::completions().last().unwrap(), "del cc_events");
    assert!(
        core::api("cc_events", "status").is_none(),
        "command is gone after unload"
    );
}

#[test]
fn hundred_unload_load_cycles_under_traffic_leak_nothing() {
    let _g = core::exclusive();
    let redis = RedisServer::start();
    harness::config_for(redis.port, &[("shutdown-flush-ms", "500")]);
    fixtures::add_member_sessions();
    let sub = Subscriber::new(&redis, "callcenter_events");

    let stop = Arc::new(AtomicBool::new(false));
    let fired = Arc::new(AtomicU64::new(0));
    let firing: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            let fired = fired.clone();
            std::thread::spawn(move || {
                let mut events: Vec<OwnedEvent> =
                    fixtures::events().iter().map(|f| f.event()).collect();
                while !stop.load(SeqCst) {
                    for ev in &mut events {
                        core::fire(ev);
                    }
                    fired.fetch_add(events.len() as u64, SeqCst);
                }
            })
        })
        .collect();

    let fds_before = open_fds();
    let clients_before = redis.clients();
    let mut rss_after_10 = 0;
    let mut delivered = 0;
    for cycle in 0..100 {
        // The subscriber's backlog is the test's memory, not the module's; so are
        // the member sessions' pools, which grow with every lookup until the call
        // ends: end the calls and start them again.
        delivered += sub.drain().len();
        fixtures::add_member_sessions();
        let module = LoadedModule::load().expect("load");
        let seen = fired.load(SeqCst);
        // Let some events through this instance before unloading it.
        assert!(wait_until(WAIT, || fired.load(SeqCst) > seen + 45));
        assert_eq!(module.unload(), 0);
        assert_eq!(
            worker_threads(),
            0,
            "cycle {cycle}: worker thread left running"
        );
        assert_eq!(
            core::bound_callbacks(),
            0,
            "cycle {cycle}: callback left bound"
        );
        if cycle == 9 {
            rss_after_10 = rss_kb();
        }
    }
    stop.store(true, SeqCst);
    for f in firing {
        f.join().unwrap();
    }

    // Other tests' threads may close descriptors meanwhile, never open ours.
    assert!(
        open_fds() <= fds_before,
        "file descriptors (sockets) leaked"
    );
    assert!(
        wait_until(WAIT, || redis.clients() == clients_before),
        "Redis connections leaked"
    );
    assert_eq!(core::session_locks_held(), 0);
    assert_eq!(core::open_xml_trees(), 0);
    let growth = rss_kb().saturating_sub(rss_after_10);
    eprintln!("100 cycles: {delivered} events delivered, RSS growth after cycle 10: {growth} KiB");
    assert!(growth < 4 * 1024, "RSS grew {growth} KiB over 90 cycles");
    delivered += sub.drain().len();
    assert!(delivered > 0, "events were published during the cycles");
    assert!(
        !core::logs().iter().any(|l| l.text.contains("panic")),
        "no panics"
    );
    core::clear_sessions();
}

#[test]
fn the_shipped_sample_config_loads_and_equals_the_defaults() {
    let _g = core::exclusive();
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("conf/autoload_configs/cc_events.conf.xml");
    core::set_config_file(Some(&sample));
    core::take_logs();
    let module = LoadedModule::load().expect("sample config loads");
    let sample_logs = core::take_logs();
    module.unload();
    core::set_config_file(None);
    let module = LoadedModule::load().expect("defaults load");
    let default_logs = core::take_logs();
    module.unload();

    let loaded = |logs: &[core::LogLine]| -> Vec<String> {
        logs.iter()
            .filter(|l| l.text.contains(" loaded: "))
            .map(|l| l.text.clone())
            .collect()
    };
    assert_eq!(loaded(&sample_logs).len(), 1);
    assert_eq!(loaded(&sample_logs), loaded(&default_logs));
    assert!(
        !sample_logs
            .iter()
            .any(|l| l.text.starts_with("cc_events.conf")),
        "the sample has no unknown or invalid params: {sample_logs:?}"
    );
}
