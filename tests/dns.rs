//! Host names: resolved by the worker, and never for longer than the
//! deadline, even when the DNS server does not answer at all.

mod harness;

use std::time::{Duration, Instant};

use harness::common::{agent_of, config, status, status_event};
use harness::core::{self, LoadedModule};
use harness::redis::{wait_until, RedisServer, Subscriber};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn a_host_name_is_resolved_and_connected_to() {
    let _g = core::exclusive();
    let redis = RedisServer::start();
    config(redis.port, &[("host", "localhost")]);
    let sub = Subscriber::new(&redis, "callcenter_events");
    let module = LoadedModule::load().expect("load");
    core::fire(&mut status_event("by-name"));
    assert_eq!(agent_of(&sub.take(1, WAIT)[0]), "by-name");
    assert!(status().contains(&format!(
        "redis:      connected (localhost:{} db 0)",
        redis.port
    )));
    module.unload();
}

/// Re-runs this test inside a mount namespace whose /etc/resolv.conf points
/// at a UDP socket that swallows every query: a DNS server that never answers.
#[test]
#[ignore = "needs root for a mount namespace (unshare -m); .ci/run runs it"]
fn unload_returns_at_once_while_the_dns_server_never_answers() {
    if std::env::var_os("CC_EVENTS_DNS_INNER").is_none() {
        let dir = harness::redis::temp_dir("dns");
        let resolv = dir.join("resolv.conf");
        std::fs::write(
            &resolv,
            "nameserver 127.0.0.1\noptions timeout:30 attempts:1\n",
        )
        .unwrap();
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new("unshare")
            .arg("-m")
            .arg("sh")
            .arg("-c")
            .arg(r#"mount --bind "$1" /etc/resolv.conf && exec "$2" --exact "$3" --ignored --nocapture"#)
            .arg("sh")
            .arg(&resolv)
            .arg(&exe)
            .arg("unload_returns_at_once_while_the_dns_server_never_answers")
            .env("CC_EVENTS_DNS_INNER", "1")
            .output()
            .expect("unshare (util-linux) runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        print!("{text}");
        assert!(out.status.success(), "inside the namespace: {text}");
        assert!(text.contains("1 passed"), "{text}");
        return;
    }

    let _g = core::exclusive();
    // The DNS server: receives queries, never answers.
    let dns = std::net::UdpSocket::bind("127.0.0.1:53").expect("bind 127.0.0.1:53 (root)");
    dns.set_read_timeout(Some(WAIT)).unwrap();
    config(
        6379,
        &[
            ("host", "redis.cc-events-test.example"),
            ("connect-timeout-ms", "300"),
            ("shutdown-flush-ms", "0"),
        ],
    );
    let module = LoadedModule::load().expect("load");
    let mut query = [0u8; 512];
    dns.recv_from(&mut query)
        .expect("the worker asked the DNS server");
    assert!(
        wait_until(WAIT, || {
            status().contains(
            "resolving Redis host 'redis.cc-events-test.example' did not finish within connect-timeout-ms (300 ms)"
        )
        }),
        "{}",
        status()
    );
    core::fire(&mut status_event("queued"));
    let started = Instant::now();
    module.unload();
    let took = started.elapsed();
    println!("DNS server silent: unload took {took:?} with shutdown-flush-ms 0");
    assert!(took < Duration::from_millis(500), "unload took {took:?}");
}
