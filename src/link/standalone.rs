//! A single Redis server over plain TCP or TLS (`tls.rs`). Every connect,
//! handshake, write and read waits in short slices bounded by a deadline and
//! by the shutdown deadline, so a hung Redis can never hold the worker (or
//! `unload`) longer than asked.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, TcpKeepalive, Type};

use super::net::{wait_for, Cut, Io};
use super::tls::{self, Session, TlsClient};
use super::{resp, Exchange, Failure, Link};
use crate::config::RedisSettings;
use crate::fs::resolve::{Failed, Resolver};
use crate::fs::wait::{self, Want};
use crate::stop::Stop;

pub struct Standalone {
    settings: RedisSettings,
    stop: Arc<Stop>,
    conn: Option<Conn>,
    /// Host names are looked up without blocking past the deadline.
    resolver: Resolver,
    /// With `tls=true`: the files read once, at the first connect that
    /// could read them (a failed read is retried with the next connect).
    tls: Option<TlsClient>,
    hints: Hints,
}

/// What failure messages call the server and which params they tell the
/// operator to check. The defaults are for the `host`/`port` server; the
/// Sentinel link reuses this link for the sentinels and for the master they
/// name, whose addresses come from elsewhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hints {
    /// Names the server, e.g. `Redis Sentinel at 10.0.0.1:26379`; None:
    /// `Redis at <host:port db N ...>`.
    pub server: Option<String>,
    /// After a failed connect.
    pub reach: &'static str,
    /// After a failed lookup of the host name.
    pub host: &'static str,
    /// After a refused AUTH.
    pub login: &'static str,
    /// When the server wants AUTH and none was configured.
    pub no_login: &'static str,
}

impl Default for Hints {
    fn default() -> Self {
        Hints {
            server: None,
            reach: "check host and port in cc_events.conf and that Redis is running",
            host: "check host in cc_events.conf",
            login: "check username and password in cc_events.conf",
            no_login: "set password (and username for an ACL user) in cc_events.conf",
        }
    }
}

pub(super) struct Conn {
    pub(super) stream: TcpStream,
    /// TLS over `stream`; None for plain TCP.
    pub(super) tls: Option<Box<Session>>,
    /// Holds bytes read past the current reply; one per connection.
    pub(super) parser: redis::Parser,
}

impl Standalone {
    pub fn new(settings: RedisSettings, stop: Arc<Stop>) -> Standalone {
        Self::with_hints(settings, stop, Hints::default())
    }

    pub fn with_hints(settings: RedisSettings, stop: Arc<Stop>, hints: Hints) -> Standalone {
        Standalone {
            settings,
            stop,
            conn: None,
            resolver: Resolver::default(),
            tls: None,
            hints,
        }
    }

    /// How messages name this server: `Redis at 127.0.0.1:6379 db 0`.
    fn server(&self) -> String {
        match &self.hints.server {
            Some(s) => s.clone(),
            None => format!("Redis at {}", self.settings.describe()),
        }
    }

    /// Sends one command and reads its reply, by `until` (or the shutdown
    /// deadline). An error reply is `Refused` and leaves the connection open;
    /// a hung or broken one is closed.
    pub fn query(&mut self, command: &[u8], until: Instant) -> Result<redis::Value, Failure> {
        let limit = self.settings.io_timeout;
        let no_answer = "did not answer within io-timeout-ms";
        let conn = self.conn.as_mut().ok_or_else(not_connected)?;
        let reply = match write_all(conn, command, until, &self.stop) {
            Ok(()) => read_reply(conn, until, &self.stop),
            Err(e) => Err(e),
        };
        match reply {
            Ok(redis::Value::ServerError(e)) => Err(Failure::Refused(resp::error_text(&e))),
            Ok(v) => Ok(v),
            Err(e) => {
                let f = self.failure(e, no_answer, limit);
                self.close();
                Err(f)
            }
        }
    }

    /// What a failed wait or socket call means to the operator: a cut wait is
    /// a hung Redis (or the shutdown), anything else a broken connection.
    fn failure(&self, e: Io, what: &str, limit: Duration) -> Failure {
        let server = self.server();
        match e {
            Io::Cut(Cut::TimedOut) => Failure::Hung(format!(
                "{server} {what} ({} ms): it is stopped, overloaded or blocked by a slow command",
                limit.as_millis()
            )),
            Io::Cut(Cut::ShuttingDown) => Failure::Hung(format!(
                "shutdown-flush-ms ran out while waiting for {server}"
            )),
            Io::Failed(e) => broken(&server, e),
            Io::Tls(why) => Failure::Broken(why),
        }
    }

