//! Faults, with real redis-server processes that the tests kill, restart,
//! SIGSTOP and refuse with: order, bounded waits, exact drop counts, and what
//! the operator sees. Each test prints its figures (`--nocapture`); README's
//! reliability section quotes them.

mod harness;

use harness::common::{
    agent_of, assert_last_copies_in_order, config, status, status_event, status_line,
};

use std::time::{Duration, Instant};

use harness::core::{self, LoadedModule};
use harness::redis::{free_port, wait_until, RedisServer, Subscriber};

const WAIT: Duration = Duration::from_secs(20);
const SWITCH_LOG_ERROR: i32 = 3;
const SWITCH_LOG_WARNING: i32 = 4;
const SWITCH_LOG_INFO: i32 = 6;

/// The ACL rule README gives for the module's user, exactly.
const LEAST_PRIVILEGE: &[&str] = &[
    "resetchannels",
    "&callcenter_events",
    "-@all",
    "+publish",
    "+ping",
];

fn add_acl_user(redis: &RedisServer, rules: &[&str]) {
    let mut args = vec!["SETUSER", "ccevents", "on", ">s3cret"];
    args.extend_from_slice(rules);
    let _: () = redis::cmd("ACL")
        .arg(&args)
        .query(&mut redis.connection())
        .unwrap();
}

fn logs_at_or_above(level: i32) -> Vec<String> {
    core::logs()
        .into_iter()
        .filter(|l| l.level <= level)
        .map(|l| l.text)
        .collect()
}

/// Fires `status_event(prefix{i})` at about `rate` per second until `until`,
/// timing each callback. Returns the per-call durations.
fn fire_paced(prefix: &str, first: usize, rate: u32, until: Instant) -> (usize, Vec<Duration>) {
    let tick = Duration::from_secs(1) / rate;
    let mut next = Instant::now();
    let mut i = first;
    let mut costs = Vec::new();
    while Instant::now() < until {
        let mut ev = status_event(&format!("{prefix}{i}"));
        let t = Instant::now();
        core::fire(&mut ev);
        costs.push(t.elapsed());
        i += 1;
        next += tick;
        // Pacing the load, not synchronising with anything.
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    (i, costs)
}

/// At least `n` messages, then whatever else arrives until the stream is quiet.
fn receive_all(sub: &Subscriber, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < n {
        got.extend(sub.take(1, WAIT));
        got.extend(sub.drain());
    }
    // Quiet for 300 ms: anything still in flight has arrived.
    let mut quiet_since = Instant::now();
    wait_until(WAIT, || {
        let more = sub.drain();
        if !more.is_empty() {
            quiet_since = Instant::now();
        }
        got.extend(more);
        quiet_since.elapsed() > Duration::from_millis(300)
    });
    got
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p) as usize]
}

#[test]
fn kill_9_and_restart_every_event_that_fits_in_the_queue_arrives_in_order() {
    let _g = core::exclusive();
    core::take_logs();
    let port = free_port();
    let mut redis = RedisServer::start_on(port);
    add_acl_user(&redis, LEAST_PRIVILEGE);
    config(
        port,
        &[
            ("username", "ccevents"),
            ("password", "s3cret"),
            ("queue-size", "3000"),
        ],
    );
    let module = LoadedModule::load().expect("load");
    {
        let sub = Subscriber::new(&redis, "callcenter_events");
        for i in 0..100 {
            core::fire(&mut status_event(&format!("before{i}")));
        }
        assert_eq!(sub.take(100, WAIT).len(), 100);
    }
    redis.stop(); // SIGKILL
    for i in 0..2000 {
        core::fire(&mut status_event(&format!("during{i}")));
    }
    // The restarted server knows the module's user only once the subscriber
    // is in place, so no PUBLISH can race the SUBSCRIBE.
    let redis = RedisServer::start_on(port);
    let sub = Subscriber::new(&redis, "callcenter_events");
    let back = Instant::now();
    add_acl_user(&redis, LEAST_PRIVILEGE);
    let got = sub.take(2000, WAIT);
    let first_after = back.elapsed();
    let agents: Vec<String> = got.iter().map(|p| agent_of(p)).collect();
    let expected: Vec<String> = (0..2000).map(|i| format!("during{i}")).collect();
    assert_eq!(agents, expected);
    assert!(wait_until(WAIT, || status_line("queued") == 0));
    assert_eq!(status_line("dropped"), 0);
    assert_eq!(status_line("published"), 2100);
    // One error for the outage (per distinct reason), one info line for the recovery.
    let logs = core::logs();
    let recovered = logs
        .iter()
        .rposition(|l| l.level == SWITCH_LOG_INFO && l.text.starts_with("connected to Redis"));
    let failed = logs.iter().position(|l| l.level == SWITCH_LOG_ERROR);
    assert!(
        failed.is_some() && recovered > failed,
        "an error line, then the recovery line: {logs:#?}"
    );
    println!(
        "kill -9 + restart: 2000 of 2000 queued events delivered in order, 0 dropped, all in {first_after:?} after the server accepted the module's user"
    );
    module.unload();
}

