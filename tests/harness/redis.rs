//! A real redis-server on a free loopback port, and a real subscriber.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Polls `cond` until it holds or `limit` passes. Waiting on a condition with a
/// bound, not sleeping as a way to synchronise.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    // Under target/ when cargo says where, so test runs do not litter /tmp.
    let base = option_env!("CARGO_TARGET_TMPDIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let d = base.join(format!(
        "cc_events-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, SeqCst)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_on(free_port())
    }

    /// Starts redis-server on `port` and waits (bounded) until it answers PING.
    pub fn start_on(port: u16) -> RedisServer {
        Self::start_with(port, &[])
    }

    /// `port` 0: no plain TCP port at all (only what `extra` opens, e.g. a
    /// `tls-port`); the test then talks to the server over a Unix socket in
    /// its directory (`url`, `connection`, `ping` use it).
    pub fn start_with(port: u16, extra: &[&str]) -> RedisServer {
        let dir = temp_dir("redis");
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(&dir);
        if port == 0 {
            cmd.arg("--unixsocket").arg(dir.join("redis.sock"));
        }
        let child = cmd
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server not found: install Debian's redis-server package");
        let mut s = RedisServer {
            port,
            child: Some(child),
            dir,
        };
        let up = wait_until(Duration::from_secs(10), || s.ping());
        assert!(
            up,
            "redis-server on port {port} did not answer PING within 10 s"
        );
        s
    }

    pub fn url(&self) -> String {
        if self.port == 0 {
            format!("redis+unix://{}", self.unix_socket().display())
        } else {
            format!("redis://127.0.0.1:{}/", self.port)
        }
    }

    /// The Unix socket of a server started without a plain TCP port.
    pub fn unix_socket(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    /// True once the server answers PING with any reply (+PONG, or -NOAUTH when a password is set).
    pub fn ping(&mut self) -> bool {
        use std::io::{Read, Write};
        if let Some(c) = self.child.as_mut() {
            if let Ok(Some(_)) = c.try_wait() {
                return false;
            }
        }
        let mut reply = [0u8; 1];
        if self.port == 0 {
            let Ok(mut s) = std::os::unix::net::UnixStream::connect(self.unix_socket()) else {
                return false;
            };
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            return s.write_all(b"PING\r\n").is_ok() && s.read(&mut reply).is_ok_and(|n| n == 1);
        }
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        s.write_all(b"PING\r\n").is_ok() && s.read(&mut reply).is_ok_and(|n| n == 1)
    }

    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(2))
            .unwrap()
    }

    /// Number of clients connected (the module's connection shows up here).
    pub fn clients(&self) -> usize {
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query(&mut self.connection())
            .unwrap();
        list.lines().count().saturating_sub(1)
    }

    /// SIGSTOP: the server keeps its sockets open but answers nothing, like a hung Redis.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, sig: i32) {
        let pid = self.child.as_ref().expect("server running").id() as i32;
        // SAFETY: signalling our own child process.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: our own child; a paused server must be resumed to die cleanly.
            unsafe { libc::kill(c.id() as i32, libc::SIGCONT) };
            let _ = c.kill();
            let _ = c.wait();
        }
        // Wait until the port no longer accepts, so "Redis is down" really holds.
        let port = self.port;
        wait_until(Duration::from_secs(5), || {
            TcpStream::connect(("127.0.0.1", port)).is_err()
        });
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Exactly `n` messages from a subscriber's thread (`who`, for the failure),
/// failing after `limit`.
pub fn take<T: std::fmt::Debug>(rx: &Receiver<T>, n: usize, limit: Duration, who: &str) -> Vec<T> {
    let end = Instant::now() + limit;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
            Ok(m) => out.push(m),
            Err(RecvTimeoutError::Timeout) => panic!(
                "{who}: got {} of {n} messages within {limit:?}; last: {:?}",
                out.len(),
                out.last()
            ),
            Err(RecvTimeoutError::Disconnected) => panic!("{who} thread died"),
        }
    }
    out
}

/// A SUBSCRIBE client on its own thread, collecting messages in arrival order.
pub struct Subscriber {
    rx: Receiver<String>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Subscriber {
    /// Returns once Redis reports the subscription (PUBSUB NUMSUB), so nothing published after is missed.
    pub fn new(server: &RedisServer, channel: &str) -> Subscriber {
        Self::new_url(&server.url(), &mut server.connection(), channel)
    }

    /// Subscribes through `url`; `admin` is any connection that may run PUBSUB.
    pub fn new_url(url: &str, admin: &mut redis::Connection, channel: &str) -> Subscriber {
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let url = url.to_string();
        let ch = channel.to_string();
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let client = redis::Client::open(url).unwrap();
            let mut conn = client.get_connection().unwrap();
            conn.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let mut ps = conn.as_pubsub();
            ps.subscribe(&ch).unwrap();
            while !stop2.load(SeqCst) {
                match ps.get_message() {
                    Ok(msg) => {
                        let payload: Vec<u8> = msg.get_payload().unwrap();
                        if tx.send(String::from_utf8(payload).unwrap()).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.is_timeout() => continue,
                    Err(e) => panic!("subscriber: {e}"),
                }
            }
        });
        let ready = wait_until(Duration::from_secs(5), || {
            let (_, n): (String, i64) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(channel)
                .query(admin)
                .unwrap();
            n >= 1
        });
        assert!(ready, "subscriber did not subscribe within 5 s");
        Subscriber {
            rx,
            stop,
            thread: Some(thread),
        }
    }

    /// Waits for exactly `n` messages, failing after `limit`.
    pub fn take(&self, n: usize, limit: Duration) -> Vec<String> {
        self::take(&self.rx, n, limit, "subscriber")
    }

    /// Messages already received, without waiting.
    pub fn drain(&self) -> Vec<String> {
        self.rx.try_iter().collect()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
