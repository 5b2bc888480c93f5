//! Redis Cluster, through the redis crate's synchronous cluster client: it
//! learns the slots from the seed nodes (`cluster-nodes`), sends each command
//! to the master that owns its key's slot, follows MOVED and ASK, and
//! rediscovers the slots after a failover.
//!
//! What the crate cannot do is keep to our deadlines: its timeouts apply to
//! each socket operation, and a retry (reconnect, refresh the slots, redirect)
//! starts them again. So the node connections it uses are ours: [`Node`] does
//! every connect, write and read with the standalone link's deadline-sliced
//! socket code, bounded by the deadline of the link call in progress (and by
//! the shutdown deadline). Once that deadline has passed every node operation
//! fails at once, so however the crate retries, nothing waits past it. The
//! crate's own waits between retries are set to under a millisecond: the
//! worker's backoff does the waiting, interruptibly.
//!
//! An exchange sends runs of consecutive commands whose keys share a slot as
//! one pipeline to that slot's master, and learns each command's reply, in
//! order. A command refused with a redirect (MOVED, ASK) or a cluster retry
//! error (TRYAGAIN, CLUSTERDOWN, ...) is sent again alone, through the
//! crate's redirect handling, and the exchange goes on after it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::cluster::{ClusterClient, ClusterConnection, Connect};
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo, SingleNodeRoutingInfo, Slot,
};
use redis::{
    ConnectionAddr, ConnectionLike, ErrorKind, IntoConnectionInfo, PushKind, RedisError,
    RedisResult, Value,
};

use super::net::{Cut, Io};
use super::standalone::{self, Conn};
use super::tls::TlsClient;
use super::{resp, Exchange, Failure, Link};
use crate::config::{addrs, RedisSettings, Topology};
use crate::fs::resolve::{Failed, Resolver};
use crate::stop::Stop;

/// How often the crate tries a command again (redirects, a reconnect) within
/// one call: enough for MOVED then ASK, few enough that a dead node cannot
/// hold the worker long even where a refused connect takes no time.
const RETRIES: u32 = 3;

pub struct Cluster {
    settings: RedisSettings,
    seeds: Vec<(String, u16)>,
    stop: Arc<Stop>,
    conn: Option<ClusterConnection<Node>>,
    /// Masters serving slots (CLUSTER INFO's cluster_size), for describe().
    masters: Option<usize>,
    /// Scripts loaded through this link, by SHA1: an EVALSHA that a node does
    /// not know (a replica promoted since, a node added) goes again as EVAL.
    scripts: HashMap<String, Vec<u8>>,
    /// With `tls=true`: the `tls-*` files read once per link (at the first
    /// connect that could read them), a TLS session per node connection.
    tls: Option<TlsClient>,
}

impl Cluster {
    pub fn new(settings: RedisSettings, stop: Arc<Stop>) -> Cluster {
        let seeds = match &settings.topology {
            Topology::Cluster(c) => c.nodes.clone(),
            _ => vec![(settings.host.clone(), settings.port)],
        };
        Cluster {
            settings,
            seeds,
            stop,
            conn: None,
            masters: None,
            scripts: HashMap::new(),
            tls: None,
        }
    }

    fn client(&self) -> Result<ClusterClient, Failure> {
        let s = &self.settings;
        let seeds = self
            .seeds
            .iter()
            .map(|(h, p)| ConnectionAddr::Tcp(h.clone(), *p));
        let mut b = ClusterClient::builder(seeds)
            .connection_timeout(s.connect_timeout)
            .response_timeout(s.io_timeout)
            .retries(RETRIES)
            // The wait is drawn from min..max ms: 0 ms. The worker backs off.
            .min_retry_wait(0)
            .max_retry_wait(1);
        if let Some(u) = &s.username {
            b = b.username(u);
        }
        if let Some(p) = &s.password {
            b = b.password(p);
        }
        b.build().map_err(|e| {
            Failure::Refused(format!(
                "cannot set up the Redis Cluster client for {}: {e}; check cluster-nodes in cc_events.conf",
                addrs(&self.seeds)
            ))
        })
    }