#[test]
fn after_a_restart_the_module_reconnects_within_reconnect_max_ms() {
    let _g = core::exclusive();
    let port = free_port();
    let mut redis = RedisServer::start_on(port);
    config(port, &[]); // defaults: reconnect 100..1000 ms
    let module = LoadedModule::load().expect("load");
    assert!(wait_until(WAIT, || status().contains("redis:      connected")));
    redis.stop();
    // A long enough outage for the backoff to reach its cap (100+200+400+800 ms).
    assert!(wait_until(WAIT, || status().contains("cannot connect to Redis")));
    std::thread::sleep(Duration::from_secs(3));
    let redis = RedisServer::start_on(port);
    let accepting = Instant::now();
    let reconnected = wait_until(WAIT, || status().contains("redis:      connected"));
    let took = accepting.elapsed();
    assert!(reconnected);
    println!("plain restart: reconnected {took:?} after Redis accepted connections (reconnect-max-ms 1000)");
    // reconnect-max-ms is the longest wait; the margin is for a loaded CI machine.
    assert!(
        took < Duration::from_millis(1500),
        "reconnected {took:?} after Redis was back"
    );
    drop(redis);
    module.unload();
}

#[test]
fn a_ten_second_hang_neither_slows_the_callback_nor_leaves_the_worker_asleep_after_it() {
    let _g = core::exclusive();
    let redis = RedisServer::start();
    config(redis.port, &[("queue-size", "5000")]);
    let sub = Subscriber::new(&redis, "callcenter_events");
    let module = LoadedModule::load().expect("load");
    assert!(wait_until(WAIT, || status().contains("redis:      connected")));

    const RATE: u32 = 1000;
    let (n, mut before) = fire_paced("e", 0, RATE, Instant::now() + Duration::from_secs(1));
    redis.pause();
    let (n, mut during) = fire_paced("e", n, RATE, Instant::now() + Duration::from_secs(10));
    let dropped_at_resume = status_line("dropped");
    redis.resume();
    let (n, mut after) = fire_paced("e", n, RATE, Instant::now() + Duration::from_secs(2));
    let dropped_after_resume = status_line("dropped") - dropped_at_resume;
    assert!(wait_until(WAIT, || status_line("queued") == 0));

    let (b50, d50, d99) = (
        percentile(&mut before, 0.5),
        percentile(&mut during, 0.5),
        percentile(&mut during, 0.99),
    );
    let (dmax, a50) = (*during.last().unwrap(), percentile(&mut after, 0.5));
    println!(
        "10 s hang at {RATE}/s, queue-size 5000: callback p50 {b50:?} before, p50 {d50:?} / p99 {d99:?} / max {dmax:?} during, p50 {a50:?} after; {dropped_at_resume} dropped during the hang (queue full), {dropped_after_resume} in the 2 s after SIGCONT"
    );
    // The callback never waits for Redis: its cost during the hang is that of
    // a normal call (a blocked one would cost io-timeout-ms, 1 s).
    assert!(
        d50 <= b50 * 3 + Duration::from_micros(50),
        "p50 {b50:?} -> {d50:?}"
    );
    assert!(
        dmax < Duration::from_millis(100),
        "slowest callback {dmax:?}"
    );
    // The queue filled during the hang; once Redis is back the worker wakes
    // within reconnect-min-ms (100 ms, about 100 events at this rate).
    assert!(dropped_at_resume > 0, "the hang must have filled the queue");
    assert!(
        dropped_after_resume <= 150,
        "{dropped_after_resume} events dropped after Redis was back"
    );
    // Everything accepted arrives, in order; the batch in flight when Redis
    // froze is executed when it thaws and then sent again (the documented duplicate).
    let published = status_line("published") as usize;
    let ids: Vec<usize> = receive_all(&sub, published)
        .iter()
        .map(|p| agent_of(p)[1..].parse().unwrap())
        .collect();
    let dups = assert_last_copies_in_order(&ids);
    assert_eq!(ids.len() - dups, published);
    println!("  {published} published, {dups} duplicates, last copies in order");
    assert_eq!(published as u64 + status_line("dropped"), n as u64);
    module.unload();
}

