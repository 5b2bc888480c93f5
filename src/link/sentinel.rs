//! Redis behind Sentinel: the sentinels name the master, and the link follows
//! it through a failover.
//!
//! Each connect asks the sentinels in turn for the master's address, connects
//! to it and uses it only if `ROLE` says it is the master: just after a
//! failover a sentinel that has not caught up may still name the old master,
//! which may be back as a replica. A write refused with `READONLY` (the server
//! was demoted under an open connection) closes the link, so the next connect
//! asks the sentinels again instead of retrying a replica forever.
//!
//! The sentinels and the master are each reached through a [`Standalone`], so
//! they get its deadlines and its transport, TLS included.

use std::sync::Arc;
use std::time::Instant;

use super::standalone::{Hints, Standalone};
use super::{resp, Exchange, Failure, Link};
use crate::config::{addrs, RedisSettings, SentinelSettings, Topology};
use crate::stop::Stop;

type Addr = (String, u16);

pub struct Sentinel {
    settings: RedisSettings,
    sentinel: SentinelSettings,
    /// The sentinels in the order they are asked: the one that last named a
    /// usable master first, so a dead sentinel costs time only once.
    order: Vec<Addr>,
    stop: Arc<Stop>,
    master: Option<Master>,
}

/// The master in use and the sentinel that named it.
struct Master {
    link: Standalone,
    addr: Addr,
    via: Addr,
}

impl Sentinel {
    /// `settings.topology` must be `Sentinel`; anything else gets no sentinels
    /// to ask, and every connect says so.
    pub fn new(settings: RedisSettings, stop: Arc<Stop>) -> Sentinel {
        let sentinel = match &settings.topology {
            Topology::Sentinel(s) => s.clone(),
            _ => SentinelSettings {
                sentinels: Vec::new(),
                master: String::new(),
                username: None,
                password: None,
            },
        };
        Sentinel {
            order: sentinel.sentinels.clone(),
            settings,
            sentinel,
            stop,
            master: None,
        }
    }

    /// A data node or a sentinel: these settings with another address.
    fn node(&self, (host, port): &Addr) -> RedisSettings {
        RedisSettings {
            host: host.clone(),
            port: *port,
            topology: Topology::Standalone,
            ..self.settings.clone()
        }
    }

    /// Asks one sentinel where the master is, by `until`. `Ok(None)`: it does
    /// not know a master of that name.
    fn ask(&self, via: &Addr, until: Instant) -> Result<Option<Addr>, Failure> {
        let settings = RedisSettings {
            username: self.sentinel.username.clone(),
            password: self.sentinel.password.clone(),
            db: 0,
            ..self.node(via)
        };
        let hints = Hints {
            server: Some(format!("Redis Sentinel at {}", show(via))),
            reach: "check sentinels in cc_events.conf and that the sentinels are running",
            host: "check sentinels in cc_events.conf",
            login: "check sentinel-username and sentinel-password in cc_events.conf",
            no_login:
                "set sentinel-password (and sentinel-username for an ACL user) in cc_events.conf",
        };
        let mut link = Standalone::with_hints(settings, self.stop.clone(), hints);
        link.connect(until)?;
        let name = &self.sentinel.master;
        let mut cmd = Vec::with_capacity(64);
        resp::command(
            &mut cmd,
            &[b"SENTINEL", b"get-master-addr-by-name", name.as_bytes()],
        );
        let reply = link.query(&cmd, until);
        link.close();
        match reply {
            Ok(v) => master_addr(&v).map_err(|why| {
                Failure::Refused(format!(
                    "sentinel {} gave an unexpected reply to SENTINEL get-master-addr-by-name: {why}; check that sentinels in cc_events.conf lists Redis Sentinels",
                    show(via)
                ))
            }),
            Err(Failure::Refused(e)) => Err(Failure::Refused(format!(
                "sentinel {} refused SENTINEL get-master-addr-by-name {name}: {e}; check that sentinels in cc_events.conf lists Redis Sentinels (not data nodes) and that sentinel-username may run it",
                show(via)
            ))),
            Err(f) => Err(f),
        }
    }