    /// What a crate error means to the operator. A server's error reply
    /// leaves the connection open; anything else closes it, and the next
    /// connect rediscovers the cluster from the seeds.
    fn failure(&mut self, e: Trouble, until: Instant) -> Failure {
        let seeds = addrs(&self.seeds);
        let e = match e {
            Trouble::Refused(text) => return Failure::Refused(explain(text)),
            Trouble::Io(e) => e,
        };
        self.close();
        if self.stop.passed() {
            return Failure::Hung(format!(
                "shutdown-flush-ms ran out while waiting for Redis Cluster {seeds}"
            ));
        }
        if e.is_timeout() || Instant::now() >= until {
            return Failure::Hung(format!(
                "a Redis Cluster node ({seeds}) did not answer in time (connect-timeout-ms {}, io-timeout-ms {}): it is stopped, overloaded or blocked by a slow command: {e}",
                self.settings.connect_timeout.as_millis(),
                self.settings.io_timeout.as_millis()
            ));
        }
        let text = e.to_string();
        if text.contains("WRONGPASS") || text.contains("NOAUTH") {
            return Failure::Refused(format!(
                "Redis Cluster {seeds} refused authentication: {text}; check username and password in cc_events.conf (every node needs the same user)"
            ));
        }
        Failure::Broken(format!(
            "cannot reach a node of Redis Cluster {seeds}: {text}; the slots it serves take writes again once it is back or its replica is promoted"
        ))
    }

    /// Remembers the body of every SCRIPT LOAD, for the EVAL fallback.
    fn remember_scripts(&mut self, bytes: &[u8], cmds: &[Command]) {
        for c in cmds.iter().filter(|c| c.is(bytes, &[b"SCRIPT", b"LOAD"])) {
            if let Some(body) = c.arg(bytes, 2) {
                let sha = sha1_smol::Sha1::from(body).digest().to_string();
                self.scripts.insert(sha, body.to_vec());
            }
        }
    }
}

impl Link for Cluster {
    fn connect(&mut self, until: Instant) -> Result<(), Failure> {
        self.close();
        if let (Some(t), None) = (&self.settings.tls, &self.tls) {
            let tls = TlsClient::new(t).map_err(|e| Failure::Broken(e.to_string()))?;
            self.tls = Some(tls);
        }
        let client = self.client()?;
        let stop = self.stop.clone();
        let tls = self.tls.clone();
        let conn = bounded(until, &stop, tls.as_ref(), || {
            client.get_generic_connection::<Node>()
        });
        let mut conn = conn.map_err(|e| self.failure(Trouble::Io(e), until))?;
        // One question to any node: is the cluster serving all its slots,
        // and how many masters share them? A user without +cluster|info
        // connects all the same.
        let info = bounded(until, &stop, tls.as_ref(), || {
            conn.route_command(
                redis::cmd("CLUSTER").arg("INFO"),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            )
        });
        self.masters = None;
        match info {
            Ok(v) => {
                let text = text_of(&v);
                let field = |name: &str| {
                    text.lines()
                        .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':'))
                        .map(str::to_string)
                };
                if let Some(state) = field("cluster_state").filter(|s| s != "ok") {
                    return Err(Failure::Broken(format!(
                        "Redis Cluster {} is down (cluster_state:{state}): a master and its replicas are unreachable, or a failover is under way; retrying",
                        addrs(&self.seeds)
                    )));
                }
                self.masters = field("cluster_size").and_then(|n| n.parse().ok());
            }
            Err(e) if e.code().is_some() => {}
            Err(e) => return Err(self.failure(Trouble::Io(e), until)),
        }
        // Every master answers, or this is not connected yet: until a dead
        // master is flagged as failed, CLUSTER INFO still says ok, and a link
        // that connects only to fail at once would log each round of an
        // outage. Any reply will do (a strict ACL may refuse PING).
        let ping = bounded(until, &stop, tls.as_ref(), || {
            conn.route_command(
                &redis::cmd("PING"),
                RoutingInfo::MultiNode((
                    MultipleNodeRoutingInfo::AllMasters,
                    Some(ResponsePolicy::AllSucceeded),
                )),
            )
        });
        if let Err(e) = ping.map_err(trouble) {
            if let Trouble::Io(_) = e {
                return Err(self.failure(e, until));
            }
        }
        self.conn = Some(conn);
        Ok(())
    }

    fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    fn close(&mut self) {
        self.conn = None;
    }

    /// The crate holds one connection per node and gives no way to look at
    /// them without I/O. A node that closed its connection is found by the
    /// next exchange: the crate reconnects to it and sends again what that
    /// node never read.
    fn closed_by_peer(&self) -> bool {
        false
    }

    fn exchange(&mut self, commands: &[u8], replies: usize, until: Instant) -> Exchange {
        let cmds = match parse(commands) {
            Some(c) if c.len() == replies => c,
            _ => {
                return Exchange {
                    ok: 0,
                    failure: Some(Failure::Refused(format!(
                        "mod_cc_events bug: a batch of {replies} commands did not read back as {replies} RESP commands"
                    ))),
                }
            }
        };
        self.remember_scripts(commands, &cmds);
        let Some(conn) = self.conn.as_mut() else {
            return Exchange {
                ok: 0,
                failure: Some(Failure::Broken("not connected to Redis Cluster".into())),
            };
        };
        let stop = self.stop.clone();
        let tls = self.tls.clone();
        let scripts = &self.scripts;
        let (ok, trouble) = bounded(until, &stop, tls.as_ref(), || {
            run(conn, commands, &cmds, scripts)
        });
        Exchange {
            ok,
            failure: trouble.map(|t| self.failure(t, until)),
        }
    }

    fn describe(&self) -> String {
        let s = self.settings.describe();
        let Some(n) = self.masters else { return s };
        let nodes = format!("cluster {}", addrs(&self.seeds));
        s.replacen(&nodes, &format!("{nodes} ({n} masters)"), 1)
    }
}