    /// A failed first reply over plain TCP: a TLS port hangs up on plain
    /// text (or answers with a TLS alert), so say so.
    fn plain_failure(&self, e: Io, what: &str, limit: Duration) -> Failure {
        match e {
            Io::Failed(e)
                if self.settings.tls.is_none()
                    && (tls::is_closed(&e) || e.kind() == io::ErrorKind::InvalidData) =>
            {
                let why = match e.kind() {
                    io::ErrorKind::UnexpectedEof => "the server closed the connection".to_string(),
                    _ => e.to_string(),
                };
                Failure::Broken(format!(
                    "Redis at {} ended the connection without a Redis reply ({why}): if port {} is Redis's tls-port, set tls=true (and tls-ca-file) in cc_events.conf",
                    self.settings.describe(),
                    self.settings.port
                ))
            }
            e => self.failure(e, what, limit),
        }
    }

    /// Starts TLS on the new connection and shakes hands by `until`.
    fn start_tls(&mut self, until: Instant) -> Result<(), Failure> {
        let Some(settings) = &self.settings.tls else {
            return Ok(());
        };
        if self.tls.is_none() {
            let client = TlsClient::new(settings).map_err(|e| Failure::Broken(e.to_string()))?;
            self.tls = Some(client);
        }
        let client = self.tls.as_ref().ok_or_else(not_connected)?;
        let target = self.settings.describe();
        let mut session = client
            .session(&self.settings.host, self.settings.port, &target)
            .map_err(Failure::Broken)?;
        let conn = self.conn.as_mut().ok_or_else(not_connected)?;
        let limit = self.settings.connect_timeout;
        session
            .handshake(&conn.stream, until, &self.stop)
            .map_err(|e| {
                self.failure(
                    e,
                    "did not finish the TLS handshake within connect-timeout-ms",
                    limit,
                )
            })?;
        if let Some(conn) = self.conn.as_mut() {
            conn.tls = Some(Box::new(session));
        }
        Ok(())
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

        let server = self.server();
        let hints = self.hints.clone();
        let limit = s.connect_timeout;
        let what = "accepted the connection but did not answer within connect-timeout-ms";
        let conn = self.conn.as_mut().ok_or_else(not_connected)?;
        write_all(conn, &cmds, until, &self.stop)
            .map_err(|e| self.plain_failure(e, what, limit))?;
        for step in steps {
            let conn = self.conn.as_mut().ok_or_else(not_connected)?;
            let reply = read_reply(conn, until, &self.stop)
                .map_err(|e| self.plain_failure(e, what, limit))?;
            let redis::Value::ServerError(e) = reply else {
                continue;
            };
            let e = resp::error_text(&e);
            // A refused AUTH is a wrong password, not a missing one.
            let wanted = e.starts_with("NOAUTH") || e.starts_with("WRONGPASS");
            if wanted && !matches!(step, Step::Auth) {
                return Err(Failure::Refused(format!(
                    "{server} requires authentication: {e}; {}",
                    hints.no_login
                )));
            }
            return Err(Failure::Refused(match step {
                Step::Auth => format!("{server} refused authentication: {e}; {}", hints.login),
                Step::Select => {
                    format!("{server} refused SELECT {db}: {e}; check db in cc_events.conf")
                }
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
                    "cannot resolve Redis host '{host}': {e}; {}",
                    self.hints.host
                )))
            }
        };
        if addrs.is_empty() {
            return Err(Failure::Broken(format!(
                "Redis host '{host}' has no address; {}",
                self.hints.host
            )));
        }
        Ok(addrs)
    }
}

