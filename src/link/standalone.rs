//! A single Redis server over plain TCP. Every connect, write and read waits
//! in short slices bounded by a deadline and by the shutdown deadline, so a
//! hung Redis can never hold the worker (or `unload`) longer than asked.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, TcpKeepalive, Type};

use super::{resp, Exchange, Failure, Link};
use crate::config::RedisSettings;
use crate::fs::resolve::{Failed, Resolver};
use crate::fs::wait::{self, Want};
use crate::stop::Stop;

/// The longest single wait, so that a shutdown request is seen within it.
const SLICE: Duration = Duration::from_millis(50);

pub struct Standalone {
    settings: RedisSettings,
    stop: Arc<Stop>,
    conn: Option<Conn>,
    /// Host names are looked up without blocking past the deadline.
    resolver: Resolver,
}

pub(super) struct Conn {
    pub(super) stream: TcpStream,
    /// Holds bytes read past the current reply; one per connection.
    pub(super) parser: redis::Parser,
}

/// Why a wait ended without the socket being ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cut {
    TimedOut,
    ShuttingDown,
}

impl Standalone {
    pub fn new(settings: RedisSettings, stop: Arc<Stop>) -> Standalone {
        Standalone {
            settings,
            stop,
            conn: None,
            resolver: Resolver::default(),
        }
    }

    /// What a failed wait or socket call means to the operator: a cut wait is
    /// a hung Redis (or the shutdown), anything else a broken connection.
    fn failure(&self, e: Io, what: &str, limit: Duration) -> Failure {
        let target = self.settings.describe();
        match e {
            Io::Cut(Cut::TimedOut) => Failure::Hung(format!(
                "Redis at {target} {what} ({} ms): it is stopped, overloaded or blocked by a slow command",
                limit.as_millis()
            )),
            Io::Cut(Cut::ShuttingDown) => Failure::Hung(format!(
                "shutdown-flush-ms ran out while waiting for Redis at {target}"
            )),
            Io::Failed(e) => broken(&target, e),
        }
    }

    fn handshake(&mut self, until: Instant) -> Result<(), Failure> {
        enum Step {
            Auth,
            Select,
            Name,
            Ping,
        }
        let s = &self.settings;
        let mut cmds = Vec::with_capacity(128);
        let mut steps = Vec::new();
        if let Some(password) = &s.password {
            match &s.username {
                Some(u) => resp::command(&mut cmds, &[b"AUTH", u.as_bytes(), password.as_bytes()]),
                None => resp::command(&mut cmds, &[b"AUTH", password.as_bytes()]),
            }
            steps.push(Step::Auth);
        }
        let db = s.db.to_string();
        if s.db != 0 {
            resp::command(&mut cmds, &[b"SELECT", db.as_bytes()]);
            steps.push(Step::Select);
        }
        resp::command(&mut cmds, &[b"CLIENT", b"SETNAME", b"mod_cc_events"]);
        steps.push(Step::Name);
        // Proves that the server, not just the kernel's listen backlog, answers.
        resp::command(&mut cmds, &[b"PING"]);
        steps.push(Step::Ping);

        let target = s.describe();
        let limit = s.connect_timeout;
        let what = "accepted the connection but did not answer within connect-timeout-ms";
        let conn = self.conn.as_mut().ok_or_else(not_connected)?;
        write_all(conn, &cmds, until, &self.stop).map_err(|e| self.failure(e, what, limit))?;
        for step in steps {
            let conn = self.conn.as_mut().ok_or_else(not_connected)?;
            let reply =
                read_reply(conn, until, &self.stop).map_err(|e| self.failure(e, what, limit))?;
            let redis::Value::ServerError(e) = reply else {
                continue;
            };
            let e = resp::error_text(&e);
            if e.starts_with("NOAUTH") || e.starts_with("WRONGPASS") {
                return Err(Failure::Refused(format!(
                    "Redis at {target} requires authentication: {e}; set password (and username for an ACL user) in cc_events.conf"
                )));
            }
            return Err(Failure::Refused(match step {
                Step::Auth => format!("Redis at {target} refused authentication: {e}; check username and password in cc_events.conf"),
                Step::Select => format!("Redis at {target} refused SELECT {db}: {e}; check db in cc_events.conf"),
                // A cosmetic name for CLIENT LIST, and a liveness check that any
                // reply passes: a strict ACL may forbid either.
                Step::Name | Step::Ping => continue,
            }));
        }
        Ok(())
    }
}