/// Why a run stopped.
enum Trouble {
    /// A server's error reply, as one line.
    Refused(String),
    /// No answer: I/O, a timeout, or the crate could not route.
    Io(RedisError),
}

fn trouble(e: RedisError) -> Trouble {
    match e.code() {
        Some(code) => Trouble::Refused(match e.detail() {
            Some(d) => format!("{code} {d}"),
            None => code.to_string(),
        }),
        None => Trouble::Io(e),
    }
}

/// Adds what an operator can do about the cluster's own refusals.
fn explain(text: String) -> String {
    let code = text.split_whitespace().next().unwrap_or_default();
    match code {
        "CLUSTERDOWN" => format!("{text} (a master and all its replicas are unreachable, or a failover is under way)"),
        "TRYAGAIN" => format!("{text} (a slot is being moved between nodes)"),
        "CROSSSLOT" => format!("{text} (the keys of one state call must share a hash tag: see state-prefix and stream)"),
        _ => text,
    }
}

/// Sends `cmds` in order: runs of one slot pipelined, anything else alone.
/// Returns how many succeeded from the first, and why it stopped.
fn run(
    conn: &mut ClusterConnection<Node>,
    bytes: &[u8],
    cmds: &[Command],
    scripts: &HashMap<String, Vec<u8>>,
) -> (usize, Option<Trouble>) {
    let mut i = 0;
    while i < cmds.len() {
        let Some(slot) = cmds[i].slot else {
            match alone(conn, bytes, &cmds[i])
                .or_else(|t| repair(conn, bytes, &cmds[i], t, scripts))
            {
                Ok(()) => i += 1,
                Err(t) => return (i, Some(t)),
            }
            continue;
        };
        let end = cmds[i..]
            .iter()
            .position(|c| c.slot != Some(slot))
            .map_or(cmds.len(), |n| i + n);
        let span = cmds[i].range.start..cmds[end - 1].range.end;
        // The crate sends the run to the master of its first command's slot
        // (all of them share it). Error replies come back as values (see
        // `refused`), so a redirect is not retried here for the whole run:
        // the first refused command is retried alone below, which is where
        // the crate follows MOVED or ASK and refreshes its slot map.
        let replies = match conn.req_packed_commands(&bytes[span], 0, end - i) {
            Ok(r) => r,
            Err(e) => return (i, Some(trouble(e))),
        };
        match replies.iter().position(|v| refusal(v).is_some()) {
            None => i = end,
            Some(k) => {
                let text = refusal(&replies[k]).unwrap_or_default();
                let k = i + k;
                // The commands after k in the run were sent too: those that
                // succeeded are sent again (at least once, as standalone).
                match repair(conn, bytes, &cmds[k], Trouble::Refused(text), scripts) {
                    Ok(()) => i = k + 1,
                    Err(t) => return (k, Some(t)),
                }
            }
        }
    }
    (cmds.len(), None)
}