#[test]
fn overflow_counts_drops_exactly_and_queued_never_exceeds_queue_size() {
    let _g = core::exclusive();
    let redis = RedisServer::start();
    config(
        redis.port,
        &[("queue-size", "100"), ("io-timeout-ms", "60000")],
    );
    let sub = Subscriber::new(&redis, "callcenter_events");
    let module = LoadedModule::load().expect("load");
    assert!(wait_until(WAIT, || status().contains("redis:      connected")));
    redis.pause();
    // The worker takes a batch off the queue and waits for Redis; the queue
    // refills behind it. Both together are what queue-size bounds.
    for i in 0..500 {
        core::fire(&mut status_event(&format!("a{i}")));
    }
    assert_eq!(status_line("received"), 500);
    assert_eq!(status_line("queued"), 100);
    assert_eq!(status_line("dropped"), 400);
    redis.resume();
    let got = sub.take(100, WAIT);
    let agents: Vec<String> = got.iter().map(|p| agent_of(p)).collect();
    let expected: Vec<String> = (0..100).map(|i| format!("a{i}")).collect();
    assert_eq!(agents, expected);
    assert!(wait_until(WAIT, || status_line("queued") == 0));
    assert_eq!(status_line("published"), 100);
    module.unload();
    assert!(
        core::logs().iter().any(|l| l.text.contains(
            "mod_cc_events stopped: 100 events published, 400 lost (400 dropped because the queue was full, 0 not published"
        )),
        "{:#?}",
        core::logs()
    );
}

