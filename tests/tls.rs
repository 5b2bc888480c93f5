//! TLS with real redis-server processes (Debian's, with `tls-port`) and
//! certificates made by the `openssl` CLI: events published over TLS, with
//! and without a client certificate, and every way TLS can be set up wrong,
//! each a clear error in status and in the log, retried with backoff.
//!
//! The module talks to the TLS port. The test's subscriber listens on the
//! same server's plain port: Pub/Sub delivers across ports, and `CLIENT LIST`
//! shows which port the module's connection came in on.

mod harness;

use std::sync::MutexGuard;
use std::time::Duration;

use harness::common::{agent_of, config, status, status_event};
use harness::core::{self, LoadedModule};
use harness::proxy::Proxy;
use harness::redis::{free_port, wait_until, RedisServer, Subscriber};
use harness::tls::{redis_tls_server, redis_with_tls, Certs};

const WAIT: Duration = Duration::from_secs(20);
const SWITCH_LOG_ERROR: i32 = 3;

/// Waits (bounded) for the module to say it is connected over TLS to `port`.
fn wait_connected(host: &str, port: u16) {
    let want = format!("redis:      connected ({host}:{port} db 0 tls)");
    assert!(
        wait_until(WAIT, || status().contains(&want)),
        "{}",
        status()
    );
}

/// The module's connection as Redis sees it (`CLIENT LIST` line).
fn module_client(redis: &RedisServer) -> Option<String> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut redis.connection())
        .unwrap();
    list.lines()
        .find(|l| l.contains("name=mod_cc_events"))
        .map(str::to_owned)
}

/// Publishes `agents` through the module and checks they arrive, in order.
fn publishes(sub: &Subscriber, agents: &[&str]) {
    for a in agents {
        core::fire(&mut status_event(a));
    }
    let got: Vec<String> = sub
        .take(agents.len(), WAIT)
        .iter()
        .map(|p| agent_of(p))
        .collect();
    assert_eq!(got, agents);
}

/// The module keeps failing with `error` (status and one log line) and keeps
/// trying, with backoff: with reconnect-min-ms 100 and reconnect-max-ms 200
/// each wait is drawn from 100..200 ms once the step has reached the cap
/// (after the second failure), so five attempts take at least 500 ms.
fn fails_and_retries_with_backoff(proxy: &Proxy, error: &str) {
    assert!(
        wait_until(WAIT, || status().contains(error)),
        "expected last error containing {error:?}:\n{}",
        status()
    );
    let s = status();
    assert!(s.contains("redis:      NOT connected"), "{s}");
    let line = s.lines().find(|l| l.starts_with("last error:")).unwrap();
    assert!(line.contains(error), "{line}");
    println!("{line}");
    let logged: Vec<_> = core::logs()
        .into_iter()
        .filter(|l| l.level == SWITCH_LOG_ERROR && l.text.contains(error))
        .collect();
    assert_eq!(logged.len(), 1, "one error line per outage: {logged:?}");

    assert!(wait_until(WAIT, || proxy.accepted() >= 3), "no retries");
    let first = proxy.accepted();
    assert!(
        wait_until(WAIT, || proxy.accepted() >= first + 5),
        "the module stopped retrying after {} attempts",
        proxy.accepted()
    );
    let times = proxy.times();
    let five = times[first - 1 + 5] - times[first - 1];
    println!("5 attempts after the third took {five:?}");
    assert!(
        five >= Duration::from_millis(450),
        "5 attempts in {five:?}: not backing off"
    );
    assert!(
        status().contains("redis:      NOT connected"),
        "{}",
        status()
    );
}

fn retry_params() -> Vec<(&'static str, &'static str)> {
    vec![("reconnect-min-ms", "100"), ("reconnect-max-ms", "200")]
}

/// `retry_params` with TLS on, checked against `ca`, then `extra`.
fn tls_retry_params<'a>(ca: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut params = retry_params();
    params.extend([("tls", "true"), ("tls-ca-file", ca)]);
    params.extend_from_slice(extra);
    params
}

/// The start of each test with a module: the module to itself, an empty log,
/// fresh certificates.
fn begin() -> (MutexGuard<'static, ()>, Certs) {
    let guard = core::exclusive();
    core::take_logs();
    (guard, Certs::make())
}