/// A command that is not keyed by a slot, routed by the crate: PING to every
/// master, SCRIPT LOAD to every master (EVALSHA runs only on masters).
fn alone(conn: &mut ClusterConnection<Node>, bytes: &[u8], c: &Command) -> Result<(), Trouble> {
    let sent = if c.is(bytes, &[b"SCRIPT", b"LOAD"]) {
        let mut cmd = redis::Cmd::new();
        for a in &c.args {
            cmd.arg(&bytes[a.clone()]);
        }
        conn.route_command(
            &cmd,
            RoutingInfo::MultiNode((
                MultipleNodeRoutingInfo::AllMasters,
                Some(ResponsePolicy::AllSucceeded),
            )),
        )
    } else {
        conn.req_packed_command(&bytes[c.range.clone()])
    };
    sent.map(|_| ()).map_err(trouble)
}

/// The second try of a refused command: a redirect or a cluster retry error
/// goes through the crate's handling (which follows MOVED and ASK, and
/// refreshes its slots); NOSCRIPT for a script this link loaded goes as EVAL.
/// Any other refusal stands.
fn repair(
    conn: &mut ClusterConnection<Node>,
    bytes: &[u8],
    c: &Command,
    why: Trouble,
    scripts: &HashMap<String, Vec<u8>>,
) -> Result<(), Trouble> {
    let Trouble::Refused(text) = &why else {
        return Err(why);
    };
    let code = text.split_whitespace().next().unwrap_or_default();
    match code {
        "MOVED" | "ASK" | "TRYAGAIN" | "CLUSTERDOWN" | "MASTERDOWN" | "LOADING" | "READONLY" => {
            conn.req_packed_command(&bytes[c.range.clone()])
                .map(|_| ())
                .map_err(trouble)
        }
        "NOSCRIPT" => {
            let body = c
                .arg(bytes, 1)
                .and_then(|sha| std::str::from_utf8(sha).ok())
                .and_then(|sha| scripts.get(&sha.to_ascii_lowercase()));
            match (c.is(bytes, &[b"EVALSHA"]), body) {
                (true, Some(body)) => {
                    let mut eval = Vec::with_capacity(body.len() + c.range.len());
                    let mut args: Vec<&[u8]> = vec![b"EVAL", body];
                    args.extend(c.args[2..].iter().map(|a| &bytes[a.clone()]));
                    resp::command(&mut eval, &args);
                    conn.req_packed_command(&eval).map(|_| ()).map_err(trouble)
                }
                _ => Err(why),
            }
        }
        _ => Err(why),
    }
}

/// A command as we wrote it: where it is in the batch, where its arguments
/// are, and the slot of its key (None: not keyed, routed by the crate).
#[derive(Debug, PartialEq, Eq)]
struct Command {
    range: Range<usize>,
    args: Vec<Range<usize>>,
    slot: Option<Slot>,
}

impl Command {
    fn arg<'a>(&self, bytes: &'a [u8], i: usize) -> Option<&'a [u8]> {
        self.args.get(i).map(|r| &bytes[r.clone()])
    }

    /// True when the command's first words are `words` (any case).
    fn is(&self, bytes: &[u8], words: &[&[u8]]) -> bool {
        words.iter().enumerate().all(|(i, w)| {
            self.arg(bytes, i)
                .is_some_and(|a| a.eq_ignore_ascii_case(w))
        })
    }
}

/// Reads back the RESP commands of a batch (arrays of bulk strings, as
/// `resp::command` writes them). None: not that.
fn parse(bytes: &[u8]) -> Option<Vec<Command>> {
    fn number(bytes: &[u8], at: &mut usize, kind: u8) -> Option<usize> {
        if bytes.get(*at) != Some(&kind) {
            return None;
        }
        let end = *at + bytes[*at..].windows(2).position(|w| w == b"\r\n")?;
        let n = std::str::from_utf8(&bytes[*at + 1..end])
            .ok()?
            .parse()
            .ok()?;
        *at = end + 2;
        Some(n)
    }
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let start = at;
        let n = number(bytes, &mut at, b'*')?;
        let mut args = Vec::with_capacity(n);
        for _ in 0..n {
            let len = number(bytes, &mut at, b'$')?;
            let arg = at..at.checked_add(len)?;
            if bytes.get(arg.end..arg.end + 2)? != b"\r\n" {
                return None;
            }
            at = arg.end + 2;
            args.push(arg);
        }
        let mut c = Command {
            range: start..at,
            args,
            slot: None,
        };
        c.slot = key_of(bytes, &c).map(Slot::for_key);
        out.push(c);
    }
    whole_transactions(bytes, &mut out);
    Some(out)
}