    /// Connects to the address `via` named and checks that it is the master.
    /// An exchange's outcome, after which a demoted master sends the link
    /// back to the sentinels.
    fn checked(&mut self, mut ex: Exchange) -> Exchange {
        if let (Some(Failure::Refused(e)), Some(m)) = (&ex.failure, &self.master) {
            if demoted(e) {
                // Retrying here would be refused forever: find the master again.
                let msg = format!(
                    "Redis at {} is no longer the master of '{}' ({e}); asking the sentinels again",
                    show(&m.addr),
                    self.sentinel.master
                );
                self.close();
                ex.failure = Some(Failure::Broken(msg));
            }
        }
        if !self.is_connected() {
            self.master = None;
        }
        ex
    }

    fn open_master(&self, addr: &Addr, via: &Addr, until: Instant) -> Result<Standalone, Failure> {
        let name = &self.sentinel.master;
        let named = format!(
            "sentinel {} names {} as master '{name}', but",
            show(via),
            show(addr)
        );
        let hints = Hints {
            // A dead master stays named until the sentinels agree it is down.
            reach: "a failover may be under way; if this lasts, check that the address the sentinels announce is reachable from this host",
            host: "check that the host name the sentinels announce resolves on this host",
            ..Hints::default()
        };
        let mut link = Standalone::with_hints(self.node(addr), self.stop.clone(), hints);
        let wrap = |f: Failure| match f {
            Failure::Refused(m) => Failure::Refused(format!("{named} {m}")),
            Failure::Hung(m) => Failure::Hung(format!("{named} {m}")),
            Failure::Broken(m) => Failure::Broken(format!("{named} {m}")),
        };
        link.connect(until).map_err(wrap)?;
        let mut cmd = Vec::with_capacity(16);
        resp::command(&mut cmd, &[b"ROLE"]);
        let role = match link.query(&cmd, until) {
            Ok(v) => role(&v),
            Err(Failure::Refused(e)) => {
                return Err(Failure::Refused(format!(
                    "{named} it refused ROLE: {e}; with Sentinel the module checks the role of the server it writes to: give the module's Redis user +role (see the README's ACL)"
                )))
            }
            Err(f) => return Err(wrap(f)),
        };
        match role.as_deref() {
            Some("master") => Ok(link),
            Some(other) => Err(Failure::Broken(format!(
                "{named} it is a {}: a failover is under way or that sentinel has not caught up; asking the sentinels again",
                if other == "slave" { "replica" } else { other }
            ))),
            None => Err(Failure::Refused(format!(
                "{named} its reply to ROLE is not one Redis gives; check sentinel-master in cc_events.conf"
            ))),
        }
    }
}

impl Link for Sentinel {
    fn connect(&mut self, until: Instant) -> Result<(), Failure> {
        self.close();
        let list = addrs(&self.sentinel.sentinels);
        let name = self.sentinel.master.clone();
        // What went wrong, most telling first: a named master that was not
        // usable, then a sentinel that does not know the name, then sentinels
        // that did not answer.
        let mut master_failure = None;
        let mut unknown = None;
        let mut silent = None;
        // A master one sentinel named and that failed is not tried again.
        let mut tried = Vec::new();
        let n = self.order.len();
        for i in 0..n {
            if self.stop.passed() {
                break;
            }
            let via = self.order[i].clone();
            // Each sentinel gets its share of what is left, so one that drops
            // packets cannot use up the time of the others.
            let left = until.saturating_duration_since(Instant::now());
            let share = Instant::now() + left / (n - i) as u32;
            let addr = match self.ask(&via, share) {
                Ok(Some(addr)) => addr,
                Ok(None) => {
                    unknown.get_or_insert(via);
                    continue;
                }
                Err(f) => {
                    silent.get_or_insert(f);
                    continue;
                }
            };
            if tried.contains(&addr) {
                continue;
            }
            tried.push(addr.clone());
            match self.open_master(&addr, &via, until) {
                Ok(link) => {
                    prefer(&mut self.order, i);
                    self.master = Some(Master { link, addr, via });
                    return Ok(());
                }
                Err(f) => {
                    master_failure.get_or_insert(f);
                }
            }
        }
        if let Some(f) = master_failure {
            return Err(f);
        }
        if let Some(via) = unknown {
            return Err(Failure::Refused(format!(
                "sentinel {} does not know master '{name}': check sentinel-master in cc_events.conf (the name in the sentinels' `sentinel monitor <name> ...`)",
                show(&via)
            )));
        }
        let why = match silent {
            Some(f) => f.message().to_string(),
            None => "shutting down".to_string(),
        };
        Err(Failure::Broken(format!(
            "none of the sentinels {list} answered for master '{name}': {why}"
        )))
    }

