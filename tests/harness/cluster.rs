//! A Redis Cluster of real redis-servers on free loopback ports: three
//! masters with one replica each, joined by `redis-cli --cluster create`.
//! Every server is stopped by its pid when the cluster is dropped (a panic
//! included).
#![allow(dead_code)]

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::redis::{free_port, temp_dir, wait_until, RedisServer};
use super::tls::Certs;

const NODES: usize = 6;

/// One line of `CLUSTER NODES`.
#[derive(Clone, Debug)]
pub struct NodeLine {
    pub id: String,
    pub port: u16,
    pub flags: String,
    /// The master's id, for a replica.
    pub master: Option<String>,
    pub slots: Vec<(u16, u16)>,
}

impl NodeLine {
    pub fn is_master(&self) -> bool {
        self.flags.split(',').any(|f| f == "master")
    }

    pub fn failed(&self) -> bool {
        self.flags.split(',').any(|f| f == "fail" || f == "fail?")
    }

    pub fn owns(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(a, b)| a <= slot && slot <= b)
    }
}

pub struct Cluster {
    /// `None` once killed.
    pub nodes: Vec<Option<RedisServer>>,
    /// Each node's `tls-port` (empty for a plaintext cluster): the module
    /// uses these; the test's own connections use the plain ports.
    pub tls_ports: Vec<u16>,
}

impl Cluster {
    /// Six servers with `extra` args, joined as three masters and three
    /// replicas; returns once every node reports `cluster_state:ok`, knows
    /// all six, and every replica is in sync with its master (bounded waits).
    pub fn start(extra: &[&str]) -> Cluster {
        Self::start_tls(extra, None)
    }