/// A MULTI ... EXEC goes whole to the slot of its first key, as one run:
/// the state mirror writes a batch that way to a server that is not a
/// cluster, and a `cc_events reload` that switched to one may find such a
/// batch still waiting to be sent.
fn whole_transactions(bytes: &[u8], cmds: &mut [Command]) {
    let mut i = 0;
    while i < cmds.len() {
        let end = cmds[i]
            .is(bytes, &[b"MULTI"])
            .then(|| cmds[i..].iter().position(|c| c.is(bytes, &[b"EXEC"])))
            .flatten()
            .map(|n| i + n);
        let Some(end) = end else {
            i += 1;
            continue;
        };
        if let Some(slot) = cmds[i..=end].iter().find_map(|c| c.slot) {
            for c in &mut cmds[i..=end] {
                c.slot = Some(slot);
            }
        }
        i = end + 1;
    }
}

/// The key the crate routes a command by, for the commands the worker sends
/// (as the crate reads them: the first argument, or for a script the first
/// of its keys). Anything else is sent alone and routed by the crate.
fn key_of<'a>(bytes: &'a [u8], c: &Command) -> Option<&'a [u8]> {
    if [&b"PUBLISH"[..], b"SPUBLISH", b"XADD"]
        .iter()
        .any(|w| c.is(bytes, &[w]))
    {
        return c.arg(bytes, 1);
    }
    if c.is(bytes, &[b"EVALSHA"]) || c.is(bytes, &[b"EVAL"]) {
        let keys: usize = std::str::from_utf8(c.arg(bytes, 2)?).ok()?.parse().ok()?;
        return (keys > 0).then(|| c.arg(bytes, 3)).flatten();
    }
    None
}

/// How a node hands an error reply inside a pipelined run to the crate: as a
/// value, so that the crate returns the run's other replies too (it would
/// make the first error the run's only result).
const REFUSED: &str = "mod_cc_events: refused";

fn refused(e: &redis::ServerError) -> Value {
    Value::Push {
        kind: PushKind::Other(REFUSED.into()),
        data: vec![Value::BulkString(resp::error_text(e).into_bytes())],
    }
}

/// The error line of a reply that [`refused`] wrapped.
fn refusal(v: &Value) -> Option<String> {
    match v {
        Value::Push {
            kind: PushKind::Other(k),
            data,
        } if k == REFUSED => match data.first() {
            Some(Value::BulkString(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => Some(String::new()),
        },
        _ => None,
    }
}

fn text_of(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::VerbatimString { text, .. } => text.clone(),
        _ => String::new(),
    }
}

/// The deadline of the link call in progress on this thread: the node
/// connections the crate opens and uses inside that call keep to it.
struct Bound {
    until: Instant,
    stop: Arc<Stop>,
    /// The link's TLS client, for the node connections opened in the call.
    tls: Option<TlsClient>,
}

thread_local! {
    // Set only on the worker thread, our own pthread: a destructor registered
    // here runs when it ends, before unload returns (see fs/thread.rs).
    static BOUND: RefCell<Option<Bound>> = const { RefCell::new(None) };
}

/// Runs `f` with `until` (and the shutdown deadline) bounding every node
/// operation, and node connections opened with `tls` when it is set.
fn bounded<T>(
    until: Instant,
    stop: &Arc<Stop>,
    tls: Option<&TlsClient>,
    f: impl FnOnce() -> T,
) -> T {
    struct Restore(Option<Bound>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            BOUND.with(|b| *b.borrow_mut() = prev);
        }
    }
    let prev = BOUND.with(|b| {
        b.borrow_mut().replace(Bound {
            until,
            stop: stop.clone(),
            tls: tls.cloned(),
        })
    });
    let _restore = Restore(prev);
    f()
}

/// The bound of a node operation: the call's, or `fallback` from now outside one.
fn bound(fallback: Duration) -> (Instant, Arc<Stop>) {
    BOUND.with(|b| match &*b.borrow() {
        Some(b) => (b.until, b.stop.clone()),
        None => (Instant::now() + fallback, Arc::new(Stop::default())),
    })
}

/// The TLS client of the link call in progress (None: plain TCP).
fn bound_tls() -> Option<TlsClient> {
    BOUND.with(|b| b.borrow().as_ref().and_then(|b| b.tls.clone()))
}

/// Outside a link call (never, as the link is written) a node operation may take this long.
const UNBOUND: Duration = Duration::from_secs(1);

/// One node's connection, as the crate's cluster client uses it, doing its
/// I/O within the bound of the link call in progress.
pub struct Node {
    conn: Option<Conn>,
    addr: String,
}