impl Link for Standalone {
    fn connect(&mut self, until: Instant) -> Result<(), Failure> {
        self.close();
        let server = self.server();
        let reach = self.hints.reach;
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
                        tls: None,
                        parser: redis::Parser::new(),
                    });
                    last = None;
                    break;
                }
                Err(Io::Failed(e)) => {
                    last = Some(Failure::Broken(format!(
                        "cannot connect to {server}: {e}; {reach}"
                    )))
                }
                Err(cut) => {
                    last = Some(self.failure(
                        cut,
                        "did not accept a connection within connect-timeout-ms",
                        limit,
                    ))
                }
            }
        }
        if let Some(f) = last {
            return Err(f);
        }
        let shaken = self.start_tls(until).and_then(|()| self.handshake(until));
        if shaken.is_err() {
            self.close();
        }
        shaken
    }

    fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    fn close(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            if let Some(tls) = conn.tls.as_mut() {
                tls.close(&conn.stream);
            }
        }
    }

    fn closed_by_peer(&self) -> bool {
        self.conn
            .as_ref()
            .is_some_and(|c| wait::peer_closed(c.stream.as_raw_fd()))
    }

    fn exchange(&mut self, commands: &[u8], replies: usize, until: Instant) -> Exchange {
        match self.write(commands, replies, until) {
            Some(failed) => failed,
            None => self.read(replies, until),
        }
    }

    fn write(&mut self, commands: &[u8], _replies: usize, until: Instant) -> Option<Exchange> {
        let Some(conn) = self.conn.as_mut() else {
            return Some(Exchange {
                ok: 0,
                failure: Some(not_connected()),
            });
        };
        if let Err(e) = write_all(conn, commands, until, &self.stop) {
            let f = self.failure(
                e,
                "did not answer within io-timeout-ms",
                self.settings.io_timeout,
            );
            self.close();
            return Some(Exchange {
                ok: 0,
                failure: Some(f),
            });
        }
        None
    }

    fn read(&mut self, replies: usize, until: Instant) -> Exchange {
        let limit = self.settings.io_timeout;
        let no_answer = "did not answer within io-timeout-ms";
        let mut ok = 0;
        let mut refused = None;
        for _ in 0..replies {
            let Some(conn) = self.conn.as_mut() else {
                return Exchange {
                    ok,
                    failure: Some(refused.unwrap_or_else(not_connected)),
                };
            };
            match read_reply(conn, until, &self.stop) {
                Ok(v) if error_in(&v).is_some() => {
                    if let Some(e) = error_in(&v) {
                        refused.get_or_insert_with(|| Failure::Refused(resp::error_text(e)));
                    }
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

/// An error reply, or one inside EXEC's replies: a command of a MULTI that
/// failed when it ran (its transaction is not rolled back: the whole
/// transaction counts as refused and is sent again).
fn error_in(v: &redis::Value) -> Option<&redis::ServerError> {
    match v {
        redis::Value::ServerError(e) => Some(e),
        redis::Value::Array(items) => items.iter().find_map(|i| match i {
            redis::Value::ServerError(e) => Some(e),
            _ => None,
        }),
        _ => None,
    }
}

fn not_connected() -> Failure {
    Failure::Broken("not connected to Redis".into())
}

fn broken(server: &str, e: io::Error) -> Failure {
    let why = match e.kind() {
        io::ErrorKind::UnexpectedEof => "the server closed the connection".to_string(),
        _ => e.to_string(),
    };
    Failure::Broken(format!("lost the connection to {server}: {why}"))
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

pub(super) fn write_all(
    conn: &mut Conn,
    mut buf: &[u8],
    until: Instant,
    stop: &Stop,
) -> Result<(), Io> {
    if let Some(tls) = conn.tls.as_mut() {
        return tls.write_all(&conn.stream, buf, until, stop);
    }
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
        tls: conn.tls.as_deref_mut(),
        until,
        stop,
        cut: None,
        error: None,
        tls_error: None,
        eof: false,
    };
    match conn.parser.parse_value(&mut reader) {
        Ok(v) => Ok(v),
        Err(_) if reader.cut.is_some() => Err(Io::Cut(reader.cut.unwrap_or(Cut::TimedOut))),
        Err(_) if reader.tls_error.is_some() => Err(Io::Tls(reader.tls_error.unwrap_or_default())),
        Err(_) if reader.eof => Err(Io::Failed(io::ErrorKind::UnexpectedEof.into())),
        Err(e) => Err(Io::Failed(reader.error.unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, format!("unreadable reply: {e}"))
        }))),
    }
}

struct Timed<'a> {
    stream: &'a TcpStream,
    tls: Option<&'a mut Session>,
    until: Instant,
    stop: &'a Stop,
    cut: Option<Cut>,
    /// The socket's own error, kept with its kind (reset, ...).
    error: Option<io::Error>,
    /// A TLS failure, explained.
    tls_error: Option<String>,
    eof: bool,
}

impl Read for Timed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(tls) = self.tls.as_mut() {
            return match tls.read(self.stream, buf, self.until, self.stop) {
                Ok(0) => {
                    self.eof = true;
                    Ok(0)
                }
                Ok(n) => Ok(n),
                Err(Io::Cut(c)) => {
                    self.cut = Some(c);
                    Err(io::ErrorKind::TimedOut.into())
                }
                // A FIN without close_notify: the server went away, as for TCP.
                Err(Io::Failed(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    self.eof = true;
                    Ok(0)
                }
                Err(Io::Failed(e)) => {
                    self.error = Some(io::Error::new(e.kind(), e.to_string()));
                    Err(e)
                }
                Err(Io::Tls(why)) => {
                    self.tls_error = Some(why);
                    Err(io::ErrorKind::InvalidData.into())
                }
            };
        }
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
                        // A wait on a plain socket has no TLS to fail.
                        Err(Io::Tls(why)) => return Err(io::Error::other(why)),
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