    /// `start`, each node with a `tls-port` as well (the certificate for
    /// 127.0.0.1 and localhost from `certs`, `tls-cluster yes` and
    /// `tls-replication yes`: the bus and replication over TLS), joined by
    /// `redis-cli --tls --cluster create` on the TLS ports.
    pub fn start_tls(extra: &[&str], certs: Option<&Certs>) -> Cluster {
        let started = Instant::now();
        let mut tls_ports = Vec::new();
        let nodes: Vec<Option<RedisServer>> = (0..NODES)
            .map(|_| {
                let bus = free_port().to_string();
                let mut args: Vec<String> = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "1000",
                    // The bus port is port + 10000 unless given: not free, maybe not even valid.
                    "--cluster-port",
                    &bus,
                    // A replica's first sync starts at once, not after the default 5 s.
                    "--repl-diskless-sync-delay",
                    "0",
                ]
                .iter()
                .map(|a| a.to_string())
                .collect();
                if let Some(c) = certs {
                    let tls_port = free_port();
                    tls_ports.push(tls_port);
                    args.extend([
                        "--tls-port".to_string(),
                        tls_port.to_string(),
                        "--tls-cert-file".into(),
                        c.path("node.crt"),
                        "--tls-key-file".into(),
                        c.path("redis.key"),
                        "--tls-ca-cert-file".into(),
                        c.path("ca.crt"),
                        "--tls-auth-clients".into(),
                        "no".into(),
                        "--tls-cluster".into(),
                        "yes".into(),
                        "--tls-replication".into(),
                        "yes".into(),
                    ]);
                }
                args.extend(extra.iter().map(|a| a.to_string()));
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                Some(RedisServer::start_with(free_port(), &args))
            })
            .collect();
        let c = Cluster { nodes, tls_ports };
        c.create(certs);
        let ready = wait_until(Duration::from_secs(20), || c.settled());
        assert!(
            ready,
            "the cluster did not settle within 20 s: {:?}",
            c.nodes_view()
        );
        eprintln!("cluster of {NODES} built in {:?}", started.elapsed());
        c
    }

    fn create(&self, certs: Option<&Certs>) {
        let dir = temp_dir("cluster-create");
        let log = dir.join("redis-cli.log");
        let mut cmd = Command::new("redis-cli");
        let ports = match certs {
            Some(c) => {
                cmd.args(["--tls", "--cacert", &c.path("ca.crt")]);
                self.tls_ports.clone()
            }
            None => self.ports(),
        };
        cmd.args(["--cluster", "create"]);
        for p in ports {
            cmd.arg(format!("127.0.0.1:{p}"));
        }
        cmd.args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .expect("redis-cli not found (Debian: redis-tools)");
        let mut status = None;
        let done = wait_until(Duration::from_secs(30), || {
            status = child.try_wait().unwrap();
            status.is_some()
        });
        if !done {
            let _ = child.kill();
            let _ = child.wait();
        }
        let out = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            status.is_some_and(|s| s.success()),
            "redis-cli --cluster create failed or took over 30 s:\n{out}"
        );
    }

    fn settled(&self) -> bool {
        let all = (0..NODES).all(|i| {
            let info = self.info(i, "CLUSTER", "INFO");
            info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:6")
        });
        let view = self.nodes_view();
        let replicas: Vec<_> = view.iter().filter(|n| !n.is_master()).collect();
        all && replicas.len() == NODES / 2
            && replicas.iter().all(|n| self.in_sync(self.index_of(n.port)))
    }

    /// True when node `i` is a replica whose link to its master is up and
    /// whose replication offset has caught up.
    pub fn in_sync(&self, i: usize) -> bool {
        let info = self.info(i, "INFO", "replication");
        let field = |k: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}:")))
                .map(|v| v.trim().to_string())
        };
        field("role").as_deref() == Some("slave")
            && field("master_link_status").as_deref() == Some("up")
            && field("master_sync_in_progress").as_deref() == Some("0")
    }

    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().flatten().map(|n| n.port).collect()
    }

    pub fn port(&self, i: usize) -> u16 {
        self.nodes[i].as_ref().expect("node running").port
    }

    pub fn index_of(&self, port: u16) -> usize {
        self.nodes
            .iter()
            .position(|n| n.as_ref().is_some_and(|n| n.port == port))
            .unwrap_or_else(|| panic!("no running node on port {port}"))
    }

    /// `host:port,...` of the running nodes, `first` first.
    pub fn seeds(&self, first: Option<usize>) -> String {
        let mut order: Vec<usize> = (0..NODES).filter(|&i| self.nodes[i].is_some()).collect();
        if let Some(f) = first {
            order.retain(|&i| i != f);
            order.insert(0, f);
        }
        order
            .iter()
            .map(|&i| format!("127.0.0.1:{}", self.port(i)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A plain connection to node `i` (it serves only its own slots).
    pub fn con(&self, i: usize) -> redis::Connection {
        self.nodes[i].as_ref().expect("node running").connection()
    }

    /// A two-word command's text reply from node `i`; empty when it does not answer.
    pub fn info(&self, i: usize, a: &str, b: &str) -> String {
        let Some(n) = self.nodes[i].as_ref() else {
            return String::new();
        };
        let Ok(client) = redis::Client::open(n.url()) else {
            return String::new();
        };
        let Ok(mut con) = client.get_connection_with_timeout(Duration::from_millis(500)) else {
            return String::new();
        };
        let _ = con.set_read_timeout(Some(Duration::from_millis(500)));
        redis::cmd(a).arg(b).query(&mut con).unwrap_or_default()
    }

    /// `CLUSTER NODES` as the first node that answers sees it.
    pub fn nodes_view(&self) -> Vec<NodeLine> {
        for i in 0..NODES {
            let text = self.info(i, "CLUSTER", "NODES");
            if !text.is_empty() {
                return parse_nodes(&text);
            }
        }
        Vec::new()
    }

    /// `key`'s slot, as a running node computes it.
    pub fn slot_of(&self, key: &str) -> u16 {
        let i = (0..NODES).find(|&i| self.nodes[i].is_some()).unwrap();
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut self.con(i))
            .unwrap()
    }

    /// The node serving `key`'s slot as master, as the cluster sees it now.
    pub fn master_for(&self, key: &str) -> usize {
        let slot = self.slot_of(key);
        let view = self.nodes_view();
        let m = view
            .iter()
            .find(|n| n.is_master() && !n.failed() && n.owns(slot))
            .unwrap_or_else(|| panic!("no master for slot {slot}: {view:?}"));
        self.index_of(m.port)
    }

    /// The replica of master `m`.
    pub fn replica_of(&self, m: usize) -> usize {
        let view = self.nodes_view();
        let id = &view
            .iter()
            .find(|n| n.port == self.port(m))
            .expect("master in view")
            .id;
        let r = view
            .iter()
            .find(|n| n.master.as_ref() == Some(id))
            .unwrap_or_else(|| panic!("no replica of node {m}: {view:?}"));
        self.index_of(r.port)
    }

    pub fn is_master(&self, i: usize) -> bool {
        self.info(i, "INFO", "replication")
            .lines()
            .any(|l| l.trim() == "role:master")
    }

    /// SIGKILL by pid, and wait until the port is closed.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut n) = self.nodes[i].take() {
            n.stop();
        }
    }
}