impl Node {
    fn io(&self, e: Io) -> RedisError {
        let addr = &self.addr;
        let e = match e {
            Io::Cut(Cut::TimedOut) => io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{addr} did not answer in time"),
            ),
            Io::Cut(Cut::ShuttingDown) => {
                io::Error::new(io::ErrorKind::TimedOut, format!("{addr}: shutting down"))
            }
            Io::Failed(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                io::Error::new(e.kind(), format!("{addr} closed the connection"))
            }
            Io::Failed(e) => io::Error::new(e.kind(), format!("{addr}: {e}")),
            // Already names the node and says what to change.
            Io::Tls(why) => io::Error::other(why),
        };
        RedisError::from(e)
    }

    fn closed(&self) -> RedisError {
        RedisError::from(io::Error::new(
            io::ErrorKind::NotConnected,
            format!("{}: connection closed after an error", self.addr),
        ))
    }

    fn send(&mut self, cmd: &[u8]) -> RedisResult<()> {
        let (until, stop) = bound(UNBOUND);
        let Some(conn) = self.conn.as_mut() else {
            return Err(self.closed());
        };
        standalone::write_all(conn, cmd, until, &stop).map_err(|e| {
            self.conn = None;
            self.io(e)
        })
    }

    fn recv(&mut self) -> RedisResult<Value> {
        let (until, stop) = bound(UNBOUND);
        let Some(conn) = self.conn.as_mut() else {
            return Err(self.closed());
        };
        // A cut mid-reply leaves the stream out of step: the node is closed.
        standalone::read_reply(conn, until, &stop).map_err(|e| {
            self.conn = None;
            self.io(e)
        })
    }

    /// AUTH (when set) and a name for CLIENT LIST, in one round trip.
    fn handshake(&mut self, user: Option<&str>, password: Option<&str>) -> RedisResult<()> {
        let mut cmds = Vec::with_capacity(128);
        if let Some(p) = password {
            match user {
                Some(u) => resp::command(&mut cmds, &[b"AUTH", u.as_bytes(), p.as_bytes()]),
                None => resp::command(&mut cmds, &[b"AUTH", p.as_bytes()]),
            }
        }
        resp::command(&mut cmds, &[b"CLIENT", b"SETNAME", b"mod_cc_events"]);
        self.send(&cmds)?;
        if password.is_some() {
            if let Value::ServerError(e) = self.recv()? {
                return Err(RedisError::from((
                    ErrorKind::AuthenticationFailed,
                    "authentication failed",
                    format!("{}: {}", self.addr, resp::error_text(&e)),
                )));
            }
        }
        // A cosmetic name: a strict ACL may refuse it.
        self.recv()?;
        Ok(())
    }
}

fn resolve(
    host: &str,
    port: u16,
    until: Instant,
    stop: &Arc<Stop>,
) -> RedisResult<Vec<SocketAddr>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let failed = |kind, why: String| RedisError::from(io::Error::new(kind, why));
    let stop2 = stop.clone();
    match Resolver::default().lookup(host, port, until, &|| stop2.passed()) {
        Ok(a) if !a.is_empty() => Ok(a),
        Ok(_) => Err(failed(
            io::ErrorKind::NotFound,
            format!("Redis Cluster node '{host}' has no address"),
        )),
        Err(Failed::TimedOut) => Err(failed(
            io::ErrorKind::TimedOut,
            format!("resolving Redis Cluster node '{host}' did not finish in time"),
        )),
        Err(Failed::Error(e)) => Err(failed(
            io::ErrorKind::NotFound,
            format!("cannot resolve Redis Cluster node '{host}': {e}"),
        )),
    }
}