impl Standalone {
    /// An IP address is used as it is; only a name goes to the resolver, and
    /// never for longer than `until` or the shutdown deadline.
    fn resolve(&mut self, until: Instant) -> Result<Vec<SocketAddr>, Failure> {
        let (host, port) = (self.settings.host.clone(), self.settings.port);
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let stop = self.stop.clone();
        let addrs = match self.resolver.lookup(&host, port, until, &|| stop.passed()) {
            Ok(addrs) => addrs,
            Err(Failed::TimedOut) if self.stop.passed() => {
                return Err(Failure::Hung(format!(
                    "shutdown-flush-ms ran out while resolving Redis host '{host}'"
                )))
            }
            Err(Failed::TimedOut) => {
                return Err(Failure::Hung(format!(
                    "resolving Redis host '{host}' did not finish within connect-timeout-ms ({} ms): the DNS server is slow or unreachable; check /etc/resolv.conf, or give host as an IP address",
                    self.settings.connect_timeout.as_millis()
                )))
            }
            Err(Failed::Error(e)) => {
                return Err(Failure::Broken(format!(
                    "cannot resolve Redis host '{host}': {e}; check host in cc_events.conf"
                )))
            }
        };
        if addrs.is_empty() {
            return Err(Failure::Broken(format!(
                "Redis host '{host}' has no address; check host in cc_events.conf"
            )));
        }
        Ok(addrs)
    }
}

impl Link for Standalone {
    fn connect(&mut self, until: Instant) -> Result<(), Failure> {
        self.close();
        let target = self.settings.describe();
        let limit = self.settings.connect_timeout;
        let addrs = self.resolve(until)?;
        let mut last = None;
        let count = addrs.len() as u32;
        for (i, addr) in addrs.into_iter().enumerate() {
            // Each address gets its share of what is left, so one that drops
            // packets silently cannot use up the time of the others.
            let left = until.saturating_duration_since(Instant::now());
            let share = Instant::now() + left / (count - i as u32);
            match open(addr, share, &self.stop) {
                Ok(stream) => {
                    self.conn = Some(Conn {
                        stream,
                        parser: redis::Parser::new(),
                    });
                    last = None;
                    break;
                }
                Err(Io::Failed(e)) => last = Some(Failure::Broken(format!(
                    "cannot connect to Redis at {target}: {e}; check host and port in cc_events.conf and that Redis is running"
                ))),
                Err(cut) => last = Some(self.failure(cut, "did not accept a connection within connect-timeout-ms", limit)),
            }
        }
        if let Some(f) = last {
            return Err(f);
        }
        let shaken = self.handshake(until);
        if shaken.is_err() {
            self.close();
        }
        shaken
    }

    fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    fn close(&mut self) {
        self.conn = None;
    }

    fn closed_by_peer(&self) -> bool {
        self.conn
            .as_ref()
            .is_some_and(|c| wait::peer_closed(c.stream.as_raw_fd()))
    }

    fn exchange(&mut self, commands: &[u8], replies: usize, until: Instant) -> Exchange {
        let limit = self.settings.io_timeout;
        let no_answer = "did not answer within io-timeout-ms";
        let Some(conn) = self.conn.as_mut() else {
            return Exchange {
                ok: 0,
                failure: Some(not_connected()),
            };
        };
        if let Err(e) = write_all(conn, commands, until, &self.stop) {
            let f = self.failure(e, no_answer, limit);
            self.close();
            return Exchange {
                ok: 0,
                failure: Some(f),
            };
        }
        let mut ok = 0;
        let mut refused = None;
        for _ in 0..replies {
            let Some(conn) = self.conn.as_mut() else {
                break;
            };
            match read_reply(conn, until, &self.stop) {
                Ok(redis::Value::ServerError(e)) => {
                    refused.get_or_insert_with(|| Failure::Refused(resp::error_text(&e)));
                }
                Ok(_) if refused.is_none() => ok += 1,
                // Read to keep the stream in step, but it does not count.
                Ok(_) => {}
                Err(e) => {
                    let f = self.failure(e, no_answer, limit);
                    self.close();
                    return Exchange {
                        ok,
                        failure: Some(refused.unwrap_or(f)),
                    };
                }
            }
        }
        Exchange {
            ok,
            failure: refused,
        }
    }