    fn is_connected(&self) -> bool {
        self.master.as_ref().is_some_and(|m| m.link.is_connected())
    }

    fn close(&mut self) {
        self.master = None;
    }

    fn closed_by_peer(&self) -> bool {
        self.master
            .as_ref()
            .is_some_and(|m| m.link.closed_by_peer())
    }

    fn exchange(&mut self, commands: &[u8], replies: usize, until: Instant) -> Exchange {
        match self.write(commands, replies, until) {
            Some(done) => done,
            None => self.read(replies, until),
        }
    }

    fn write(&mut self, commands: &[u8], replies: usize, until: Instant) -> Option<Exchange> {
        let Some(m) = self.master.as_mut() else {
            return Some(no_master());
        };
        let done = m.link.write(commands, replies, until)?;
        Some(self.checked(done))
    }

    fn read(&mut self, replies: usize, until: Instant) -> Exchange {
        let Some(m) = self.master.as_mut() else {
            return no_master();
        };
        let ex = m.link.read(replies, until);
        self.checked(ex)
    }

    fn describe(&self) -> String {
        match &self.master {
            Some(m) => describe(&self.settings, &self.sentinel.master, &m.addr, &m.via),
            None => self.settings.describe(),
        }
    }
}

/// `master 'mymaster' 127.0.0.1:6380 via sentinel 127.0.0.1:26379 db 0`, then
/// tls, user and `(password set)` as for one server. Never a password.
fn no_master() -> Exchange {
    Exchange {
        ok: 0,
        failure: Some(Failure::Broken("not connected to Redis".into())),
    }
}

fn describe(settings: &RedisSettings, name: &str, addr: &Addr, via: &Addr) -> String {
    format!(
        "master '{name}' {} via sentinel {} db {}{}",
        show(addr),
        show(via),
        settings.db,
        settings.describe_login()
    )
}

fn show((host, port): &Addr) -> String {
    crate::config::addr(host, *port)
}

/// Moves the sentinel at `i` to the front, the others keeping their order.
fn prefer(order: &mut Vec<Addr>, i: usize) {
    let s = order.remove(i);
    order.insert(0, s);
}

/// An error reply that means the server is no longer the master: a replica
/// refuses writes (`READONLY`), or has lost its master (`MASTERDOWN`).
fn demoted(error: &str) -> bool {
    error.starts_with("READONLY") || error.starts_with("MASTERDOWN")
}

/// The reply to `SENTINEL get-master-addr-by-name`: `[ip, port]`, or nil for
/// a name the sentinel does not monitor.
fn master_addr(v: &redis::Value) -> Result<Option<Addr>, String> {
    use redis::Value;
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    match v {
        Value::Nil => Ok(None),
        Value::Array(items) if items.len() == 2 => {
            let host = text(&items[0]).filter(|h| !h.is_empty());
            let port = text(&items[1]).and_then(|p| p.parse::<u16>().ok());
            match (host, port) {
                (Some(h), Some(p)) if p > 0 => Ok(Some((h, p))),
                _ => Err(format!("{v:?}")),
            }
        }
        other => Err(format!("{other:?}")),
    }
}