impl Connect for Node {
    fn connect<T: IntoConnectionInfo>(info: T, timeout: Option<Duration>) -> RedisResult<Node> {
        let info = info.into_connection_info()?;
        let (host, port) = match info.addr() {
            ConnectionAddr::Tcp(h, p) => (h.clone(), *p),
            other => {
                return Err(RedisError::from((
                    ErrorKind::InvalidClientConfig,
                    "only plain TCP is supported for Redis Cluster nodes",
                    format!("{other:?}"),
                )))
            }
        };
        let (until, stop) = bound(timeout.unwrap_or(UNBOUND));
        let until = timeout.map_or(until, |t| until.min(Instant::now() + t));
        let mut node = Node {
            conn: None,
            addr: format!("{host}:{port}"),
        };
        let found = resolve(&host, port, until, &stop)?;
        let count = found.len() as u32;
        let mut last = None;
        for (i, a) in found.into_iter().enumerate() {
            // Each address gets its share of what is left, as standalone.
            let left = until.saturating_duration_since(Instant::now());
            let share = Instant::now() + left / (count - i as u32);
            match standalone::open(a, share, &stop) {
                Ok(stream) => {
                    node.conn = Some(Conn {
                        stream,
                        tls: None,
                        parser: redis::Parser::new(),
                    });
                    break;
                }
                Err(e) => last = Some(node.io(e)),
            }
        }
        if let (Some(client), Some(conn)) = (bound_tls(), node.conn.as_mut()) {
            // The server name is the address the cluster announces for the
            // node (or tls-server-name), so its certificate must list it.
            let target = format!("Redis Cluster node {host}:{port} tls");
            let mut session = client
                .session(&host, port, &target)
                .map_err(|why| RedisError::from(io::Error::other(why)))?;
            if let Err(e) = session.handshake(&conn.stream, until, &stop) {
                node.conn = None;
                return Err(node.io(e));
            }
            conn.tls = Some(Box::new(session));
        }
        if node.conn.is_none() {
            return Err(last.unwrap_or_else(|| node.closed()));
        }
        let r = info.redis_settings();
        node.handshake(r.username(), r.password())?;
        Ok(node)
    }

    fn send_packed_command(&mut self, cmd: &[u8]) -> RedisResult<()> {
        self.send(cmd)
    }

    /// The bound of the link call in progress is the timeout.
    fn set_write_timeout(&self, _: Option<Duration>) -> RedisResult<()> {
        Ok(())
    }

    /// The bound of the link call in progress is the timeout.
    fn set_read_timeout(&self, _: Option<Duration>) -> RedisResult<()> {
        Ok(())
    }

    fn recv_response(&mut self) -> RedisResult<Value> {
        self.recv()
    }
}