/// Loads the module with `params`, pointed at `proxy`, and checks that it
/// fails with `error` and keeps retrying (`fails_and_retries_with_backoff`).
fn loads_failing_with(proxy: &Proxy, params: &[(&str, &str)], error: &str) -> LoadedModule {
    config(proxy.port, params);
    let module = LoadedModule::load().expect("load");
    fails_and_retries_with_backoff(proxy, error);
    module
}

/// Writes `params` for `port` and asks the running module to reload them;
/// returns the reply.
fn reload_with(port: u16, params: &[(&str, &str)]) -> String {
    config(port, params);
    core::api("cc_events", "reload").unwrap()
}

#[test]
fn events_are_published_over_tls_checked_by_ip_and_by_name() {
    let (_g, certs) = begin();
    let (redis, tls_port) = redis_with_tls(&certs, "no");
    let ca = certs.path("ca.crt");
    config(tls_port, &[("tls", "true"), ("tls-ca-file", &ca)]);
    let sub = Subscriber::new(&redis, "callcenter_events");
    let module = LoadedModule::load().expect("load");
    // By IP: the certificate lists 127.0.0.1.
    wait_connected("127.0.0.1", tls_port);
    publishes(&sub, &["tls-1", "tls-2", "tls-3"]);
    let client = module_client(&redis).expect("the module's connection");
    assert!(
        client.contains(&format!("laddr=127.0.0.1:{tls_port}")),
        "the module is on the TLS port: {client}"
    );
    assert!(core::logs()
        .iter()
        .any(|l| l.text.contains(&format!("tls-ca-file {ca}")) && l.text.contains("loaded")));

    // By name, through the resolver: the certificate lists localhost.
    let port = tls_port.to_string();
    let reply = reload_with(
        tls_port,
        &[
            ("host", "localhost"),
            ("port", &port),
            ("tls", "true"),
            ("tls-ca-file", &ca),
        ],
    );
    assert!(reply.contains("reconnecting"), "{reply}");
    wait_connected("localhost", tls_port);
    publishes(&sub, &["by-name"]);
    module.unload();
}

#[test]
fn a_client_certificate_is_required_by_tls_auth_clients_yes_and_then_presented() {
    let (_g, certs) = begin();
    let (redis, tls_port) = redis_with_tls(&certs, "yes");
    let ca = certs.path("ca.crt");
    let proxy = Proxy::to(tls_port);
    let mut params = tls_retry_params(&ca, &[]);
    let sub = Subscriber::new(&redis, "callcenter_events");
    let module = loads_failing_with(
        &proxy,
        &params,
        "requires a client certificate (tls-auth-clients yes; alert: CertificateRequired): set tls-cert-file and tls-key-file",
    );

    let (cert, key) = (certs.path("client.crt"), certs.path("client.key"));
    params.extend([
        ("tls-cert-file", cert.as_str()),
        ("tls-key-file", key.as_str()),
    ]);
    let reply = reload_with(proxy.port, &params);
    assert!(reply.contains("reconnecting"), "{reply}");
    wait_connected("127.0.0.1", proxy.port);
    publishes(&sub, &["with-cert"]);
    assert!(!status().contains("client.key"));
    assert!(core::logs().iter().all(|l| !l.text.contains("PRIVATE KEY")));

    // A certificate Redis's CA did not sign is refused by Redis.
    let (other, other_key) = (certs.path("other-ca.crt"), certs.path("other-ca.key"));
    let wrong = tls_retry_params(
        &ca,
        &[("tls-cert-file", &other), ("tls-key-file", &other_key)],
    );
    reload_with(proxy.port, &wrong);
    let want = format!("refused the client certificate tls-cert-file ({other})");
    assert!(
        wait_until(WAIT, || status().contains(&want)),
        "{}",
        status()
    );
    module.unload();
}