/// The first element of a `ROLE` reply: `master`, `slave` or `sentinel`.
fn role(v: &redis::Value) -> Option<String> {
    let redis::Value::Array(items) = v else {
        return None;
    };
    match items.first()? {
        redis::Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        redis::Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn parse(bytes: &[u8]) -> redis::Value {
        redis::parse_redis_value(bytes).unwrap()
    }

    #[test]
    fn the_master_address_comes_from_a_two_item_reply_and_nil_means_unknown() {
        let v = parse(b"*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6380\r\n");
        assert_eq!(master_addr(&v), Ok(Some(("127.0.0.1".into(), 6380))));
        assert_eq!(master_addr(&parse(b"*-1\r\n")), Ok(None));
        assert_eq!(master_addr(&parse(b"$-1\r\n")), Ok(None));
        assert!(master_addr(&parse(b"*2\r\n$9\r\n127.0.0.1\r\n$1\r\nx\r\n")).is_err());
        assert!(master_addr(&parse(b"*2\r\n$9\r\n127.0.0.1\r\n$1\r\n0\r\n")).is_err());
        assert!(master_addr(&parse(b"+OK\r\n")).is_err());
    }

    #[test]
    fn role_reads_the_first_item_of_the_reply() {
        let master = parse(b"*3\r\n$6\r\nmaster\r\n:42\r\n*0\r\n");
        assert_eq!(role(&master).as_deref(), Some("master"));
        let replica =
            parse(b"*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:6379\r\n$9\r\nconnected\r\n:42\r\n");
        assert_eq!(role(&replica).as_deref(), Some("slave"));
        assert_eq!(role(&parse(b"+PONG\r\n")), None);
    }

    #[test]
    fn the_sentinel_that_answered_is_asked_first_next_time() {
        let a = |p| ("10.0.0.1".to_string(), p);
        let mut order = vec![a(1), a(2), a(3)];
        prefer(&mut order, 2);
        assert_eq!(order, [a(3), a(1), a(2)]);
        prefer(&mut order, 0);
        assert_eq!(order, [a(3), a(1), a(2)]);
    }

    #[test]
    fn only_a_demoted_server_s_refusals_send_the_link_back_to_the_sentinels() {
        assert!(demoted(
            "READONLY You can't write against a read only replica."
        ));
        assert!(demoted("MASTERDOWN Link with MASTER is down"));
        assert!(!demoted("NOPERM this user has no permissions"));
        assert!(!demoted("BUSY Redis is busy running a script"));
    }

    fn settings() -> RedisSettings {
        let mut s = crate::config::Settings::default().redis;
        s.topology = Topology::Sentinel(SentinelSettings {
            sentinels: vec![("127.0.0.1".into(), 1), ("::1".into(), 2)],
            master: "mymaster".into(),
            username: Some("watcher".into()),
            password: Some("sentinel-secret".into()),
        });
        s.password = Some("data-secret".into());
        s
    }

    #[test]
    fn describe_names_the_master_and_the_sentinel_and_never_a_password() {
        let s = settings();
        let d = describe(
            &s,
            "mymaster",
            &("127.0.0.1".into(), 6380),
            &("::1".into(), 26379),
        );
        assert_eq!(
            d,
            "master 'mymaster' 127.0.0.1:6380 via sentinel [::1]:26379 db 0 (password set)"
        );
        let link = Sentinel::new(s, Arc::new(Stop::default()));
        let d = link.describe();
        assert_eq!(
            d,
            "sentinel master 'mymaster' via 127.0.0.1:1,[::1]:2 db 0 (password set)"
        );
        assert!(!d.contains("secret"));
    }

    #[test]
    fn without_a_sentinel_that_answers_connect_fails_naming_them_all() {
        // Port 1 on loopback refuses at once.
        let mut s = settings();
        s.topology = Topology::Sentinel(SentinelSettings {
            sentinels: vec![("127.0.0.1".into(), 1), ("127.0.0.1".into(), 1)],
            master: "mymaster".into(),
            username: None,
            password: None,
        });
        let mut link = Sentinel::new(s, Arc::new(Stop::default()));
        let e = link
            .connect(Instant::now() + Duration::from_secs(2))
            .unwrap_err();
        let m = e.message();
        assert!(
            m.starts_with("none of the sentinels 127.0.0.1:1,127.0.0.1:1 answered for master 'mymaster': cannot connect to Redis Sentinel at 127.0.0.1:1: "),
            "{m}"
        );
        assert!(
            m.ends_with("; check sentinels in cc_events.conf and that the sentinels are running"),
            "{m}"
        );
        assert!(!link.is_connected());
    }
}