/// Fires large events while another client blocks Redis with a script (BUSY
/// for everyone else) and then kills it, three times: each episode is one
/// error line and one recovery line, and nothing is lost or reordered.
#[test]
fn busy_replies_from_a_long_script_are_retried_in_order_with_one_error_line_per_episode() {
    let _g = core::exclusive();
    core::take_logs();
    let redis = RedisServer::start_with(free_port(), &["--busy-reply-threshold", "50"]);
    config(
        redis.port,
        &[
            ("queue-size", "100000"),
            ("reconnect-min-ms", "1"),
            ("reconnect-max-ms", "2"),
        ],
    );
    let sub = Subscriber::new(&redis, "callcenter_events");
    let module = LoadedModule::load().expect("load");
    assert!(wait_until(WAIT, || status().contains("redis:      connected")));

    // Fires until the three episodes are over, about 20,000 events a second.
    let pad = "x".repeat(900);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_firing = done.clone();
    let firing = std::thread::spawn(move || {
        let mut i = 0;
        while !stop_firing.load(std::sync::atomic::Ordering::SeqCst) || i < 10_000 {
            core::fire(&mut status_event(&format!("{i}-{pad}")));
            i += 1;
            if i % 20 == 0 {
                // Pacing the load, not synchronising.
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        i
    });
    let busy_lines = || {
        core::logs()
            .iter()
            .filter(|l| l.text.contains("refused a command: BUSY"))
            .count()
    };
    for _ in 0..3 {
        let seen = busy_lines();
        let mut blocker = redis.connection();
        let script = std::thread::spawn(move || {
            let _: redis::RedisResult<()> = redis::cmd("EVAL")
                .arg("while true do end")
                .arg(0)
                .query(&mut blocker);
        });
        assert!(
            wait_until(WAIT, || busy_lines() > seen),
            "the module never saw BUSY"
        );
        let mut admin = redis.connection();
        let killed = wait_until(WAIT, || {
            redis::cmd("SCRIPT")
                .arg("KILL")
                .query::<()>(&mut admin)
                .is_ok()
        });
        assert!(killed, "SCRIPT KILL did not succeed");
        script.join().unwrap();
        // Recovered (and said so) before the next script starts.
        let recovered = || {
            core::logs()
                .iter()
                .filter(|l| l.text.contains("accepts events again"))
                .count()
        };
        assert!(wait_until(WAIT, || recovered() > seen), "no recovery line");
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let n = firing.join().unwrap();
    assert!(wait_until(WAIT, || status_line("queued") == 0));
    assert_eq!(status_line("dropped"), 0);
    assert_eq!(status_line("published") as usize, n);

    let ids: Vec<usize> = receive_all(&sub, n)
        .iter()
        .map(|p| agent_of(p).split('-').next().unwrap().parse().unwrap())
        .collect();
    let duplicates = assert_last_copies_in_order(&ids);
    assert_eq!(ids.len() - duplicates, n);
    println!("BUSY x3 during {n} events: {duplicates} duplicates (events after a refused one that Redis had accepted, sent again), last copies in order");
    module.unload();
}

#[test]
fn an_idle_connection_closed_by_redis_timeout_is_reopened_quietly() {
    for idle_ping in ["1000", "0"] {
        let _g = core::exclusive();
        core::take_logs();
        let redis = RedisServer::start_with(free_port(), &["--timeout", "1"]);
        config(redis.port, &[("idle-ping-ms", idle_ping)]);
        let sub = Subscriber::new(&redis, "callcenter_events");
        let module = LoadedModule::load().expect("load");
        for round in 0..3 {
            core::fire(&mut status_event(&format!("r{round}")));
            assert_eq!(agent_of(&sub.take(1, WAIT)[0]), format!("r{round}"));
            // The quiet period is the scenario: Redis closes clients idle for over 1 s.
            std::thread::sleep(Duration::from_millis(3500));
        }
        let s = status();
        let reconnects = status_line("reconnects");
        println!("Redis timeout 1, idle-ping-ms {idle_ping}: 3 quiet periods of 3.5 s, {reconnects} quiet reconnects");
        assert!(s.contains("last error: none"), "{s}");
        assert_eq!(logs_at_or_above(SWITCH_LOG_WARNING), Vec::<String>::new());
        if idle_ping == "0" {
            assert!(reconnects >= 2, "Redis closed the idle connection: {s}");
        } else {
            assert_eq!(reconnects, 0, "PING kept the connection open: {s}");
        }
        module.unload();
    }
}

#[test]
fn unload_returns_within_shutdown_flush_ms_whatever_redis_does() {
    for flush_ms in [0u64, 1000] {
        let _g = core::exclusive();
        core::take_logs();
        let redis = RedisServer::start();
        let flush = flush_ms.to_string();
        config(
            redis.port,
            &[
                ("io-timeout-ms", "30000"),
                ("connect-timeout-ms", "30000"),
                ("shutdown-flush-ms", &flush),
            ],
        );
        let module = LoadedModule::load().expect("load");
        assert!(wait_until(WAIT, || status().contains("redis:      connected")));
        redis.pause();
        for i in 0..50 {
            core::fire(&mut status_event(&format!("a{i}")));
        }
        // The worker has written the batch and waits for replies that never come.
        assert!(wait_until(WAIT, || status_line("queued") == 50));
        let started = Instant::now();
        module.unload();
        let took = started.elapsed();
        println!(
            "hung Redis, io-timeout-ms 30000, shutdown-flush-ms {flush_ms}: unload took {took:?}"
        );
        assert!(
            took < Duration::from_millis(flush_ms + 500),
            "unload took {took:?}"
        );
        let logs = core::logs();
        assert!(
            logs.iter().any(|l| l.text.contains(
                "0 events published, 50 lost (0 dropped because the queue was full, 50 not published when shutdown-flush-ms ran out, of which "
            )),
            "{logs:#?}"
        );
        redis.resume();
    }
}

#[test]
fn a_hung_redis_is_reported_as_hung_and_a_dead_one_as_not_connected() {
    let _g = core::exclusive();
    let redis = RedisServer::start();
    redis.pause();
    config(redis.port, &[("connect-timeout-ms", "200")]);
    let module = LoadedModule::load().expect("load");
    let port = redis.port;
    assert!(
        wait_until(WAIT, || {
            status().contains(&format!(
            "Redis at 127.0.0.1:{port} db 0 accepted the connection but did not answer within connect-timeout-ms (200 ms): it is stopped, overloaded or blocked by a slow command"
        ))
        }),
        "{}",
        status()
    );
    assert!(status().contains("redis:      NOT connected"));
    redis.resume();
    assert!(wait_until(WAIT, || status().contains("redis:      connected")));

    // Killed while idle: status stops saying connected without any event.
    let mut redis = redis;
    redis.stop();
    assert!(
        wait_until(WAIT, || status().contains("redis:      NOT connected")),
        "{}",
        status()
    );
    module.unload();
}

#[test]
fn noperm_is_one_error_line_and_its_end_one_info_line() {
    let _g = core::exclusive();
    core::take_logs();
    let redis = RedisServer::start();
    add_acl_user(&redis, &["+publish", "+ping", "&other"]);
    config(
        redis.port,
        &[("username", "ccevents"), ("password", "s3cret")],
    );
    let sub = Subscriber::new(&redis, "callcenter_events");
    let module = LoadedModule::load().expect("load");
    for i in 0..20 {
        core::fire(&mut status_event(&format!("a{i}")));
    }
    assert!(wait_until(WAIT, || status().contains("NOPERM")));
    add_acl_user(&redis, &["&callcenter_events"]);
    let got = sub.take(20, WAIT);
    let agents: Vec<String> = got.iter().map(|p| agent_of(p)).collect();
    assert_eq!(agents, (0..20).map(|i| format!("a{i}")).collect::<Vec<_>>());
    // The recovery line follows the replies, which can trail the subscriber.
    assert!(wait_until(WAIT, || core::logs()
        .iter()
        .any(|l| l.text.contains("accepts events again"))));
    let logs = core::logs();
    let noperm: Vec<_> = logs.iter().filter(|l| l.text.contains("NOPERM")).collect();
    assert_eq!(noperm.len(), 1, "{logs:#?}");
    assert_eq!(noperm[0].level, SWITCH_LOG_ERROR);
    assert!(
        noperm[0]
            .text
            .starts_with("Redis refused a command: NOPERM"),
        "{}",
        noperm[0].text
    );
    assert!(logs
        .iter()
        .any(|l| l.level == SWITCH_LOG_INFO && l.text.contains("accepts events again")));
    module.unload();
}

/// Another client takes the module's channel permission away and gives it
/// back, again and again, while large pipelined batches are in flight: Redis
/// runs that client's commands between the chunks it reads of a batch, so
/// replies go OK, NOPERM, ..., OK within one batch. Deterministic enough to
/// require that the case happened (duplicates > 0).
#[test]
fn an_error_reply_mid_batch_never_lets_a_stale_event_be_the_last_published() {
    let _g = core::exclusive();
    core::take_logs();
    let redis = RedisServer::start();
    add_acl_user(&redis, LEAST_PRIVILEGE);
    config(
        redis.port,
        &[
            ("username", "ccevents"),
            ("password", "s3cret"),
            ("queue-size", "100000"),
            ("reconnect-min-ms", "1"),
            ("reconnect-max-ms", "2"),
        ],
    );
    let sub = Subscriber::new(&redis, "callcenter_events");
    let module = LoadedModule::load().expect("load");
    assert!(wait_until(WAIT, || status().contains("redis:      connected")));

    let pad = "x".repeat(900);
    let firing = std::thread::spawn(move || {
        for i in 0..20_000usize {
            core::fire(&mut status_event(&format!("{i}-{pad}")));
            if i % 40 == 0 {
                // Pacing the load, not synchronising.
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        20_000
    });
    let mut admin = redis.connection();
    while !firing.is_finished() {
        for rules in [&["resetchannels"][..], &["&*"][..]] {
            let mut args = vec!["SETUSER", "ccevents"];
            args.extend_from_slice(rules);
            let _: () = redis::cmd("ACL").arg(&args).query(&mut admin).unwrap();
        }
    }
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "ccevents", "&*"])
        .query(&mut admin)
        .unwrap();
    let n = firing.join().unwrap();
    assert!(wait_until(WAIT, || status_line("queued") == 0));
    assert_eq!(status_line("dropped"), 0);
    let ids: Vec<usize> = receive_all(&sub, n)
        .iter()
        .map(|p| agent_of(p).split('-').next().unwrap().parse().unwrap())
        .collect();
    let duplicates = assert_last_copies_in_order(&ids);
    assert_eq!(ids.len() - duplicates, n);
    println!("NOPERM toggled during {n} events: {duplicates} duplicates (accepted after a refused one, sent again), last copies in order");
    assert!(
        duplicates > 0,
        "no batch had OK replies after a refused one"
    );
    module.unload();
}
