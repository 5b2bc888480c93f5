//! Redis Sentinel with real `redis-server` and `redis-sentinel` processes on
//! free loopback ports, started and killed by pid: the module finds the master
//! through the sentinels, follows a failover, and says what is wrong when the
//! sentinels cannot tell it. The failover test prints its figures
//! (`--nocapture`); README's Sentinel section quotes them.

mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use harness::common::{agent_of, assert_last_copies_in_order, status, status_event, status_line};
use harness::core::{self, LoadedModule};
use harness::redis::{free_port, temp_dir, wait_until, RedisServer};
use harness::tls::Certs;

const WAIT: Duration = Duration::from_secs(20);
const SWITCH_LOG_ERROR: i32 = 3;
const SWITCH_LOG_INFO: i32 = 6;

/// A `redis-sentinel` process with its own config file, killed by pid on drop
/// (also when a test panics).
struct SentinelProcess {
    port: u16,
    child: Option<Child>,
    dir: PathBuf,
    /// Its `requirepass`, to talk to it with.
    auth: Option<String>,
}

impl SentinelProcess {
    /// Monitors `mymaster` at `master_port` with `quorum`; fails over 1 s
    /// after the master stops answering. `extra` lines go into the config.
    fn start(master_port: u16, quorum: u32, extra: &[&str]) -> SentinelProcess {
        let mut conf = format!(
            "sentinel monitor mymaster 127.0.0.1 {master_port} {quorum}\n\
             sentinel down-after-milliseconds mymaster 1000\n\
             sentinel failover-timeout mymaster 5000\n\
             sentinel parallel-syncs mymaster 1\n"
        );
        for line in extra {
            conf.push_str(line);
            conf.push('\n');
        }
        Self::spawn(free_port(), &conf)
    }

    /// A sentinel on `port` with these config lines, listening when this returns.
    fn spawn(port: u16, lines: &str) -> SentinelProcess {
        let dir = temp_dir("sentinel");
        let conf = format!(
            "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {}\nsentinel resolve-hostnames no\n{lines}",
            dir.display()
        );
        // Sentinel rewrites its config file, so each gets its own.
        let path = dir.join("sentinel.conf");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new("redis-sentinel")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-sentinel not found: install Debian's redis-sentinel package");
        let s = SentinelProcess {
            port,
            child: Some(child),
            dir,
            auth: None,
        };
        let up = wait_until(Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(
            up,
            "redis-sentinel on port {port} did not listen within 10 s"
        );
        s
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn connection(&self) -> redis::Connection {
        let url = match &self.auth {
            Some(pw) => format!("redis://:{pw}@127.0.0.1:{}/", self.port),
            None => format!("redis://127.0.0.1:{}/", self.port),
        };
        let c = redis::Client::open(url)
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(2))
            .unwrap();
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        c
    }

    /// The port of the master this sentinel names now.
    fn master_port(conn: &mut redis::Connection) -> Option<u16> {
        let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg("mymaster")
            .query(conn)
            .ok()?;
        addr.map(|(_, p)| p)
    }

    /// `SENTINEL MASTER mymaster` as name/value pairs.
    fn master_info(&self) -> BTreeMap<String, String> {
        let v: Vec<String> = redis::cmd("SENTINEL")
            .arg("MASTER")
            .arg("mymaster")
            .query(&mut self.connection())
            .unwrap_or_default();
        v.chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (c[0].clone(), c[1].clone()))
            .collect()
    }
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A subscriber that records each message with the moment it arrived. When
/// its connection is cut it subscribes again at once: Sentinel disconnects
/// the clients of the replica it promotes, and the old master is killed.
struct Recorder {
    got: Arc<Mutex<Vec<(Instant, String)>>>,
    /// When each subscription was confirmed.
    subscribed: Arc<Mutex<Vec<Instant>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Recorder {
    /// Returns once the server reports the subscription.
    fn new(server: &RedisServer) -> Recorder {
        let got = Arc::new(Mutex::new(Vec::new()));
        let subscribed = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (got2, subscribed2, stop2) = (got.clone(), subscribed.clone(), stop.clone());
        let client = redis::Client::open(server.url()).unwrap();
        let thread = std::thread::spawn(move || {
            while !stop2.load(SeqCst) {
                let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(200))
                else {
                    // Retrying a dead server, not synchronising.
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                conn.set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                let mut ps = conn.as_pubsub();
                if ps.subscribe("callcenter_events").is_err() {
                    continue;
                }
                subscribed2.lock().unwrap().push(Instant::now());
                while !stop2.load(SeqCst) {
                    match ps.get_message() {
                        Ok(msg) => {
                            let payload: String = msg.get_payload().unwrap();
                            got2.lock().unwrap().push((Instant::now(), payload));
                        }
                        Err(e) if e.is_timeout() => continue,
                        Err(_) => break,
                    }
                }
            }
        });
        let mut admin = server.connection();
        let ready = wait_until(Duration::from_secs(5), || {
            let (_, n): (String, i64) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg("callcenter_events")
                .query(&mut admin)
                .unwrap();
            n >= 1
        });
        assert!(ready, "subscriber did not subscribe within 5 s");
        Recorder {
            got,
            subscribed,
            stop,
            thread: Some(thread),
        }
    }

    /// The event numbers received (agent `e<i>`), in arrival order, with when.
    fn ids(&self) -> Vec<(Instant, usize)> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(t, p)| (*t, agent_of(p)[1..].parse().unwrap()))
            .collect()
    }

    fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    fn subscriptions(&self) -> Vec<Instant> {
        self.subscribed.lock().unwrap().clone()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Fires `status_event("e<i>")` at `rate` per second from its own thread
/// until stopped; `fired` counts what it fired.
struct Firing {
    fired: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Firing {
    fn start(rate: u32) -> Firing {
        let fired = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (fired2, stop2) = (fired.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let tick = Duration::from_secs(1) / rate;
            let mut next = Instant::now();
            let mut i = 0;
            while !stop2.load(SeqCst) {
                core::fire(&mut status_event(&format!("e{i}")));
                i += 1;
                fired2.store(i, SeqCst);
                next += tick;
                // Pacing the load, not synchronising with anything.
                if let Some(d) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(d);
                }
            }
        });
        Firing {
            fired,
            stop,
            thread: Some(thread),
        }
    }

    fn fired(&self) -> usize {
        self.fired.load(SeqCst)
    }

    /// Stops firing; returns how many were fired.
    fn stop(mut self) -> usize {
        self.stop.store(true, SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.fired()
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

/// Waits (bounded) for the module's status to contain `want`.
fn wait_status(want: &str) {
    assert!(wait_until(WAIT, || status().contains(want)), "{}", status());
}

/// A replica of `master` whose replication link is up.
fn replica_of(master: &RedisServer) -> RedisServer {
    let mp = master.port.to_string();
    let replica = RedisServer::start_with(free_port(), &["--replicaof", "127.0.0.1", &mp]);
    wait_synced(&replica, "");
    replica
}

/// Waits (bounded) for `replica`'s replication link to be up; `how` goes into
/// the failure message after "sync".
fn wait_synced(replica: &RedisServer, how: &str) {
    let mut conn = replica.connection();
    let synced = wait_until(WAIT, || {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut conn)
            .unwrap();
        info.contains("master_link_status:up")
    });
    assert!(synced, "the replica did not sync{how} within {WAIT:?}");
}

fn role(server: &RedisServer) -> String {
    let v: redis::Value = redis::cmd("ROLE").query(&mut server.connection()).unwrap();
    match v {
        redis::Value::Array(items) => match &items[0] {
            redis::Value::BulkString(b) => String::from_utf8(b.clone()).unwrap(),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

/// The module's config for these sentinels, with the shipped defaults otherwise.
fn sentinel_config(sentinels: &[String], extra: &[(&str, &str)]) {
    let list = sentinels.join(",");
    let mut params = vec![
        ("sentinels", list.as_str()),
        ("sentinel-master", "mymaster"),
    ];
    params.extend_from_slice(extra);
    harness::write_config(&params);
}

fn connected_via(master: u16) -> String {
    format!("redis:      connected (master 'mymaster' 127.0.0.1:{master} via sentinel 127.0.0.1:")
}

fn error_logs() -> Vec<String> {
    core::logs()
        .into_iter()
        .filter(|l| l.level == SWITCH_LOG_ERROR)
        .map(|l| l.text.trim_end().to_string())
        .collect()
}

#[test]
fn a_failover_is_followed_within_two_seconds_of_the_promotion_and_loses_nothing() {
    let _g = core::exclusive();
    core::take_logs();
    let mut master = RedisServer::start();
    let replica = replica_of(&master);
    let sentinels: Vec<SentinelProcess> = (0..3)
        .map(|_| SentinelProcess::start(master.port, 2, &[]))
        .collect();
    let addrs: Vec<String> = sentinels.iter().map(SentinelProcess::addr).collect();
    let (m, r) = (master.port, replica.port);
    follow_failover(&mut master, m, &replica, r, &sentinels, &addrs, &[], "");
}

/// True when the module's connection to `server` came in on `port` (its
/// plain or its TLS port), as `CLIENT LIST` shows it.
fn module_on_port(server: &RedisServer, port: u16) -> bool {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut server.connection())
        .unwrap();
    list.lines().any(|l| {
        l.contains("name=mod_cc_events") && l.contains(&format!("laddr=127.0.0.1:{port} "))
    })
}

/// The failover figures and checks of both failover tests. The module is
/// configured with `addrs` (the sentinels as it reaches them) and `extra`;
/// `master_port` and `replica_port` are the ports the sentinels name (the
/// TLS ports over TLS). The test's subscribers and admin connections use
/// each server's plain port.
#[allow(clippy::too_many_arguments)]
fn follow_failover(
    master: &mut RedisServer,
    master_port: u16,
    replica: &RedisServer,
    replica_port: u16,
    sentinels: &[SentinelProcess],
    addrs: &[String],
    extra: &[(&str, &str)],
    label: &str,
) {
    // Each sentinel must know the replica (to promote it) and the two others
    // (to agree that the master is down and to elect a leader).
    for s in sentinels {
        let ready = wait_until(WAIT, || {
            let m = s.master_info();
            m.get("num-slaves").is_some_and(|n| n == "1")
                && m.get("num-other-sentinels").is_some_and(|n| n == "2")
        });
        assert!(
            ready,
            "sentinel {} did not see the replica and its peers: {:?}",
            s.addr(),
            s.master_info()
        );
    }
    sentinel_config(addrs, extra);
    let old_sub = Recorder::new(master);
    let new_sub = Recorder::new(replica);
    let module = LoadedModule::load().expect("load");
    wait_status(&connected_via(master_port));
    assert!(
        module_on_port(master, master_port),
        "the module is not connected to the master's port {master_port}"
    );

    const RATE: u32 = 200;
    let firing = Firing::start(RATE);
    assert!(wait_until(WAIT, || old_sub.count() >= RATE as usize));
    master.stop(); // SIGKILL by pid, then until the port refuses
    let killed = Instant::now();
    let fired_at_kill = firing.fired();

    // The promotion: the replica says it is the master, then the sentinels name it.
    let mut polls: Vec<redis::Connection> = sentinels.iter().map(|s| s.connection()).collect();
    // Sentinel disconnects the promoted replica's clients: a new connection each time.
    let (mut promoted, mut switched) = (None, None);
    let mut most_queued = 0;
    let seen = wait_until(Duration::from_secs(30), || {
        most_queued = most_queued.max(status_line("queued"));
        if promoted.is_none() && role(replica) == "master" {
            promoted = Some(killed.elapsed());
        }
        if polls
            .iter_mut()
            .any(|c| SentinelProcess::master_port(c) == Some(replica_port))
        {
            switched = Some(Instant::now());
        }
        switched.is_some()
    });
    assert!(
        seen,
        "no sentinel named the replica within 30 s of the kill"
    );
    let switched = switched.unwrap();
    let promoted = promoted.unwrap_or_else(|| switched - killed);

    // Publishing resumes: the first event fired after the kill reaches the new master.
    let first_after = || {
        new_sub
            .ids()
            .into_iter()
            .find(|&(_, i)| i >= fired_at_kill)
            .map(|(t, _)| t)
    };
    assert!(
        wait_until(WAIT, || {
            most_queued = most_queued.max(status_line("queued"));
            first_after().is_some()
        }),
        "nothing fired after the kill reached the new master; {}",
        status()
    );
    let resumed = first_after().unwrap();
    // A second of traffic on the new master, then everything must be there.
    let target = firing.fired() + RATE as usize;
    assert!(wait_until(WAIT, || new_sub
        .ids()
        .iter()
        .any(|&(_, i)| i >= target)));
    let n = firing.stop();
    // The replica's subscriber was disconnected at the promotion; it was
    // subscribed again before the sentinels named the new master, so it
    // missed nothing the module sent there.
    let resubscribed = new_sub.subscriptions();
    assert!(
        resubscribed.iter().all(|&t| t < switched),
        "{resubscribed:?} {switched:?}"
    );
    assert!(
        wait_until(WAIT, || status_line("queued") == 0),
        "{}",
        status()
    );
    let distinct = || {
        old_sub
            .ids()
            .into_iter()
            .chain(new_sub.ids())
            .map(|(_, i)| i)
            .collect::<BTreeSet<usize>>()
    };
    // Whatever was published has reached the subscriber.
    wait_until(WAIT, || distinct().len() >= n);
    let got = distinct();
    let lost = n - got.len();
    let dropped = status_line("dropped");
    let new_ids: Vec<usize> = new_sub.ids().into_iter().map(|(_, i)| i).collect();
    let duplicates = assert_last_copies_in_order(&new_ids);
    eprintln!(
        "Sentinel failover{label} at {RATE} events/s (3 sentinels, down-after-milliseconds 1000, module defaults): \
         the replica was promoted {:.2} s after the kill and named by the sentinels {:.2} s after the kill; \
         publishing resumed {:.2} s after the sentinels named it ({:.2} s after the promotion, {:.2} s after the kill); \
         {n} fired, {lost} lost, {dropped} dropped, {duplicates} duplicates on the new master (events the old one had replicated and then did not confirm), \
         at most {most_queued} events queued (queue-size 10000)",
        promoted.as_secs_f64(),
        (switched - killed).as_secs_f64(),
        resumed.saturating_duration_since(switched).as_secs_f64(),
        resumed
            .saturating_duration_since(killed + promoted)
            .as_secs_f64(),
        (resumed - killed).as_secs_f64(),
    );
    eprintln!("  logged: {:#?}", error_logs());
    assert_eq!(
        lost,
        0,
        "missing: {:?}",
        (0..n)
            .filter(|i| !got.contains(i))
            .take(20)
            .collect::<Vec<_>>()
    );
    assert_eq!(got.iter().next_back(), Some(&(n - 1)));
    assert_eq!(dropped, 0);
    assert_eq!(status_line("published") as usize, n);
    let after_promotion = resumed.saturating_duration_since(switched);
    assert!(
        after_promotion < Duration::from_secs(2),
        "publishing resumed {after_promotion:?} after the sentinels named the new master"
    );
    let s = status();
    assert!(s.contains(&connected_via(replica_port)), "{s}");
    assert_eq!(role(replica), "master");
    assert!(
        module_on_port(replica, replica_port),
        "the module is not connected to the new master's port {replica_port}"
    );
    // The outage is in the log, and its end.
    let logs = core::logs();
    assert!(
        logs.iter().any(|l| l.level == SWITCH_LOG_INFO
            && l.text.starts_with(&format!(
                "connected to Redis at master 'mymaster' 127.0.0.1:{} via sentinel 127.0.0.1:",
                replica_port
            ))),
        "{logs:#?}"
    );
    module.unload();
}

/// The TLS params of a data node or a sentinel (`tls-port`, the certificate
/// for 127.0.0.1 and localhost, the CA), replicating and monitoring over TLS.
fn tls_conf(certs: &Certs, tls_port: u16) -> Vec<(String, String)> {
    [
        ("tls-port", tls_port.to_string()),
        ("tls-cert-file", certs.path("redis.crt")),
        ("tls-key-file", certs.path("redis.key")),
        ("tls-ca-cert-file", certs.path("ca.crt")),
        ("tls-auth-clients", "no".into()),
        ("tls-replication", "yes".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A redis-server with `tls_conf` (and `extra` args); returns its TLS port.
fn tls_server(certs: &Certs, extra: &[&str]) -> (RedisServer, u16) {
    let tls_port = free_port();
    let mut args: Vec<String> = tls_conf(certs, tls_port)
        .into_iter()
        .flat_map(|(k, v)| [format!("--{k}"), v])
        .collect();
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (RedisServer::start_with(free_port(), &args), tls_port)
}

/// Sentinel, the master, the replica and the module all over TLS: the module
/// knows only the sentinels' TLS ports, the sentinels monitor and name the
/// data nodes' TLS ports, and the replica replicates over TLS. The test's own
/// subscribers and admin connections use plain ports beside them (the redis
/// crate the tests use has no TLS); `CLIENT LIST` shows which port the
/// module's connection came in on.
#[test]
fn over_tls_the_sentinels_are_asked_the_master_is_used_and_a_failover_is_followed() {
    let _g = core::exclusive();
    core::take_logs();
    let certs = Certs::make();
    let (mut master, master_tls) = tls_server(&certs, &[]);
    let mt = master_tls.to_string();
    let (replica, replica_tls) = tls_server(&certs, &["--replicaof", "127.0.0.1", &mt]);
    wait_synced(&replica, " over TLS");
    let mut tls_ports = Vec::new();
    let sentinels: Vec<SentinelProcess> = (0..3)
        .map(|_| {
            let port = free_port();
            tls_ports.push(port);
            let lines: Vec<String> = tls_conf(&certs, port)
                .into_iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            SentinelProcess::start(master_tls, 2, &lines)
        })
        .collect();
    let addrs: Vec<String> = tls_ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let ca = certs.path("ca.crt");
    let extra = [("tls", "true"), ("tls-ca-file", ca.as_str())];
    follow_failover(
        &mut master,
        master_tls,
        &replica,
        replica_tls,
        &sentinels,
        &addrs,
        &extra,
        " over TLS",
    );
}

#[test]
fn sentinel_auth_uses_the_sentinel_credentials_for_sentinels_and_the_data_ones_for_the_master() {
    let _g = core::exclusive();
    let master = RedisServer::start_with(free_port(), &["--requirepass", "datapw"]);
    let mut sentinel = SentinelProcess::start(
        master.port,
        1,
        &[
            "sentinel auth-pass mymaster datapw",
            "requirepass s3ntinel",
            // The least a sentinel user needs (README).
            "user watcher on >w4tcher -@all +sentinel|get-master-addr-by-name",
        ],
    );
    sentinel.auth = Some("s3ntinel".into());
    let url = format!("redis://:datapw@127.0.0.1:{}/", master.port);
    let mut admin = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let sub = harness::redis::Subscriber::new_url(&url, &mut admin, "callcenter_events");
    // The README's rule for the module's user with Sentinel, and one without +role.
    for (user, rules) in [("ccevents", &["+role"][..]), ("norole", &[][..])] {
        let mut args = vec![
            "SETUSER",
            user,
            "on",
            ">s3cret",
            "resetchannels",
            "&callcenter_events",
            "-@all",
            "+publish",
            "+ping",
        ];
        args.extend_from_slice(rules);
        let _: () = redis::cmd("ACL").arg(&args).query(&mut admin).unwrap();
    }
    let via = connected_via(master.port);
    let sentinel_said = |why: &str| {
        format!(
            "none of the sentinels {0} answered for master 'mymaster': Redis Sentinel at {0} {why}",
            sentinel.addr()
        )
    };
    let master_said = format!(
        "sentinel {} names 127.0.0.1:{} as master 'mymaster', but Redis at 127.0.0.1:{} db 0 (password set) refused authentication: WRONGPASS invalid username-password pair or user is disabled.; check username and password in cc_events.conf",
        sentinel.addr(),
        master.port,
        master.port
    );
    let no_role = format!(
        "sentinel {} names 127.0.0.1:{} as master 'mymaster', but it refused ROLE: NOPERM this user has no permissions to run the 'role' command; with Sentinel the module checks the role of the server it writes to: give the module's Redis user +role (see the README's ACL)",
        sentinel.addr(),
        master.port
    );
    let cases: [(&[(&str, &str)], String); 7] = [
        (
            &[("password", "datapw")],
            sentinel_said("requires authentication: NOAUTH Authentication required.; set sentinel-password (and sentinel-username for an ACL user) in cc_events.conf"),
        ),
        (
            &[("password", "datapw"), ("sentinel-password", "wrong-sentinel-pw")],
            sentinel_said("refused authentication: WRONGPASS invalid username-password pair or user is disabled.; check sentinel-username and sentinel-password in cc_events.conf"),
        ),
        // The sentinel's password is not the master's.
        (&[("password", "s3ntinel"), ("sentinel-password", "s3ntinel")], master_said),
        (&[("password", "datapw"), ("sentinel-password", "s3ntinel")], via.clone()),
        (
            &[
                ("password", "datapw"),
                ("sentinel-username", "watcher"),
                ("sentinel-password", "w4tcher"),
            ],
            via.clone(),
        ),
        (
            &[
                ("username", "norole"),
                ("password", "s3cret"),
                ("sentinel-username", "watcher"),
                ("sentinel-password", "w4tcher"),
            ],
            no_role,
        ),
        (
            &[
                ("username", "ccevents"),
                ("password", "s3cret"),
                ("sentinel-username", "watcher"),
                ("sentinel-password", "w4tcher"),
            ],
            format!(
                "redis:      connected (master 'mymaster' 127.0.0.1:{} via sentinel {} db 0 user ccevents (password set))",
                master.port,
                sentinel.addr()
            ),
        ),
    ];
    for (i, (extra, expect)) in cases.into_iter().enumerate() {
        core::take_logs();
        sentinel_config(&[sentinel.addr()], extra);
        let module = LoadedModule::load().expect("load");
        assert!(
            wait_until(WAIT, || status().contains(&expect)),
            "case {i}: {}",
            status()
        );
        let s = status();
        assert!(
            !s.contains("s3ntinel") && !s.contains("w4tcher") && !s.contains("datapw"),
            "{s}"
        );
        if expect.starts_with("redis:      connected") {
            core::fire(&mut status_event(&format!("auth{i}")));
            assert_eq!(agent_of(&sub.take(1, WAIT)[0]), format!("auth{i}"));
        } else {
            assert!(
                s.contains("redis:      NOT connected (sentinel master 'mymaster' via "),
                "{s}"
            );
            assert!(error_logs().contains(&expect), "{:#?}", core::logs());
        }
        module.unload();
    }
}

#[test]
fn sentinels_that_do_not_answer_or_do_not_know_the_master_are_reported_and_retried() {
    let _g = core::exclusive();
    core::take_logs();
    let master = RedisServer::start();
    let sub = harness::redis::Subscriber::new(&master, "callcenter_events");
    // Two addresses where nothing listens yet.
    let (a, b) = (free_port(), free_port());
    let list = [format!("127.0.0.1:{a}"), format!("127.0.0.1:{b}")];
    sentinel_config(&list, &[]);
    let module = LoadedModule::load().expect("load");
    let none = format!(
        "none of the sentinels 127.0.0.1:{a},127.0.0.1:{b} answered for master 'mymaster': cannot connect to Redis Sentinel at 127.0.0.1:{a}: Connection refused (os error 111); check sentinels in cc_events.conf and that the sentinels are running"
    );
    wait_status(&none);
    assert!(status().contains("redis:      NOT connected (sentinel master 'mymaster' via "));
    core::fire(&mut status_event("early"));
    // A sentinel comes up on the second address, monitoring another name.
    let other = format!("sentinel monitor other 127.0.0.1 {} 1\n", master.port);
    let sentinel = SentinelProcess::spawn(b, &other);
    let unknown = format!(
        "sentinel 127.0.0.1:{b} does not know master 'mymaster': check sentinel-master in cc_events.conf (the name in the sentinels' `sentinel monitor <name> ...`)"
    );
    wait_status(&unknown);
    // Asked again and again, and each reason logged once.
    let mut admin = sentinel.connection();
    let mut connections = || -> u64 {
        let info: String = redis::cmd("INFO").arg("stats").query(&mut admin).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("total_connections_received:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let before = connections();
    assert!(wait_until(WAIT, || connections() >= before + 3));
    let logs = error_logs();
    assert_eq!(logs.iter().filter(|l| **l == none).count(), 1, "{logs:#?}");
    assert_eq!(
        logs.iter().filter(|l| **l == unknown).count(),
        1,
        "{logs:#?}"
    );
    assert!(status().contains(&unknown), "{}", status());
    // The operator fixes the sentinel: the module finds the master and sends what waited.
    let _: () = redis::cmd("SENTINEL")
        .arg("MONITOR")
        .arg("mymaster")
        .arg("127.0.0.1")
        .arg(master.port)
        .arg(1)
        .query(&mut sentinel.connection())
        .unwrap();
    assert!(
        wait_until(WAIT, || {
            status().contains(&format!(
            "redis:      connected (master 'mymaster' 127.0.0.1:{} via sentinel 127.0.0.1:{b} db 0)",
            master.port
        ))
        }),
        "{}",
        status()
    );
    assert_eq!(agent_of(&sub.take(1, WAIT)[0]), "early");
    assert_eq!(status_line("dropped"), 0);
    module.unload();
}

/// A stand-in sentinel that names whichever master port the test sets: real
/// sentinels cannot be made to name a replica, or to leave the module's
/// connection to a demoted master open, on demand.
struct FakeSentinel {
    port: u16,
    names: Arc<AtomicU16>,
    asked: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeSentinel {
    fn start(names: u16) -> FakeSentinel {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let names = Arc::new(AtomicU16::new(names));
        let asked = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (names2, asked2, stop2) = (names.clone(), asked.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => serve(stream, &names2, &asked2, &stop2),
                    // Polling the listener, not synchronising.
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeSentinel {
            port,
            names,
            asked,
            stop,
            thread: Some(thread),
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for FakeSentinel {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers one client's commands until it closes: the module asks once per
/// connection (CLIENT SETNAME and PING, then SENTINEL get-master-addr-by-name).
fn serve(mut stream: TcpStream, names: &AtomicU16, asked: &AtomicUsize, stop: &AtomicBool) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !stop.load(SeqCst) {
        while let Some((args, used)) = parse_command(&buf) {
            buf.drain(..used);
            let reply = match args.first().map(|a| a.to_ascii_uppercase()).as_deref() {
                Some(b"SENTINEL") => {
                    asked.fetch_add(1, SeqCst);
                    let port = names.load(SeqCst).to_string();
                    format!("*2\r\n$9\r\n127.0.0.1\r\n${}\r\n{port}\r\n", port.len())
                }
                Some(b"PING") => "+PONG\r\n".to_string(),
                _ => "+OK\r\n".to_string(),
            };
            if stream.write_all(reply.as_bytes()).is_err() {
                return;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// One RESP command (`*N` of `$len` strings) from the front of `buf`, and how
/// many bytes it took; None until it is complete.
fn parse_command(buf: &[u8]) -> Option<(Vec<Vec<u8>>, usize)> {
    fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
        let end = buf[at..].windows(2).position(|w| w == b"\r\n")? + at;
        Some((&buf[at..end], end + 2))
    }
    let (head, mut at) = line(buf, 0)?;
    let n: usize = std::str::from_utf8(head.strip_prefix(b"*")?)
        .ok()?
        .parse()
        .ok()?;
    let mut args = Vec::with_capacity(n);
    for _ in 0..n {
        let (len, next) = line(buf, at)?;
        let len: usize = std::str::from_utf8(len.strip_prefix(b"$")?)
            .ok()?
            .parse()
            .ok()?;
        if buf.len() < next + len + 2 {
            return None;
        }
        args.push(buf[next..next + len].to_vec());
        at = next + len + 2;
    }
    Some((args, at))
}

#[test]
fn a_replica_is_never_written_to_and_a_demoted_master_sends_the_link_back_to_the_sentinels() {
    let _g = core::exclusive();
    core::take_logs();
    let a = RedisServer::start();
    let b = replica_of(&a);
    // A sentinel that has not caught up names the replica.
    let fake = FakeSentinel::start(b.port);
    sentinel_config(&[fake.addr()], &[("stream", "cc_stream")]);
    let sub_a = harness::redis::Subscriber::new(&a, "callcenter_events");
    let sub_b = harness::redis::Subscriber::new(&b, "callcenter_events");
    let module = LoadedModule::load().expect("load");
    let replica_named = format!(
        "sentinel {} names 127.0.0.1:{} as master 'mymaster', but it is a replica: a failover is under way or that sentinel has not caught up; asking the sentinels again",
        fake.addr(),
        b.port
    );
    wait_status(&replica_named);
    for i in 0..10 {
        core::fire(&mut status_event(&format!("r{i}")));
    }
    // Asked again and again, and still nothing written to the replica.
    let asked = fake.asked.load(SeqCst);
    assert!(wait_until(WAIT, || fake.asked.load(SeqCst) >= asked + 2));
    assert!(
        status().contains("redis:      NOT connected"),
        "{}",
        status()
    );
    assert_eq!(status_line("published"), 0);
    assert!(sub_b.drain().is_empty());

    // The sentinel catches up: the queued events go to the master.
    fake.names.store(a.port, SeqCst);
    let got = sub_a.take(10, WAIT);
    let agents: Vec<String> = got.iter().map(|p| agent_of(p)).collect();
    assert_eq!(agents, (0..10).map(|i| format!("r{i}")).collect::<Vec<_>>());
    assert!(status().contains(&format!(
        "redis:      connected (master 'mymaster' 127.0.0.1:{} via sentinel {} db 0)",
        a.port,
        fake.addr()
    )));
    // b received them too, through replication.
    let got = sub_b.take(10, WAIT);
    assert_eq!(agent_of(&got[9]), "r9");

    // A failover that leaves the module's connection open: a becomes a
    // replica of b, which becomes the master, and the sentinel names b.
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut b.connection())
        .unwrap();
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(b.port)
        .query(&mut a.connection())
        .unwrap();
    fake.names.store(b.port, SeqCst);
    for i in 0..10 {
        core::fire(&mut status_event(&format!("d{i}")));
    }
    // PUBLISH works on a replica, XADD does not: the event whose XADD was
    // refused, and everything after it, is sent again to the new master.
    let got = sub_b.take(10, WAIT);
    let agents: Vec<String> = got.iter().map(|p| agent_of(p)).collect();
    assert_eq!(agents, (0..10).map(|i| format!("d{i}")).collect::<Vec<_>>());
    let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg("cc_stream")
        .arg("-")
        .arg("+")
        .query(&mut b.connection())
        .unwrap();
    let in_stream: Vec<String> = entries
        .iter()
        .filter_map(|(_, f)| {
            let at = f.iter().position(|k| k == "payload")?;
            Some(agent_of(&f[at + 1]))
        })
        .filter(|a| a.starts_with('d'))
        .collect();
    assert_eq!(
        in_stream,
        (0..10).map(|i| format!("d{i}")).collect::<Vec<_>>()
    );
    assert!(wait_until(WAIT, || status_line("queued") == 0));
    assert_eq!(status_line("dropped"), 0);
    assert!(
        status().contains(&format!(
            "redis:      connected (master 'mymaster' 127.0.0.1:{} via sentinel {} db 0)",
            b.port,
            fake.addr()
        )),
        "{}",
        status()
    );
    let demoted = format!(
        "Redis at 127.0.0.1:{} is no longer the master of 'mymaster' (READONLY You can't write against a read only replica.); asking the sentinels again; reconnecting",
        a.port
    );
    let logs = error_logs();
    assert!(logs.contains(&demoted), "{logs:#?}");
    assert!(logs.contains(&replica_named), "{logs:#?}");
    module.unload();
}