#[test]
fn a_wrong_ca_is_a_clear_error_retried_with_backoff_even_without_hostname_checks() {
    let (_g, certs) = begin();
    let (_redis, tls_port) = redis_with_tls(&certs, "no");
    let proxy = Proxy::to(tls_port);
    let other = certs.path("other-ca.crt");
    let mut params = tls_retry_params(&other, &[]);
    let module = loads_failing_with(
        &proxy,
        &params,
        &format!(
            "the certificate of Redis at 127.0.0.1:{} db 0 tls is not signed by tls-ca-file ({other}): set tls-ca-file to the CA that signed Redis's tls-cert-file",
            proxy.port
        ),
    );
    module.unload();

    // tls-verify-hostname=false skips the name, never the chain.
    core::take_logs();
    params.push(("tls-verify-hostname", "false"));
    let module = loads_failing_with(&proxy, &params, "is not signed by tls-ca-file");
    module.unload();
}

#[test]
fn a_wrong_hostname_is_a_clear_error_retried_with_backoff_and_verify_hostname_false_accepts_it() {
    let (_g, certs) = begin();
    let (redis, tls_port) = redis_with_tls(&certs, "no");
    let proxy = Proxy::to(tls_port);
    let ca = certs.path("ca.crt");
    let mut params = tls_retry_params(&ca, &[("tls-server-name", "wrong.example")]);
    let module = loads_failing_with(
        &proxy,
        &params,
        &format!(
            "the certificate of Redis at 127.0.0.1:{} db 0 tls is for localhost, 127.0.0.1, not wrong.example: set tls-server-name to one of those names (or host), or tls-verify-hostname=false (the chain is still checked)",
            proxy.port
        ),
    );

    // The operator's other way out: the chain is checked, the name is not.
    let sub = Subscriber::new(&redis, "callcenter_events");
    params.push(("tls-verify-hostname", "false"));
    reload_with(proxy.port, &params);
    wait_connected("127.0.0.1", proxy.port);
    publishes(&sub, &["name-unchecked"]);
    module.unload();
}

#[test]
fn an_expired_server_certificate_is_a_clear_error_retried_with_backoff() {
    let (_g, certs) = begin();
    let (_redis, tls_port) = redis_tls_server(&certs, free_port(), "expired.crt", "no", &[]);
    let proxy = Proxy::to(tls_port);
    let ca = certs.path("ca.crt");
    let module = loads_failing_with(
        &proxy,
        &tls_retry_params(&ca, &[]),
        &format!(
            "the certificate of Redis at 127.0.0.1:{} db 0 tls has expired: renew Redis's tls-cert-file (",
            proxy.port
        ),
    );
    module.unload();
}

#[test]
fn plaintext_to_the_tls_port_is_a_clear_error_retried_with_backoff() {
    let (_g, certs) = begin();
    let (_redis, tls_port) = redis_with_tls(&certs, "no");
    let proxy = Proxy::to(tls_port);
    // Redis resets the connection (or closes it) on bytes that are not TLS.
    let error = format!(
        "Redis at 127.0.0.1:{0} db 0 ended the connection without a Redis reply",
        proxy.port
    );
    let module = loads_failing_with(&proxy, &retry_params(), &error);
    let hint = format!(
        "if port {} is Redis's tls-port, set tls=true (and tls-ca-file) in cc_events.conf",
        proxy.port
    );
    assert!(status().contains(&hint), "{}", status());
    module.unload();
}

#[test]
fn tls_to_a_plaintext_port_is_a_clear_error_retried_with_backoff() {
    let (_g, certs) = begin();
    let redis = RedisServer::start();
    let proxy = Proxy::to(redis.port);
    let ca = certs.path("ca.crt");
    // A plaintext Redis reads the ClientHello as the start of a command and
    // usually waits for its end: the handshake runs into connect-timeout-ms.
    let params = tls_retry_params(&ca, &[("connect-timeout-ms", "100")]);
    let module = loads_failing_with(
        &proxy,
        &params,
        &format!(
            "Redis at 127.0.0.1:{0} db 0 tls did not answer the TLS handshake",
            proxy.port
        ),
    );
    let hint = format!(
        "is port {} Redis's tls-port? A plaintext port does not speak TLS; set port to Redis's tls-port, or tls=false for a plaintext port",
        proxy.port
    );
    assert!(status().contains(&hint), "{}", status());
    module.unload();
}