    fn describe(&self) -> String {
        self.settings.describe()
    }
}

pub(super) enum Io {
    Cut(Cut),
    Failed(io::Error),
}

fn not_connected() -> Failure {
    Failure::Broken("not connected to Redis".into())
}

fn broken(target: &str, e: io::Error) -> Failure {
    let why = match e.kind() {
        io::ErrorKind::UnexpectedEof => "the server closed the connection".to_string(),
        _ => e.to_string(),
    };
    Failure::Broken(format!("lost the connection to Redis at {target}: {why}"))
}

/// A non-blocking TCP connection to `addr`, established by `until`.
pub(super) fn open(addr: SocketAddr, until: Instant, stop: &Stop) -> Result<TcpStream, Io> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(Io::Failed)?;
    socket.set_nonblocking(true).map_err(Io::Failed)?;
    // One small write per batch: send it now rather than wait for an ACK.
    let _ = socket.set_tcp_nodelay(true);
    // Keeps NAT and firewall state alive under the idle PING's period.
    let _ = socket.set_tcp_keepalive(
        &TcpKeepalive::new()
            .with_time(Duration::from_secs(30))
            .with_interval(Duration::from_secs(10)),
    );
    match socket.connect(&SockAddr::from(addr)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
            wait_for(socket.as_raw_fd(), Want::Write, until, stop)?;
            if let Some(e) = socket.take_error().map_err(Io::Failed)? {
                return Err(Io::Failed(e));
            }
        }
        Err(e) => return Err(Io::Failed(e)),
    }
    Ok(socket.into())
}

fn wait_for(fd: i32, want: Want, until: Instant, stop: &Stop) -> Result<(), Io> {
    loop {
        if stop.passed() {
            return Err(Io::Cut(Cut::ShuttingDown));
        }
        let now = Instant::now();
        if now >= until {
            return Err(Io::Cut(Cut::TimedOut));
        }
        if wait::ready(fd, want, (until - now).min(SLICE)).map_err(Io::Failed)? {
            return Ok(());
        }
    }
}

pub(super) fn write_all(
    conn: &mut Conn,
    mut buf: &[u8],
    until: Instant,
    stop: &Stop,
) -> Result<(), Io> {
    while !buf.is_empty() {
        match (&conn.stream).write(buf) {
            Ok(0) => return Err(Io::Failed(io::ErrorKind::WriteZero.into())),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                wait_for(conn.stream.as_raw_fd(), Want::Write, until, stop)?
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Io::Failed(e)),
        }
    }
    Ok(())
}

/// One reply, waiting in slices; a cut mid-reply leaves the connection unusable
/// (the caller closes it).
pub(super) fn read_reply(conn: &mut Conn, until: Instant, stop: &Stop) -> Result<redis::Value, Io> {
    let mut reader = Timed {
        stream: &conn.stream,
        until,
        stop,
        cut: None,
        error: None,
        eof: false,
    };
    match conn.parser.parse_value(&mut reader) {
        Ok(v) => Ok(v),
        Err(_) if reader.cut.is_some() => Err(Io::Cut(reader.cut.unwrap_or(Cut::TimedOut))),
        Err(_) if reader.eof => Err(Io::Failed(io::ErrorKind::UnexpectedEof.into())),
        Err(e) => Err(Io::Failed(reader.error.unwrap_or_else(|| {
            io::Error::other(format!("unreadable reply: {e}"))
        }))),
    }
}

struct Timed<'a> {
    stream: &'a TcpStream,
    until: Instant,
    stop: &'a Stop,
    cut: Option<Cut>,
    /// The socket's own error, kept with its kind (reset, ...).
    error: Option<io::Error>,
    eof: bool,
}

impl Read for Timed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.stream.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match wait_for(self.stream.as_raw_fd(), Want::Read, self.until, self.stop) {
                        Ok(()) => {}
                        Err(Io::Cut(c)) => {
                            self.cut = Some(c);
                            return Err(io::ErrorKind::TimedOut.into());
                        }
                        Err(Io::Failed(e)) => return Err(e),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(0) => {
                    self.eof = true;
                    return Ok(0);
                }
                Ok(n) => return Ok(n),
                Err(e) => {
                    self.error = Some(io::Error::new(e.kind(), e.to_string()));
                    return Err(e);
                }
            }
        }
    }
}