impl ConnectionLike for Node {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        self.send(cmd)?;
        self.recv()
    }

    /// A pipelined run: each error reply comes back as a [`refused`] value.
    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        self.send(cmd)?;
        let mut out = Vec::with_capacity(count);
        for i in 0..offset + count {
            let v = match self.recv()? {
                Value::ServerError(e) => refused(&e),
                v => v,
            };
            if i >= offset {
                out.push(v);
            }
        }
        Ok(out)
    }

    fn get_db(&self) -> i64 {
        0
    }

    fn check_connection(&mut self) -> bool {
        let mut ping = Vec::with_capacity(14);
        resp::command(&mut ping, &[b"PING"]);
        matches!(self.req_packed_command(&ping), Ok(v) if !matches!(v, Value::ServerError(_)))
    }

    fn is_open(&self) -> bool {
        self.conn.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(cmds: &[&[&[u8]]]) -> Vec<u8> {
        let mut out = Vec::new();
        for c in cmds {
            resp::command(&mut out, c);
        }
        out
    }

    #[test]
    fn a_batch_reads_back_as_its_commands_with_the_slot_of_each_key() {
        let b = batch(&[
            &[b"PUBLISH", b"{cc}:events", b"a\r\nb"],
            &[b"XADD", b"{cc}:stream", b"*", b"payload", b""],
            &[b"EVALSHA", b"abc", b"2", b"{cc}:stream", b"{cc}:meta", b"X"],
            &[b"EVALSHA", b"abc", b"0"],
            &[b"PING"],
            &[b"SCRIPT", b"LOAD", b"return 1"],
        ]);
        let cmds = parse(&b).unwrap();
        assert_eq!(cmds.len(), 6);
        assert_eq!(cmds[0].range.start, 0);
        assert_eq!(cmds[5].range.end, b.len());
        assert_eq!(cmds[0].arg(&b, 2), Some(&b"a\r\nb"[..]));
        let cc = Some(Slot::for_key("cc"));
        assert_eq!(
            cmds.iter().map(|c| c.slot).collect::<Vec<_>>(),
            [cc, cc, cc, None, None, None]
        );
        assert!(cmds[5].is(&b, &[b"script", b"load"]));
        assert!(!cmds[4].is(&b, &[b"SCRIPT", b"LOAD"]));
        // Each command's bytes are exactly what resp::command wrote.
        let again: Vec<u8> = cmds
            .iter()
            .flat_map(|c| b[c.range.clone()].to_vec())
            .collect();
        assert_eq!(again, b);
    }

    #[test]
    fn a_transaction_goes_whole_to_the_slot_of_its_first_key() {
        let b = batch(&[
            &[b"PUBLISH", b"events", b"x"],
            &[b"MULTI"],
            &[b"XADD", b"{cc}:stream", b"*", b"f", b"v"],
            &[b"HSET", b"{cc}:agents", b"a", b"1"],
            &[b"EVAL", b"return 1", b"2", b"{cc}:stream", b"{cc}:meta"],
            &[b"EXEC"],
            &[b"PING"],
        ]);
        let cc = Some(Slot::for_key("cc"));
        let slots: Vec<_> = parse(&b).unwrap().iter().map(|c| c.slot).collect();
        assert_eq!(
            slots,
            [Some(Slot::for_key("events")), cc, cc, cc, cc, cc, None]
        );
    }

    #[test]
    fn anything_but_arrays_of_bulk_strings_is_refused() {
        assert!(parse(b"PING\r\n").is_none());
        assert!(parse(b"*1\r\n$4\r\nPIN").is_none());
        assert!(parse(b"*1\r\n$4\r\nPINGxx").is_none());
        assert!(parse(b"*1\r\n:4\r\n").is_none());
        assert_eq!(parse(b"").unwrap(), vec![]);
    }

    #[test]
    fn a_wrapped_error_survives_the_crates_error_extraction() {
        let e = match redis::parse_redis_value(b"-NOSCRIPT No matching script\r\n").unwrap() {
            Value::ServerError(e) => e,
            v => panic!("{v:?}"),
        };
        let v = refused(&e);
        assert_eq!(refusal(&v).as_deref(), Some("NOSCRIPT No matching script"));
        // What the crate does to a run's replies before handing them back.
        let kept = Value::Array(vec![Value::Okay, v]).extract_error().unwrap();
        let Value::Array(kept) = kept else { panic!() };
        assert_eq!(
            refusal(&kept[1]).as_deref(),
            Some("NOSCRIPT No matching script")
        );
        assert_eq!(refusal(&Value::Okay), None);
    }

    #[test]
    fn describe_names_the_seeds_and_the_masters_never_the_password() {
        let mut s = crate::config::Settings::default().redis;
        s.password = Some("hunter2".into());
        s.topology = Topology::Cluster(crate::config::ClusterSettings {
            nodes: vec![("127.0.0.1".into(), 7000), ("127.0.0.1".into(), 7001)],
        });
        let mut c = Cluster::new(s, Arc::new(Stop::default()));
        assert_eq!(
            c.describe(),
            "cluster 127.0.0.1:7000,127.0.0.1:7001 (password set)"
        );
        c.masters = Some(3);
        assert_eq!(
            c.describe(),
            "cluster 127.0.0.1:7000,127.0.0.1:7001 (3 masters) (password set)"
        );
    }

    #[test]
    fn the_bound_is_the_calls_and_is_restored_after_it() {
        let stop = Arc::new(Stop::default());
        let until = Instant::now() + Duration::from_secs(60);
        let inner = bounded(until, &stop, None, || {
            let nested = bounded(Instant::now(), &stop, None, || bound(UNBOUND).0);
            (bound(UNBOUND).0, nested)
        });
        assert_eq!(inner.0, until);
        assert!(inner.1 <= Instant::now());
        assert!(bound(UNBOUND).0 <= Instant::now() + UNBOUND);
    }

    /// A node that accepts the connection but never answers holds a connect
    /// only until the call's bound, not the (longer) connect timeout the
    /// crate asks for.
    #[test]
    fn a_node_that_never_answers_holds_a_connect_only_until_the_bound() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let stop = Arc::new(Stop::default());
        let t = Instant::now();
        let r = bounded(
            Instant::now() + Duration::from_millis(100),
            &stop,
            None,
            || {
                Node::connect(
                    ConnectionAddr::Tcp("127.0.0.1".into(), port),
                    Some(Duration::from_secs(5)),
                )
            },
        );
        let e = r.err().expect("no answer, no connection");
        assert!(e.is_timeout(), "{e}");
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(100) && took < Duration::from_secs(1),
            "{took:?}"
        );
        // Past the bound, at once.
        let t = Instant::now();
        let r = bounded(Instant::now(), &stop, None, || {
            Node::connect(ConnectionAddr::Tcp("127.0.0.1".into(), port), None)
        });
        assert!(r.is_err());
        assert!(t.elapsed() < Duration::from_millis(50), "{:?}", t.elapsed());
    }
}