#[test]
fn a_tls_file_that_cannot_be_used_fails_the_load_and_a_reload_naming_param_and_path() {
    let (_g, certs) = begin();
    let port = free_port();
    config(
        port,
        &[("tls", "true"), ("tls-ca-file", "/nonexistent/ca.crt")],
    );
    let e = LoadedModule::load().err().expect("the load fails");
    assert_ne!(e.status, 0);
    let line = "cc_events.conf: param 'tls-ca-file' has invalid value '/nonexistent/ca.crt': cannot read it: No such file or directory (os error 2); check the path; mod_cc_events not loaded";
    assert!(
        core::logs()
            .iter()
            .any(|l| l.level == SWITCH_LOG_ERROR && l.text.trim_end() == line),
        "{:#?}",
        core::logs()
    );

    // A key that is not the certificate's.
    let (cert, wrong_key) = (certs.path("client.crt"), certs.path("redis.key"));
    let ca = certs.path("ca.crt");
    config(
        port,
        &[
            ("tls", "true"),
            ("tls-ca-file", &ca),
            ("tls-cert-file", &cert),
            ("tls-key-file", &wrong_key),
        ],
    );
    core::take_logs();
    assert!(LoadedModule::load().is_err());
    let logged = core::logs()
        .into_iter()
        .find(|l| l.level == SWITCH_LOG_ERROR)
        .unwrap()
        .text;
    println!("{}", logged.trim_end());
    assert!(
        logged.starts_with(&format!(
            "cc_events.conf: param 'tls-key-file' has invalid value '{wrong_key}': it does not go with tls-cert-file '{cert}'"
        )),
        "{logged}"
    );

    // A reload with a bad file changes nothing.
    let (redis, tls_port) = redis_with_tls(&certs, "no");
    config(tls_port, &[("tls", "true"), ("tls-ca-file", &ca)]);
    let module = LoadedModule::load().expect("load");
    wait_connected("127.0.0.1", tls_port);
    let missing_key = certs.path("missing.key");
    let reply = reload_with(
        tls_port,
        &[
            ("tls", "true"),
            ("tls-ca-file", &ca),
            ("tls-cert-file", &cert),
            ("tls-key-file", &missing_key),
        ],
    );
    assert!(
        reply.starts_with(&format!(
            "-ERR cc_events.conf: param 'tls-key-file' has invalid value '{missing_key}': cannot read it"
        )),
        "{reply}"
    );
    assert!(
        reply.contains("the running settings are unchanged"),
        "{reply}"
    );
    let sub = Subscriber::new(&redis, "callcenter_events");
    publishes(&sub, &["still-tls"]);
    module.unload();
}