fn parse_nodes(text: &str) -> Vec<NodeLine> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let port = f[1].split('@').next()?.rsplit(':').next()?.parse().ok()?;
            let slots = f[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => s.parse().ok().map(|n| (n, n)),
                })
                .collect();
            Some(NodeLine {
                id: f[0].to_string(),
                port,
                flags: f[2].to_string(),
                master: Some(f[3].to_string()).filter(|m| m != "-"),
                slots,
            })
        })
        .collect()
}

/// An SSUBSCRIBE client on node `port` (the shard that owns the channel),
/// collecting messages in arrival order on its own thread.
pub struct ShardSubscriber {
    rx: Receiver<String>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ShardSubscriber {
    /// Returns once the node counts the subscription (PUBSUB SHARDNUMSUB).
    pub fn new(cluster: &Cluster, node: usize, channel: &str) -> ShardSubscriber {
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let mut con = cluster.con(node);
        let ch = channel.to_string();
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            con.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            con.send_packed_command(&redis::cmd("SSUBSCRIBE").arg(&ch).get_packed_command())
                .unwrap();
            while !stop2.load(SeqCst) {
                match con.recv_response() {
                    Ok(redis::Value::Array(parts)) => {
                        let text: Vec<String> = parts
                            .iter()
                            .map(|p| match p {
                                redis::Value::BulkString(b) => {
                                    String::from_utf8_lossy(b).into_owned()
                                }
                                other => format!("{other:?}"),
                            })
                            .collect();
                        if text.first().map(String::as_str) == Some("smessage")
                            && tx.send(text[2].clone()).is_err()
                        {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) if e.is_timeout() => continue,
                    Err(e) => panic!("shard subscriber: {e}"),
                }
            }
        });
        let mut admin = cluster.con(node);
        let ready = wait_until(Duration::from_secs(5), || {
            let (_, n): (String, i64) = redis::cmd("PUBSUB")
                .arg("SHARDNUMSUB")
                .arg(channel)
                .query(&mut admin)
                .unwrap();
            n >= 1
        });
        assert!(ready, "SSUBSCRIBE {channel} not counted within 5 s");
        ShardSubscriber {
            rx,
            stop,
            thread: Some(thread),
        }
    }

    /// Waits for exactly `n` messages, failing after `limit`.
    pub fn take(&self, n: usize, limit: Duration) -> Vec<String> {
        super::redis::take(&self.rx, n, limit, "shard subscriber")
    }
}

impl Drop for ShardSubscriber {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Counts of ids in `got` against `0..fired`: (missing, duplicated).
pub fn losses(fired: usize, got: &[usize]) -> (Vec<usize>, usize) {
    let mut seen: HashMap<usize, usize> = HashMap::new();
    for &i in got {
        *seen.entry(i).or_default() += 1;
    }
    let missing = (0..fired).filter(|i| !seen.contains_key(i)).collect();
    let dups = seen.values().map(|&n| n - 1).sum();
    (missing, dups)
}