/// A server that answers anything with a RESP error, as a plaintext Redis
/// answers a ClientHello that happens to hold a newline.
struct AnswersInPlainText {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AnswersInPlainText {
    fn start() -> AnswersInPlainText {
        use std::io::{Read, Write};
        use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    if conn.read(&mut buf).is_ok_and(|n| n > 0) {
                        let _ = conn.write_all(b"-ERR unknown command\r\n");
                    }
                    // Until the client gives up.
                    while conn.read(&mut buf).is_ok_and(|n| n > 0) {}
                });
            }
        });
        AnswersInPlainText {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for AnswersInPlainText {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_plain_text_answer_to_the_handshake_is_a_clear_error_retried_with_backoff() {
    let (_g, certs) = begin();
    let plain = AnswersInPlainText::start();
    let proxy = Proxy::to(plain.port);
    let ca = certs.path("ca.crt");
    let module = loads_failing_with(
        &proxy,
        &tls_retry_params(&ca, &[]),
        &format!(
            "Redis at 127.0.0.1:{0} db 0 tls did not answer the TLS handshake (it answered with something that is not TLS): is port {0} Redis's tls-port?",
            proxy.port
        ),
    );
    module.unload();
}

#[test]
fn an_idle_tls_connection_closed_by_redis_timeout_is_reopened_quietly() {
    let (_g, certs) = begin();
    let (redis, tls_port) =
        redis_tls_server(&certs, free_port(), "redis.crt", "no", &["--timeout", "1"]);
    let ca = certs.path("ca.crt");
    config(
        tls_port,
        &[("tls", "true"), ("tls-ca-file", &ca), ("idle-ping-ms", "0")],
    );
    let sub = Subscriber::new(&redis, "callcenter_events");
    let module = LoadedModule::load().expect("load");
    for round in 0..2 {
        publishes(&sub, &[&format!("idle-{round}")]);
        // Redis closes the module's connection once it has been idle for 1 s.
        assert!(wait_until(WAIT, || module_client(&redis).is_none()));
    }
    publishes(&sub, &["after-idle"]);
    let s = status();
    assert!(s.contains("last error: none"), "{s}");
    let reconnects = harness::common::status_line("reconnects");
    println!("Redis timeout 1 over TLS: {reconnects} quiet reconnects");
    assert!(
        reconnects >= 2,
        "Redis closed the idle connection twice: {s}"
    );
    assert!(
        core::logs().iter().all(|l| l.level > 4),
        "no warning or error: {:#?}",
        core::logs()
    );
    module.unload();
}

#[test]
fn the_module_brings_its_own_tls_needing_no_libssl_and_exporting_only_its_interface() {
    let so = core::module_path();
    let readelf = |args: &[&str]| {
        let out = std::process::Command::new("readelf")
            .args(args)
            .arg(&so)
            .output()
            .expect("readelf not found: install binutils");
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let needed: Vec<String> = readelf(&["-d", "--wide"])
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .map(str::to_owned)
        .collect();
    println!("{}", needed.join("\n"));
    assert!(
        needed
            .iter()
            .all(|l| !l.contains("libssl") && !l.contains("libcrypto")),
        "FreeSWITCH's own OpenSSL must stay its own: {needed:?}"
    );
    // Defined dynamic symbols: anything but the module table could bind to
    // (or be bound by) FreeSWITCH's libssl in the same process.
    let defined: Vec<String> = readelf(&["--dyn-syms", "--wide"])
        .lines()
        .filter(|l| l.contains(" GLOBAL ") && !l.contains(" UND "))
        .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
        .collect();
    assert_eq!(defined, ["mod_cc_events_module_interface"]);
}

/// True while some socket of this machine has an established TCP connection
/// to 127.0.0.1:`port` (/proc/net/tcp: `rem_address` and state 01).
fn connected_to(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[2] == want && f[3] == "01"
        })
}

#[test]
fn unload_returns_at_once_from_a_tls_handshake_or_exchange_with_a_frozen_redis() {
    let (_g, certs) = begin();
    let (redis, tls_port) = redis_with_tls(&certs, "no");
    let ca = certs.path("ca.crt");
    let params = [
        ("tls", "true"),
        ("tls-ca-file", ca.as_str()),
        ("connect-timeout-ms", "30000"),
        ("io-timeout-ms", "30000"),
        ("shutdown-flush-ms", "0"),
    ];

    // Frozen before the module connects: the kernel accepts the TCP
    // connection, and the handshake waits for a ServerHello that never comes.
    redis.pause();
    config(tls_port, &params);
    let module = LoadedModule::load().expect("load");
    assert!(wait_until(WAIT, || connected_to(tls_port)));
    let started = std::time::Instant::now();
    module.unload();
    let in_handshake = started.elapsed();
    redis.resume();

    // Frozen with a batch written over TLS, waiting for its replies.
    let module = LoadedModule::load().expect("load");
    wait_connected("127.0.0.1", tls_port);
    redis.pause();
    for i in 0..50 {
        core::fire(&mut status_event(&format!("frozen-{i}")));
    }
    assert!(wait_until(WAIT, || harness::common::status_line("queued") == 50));
    let started = std::time::Instant::now();
    module.unload();
    let in_exchange = started.elapsed();
    redis.resume();
    println!(
        "frozen Redis over TLS, 30 s timeouts, shutdown-flush-ms 0: unload took {in_handshake:?} in the handshake, {in_exchange:?} in an exchange"
    );
    assert!(
        in_handshake < Duration::from_millis(500),
        "{in_handshake:?}"
    );
    assert!(in_exchange < Duration::from_millis(500), "{in_exchange:?}");
}
