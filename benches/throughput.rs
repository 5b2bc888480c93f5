//! mod_cc_events benchmark: the real built module in the FreeSWITCH host
//! harness, a real redis-server on loopback, a real subscriber.
//!
//!     cargo bench --bench throughput              # full run (see BENCHMARKS.md)
//!     cargo bench --bench throughput -- --quick   # smaller sizes (CI smoke test)
//!
//! Prints the callback's cost on the firing thread, end-to-end throughput and
//! latency, memory with a full queue, and the same run's reference: redis-benchmark
//! PUBLISHing the same payload on the same channel to the same subscriber.
//! Then the same module with `events=all` (every action published, seed format)
//! and with `format=envelope` plus a stream: the callback's cost for each action,
//! and throughput with the stream against redis-benchmark running the same XADD.
//! Then the live state mirror (`state=true`) on top of the envelope and the
//! stream, with the harness's mod_callcenter serving 1,000 agents in 100
//! queues: the callback's cost, throughput of a call centre's traffic against
//! the same XADD reference (and Redis alone running the module's own state
//! calls, the ceiling), and the time to seed 1,000 agents and 10,000 members.
//! Then TLS: the same seed throughput with the module connected over TLS,
//! as a ratio to plaintext measured in the same run against the same server.
//! The last line is `summary: key=value ...` for scripts.

#[path = "../tests/harness/mod.rs"]
mod harness;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use harness::core::{self, LoadedModule, OwnedEvent};
use harness::fixtures;
use harness::redis::{free_port, wait_until, RedisServer};
use harness::state::recorded;
use mod_cc_events::catalogue::{self, Catalogue, EventSettings};

const CHANNEL: &str = "callcenter_events";
/// The stream of the envelope mode, and its cap (the module's default, written out).
const STREAM: &str = "callcenter_stream";
const STREAM_MAXLEN: u64 = 100_000;
/// The pipeline depth of the main reference.
const P64: usize = 64;

struct Sizes {
    callback_events: usize,
    /// Calls per action and thread count in the `events=all` and envelope modes.
    action_callback_events: usize,
    throughput_events: usize,
    rounds: usize,
    latency_secs: f64,
    memory_queue: usize,
    reference_p1_events: usize,
    /// Distinct calls in the state mode's traffic, fired in turn (each call
    /// is 11 events; timestamps and sequence numbers move on every time).
    state_calls: usize,
}

// ------------------------------------------------------------------ subscriber

/// A SUBSCRIBE client that parses RESP itself, so the subscriber is never what
/// limits the measurement. Counts messages; for payloads whose CC_Agent is
/// `lat<index>`, records the receipt time against the shared epoch.
struct FastSubscriber {
    received: Arc<AtomicU64>,
    /// (event index, receipt time in epoch ns) for `lat<index>` payloads.
    latencies: Arc<Mutex<Vec<(u64, u64)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FastSubscriber {
    fn new(redis: &RedisServer, epoch: Instant) -> FastSubscriber {
        let mut s = TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let cmd = format!(
            "*2\r\n$9\r\nSUBSCRIBE\r\n${}\r\n{CHANNEL}\r\n",
            CHANNEL.len()
        );
        s.write_all(cmd.as_bytes()).unwrap();
        let received = Arc::new(AtomicU64::new(0));
        let latencies = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, l, st) = (received.clone(), latencies.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
            let mut chunk = vec![0u8; 1 << 18];
            let mut first = true;
            while !st.load(SeqCst) {
                match s.read(&mut chunk) {
                    Ok(0) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(_) => continue,
                }
                let mut pos = 0;
                while let Some((payload, next)) = parse_push(&buf[pos..]) {
                    if first {
                        first = false; // the subscribe confirmation
                    } else {
                        r.fetch_add(1, SeqCst);
                        if let Some(stamp) = latency_stamp(payload) {
                            let now = epoch.elapsed().as_nanos() as u64;
                            l.lock().unwrap().push((stamp, now));
                        }
                    }
                    pos += next;
                }
                buf.drain(..pos);
            }
        });
        let mut admin = redis.connection();
        assert!(wait_until(Duration::from_secs(5), || {
            let (_, n): (String, i64) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(CHANNEL)
                .query(&mut admin)
                .unwrap();
            n == 1
        }));
        FastSubscriber {
            received,
            latencies,
            stop,
            thread: Some(thread),
        }
    }

    fn count(&self) -> u64 {
        self.received.load(SeqCst)
    }

    fn take_latencies(&self) -> Vec<(u64, u64)> {
        std::mem::take(&mut *self.latencies.lock().unwrap())
    }
}

impl Drop for FastSubscriber {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One RESP array of bulk strings; returns its last element and the bytes consumed.
fn parse_push(b: &[u8]) -> Option<(&[u8], usize)> {
    fn line(b: &[u8], at: usize) -> Option<(i64, usize)> {
        let end = b[at..].windows(2).position(|w| w == b"\r\n")? + at;
        let n = std::str::from_utf8(&b[at + 1..end]).ok()?.parse().ok()?;
        Some((n, end + 2))
    }
    if b.first()? != &b'*' {
        panic!(
            "unexpected RESP: {:?}",
            String::from_utf8_lossy(&b[..b.len().min(80)])
        );
    }
    let (items, mut at) = line(b, 0)?;
    let mut last: &[u8] = &[];
    for _ in 0..items {
        match *b.get(at)? {
            b'$' => {
                let (len, start) = line(b, at)?;
                let end = start + len as usize;
                if b.len() < end + 2 {
                    return None;
                }
                last = &b[start..end];
                at = end + 2;
            }
            b':' => at = line(b, at)?.1,
            other => panic!("unexpected RESP type {other}"),
        }
    }
    Some((last, at))
}

fn latency_stamp(payload: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"CC_Agent\": \"lat";
    let at = payload.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits = payload[at..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    std::str::from_utf8(&payload[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

// ------------------------------------------------------------------ helpers

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn median_f(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Each round's measurement and its reference from the same round.
#[derive(Default)]
struct Paired {
    ours: Vec<f64>,
    refs: Vec<f64>,
    ratios: Vec<f64>,
}

impl Paired {
    fn push(&mut self, ours: f64, reference: f64) {
        self.ours.push(ours);
        self.refs.push(reference);
        self.ratios.push(ours / reference);
    }

    /// (ours, reference, ratio): the median of each over the rounds.
    fn medians(&mut self) -> (f64, f64, f64) {
        (
            median_f(&mut self.ours),
            median_f(&mut self.refs),
            median_f(&mut self.ratios),
        )
    }
}

fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    statm
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 4
}

/// CPU seconds (user + system) this process's threads named `comm` used.
fn thread_cpu_s(comm: &str) -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    let mut total = 0.0;
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let name = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if name.trim_end() != comm {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        // Fields after the `(comm)`: state is the 3rd field, utime the 14th.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() > 12 {
            total +=
                (f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0)) / tick;
        }
    }
    total
}

/// Redis's CPU seconds (user + system) so far.
fn redis_cpu_s(con: &mut redis::Connection) -> f64 {
    let info: String = redis::cmd("INFO").arg("cpu").query(con).unwrap();
    ["used_cpu_user:", "used_cpu_sys:"]
        .iter()
        .filter_map(|k| info.lines().find_map(|l| l.strip_prefix(k)))
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .sum()
}

fn status_value(name: &str) -> u64 {
    let out = core::api("cc_events", "status").unwrap();
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {out}"))
}

fn fixture(file: &str) -> OwnedEvent {
    fixtures::events()
        .into_iter()
        .find(|f| f.file == file)
        .unwrap_or_else(|| panic!("fixture {file}"))
        .event()
}

/// What the firing threads went through while they were timed
/// (`getrusage(RUSAGE_THREAD)`, summed over the threads).
#[derive(Clone, Copy, Default)]
struct Interruptions {
    /// Voluntary context switches: the thread blocked (a lock, a futex).
    waits: u64,
    /// Involuntary context switches: the scheduler gave the core to another thread.
    preempted: u64,
    /// Page faults (minor and major).
    faults: u64,
}

impl Interruptions {
    fn now() -> Interruptions {
        // SAFETY: rusage is plain data; getrusage fills it.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: RUSAGE_THREAD on the calling thread, into a valid rusage.
        unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) };
        Interruptions {
            waits: u.ru_nvcsw as u64,
            preempted: u.ru_nivcsw as u64,
            faults: (u.ru_minflt + u.ru_majflt) as u64,
        }
    }

    fn since(self, before: Interruptions) -> Interruptions {
        Interruptions {
            waits: self.waits - before.waits,
            preempted: self.preempted - before.preempted,
            faults: self.faults - before.faults,
        }
    }

    fn add(self, o: Interruptions) -> Interruptions {
        Interruptions {
            waits: self.waits + o.waits,
            preempted: self.preempted + o.preempted,
            faults: self.faults + o.faults,
        }
    }
}

impl std::fmt::Display for Interruptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "waits {} preempted {} faults {}",
            self.waits, self.preempted, self.faults
        )
    }
}

/// Calls the bound callback directly on `n` copies of `ev`, from `threads`
/// threads at once, and returns each call's nanoseconds, sorted, and what
/// interrupted the firing threads meanwhile.
fn time_callback(ev: &OwnedEvent, n: usize, threads: usize) -> (Vec<u64>, Interruptions) {
    let (cb, user_data) = core::first_binding().expect("module bound");
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let mut ev = ev.clone();
            std::thread::spawn(move || {
                if threads == 1 {
                    fifo_like_freeswitch();
                }
                let per = n / threads;
                // Written before the clock starts, so recording a time never faults.
                let mut times = vec![1u64; per];
                let p = ev.as_delivered(user_data);
                let before = Interruptions::now();
                for slot in times.iter_mut() {
                    let t = Instant::now();
                    // SAFETY: the module is loaded and bound; p is a valid event.
                    unsafe { cb(p) };
                    *slot = t.elapsed().as_nanos() as u64;
                }
                (times, Interruptions::now().since(before))
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    let mut usage = Interruptions::default();
    for h in handles {
        let (times, u) = h.join().unwrap();
        all.extend(times);
        usage = usage.add(u);
    }
    all.sort_unstable();
    (all, usage)
}

/// FreeSWITCH started without -np puts itself, and so every thread it
/// starts, event dispatch threads included, in SCHED_FIFO at priority 1
/// (`set_auto_priority` -> `set_realtime_priority`, switch_core.c): a firing
/// thread is then not preempted by ordinary processes. The 1-thread timings
/// reproduce that when allowed (root); with 4 such threads on 2 cores the
/// module's worker and Redis would be starved, so those stay at normal priority.
fn fifo_like_freeswitch() -> bool {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: sets the calling thread's own scheduling policy; a plain struct.
    let ok = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } == 0;
    FIFO_USED.store(ok, std::sync::atomic::Ordering::Relaxed);
    ok
}

static FIFO_USED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn timer_overhead_ns() -> u64 {
    let mut v: Vec<u64> = (0..100_000)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(());
            t.elapsed().as_nanos() as u64
        })
        .collect();
    v.sort_unstable();
    percentile(&v, 0.5)
}

/// `redis-benchmark -c 1 -P <pipeline> -n <n> <command...>` against `port`; its requests/s.
/// The command's words go to it as separate arguments: no shell, no quoting.
fn redis_benchmark(port: u16, pipeline: usize, n: usize, command: &[String]) -> f64 {
    let out = Command::new("redis-benchmark")
        .args(benchmark_args(port, pipeline, n))
        .args(command)
        .output()
        .expect("redis-benchmark (Debian package redis-tools)");
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or_default();
    // "test","rps",...: the test name may contain commas; rps is 7th from the right.
    let fields: Vec<&str> = last.rsplitn(8, ',').collect();
    fields
        .get(6)
        .and_then(|f| f.trim_matches('"').parse().ok())
        .unwrap_or_else(|| panic!("cannot read redis-benchmark output: {text}"))
}

fn benchmark_args(port: u16, pipeline: usize, n: usize) -> Vec<String> {
    [
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-c",
        "1",
        "-P",
        &pipeline.to_string(),
        "-n",
        &n.to_string(),
        "--csv",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect()
}

/// How many commands redis-benchmark really sends for `-n n -P pipeline`:
/// it sends whole pipelines, so `-n 20000 -P 64` sends 20032.
fn benchmark_sends(n: usize, pipeline: usize) -> u64 {
    (n.div_ceil(pipeline) * pipeline) as u64
}

/// The reference's command line as a shell would take it, to copy and rerun.
fn shell_line(port: u16, pipeline: usize, n: usize, command: &[String]) -> String {
    fn quote(a: &str) -> String {
        let plain = |c: char| c.is_ascii_alphanumeric() || "-_.:@/=".contains(c);
        if !a.is_empty() && a.chars().all(plain) {
            a.to_string()
        } else {
            format!("'{}'", a.replace('\'', "'\\''"))
        }
    }
    std::iter::once("redis-benchmark".to_string())
        .chain(benchmark_args(port, pipeline, n))
        .chain(command.iter().cloned())
        .map(|a| quote(&a))
        .collect::<Vec<_>>()
        .join(" ")
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown cpu".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let redis = Command::new("redis-server")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("{cpu}, {cores} cores; {redis}; {}", load_average())
}

/// The machine's 1-, 5- and 15-minute load averages: other work on the
/// same cores shows in every figure but the same-run ratios.
fn load_average() -> String {
    let avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let three: Vec<&str> = avg.split_whitespace().take(3).collect();
    format!("load average {}", three.join(" "))
}

// ------------------------------------------------------------------ stream

/// Watches the benchmark's stream on its own connection.
struct StreamWatch {
    con: redis::Connection,
}

impl StreamWatch {
    fn new(redis: &RedisServer) -> StreamWatch {
        StreamWatch {
            con: redis.connection(),
        }
    }

    /// Entries ever appended to the stream (`XINFO STREAM`'s `entries-added`,
    /// Redis 7.0+): unlike `XLEN`, it keeps counting once `MAXLEN ~` trims.
    fn added(&mut self) -> u64 {
        let Ok(redis::Value::Array(info)) = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(STREAM)
            .query::<redis::Value>(&mut self.con)
        else {
            return 0; // no stream yet
        };
        info.chunks(2)
            .find_map(|kv| match kv {
                [redis::Value::BulkString(k), redis::Value::Int(n)] if k == b"entries-added" => {
                    Some(*n as u64)
                }
                _ => None,
            })
            .expect("XINFO STREAM without entries-added: this benchmark needs Redis 7.0 or later")
    }

    fn len(&mut self) -> u64 {
        redis::cmd("XLEN").arg(STREAM).query(&mut self.con).unwrap()
    }

    /// The newest entry's fields, in the order they were written.
    fn last_fields(&mut self) -> Vec<String> {
        let raw: Vec<(String, Vec<String>)> = redis::cmd("XREVRANGE")
            .arg(STREAM)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query(&mut self.con)
            .unwrap();
        raw.into_iter().next().expect("an entry").1
    }
}

/// Waits until the subscriber has `want` messages and, with a stream, the
/// stream has had `want_added` entries appended.
fn wait_delivered(
    sub: &FastSubscriber,
    want: u64,
    stream: Option<(&mut StreamWatch, u64)>,
    limit: Duration,
) -> bool {
    let end = Instant::now() + limit;
    if !wait_until(limit, || sub.count() >= want) {
        return false;
    }
    match stream {
        Some((watch, want_added)) => {
            wait_until(end.saturating_duration_since(Instant::now()), || {
                watch.added() >= want_added
            })
        }
        None => true,
    }
}

// ------------------------------------------------------------------ per-action modes

/// One published event of each action `events=all` publishes: for each, the
/// captured fixture with the most headers (the longest walk and copy).
fn action_fixtures() -> Vec<(&'static catalogue::ActionDef, fixtures::Fixture)> {
    let mut all: Vec<Option<fixtures::Fixture>> =
        fixtures::events().into_iter().map(Some).collect();
    catalogue::ACTIONS
        .iter()
        .filter(|a| !a.query_reply)
        .map(|a| {
            let of_action =
                |f: &fixtures::Fixture| f.header("CC-Action").as_deref() == Some(a.action);
            // The most headers; the first such one.
            let i = (0..all.len())
                .filter(|&i| all[i].as_ref().is_some_and(of_action))
                .max_by_key(|&i| (all[i].as_ref().unwrap().headers.len(), std::cmp::Reverse(i)))
                .unwrap_or_else(|| panic!("no fixture for {}", a.action));
            (a, all[i].take().unwrap())
        })
        .collect()
}

/// p50, p99, max of one timing.
type Cost = (u64, u64, u64);

fn cost(t: &[u64]) -> Cost {
    (percentile(t, 0.5), percentile(t, 0.99), *t.last().unwrap())
}

/// The worst p50 and the worst p99 over the actions, with the actions they came from.
struct Worst {
    p50: (u64, &'static str),
    p99: (u64, &'static str),
}

impl Worst {
    fn of<'a>(costs: impl Iterator<Item = (&'static str, &'a Cost)>) -> Worst {
        let mut w = Worst {
            p50: (0, ""),
            p99: (0, ""),
        };
        for (action, c) in costs {
            if c.0 > w.p50.0 {
                w.p50 = (c.0, action);
            }
            if c.1 > w.p99.0 {
                w.p99 = (c.1, action);
            }
        }
        w
    }
}

/// The callback's cost for a published event of each action, 1 and 4 threads,
/// with the worker draining (and, with a stream, appending) behind it.
/// Returns the worst of 1 thread and of 4 threads.
fn action_callbacks(
    title: &str,
    n: usize,
    sub: &FastSubscriber,
    mut stream: Option<&mut StreamWatch>,
) -> (Worst, Worst) {
    println!("callback cost on the firing thread, {title}: a published event of each action (ns per event, timer overhead included; waits/preempted/faults: the firing threads' voluntary and involuntary context switches and page faults during the timed calls):");
    let dropped_before = status_value("dropped");
    let mut rows: Vec<(&'static str, Cost, Cost)> = Vec::new();
    for (def, fx) in action_fixtures() {
        let ev = fx.event();
        let mut per_threads = [(0, 0, 0); 2];
        let mut usages = [Interruptions::default(); 2];
        for (slot, threads) in [1, 4].into_iter().enumerate() {
            let before = sub.count();
            let added = stream.as_mut().map(|w| w.added());
            let (t, usage) = time_callback(&ev, n, threads);
            let want = t.len() as u64;
            let s = stream.as_mut().map(|w| (&mut **w, added.unwrap() + want));
            assert!(
                wait_delivered(sub, before + want, s, Duration::from_secs(120)),
                "{}: not all delivered",
                def.action
            );
            per_threads[slot] = cost(&t);
            usages[slot] = usage;
        }
        let [c1, c4] = per_threads;
        let lookup = if def.seed_fields == Some(catalogue::CALL_FIELDS) {
            " + member lookup"
        } else {
            ""
        };
        let label = format!("{} ({} headers{lookup})", def.action, fx.headers.len());
        println!(
            "  {label:<50} 1 thread: p50 {:>6}  p99 {:>6}  max {:>8} | 4 threads: p50 {:>6}  p99 {:>6}  max {:>8} | 1 thread {}; 4 threads {}",
            c1.0, c1.1, c1.2, c4.0, c4.1, c4.2, usages[0], usages[1]
        );
        rows.push((def.action, c1, c4));
    }
    assert_eq!(status_value("dropped"), dropped_before, "nothing dropped");
    let w1 = Worst::of(rows.iter().map(|(a, c, _)| (*a, c)));
    let w4 = Worst::of(rows.iter().map(|(a, _, c)| (*a, c)));
    println!(
        "  worst over the actions: 1 thread p50 {} ({}), p99 {} ({}); 4 threads p50 {} ({}), p99 {} ({})",
        w1.p50.0, w1.p50.1, w1.p99.0, w1.p99.1, w4.p50.0, w4.p50.1, w4.p99.0, w4.p99.1
    );
    (w1, w4)
}

/// Loads the module with these params (Redis on `port`, a queue that never
/// fills) and waits until it is connected.
/// The envelope mode's params: every action, the envelope, the stream.
fn envelope_params(maxlen: &str) -> Vec<(&'static str, &str)> {
    vec![
        ("events", "all"),
        ("format", "envelope"),
        ("stream", STREAM),
        ("stream-maxlen", maxlen),
    ]
}

fn load_connected(port: u16, params: &[(&str, &str)]) -> LoadedModule {
    let mut all = vec![("queue-size", "1000000")];
    all.extend_from_slice(params);
    harness::config_for(port, &all);
    // New calls for each mode: a session's pool keeps every variable copy until it ends.
    fixtures::add_member_sessions();
    let module = LoadedModule::load().expect("load");
    assert!(wait_until(Duration::from_secs(10), || core::api(
        "cc_events",
        "status"
    )
    .unwrap()
    .contains("redis:      connected")));
    module
}

// ------------------------------------------------------------------ sections

/// Memory with a full queue, Redis down: first, while the process is still small.
fn memory_section(sizes: &Sizes) {
    use mod_cc_events::callcenter;
    let big = vec![b'x'; callcenter::MAX_VALUE_BYTES];
    let mut ev = fixture("005-agent-offering.txt");
    for h in [
        "CC-Queue",
        "CC-Agent",
        "CC-Agent-System",
        "CC-Member-UUID",
        "CC-Member-Session-UUID",
        "CC-Member-CID-Name",
        "CC-Member-CID-Number",
    ] {
        ev = ev.with_header(h, &big);
    }
    // The same fields through the module's own capture, to size the largest event kept.
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = [
        "Queue",
        "Agent",
        "Agent-System",
        "Member-UUID",
        "Member-Session-UUID",
        "Member-CID-Name",
        "Member-CID-Number",
    ]
    .iter()
    .map(|h| (format!("CC-{h}").into_bytes(), big.clone()))
    .chain([(b"CC-Action".to_vec(), b"agent-offering".to_vec())])
    .collect();
    let catalogue = Arc::new(Catalogue::new(&EventSettings::default()));
    let scan = callcenter::scan(&catalogue, pairs.iter().map(|(n, v)| (&n[..], &v[..]))).unwrap();
    let largest = scan.capture(|_| Some(String::from_utf8(big.clone()).unwrap()));
    // The queue slot holds the event itself; its strings live on the heap.
    let per_event = std::mem::size_of::<callcenter::CapturedEvent>() + 8 + largest.heap_bytes();

    let q = sizes.memory_queue;
    harness::config_for(
        free_port(),
        &[("queue-size", &q.to_string()), ("shutdown-flush-ms", "0")],
    );
    let rss0 = rss_kib();
    let module = LoadedModule::load().expect("load");
    let rss1 = rss_kib();
    for _ in 0..q + q / 10 {
        core::fire(&mut ev);
    }
    let rss2 = rss_kib();
    let queued = status_value("queued");
    let dropped = status_value("dropped");
    module.unload();
    let growth = rss2.saturating_sub(rss0);
    let bound_kib = (q * per_event) as u64 / 1024;
    // Fixed margin: what loading costs with an empty queue, plus allocator slack.
    let margin = rss1.saturating_sub(rss0) + 4 * 1024;
    println!("memory (Redis down, queue filled with the largest events, then 10% more):");
    println!("  queue-size {q}, queued {queued}, dropped {dropped}");
    println!(
        "  largest event kept: {per_event} bytes; queue-size x largest = {:.1} MiB",
        bound_kib as f64 / 1024.0
    );
    println!(
        "  RSS growth from before load to full queue: {:.1} MiB; fixed margin {:.1} MiB (load with empty queue {:.1} MiB + 4 MiB allocator slack)",
        growth as f64 / 1024.0,
        margin as f64 / 1024.0,
        rss1.saturating_sub(rss0) as f64 / 1024.0
    );
    println!(
        "  within queue-size x largest + margin: {}",
        if growth <= bound_kib + margin {
            "yes"
        } else {
            "NO"
        }
    );
    assert_eq!(queued, q as u64, "queue should be full");
    assert_eq!(dropped, (q / 10) as u64, "the extra 10% are dropped");
}

/// Throughput with the stream: from the first fire to the subscriber's receipt
/// of the last message AND the stream's append of the last entry, against
/// redis-benchmark running the same XADD in the same run: same key, same
/// `MAXLEN ~`, and the fields and payload bytes the module wrote, read back
/// from the stream. Returns events/s, the reference's XADD/s and their ratio
/// (medians over the rounds).
/// The `XADD` the module sends for `published` in the envelope mode, read
/// back from the stream: the reference command of the stream and state modes.
fn stream_reference(
    sub: &FastSubscriber,
    watch: &mut StreamWatch,
    published: &OwnedEvent,
) -> Vec<String> {
    fixtures::add_member_sessions();
    let (before, added) = (sub.count(), watch.added());
    core::fire(&mut published.clone());
    assert!(wait_delivered(
        sub,
        before + 1,
        Some((&mut *watch, added + 1)),
        Duration::from_secs(10)
    ));
    let fields = watch.last_fields();
    let names: Vec<&str> = fields.iter().step_by(2).map(String::as_str).collect();
    assert_eq!(
        names,
        ["event", "action", "sequence", "core_uuid", "payload"]
    );
    [
        "XADD",
        STREAM,
        "MAXLEN",
        "~",
        &STREAM_MAXLEN.to_string(),
        "*",
    ]
    .iter()
    .map(|a| a.to_string())
    .chain(fields.iter().cloned())
    .collect()
}

fn stream_throughput(
    redis: &RedisServer,
    sub: &FastSubscriber,
    watch: &mut StreamWatch,
    published: &OwnedEvent,
    sizes: &Sizes,
) -> (f64, f64, f64, Vec<String>) {
    let n = sizes.throughput_events;
    // One event first, to read back exactly what the module appends.
    let xadd = stream_reference(sub, watch, published);
    let fields = xadd[6..].to_vec();
    println!(
        "throughput, fire to receipt by the subscriber and append to the stream (PUBLISH + XADD per event), envelope payload ({} bytes):",
        fields[9].len()
    );
    println!("  reference: {}", shell_line(redis.port, P64, n, &xadd));

    let mut rounds = Paired::default();
    for round in 1..=sizes.rounds {
        // New calls each round: a session's pool keeps every variable copy until it ends.
        fixtures::add_member_sessions();
        let added = watch.added();
        let reference = redis_benchmark(redis.port, P64, n, &xadd);
        let sent = benchmark_sends(n, P64);
        assert!(wait_until(Duration::from_secs(60), || watch.added() >= added + sent));
        if round == 1 {
            assert_eq!(
                watch.last_fields(),
                fields,
                "the reference appends what the module appends"
            );
        }

        let mut events: Vec<OwnedEvent> = (0..256).map(|_| published.clone()).collect();
        let (before, added) = (sub.count(), watch.added());
        let dropped_before = status_value("dropped");
        let start = Instant::now();
        for i in 0..n {
            core::fire(&mut events[i % 256]);
        }
        let fired_in = start.elapsed();
        assert!(
            wait_delivered(
                sub,
                before + n as u64,
                Some((&mut *watch, added + n as u64)),
                Duration::from_secs(120)
            ),
            "not all received and appended"
        );
        let elapsed = start.elapsed();
        assert_eq!(status_value("dropped"), dropped_before, "nothing dropped");
        let eps = n as f64 / elapsed.as_secs_f64();
        println!(
            "  round {round}: mod_cc_events {eps:>10.0} events/s (fired in {:.0} ms, all received and appended in {:.0} ms); redis-benchmark -c 1 -P 64 XADD: {reference:>10.0} XADD/s; ratio {:.2}",
            fired_in.as_secs_f64() * 1e3,
            elapsed.as_secs_f64() * 1e3,
            eps / reference
        );
        rounds.push(eps, reference);
    }
    let (eps, reference, ratio) = rounds.medians();
    println!(
        "  median: mod_cc_events {eps:.0} events/s; reference XADD -P 64 {reference:.0}/s (ratio {ratio:.2}, target >= 0.4); stream length now {} (MAXLEN ~{STREAM_MAXLEN})",
        watch.len()
    );
    (eps, reference, ratio, xadd)
}

// ------------------------------------------------------------------ state mirror

/// The mirror's key prefix (the default `state-prefix`).
const STATE_PREFIX: &str = "cc_state";
/// The call centre the harness's mod_callcenter serves in the state mode:
/// agents in queues, each queue's tier its own `AGENTS_PER_QUEUE` agents.
const STATE_AGENTS: usize = 1_000;
const STATE_QUEUES: usize = 100;
const AGENTS_PER_QUEUE: usize = STATE_AGENTS / STATE_QUEUES;
/// Members waiting (10 a queue) while the throughput is measured.
const STATE_WAITING: usize = 1_000;
/// Members waiting in the seed timing.
const SEED_WAITING: usize = 10_000;
/// The recorded call each call of the traffic copies: 001-011, from the
/// agent becoming Available to the member leaving after the call.
const CALL_FILES: usize = 11;
/// Headers of the recorded call that hold epoch seconds.
const SECONDS_HEADERS: &[&str] = &[
    "CC-Agent-Called-Time",
    "CC-Agent-Answered-Time",
    "CC-Member-Joined-Time",
    "CC-Bridge-Terminated-Time",
    "CC-Member-Leaving-Time",
];
/// The recorded member channel whose variables every benchmark member gets.
const MEMBER_CHANNEL: &str = "29950626-434c-4af3-bf4f-73c8cfb962c8";

fn agent_name(i: usize) -> String {
    format!("agent-{i:04}@bench")
}

fn queue_name(q: usize) -> String {
    format!("queue-{q:03}@bench")
}

/// (member UUID, member session UUID) of waiting member `i`.
fn waiting_member(i: usize) -> (String, String) {
    (
        format!("00000000-0000-4000-8000-{i:012x}"),
        format!("00000000-0000-4000-9000-{i:012x}"),
    )
}

/// (member UUID, member session UUID, agent leg UUID) of call `c` of the traffic.
fn call_ids(c: usize) -> (String, String, String) {
    (
        format!("00000000-0000-4000-a000-{c:012x}"),
        format!("00000000-0000-4000-b000-{c:012x}"),
        format!("00000000-0000-4000-c000-{c:012x}"),
    )
}

/// mod_callcenter's `agent list`, `queue list`, `tier list` and `member list`
/// for the benchmark's call centre with `waiting` members waiting (spread over
/// the queues), each row shaped as the recorded rows.
fn call_centre(waiting: usize) -> Vec<(&'static str, serde_json::Value)> {
    use serde_json::{json, Value};
    let agent = recorded("01-start", "agent list")[0].clone();
    let queue = recorded("01-start", "queue list")[0].clone();
    let member = recorded("05-caller-waiting-no-agent", "member list")[0].clone();
    let now = (mod_cc_events::state::now_us() / 1_000_000) as usize;
    let agents: Vec<Value> = (0..STATE_AGENTS)
        .map(|i| {
            let mut a = agent.clone();
            a["name"] = agent_name(i).into();
            a["contact"] = format!("[leg_timeout=10]user/{}", agent_name(i)).into();
            a["status"] = "Available".into();
            a
        })
        .collect();
    let queues: Vec<Value> = (0..STATE_QUEUES)
        .map(|q| {
            let mut row = queue.clone();
            row["name"] = queue_name(q).into();
            row
        })
        .collect();
    let tiers: Vec<Value> = (0..STATE_QUEUES)
        .flat_map(|q| {
            (0..AGENTS_PER_QUEUE).map(move |slot| {
                json!({
                    "queue": queue_name(q),
                    "agent": agent_name(q * AGENTS_PER_QUEUE + slot),
                    "state": "Ready",
                    "level": "1",
                    "position": (slot + 1).to_string(),
                })
            })
        })
        .collect();
    let members: Vec<Value> = (0..waiting)
        .map(|i| {
            let (uuid, session) = waiting_member(i);
            let joined = (now - i % 600).to_string();
            let mut m = member.clone();
            m["queue"] = queue_name(i % STATE_QUEUES).into();
            m["uuid"] = uuid.into();
            m["session_uuid"] = session.into();
            m["system_epoch"] = joined.clone().into();
            m["joined_epoch"] = joined.into();
            m
        })
        .collect();
    vec![
        ("agent list", Value::Array(agents)),
        ("queue list", Value::Array(queues)),
        ("tier list", Value::Array(tiers)),
        ("member list", Value::Array(members)),
    ]
}

/// The harness's mod_callcenter answers with these lists from now on.
fn serve(lists: Vec<(&'static str, serde_json::Value)>) {
    core::set_callcenter(Some(Arc::new(move |args: &str| {
        lists
            .iter()
            .find(|(what, _)| *what == args)
            .map(|(_, v)| v.clone())
    })));
}

/// Live member channels (the recorded member's variables and caller
/// profile), new ones: a session's pool keeps every variable copy until it ends.
fn add_member_channels(sessions: impl Iterator<Item = String>) {
    let vars = fixtures::member_channels()
        .remove(MEMBER_CHANNEL)
        .expect("member channel fixture");
    let profile = fixtures::member_caller_profiles()
        .remove(MEMBER_CHANNEL)
        .expect("member channel fixture");
    let fields: Vec<(&str, &str)> = profile.iter().map(|(f, v)| (*f, v.as_str())).collect();
    for s in sessions {
        core::add_session(&s, &vars);
        core::set_caller_profile(&s, &fields);
    }
}

/// One event of the state mode's traffic, built once and fired many times
/// with its time and sequence headers moved on.
struct CallEvent {
    ev: OwnedEvent,
    /// µs from the call's start (the recorded call's own spacing).
    offset_us: u64,
    /// Headers holding epoch seconds, with their offset from the call's start.
    seconds: Vec<(&'static str, i64)>,
}

/// `calls` calls, each the recorded call 001-011 (agent-status-change,
/// member-queue-start, members-count, agent-state-change, agent-offering,
/// bridge-agent-start, members-count, agent-state-change, bridge-agent-end,
/// member-queue-end, agent-state-change) with its own member, in queue
/// `c % 100`, answered by one of that queue's agents: every call touches
/// agents, members and queues the seed holds.
fn state_calls(calls: usize) -> Vec<CallEvent> {
    let recorded_call: Vec<fixtures::Fixture> =
        fixtures::events().into_iter().take(CALL_FILES).collect();
    let at = |f: &fixtures::Fixture| -> u64 {
        f.header("Event-Date-Timestamp")
            .and_then(|t| t.parse().ok())
            .expect("Event-Date-Timestamp")
    };
    let start_us = at(&recorded_call[0]);
    let first = |h: &str| {
        recorded_call
            .iter()
            .find_map(|f| f.header(h))
            .unwrap_or_else(|| panic!("no {h} in the recorded call"))
    };
    let (agent, queue, member, session, leg) = (
        first("CC-Agent"),
        first("CC-Queue"),
        first("CC-Member-UUID"),
        first("CC-Member-Session-UUID"),
        first("CC-Agent-UUID"),
    );
    let mut out = Vec::with_capacity(calls * CALL_FILES);
    for c in 0..calls {
        let q = c % STATE_QUEUES;
        let slot = (c / STATE_QUEUES) % AGENTS_PER_QUEUE;
        let (m, s, l) = call_ids(c);
        let map = [
            (&agent, agent_name(q * AGENTS_PER_QUEUE + slot)),
            (&queue, queue_name(q)),
            (&member, m),
            (&session, s),
            (&leg, l),
        ];
        for f in &recorded_call {
            let headers: Vec<(Vec<u8>, Vec<u8>)> = f
                .headers
                .iter()
                .map(
                    |(n, v)| match map.iter().find(|(from, _)| from.as_bytes() == v) {
                        Some((_, to)) => (n.clone(), to.as_bytes().to_vec()),
                        None => (n.clone(), v.clone()),
                    },
                )
                .collect();
            let refs: Vec<(&[u8], &[u8])> = headers.iter().map(|(n, v)| (&n[..], &v[..])).collect();
            let subclass = f.header("Event-Subclass").unwrap_or_default();
            let seconds = SECONDS_HEADERS
                .iter()
                .filter_map(|h| {
                    let v: i64 = f.header(h)?.parse().ok()?;
                    Some((*h, v - (start_us / 1_000_000) as i64))
                })
                .collect();
            out.push(CallEvent {
                ev: OwnedEvent::custom(&subclass, &refs),
                offset_us: at(f) - start_us,
                seconds,
            });
        }
    }
    out
}

/// The traffic as one endless sequence: its `k`th event is call `k / 11`
/// (one second after the one before, so that every call is newer than the
/// last one of its agent, as the mirror counts calls answered), with
/// Event-Sequence `k` on from `first_sequence`.
struct Traffic {
    calls: Vec<CallEvent>,
    fired: u64,
    start_us: u64,
    first_sequence: u64,
}

impl Traffic {
    fn fire_next(&mut self) {
        let k = self.fired;
        self.fired += 1;
        let call_start = self.start_us + (k / CALL_FILES as u64) * 1_000_000;
        let at = (k % self.calls.len() as u64) as usize;
        let ce = &mut self.calls[at];
        let ts = call_start + ce.offset_us;
        ce.ev
            .set_header("Event-Date-Timestamp", ts.to_string().as_bytes());
        ce.ev.set_header(
            "Event-Sequence",
            (self.first_sequence + k).to_string().as_bytes(),
        );
        for (h, offset) in &ce.seconds {
            let v = (call_start / 1_000_000) as i64 + offset;
            ce.ev.set_header(h, v.to_string().as_bytes());
        }
        core::fire(&mut ce.ev);
    }

    /// The sequence number of the last event fired.
    fn last_sequence(&self) -> u64 {
        self.first_sequence + self.fired - 1
    }

    fn sessions(&self) -> impl Iterator<Item = String> {
        let calls = self.calls.len() / CALL_FILES;
        (0..calls).map(|c| call_ids(c).1)
    }
}

fn meta_field(con: &mut redis::Connection, field: &str) -> Option<String> {
    redis::cmd("HGET")
        .arg(format!("{STATE_PREFIX}:meta"))
        .arg(field)
        .query(con)
        .unwrap()
}

/// `cc_events reload`, which reseeds the mirror from mod_callcenter on the
/// worker thread, and the time until the new seed is in Redis (`seeded_at`
/// in `<prefix>:meta` changes; polled every 0.5 ms). Returns the time, and the
/// part of it before the worker started writing (reading mod_callcenter's
/// lists and the members' variables, building the model): `seeded_at` is
/// the wall clock when the write is put together.
fn timed_reseed(con: &mut redis::Connection) -> (Duration, Duration) {
    let before = meta_field(con, "seeded_at");
    let wall = mod_cc_events::state::now_us();
    let start = Instant::now();
    let reply = core::api("cc_events", "reload").unwrap();
    assert!(reply.starts_with("+OK"), "{reply}");
    let seeded_at = loop {
        match meta_field(con, "seeded_at") {
            Some(now) if Some(&now) != before.as_ref() => break now,
            _ => {}
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no new seed within 60 s"
        );
        std::thread::sleep(Duration::from_micros(500));
    };
    let total = start.elapsed();
    let read = Duration::from_micros(seeded_at.parse::<u64>().unwrap().saturating_sub(wall));
    (total, read.min(total))
}

/// `cc_events state`'s value for `name` (agents, queues, waiting, ...).
fn state_value(name: &str) -> u64 {
    let out = core::api("cc_events", "state").unwrap();
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {out}"))
}

/// The time Redis spent per call of `command` since the last `CONFIG
/// RESETSTAT` (`INFO commandstats`' usec_per_call), in µs.
fn usec_per_call(con: &mut redis::Connection, command: &str) -> f64 {
    command_stat(con, command, "usec_per_call")
}

/// One figure of `INFO commandstats` for `command` (0 when it never ran).
fn command_stat(con: &mut redis::Connection, command: &str, figure: &str) -> f64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(con).unwrap();
    let line = format!("cmdstat_{command}:");
    let key = format!("{figure}=");
    info.lines()
        .find_map(|l| l.strip_prefix(&line))
        .and_then(|l| l.split(',').find_map(|kv| kv.strip_prefix(key.as_str())))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn reset_command_stats(con: &mut redis::Connection) {
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query(con).unwrap();
}

/// Events in one of the module's state calls when the queue is busy: a
/// whole batch (the default `batch-size`).
const GROUP: usize = 256;

/// Redis alone running the module's own state writes: the transaction of
/// the last `GROUP` events, rebuilt with the module's `Transaction` from
/// their stream entries (each entry's fields, and every entry's `state` as
/// the HSETs and HDELs, each field once), written `calls` times back to
/// back over one connection while its replies are read. Returns events per second:
/// what the state mode cannot pass on this Redis, however little the
/// module spends.
fn state_calls_in_redis(redis: &RedisServer, con: &mut redis::Connection, n: usize) -> f64 {
    use mod_cc_events::state::model::{Change, Hash};
    use mod_cc_events::state::script::{Keys, Transaction};
    let entries: Vec<(String, Vec<String>)> = redis::cmd("XREVRANGE")
        .arg(STREAM)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(GROUP)
        .query(con)
        .unwrap();
    let keys = Keys {
        prefix: STATE_PREFIX.into(),
    };
    let maxlen = STREAM_MAXLEN.to_string();
    let mut tx = Transaction::default();
    let mut changes = Vec::new();
    let mut sequence = String::new();
    for (_, fields) in entries.iter().rev() {
        let field = |name: &str| {
            fields
                .chunks(2)
                .find(|kv| kv[0] == name)
                .map(|kv| kv[1].as_str())
                .unwrap_or_else(|| panic!("no {name} in {fields:?}"))
        };
        let delta: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(field("state")).unwrap();
        for (key, values) in &delta {
            let hash = match key.strip_prefix(&format!("{STATE_PREFIX}:")) {
                Some("agents") => Hash::Agents,
                Some("queues") => Hash::Queues,
                Some(other) => Hash::Members(other.strip_prefix("members:").unwrap().into()),
                None => panic!("key {key} outside {STATE_PREFIX}"),
            };
            for (f, v) in values.as_object().unwrap() {
                changes.push(Change {
                    hash: hash.clone(),
                    field: f.clone(),
                    value: (!v.is_null()).then(|| v.to_string()),
                });
            }
        }
        let mut xadd: Vec<&[u8]> = vec![b"MAXLEN", b"~", maxlen.as_bytes(), b"*"];
        xadd.extend(fields.iter().map(|f| f.as_bytes()));
        tx.xadd(STREAM, &xadd);
        sequence = field("sequence").to_string();
    }
    let mut block = Vec::new();
    let replies = tx.finish(&keys, &changes, &[("sequence", &sequence)], &mut block);
    let calls = (n / GROUP).max(16);
    let mut writer = TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
    let mut reader = std::io::BufReader::new(writer.try_clone().unwrap());
    let start = Instant::now();
    let sender = {
        let block = block.clone();
        std::thread::spawn(move || {
            for _ in 0..calls {
                writer.write_all(&block).unwrap();
            }
            writer
        })
    };
    for _ in 0..calls * replies {
        skip_reply(&mut reader);
    }
    let elapsed = start.elapsed();
    drop(sender.join().unwrap());
    (calls * entries.len()) as f64 / elapsed.as_secs_f64()
}

/// Reads one RESP reply, whatever it is; panics on an error reply.
fn skip_reply(r: &mut impl std::io::BufRead) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let n = || line[1..].trim_end().parse::<i64>().unwrap();
    match line.as_bytes()[0] {
        b'-' => panic!("Redis refused the state transaction: {line}"),
        b'$' if n() >= 0 => {
            let mut body = vec![0; n() as usize + 2];
            r.read_exact(&mut body).unwrap();
        }
        b'*' if n() > 0 => {
            for _ in 0..n() {
                skip_reply(r);
            }
        }
        _ => {}
    }
}

/// `cc_events state` shows the seeded agents and `waiting` waiting members.
/// Waited for: the report follows the worker's reading of the reply, a
/// moment after Redis has the seed.
fn wait_for_report(waiting: usize) {
    let want = (STATE_AGENTS as u64, waiting as u64);
    assert!(
        wait_until(Duration::from_secs(5), || (
            state_value("agents"),
            state_value("waiting")
        ) == want),
        "{}",
        core::api("cc_events", "state").unwrap()
    );
}

/// What the state mode measured.
struct StateFigures {
    cb: Worst,
    cb_4t: Worst,
    eps: f64,
    reference: f64,
    ratio: f64,
    /// Redis alone running the module's state calls, and its ratio to the reference.
    redis_calls: f64,
    redis_ratio: f64,
    /// Redis's own time (commandstats) in the transaction's commands, per event.
    state_cmds_us: f64,
    /// CPU per event: the module's worker thread, and redis-server.
    worker_cpu_us: f64,
    redis_cpu_us: f64,
    xadd_us: f64,
    seed_ms: f64,
    seed_read_ms: f64,
    seed_write_ms: f64,
}

/// The envelope mode with the live state mirror on: the callback's cost for
/// each action, throughput of a call centre's traffic against the envelope
/// mode's XADD reference, and the time to seed 1,000 agents and 10,000
/// waiting members.
fn state_section(
    redis: &RedisServer,
    sub: &FastSubscriber,
    watch: &mut StreamWatch,
    xadd: &[String],
    sizes: &Sizes,
) -> StateFigures {
    println!(
        "---- state=true (state-refresh-s=0), format=envelope, events=all, stream={STREAM}, stream-maxlen={STREAM_MAXLEN}; mod_callcenter serves {STATE_AGENTS} agents, {STATE_QUEUES} queues ({AGENTS_PER_QUEUE} agents in each tier), {STATE_WAITING} waiting members"
    );
    add_member_channels((0..STATE_WAITING).map(|i| waiting_member(i).1));
    serve(call_centre(STATE_WAITING));
    let maxlen = STREAM_MAXLEN.to_string();
    let mut params = envelope_params(&maxlen);
    params.extend([
        ("state", "true"),
        // No periodic re-read: the served lists stand still while the traffic moves on.
        ("state-refresh-s", "0"),
    ]);
    let module = load_connected(redis.port, &params);
    let mut con = redis.connection();
    assert!(
        wait_until(Duration::from_secs(30), || meta_field(
            &mut con,
            "seeded_at"
        )
        .is_some()),
        "never seeded: {}",
        core::api("cc_events", "state").unwrap()
    );
    wait_for_report(STATE_WAITING);

    let (cb, cb_4t) = action_callbacks(
        "state=true events=all format=envelope stream",
        sizes.action_callback_events,
        sub,
        Some(&mut *watch),
    );

    // The recorded events' own agents are gone again after a fresh seed.
    timed_reseed(&mut con);
    let mut traffic = Traffic {
        calls: state_calls(sizes.state_calls),
        fired: 0,
        start_us: mod_cc_events::state::now_us(),
        first_sequence: 1_000_000,
    };
    let n = sizes.throughput_events;
    println!(
        "throughput, fire to receipt by the subscriber and the state call's append to the stream (each batch: one MULTI with every event's XADD, each changed hash field once and the meta script, EXEC, then the events' PUBLISHes), envelope payload; the traffic: {} calls of {CALL_FILES} events (the recorded call 001-011, each with its own member and one of its queue's agents), fired in turn, each newer than the last:",
        sizes.state_calls
    );
    println!("  reference: the envelope mode's XADD above (same fields, same payload), run again each round, after {STREAM_MAXLEN} more of it (untimed) that leave only its own entries in the stream, as in the envelope mode");
    let mut rounds = Paired::default();
    let (mut cmds_us, mut xadd_us) = (Vec::new(), Vec::new());
    let (mut worker_cpus, mut redis_cpus) = (Vec::new(), Vec::new());
    for round in 1..=sizes.rounds {
        // New channels each round: a session's pool keeps every variable copy until it ends.
        add_member_channels(traffic.sessions());
        // First the reference replaces every entry of the stream with its
        // own, untimed: trimming the state mode's larger entries (the
        // `state` field) would slow it down by a third, and the envelope
        // mode's reference trims its own.
        let added = watch.added();
        let refill = STREAM_MAXLEN as usize + P64;
        redis_benchmark(redis.port, P64, refill, xadd);
        let sent = benchmark_sends(refill, P64);
        assert!(wait_until(Duration::from_secs(60), || watch.added() >= added + sent));
        let added = watch.added();
        reset_command_stats(&mut con);
        let reference = redis_benchmark(redis.port, P64, n, xadd);
        let sent = benchmark_sends(n, P64);
        assert!(wait_until(Duration::from_secs(60), || watch.added() >= added + sent));
        xadd_us.push(usec_per_call(&mut con, "xadd"));

        reset_command_stats(&mut con);
        let (before, added) = (sub.count(), watch.added());
        let dropped_before = status_value("dropped");
        let (worker_cpu, redis_cpu) = (thread_cpu_s("cc_events-redis"), redis_cpu_s(&mut con));
        let start = Instant::now();
        for _ in 0..n {
            traffic.fire_next();
        }
        let fired_in = start.elapsed();
        assert!(
            wait_delivered(
                sub,
                before + n as u64,
                Some((&mut *watch, added + n as u64)),
                Duration::from_secs(120)
            ),
            "not all received and appended"
        );
        let elapsed = start.elapsed();
        assert_eq!(status_value("dropped"), dropped_before, "nothing dropped");
        assert_eq!(
            meta_field(&mut con, "sequence"),
            Some(traffic.last_sequence().to_string()),
            "the last event's state call is in Redis"
        );
        let per_event_us = |s: f64| s * 1e6 / n as f64;
        let (worker_us, redis_us) = (
            per_event_us(thread_cpu_s("cc_events-redis") - worker_cpu),
            per_event_us(redis_cpu_s(&mut con) - redis_cpu),
        );
        // Per event: a call holds a whole batch.
        let in_transaction: f64 = ["xadd", "hset", "hdel", "eval"]
            .iter()
            .map(|c| command_stat(&mut con, c, "usec"))
            .sum();
        cmds_us.push(in_transaction / n as f64);
        worker_cpus.push(worker_us);
        redis_cpus.push(redis_us);
        let eps = n as f64 / elapsed.as_secs_f64();
        println!(
            "  round {round}: mod_cc_events {eps:>10.0} events/s (fired in {:.0} ms, all received and appended in {:.0} ms; CPU per event: worker {worker_us:.1} us, redis-server {redis_us:.1} us); redis-benchmark -c 1 -P 64 XADD: {reference:>10.0} XADD/s; ratio {:.2}",
            fired_in.as_secs_f64() * 1e3,
            elapsed.as_secs_f64() * 1e3,
            eps / reference
        );
        rounds.push(eps, reference);
    }
    let (eps, reference, ratio) = rounds.medians();
    let agents: u64 = redis::cmd("HLEN")
        .arg(format!("{STATE_PREFIX}:agents"))
        .query(&mut con)
        .unwrap();
    assert_eq!(
        agents, STATE_AGENTS as u64,
        "the traffic only moves the seeded agents"
    );
    println!(
        "  median: mod_cc_events {eps:.0} events/s; reference XADD -P 64 {reference:.0}/s (ratio {ratio:.2}, target >= 0.3); {} calls answered in the mirror, {} waiting",
        traffic.fired / CALL_FILES as u64,
        state_value("waiting")
    );
    let (state_cmds_us, xadd_us) = (median_f(&mut cmds_us), median_f(&mut xadd_us));
    let (worker_cpu_us, redis_cpu_us) = (median_f(&mut worker_cpus), median_f(&mut redis_cpus));
    println!(
        "  Redis's own time (INFO commandstats): the module's transactions {state_cmds_us:.2} us per event (its XADD, its share of the HSETs, HDELs and the EVAL that writes meta); the reference's XADD {xadd_us:.2} us. CPU per event (medians): worker {worker_cpu_us:.1} us, redis-server {redis_cpu_us:.1} us"
    );
    let redis_calls = state_calls_in_redis(redis, &mut con, n);
    let redis_ratio = redis_calls / reference;
    println!(
        "  Redis alone running the module's own state writes (the transaction of the last {GROUP} events, rebuilt from their stream entries with the module's script::Transaction, written back to back over one connection; no PUBLISH): {redis_calls:.0} events/s, ratio {redis_ratio:.2} to the XADD reference: the most this mode can reach on this Redis, however little the module spends"
    );

    // -------- seed time
    add_member_channels((0..SEED_WAITING).map(|i| waiting_member(i).1));
    serve(call_centre(SEED_WAITING));
    println!(
        "seed: `cc_events reload` to the new seed in Redis, mod_callcenter serving {STATE_AGENTS} agents, {STATE_QUEUES} queues ({STATE_AGENTS} tiers) and {SEED_WAITING} waiting members with live channels (read: the four callcenter_config JSON replies, as the harness serves them, each member's variables and the model; write: putting the EVALSHA together, sending it, Redis running it):"
    );
    let (mut totals, mut reads, mut writes) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=sizes.rounds {
        let (total, read) = timed_reseed(&mut con);
        let write = total - read;
        println!(
            "  round {round}: {:.1} ms (read {:.1} ms, write {:.1} ms)",
            total.as_secs_f64() * 1e3,
            read.as_secs_f64() * 1e3,
            write.as_secs_f64() * 1e3
        );
        totals.push(total.as_secs_f64() * 1e3);
        reads.push(read.as_secs_f64() * 1e3);
        writes.push(write.as_secs_f64() * 1e3);
    }
    wait_for_report(SEED_WAITING);
    let (seed_ms, seed_read_ms, seed_write_ms) = (
        median_f(&mut totals),
        median_f(&mut reads),
        median_f(&mut writes),
    );
    println!("  median: {seed_ms:.1} ms (read {seed_read_ms:.1} ms, write {seed_write_ms:.1} ms)");
    module.unload();
    core::set_callcenter(None);
    StateFigures {
        cb,
        cb_4t,
        eps,
        reference,
        ratio,
        redis_calls,
        redis_ratio,
        state_cmds_us,
        worker_cpu_us,
        redis_cpu_us,
        xadd_us,
        seed_ms,
        seed_read_ms,
        seed_write_ms,
    }
}

/// Throughput over TLS as a ratio to plaintext, both measured here, against
/// one redis-server that listens on a plain port and a `tls-port` (its
/// certificates made by the same openssl commands as tests/tls.rs). Rounds
/// alternate plaintext and TLS so that drift on the machine hits both alike.
/// Returns (TLS events/s, plaintext events/s, ratio), medians over the rounds.
fn tls_throughput(epoch: Instant, published: &OwnedEvent, sizes: &Sizes) -> (f64, f64, f64) {
    let certs = harness::tls::Certs::make();
    let ca = certs.path("ca.crt");
    let (redis, tls_port) = harness::tls::redis_tls_server(
        &certs,
        free_port(),
        "redis.crt",
        "no",
        &["--client-output-buffer-limit", "pubsub 0 0 0"],
    );
    let sub = FastSubscriber::new(&redis, epoch);
    let n = sizes.throughput_events;
    println!("---- tls: the seed throughput over TLS (rustls) against plaintext, same run, same redis-server");
    println!("  redis-server --port P --tls-port T --tls-cert-file redis.crt --tls-key-file redis.key --tls-ca-cert-file ca.crt --tls-auth-clients no");
    // Fire to receipt by the subscriber, as the main throughput figure.
    let measure = |module_port: u16, params: &[(&str, &str)]| -> f64 {
        let module = load_connected(module_port, params);
        let mut events: Vec<OwnedEvent> = (0..256).map(|_| published.clone()).collect();
        let before = sub.count();
        let dropped_before = status_value("dropped");
        let start = Instant::now();
        for i in 0..n {
            core::fire(&mut events[i % 256]);
        }
        let want = before + n as u64;
        assert!(
            wait_until(Duration::from_secs(120), || sub.count() >= want),
            "not all received"
        );
        let elapsed = start.elapsed();
        assert_eq!(status_value("dropped"), dropped_before, "nothing dropped");
        module.unload();
        n as f64 / elapsed.as_secs_f64()
    };
    let mut rounds = Paired::default();
    for round in 1..=sizes.rounds {
        let p = measure(redis.port, &[]);
        let t = measure(tls_port, &[("tls", "true"), ("tls-ca-file", &ca)]);
        println!(
            "  round {round}: plaintext {p:>10.0} events/s; tls {t:>10.0} events/s; ratio {:.2}",
            t / p
        );
        rounds.push(t, p);
    }
    let (tls, plain, ratio) = rounds.medians();
    println!(
        "  median: tls {tls:.0} events/s, plaintext {plain:.0} events/s, ratio {ratio:.2} (target >= 0.7)"
    );
    (tls, plain, ratio)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // Only the state mirror's section (and the XADD it is measured against).
    let only_state = std::env::args().any(|a| a == "--state");
    let sizes = if quick {
        Sizes {
            callback_events: 20_000,
            action_callback_events: 2_000,
            throughput_events: 20_000,
            rounds: 1,
            latency_secs: 0.5,
            memory_queue: 2_000,
            reference_p1_events: 5_000,
            state_calls: 250,
        }
    } else {
        Sizes {
            callback_events: 200_000,
            action_callback_events: 50_000,
            throughput_events: 200_000,
            rounds: 3,
            latency_secs: 3.0,
            memory_queue: 20_000,
            reference_p1_events: 50_000,
            state_calls: 1_000,
        }
    };
    println!(
        "mod_cc_events benchmark ({})",
        if quick { "quick" } else { "full" }
    );
    println!("machine: {}", machine());

    if !only_state {
        memory_section(&sizes);
    }

    let epoch = Instant::now();
    let redis = RedisServer::start_with(
        free_port(),
        &["--client-output-buffer-limit", "pubsub 0 0 0"],
    );
    let sub = FastSubscriber::new(&redis, epoch);
    if only_state {
        return state_only(&redis, &sub, &sizes);
    }
    println!("---- format=seed, events=seed (the defaults)");
    let module = load_connected(redis.port, &[]);

    let published = fixture("005-agent-offering.txt");
    let ignored = fixture("004-agent-state-change.txt");
    let ignored_long = fixture("009-bridge-agent-end.txt");

    // -------- callback cost on the firing thread
    let overhead = timer_overhead_ns();
    println!(
        "callback cost on the firing thread (ns per event; timer overhead {overhead} ns included):"
    );
    let mut one_thread = Vec::new();
    for (name, ev) in [
        ("ignored (agent-state-change, 17 headers)", &ignored),
        ("ignored (bridge-agent-end, 215 headers)", &ignored_long),
        ("published (agent-offering + member lookup)", &published),
    ] {
        for threads in [1, 4] {
            let before = sub.count();
            let (t, usage) = time_callback(ev, sizes.callback_events, threads);
            let (p50, p99, max) = (
                percentile(&t, 0.5),
                percentile(&t, 0.99),
                *t.last().unwrap(),
            );
            println!("  {name:<44} {threads} thread(s): p50 {p50:>6}  p99 {p99:>6}  max {max:>8}   ({usage})");
            if threads == 1 {
                one_thread.push((p50, p99));
            }
            if name.starts_with("published") {
                let want = before + t.len() as u64;
                assert!(wait_until(Duration::from_secs(60), || sub.count() >= want));
            }
        }
    }
    let (cb_ignored_p50, cb_ignored_p99) = one_thread[0];
    let (cb_published_p50, cb_published_p99) = one_thread[2];

    // -------- throughput, against redis-benchmark in the same run
    // The exact bytes the module publishes for 005-agent-offering (see tests/payloads.rs).
    let payload = std::fs::read_to_string(fixtures::dir().join("expected-payloads.txt"))
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    println!(
        "throughput, fire to receipt by the subscriber, seed payload ({} bytes):",
        payload.len()
    );
    let publish: Vec<String> = vec!["PUBLISH".into(), CHANNEL.into(), payload.clone()];
    println!(
        "  reference: {}",
        shell_line(redis.port, P64, sizes.throughput_events, &publish)
    );
    let mut rounds_p64 = Paired::default();
    for round in 1..=sizes.rounds {
        // New calls each round: a session's pool keeps every variable copy until it ends.
        fixtures::add_member_sessions();
        let before = sub.count();
        let reference = redis_benchmark(redis.port, P64, sizes.throughput_events, &publish);
        let sent = benchmark_sends(sizes.throughput_events, P64);
        assert!(wait_until(Duration::from_secs(60), || sub.count() >= before + sent));

        let mut events: Vec<OwnedEvent> = (0..256).map(|_| published.clone()).collect();
        let before = sub.count();
        let dropped_before = status_value("dropped");
        let start = Instant::now();
        for i in 0..sizes.throughput_events {
            core::fire(&mut events[i % 256]);
        }
        let fired_in = start.elapsed();
        let want = before + sizes.throughput_events as u64;
        assert!(
            wait_until(Duration::from_secs(120), || sub.count() >= want),
            "not all received"
        );
        let elapsed = start.elapsed();
        assert_eq!(status_value("dropped"), dropped_before, "nothing dropped");
        let eps = sizes.throughput_events as f64 / elapsed.as_secs_f64();
        println!(
            "  round {round}: mod_cc_events {eps:>10.0} events/s (fired in {:.0} ms, all received in {:.0} ms); redis-benchmark -c 1 -P 64: {reference:>10.0} PUBLISH/s; ratio {:.2}",
            fired_in.as_secs_f64() * 1e3,
            elapsed.as_secs_f64() * 1e3,
            eps / reference
        );
        rounds_p64.push(eps, reference);
    }
    let before = sub.count();
    let ref_p1 = redis_benchmark(redis.port, 1, sizes.reference_p1_events, &publish);
    assert!(wait_until(Duration::from_secs(60), || sub.count()
        >= before + sizes.reference_p1_events as u64));
    let (throughput, ref_p64, ratio_p64) = rounds_p64.medians();
    let ratio_p1 = throughput / ref_p1;
    println!("  median: mod_cc_events {throughput:.0} events/s; reference -P 64 {ref_p64:.0}/s (ratio {ratio_p64:.2}, target >= 0.5); reference -P 1 {ref_p1:.0}/s (ratio {ratio_p1:.2}, target >= 5)");

    // -------- latency at steady rates
    println!("latency, fire to receipt by the subscriber, steady rate:");
    let mut lat_p99_10k = 0;
    for rate in [1_000u64, 10_000] {
        let n = (rate as f64 * sizes.latency_secs) as u64;
        let interval = Duration::from_nanos(1_000_000_000 / rate);
        // Built before the clock starts; each carries its index.
        let mut events: Vec<OwnedEvent> = (0..n)
            .map(|i| published.with_header("CC-Agent", format!("lat{i}").as_bytes()))
            .collect();
        let mut fired_at = vec![0u64; n as usize];
        let mut lateness = Vec::with_capacity(n as usize);
        sub.take_latencies();
        let start = epoch.elapsed() + Duration::from_millis(5);
        for (i, ev) in events.iter_mut().enumerate() {
            // Sleeping, not spinning: a spinning firer would take one of the two
            // cores from the worker, Redis and the subscriber.
            let at = start + interval * i as u32;
            let now = epoch.elapsed();
            if at > now {
                std::thread::sleep(at - now);
            }
            let t = epoch.elapsed();
            fired_at[i] = t.as_nanos() as u64;
            lateness.push(t.saturating_sub(at).as_nanos() as u64);
            core::fire(ev);
        }
        assert!(wait_until(
            Duration::from_secs(30),
            || sub.latencies.lock().unwrap().len() as u64 >= n
        ));
        let mut lat: Vec<u64> = sub
            .take_latencies()
            .into_iter()
            .map(|(i, received)| received.saturating_sub(fired_at[i as usize]))
            .collect();
        lat.sort_unstable();
        lateness.sort_unstable();
        let (p50, p99, max) = (
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            *lat.last().unwrap(),
        );
        println!(
            "  {rate:>6} events/s for {:.1} s: p50 {:>6.0} us  p99 {:>6.0} us  max {:>7.0} us   (firer behind schedule: p50 {:.0} us, p99 {:.0} us)",
            sizes.latency_secs,
            p50 as f64 / 1e3,
            p99 as f64 / 1e3,
            max as f64 / 1e3,
            percentile(&lateness, 0.5) as f64 / 1e3,
            percentile(&lateness, 0.99) as f64 / 1e3,
        );
        if rate == 10_000 {
            lat_p99_10k = p99 / 1000;
        }
    }

    module.unload();

    // -------- events=all, seed format: events that used to be ignored are published
    println!("---- format=seed, events=all");
    let module = load_connected(redis.port, &[("events", "all")]);
    let (cb_all, cb_all_4t) = action_callbacks(
        "events=all format=seed",
        sizes.action_callback_events,
        &sub,
        None,
    );
    module.unload();

    // -------- envelope format with a stream
    println!("---- format=envelope, events=all, stream={STREAM}, stream-maxlen={STREAM_MAXLEN}");
    let module = load_connected(redis.port, &envelope_params(&STREAM_MAXLEN.to_string()));
    let mut watch = StreamWatch::new(&redis);
    let (cb_env, cb_env_4t) = action_callbacks(
        "events=all format=envelope stream",
        sizes.action_callback_events,
        &sub,
        Some(&mut watch),
    );
    let (throughput_env, ref_xadd, ratio_env, xadd) =
        stream_throughput(&redis, &sub, &mut watch, &published, &sizes);
    module.unload();

    // -------- the live state mirror on top of the envelope and the stream
    let state = state_section(&redis, &sub, &mut watch, &xadd, &sizes);
    drop(sub);

    let (throughput_tls, _, ratio_tls) = tls_throughput(epoch, &published, &sizes);
    core::clear_sessions();

    println!(
        "targets: ignored p50 <= 1000 ns: {}; ignored p99 <= 10000 ns: {}; published p50 <= 5000 ns: {}; throughput >= 0.5 x P64: {}; >= 5 x P1: {}; p99 at 10k/s <= 2000 us: {}",
        yes(cb_ignored_p50 <= 1000),
        yes(cb_ignored_p99 <= 10_000),
        yes(cb_published_p50 <= 5000),
        yes(ratio_p64 >= 0.5),
        yes(ratio_p1 >= 5.0),
        yes(lat_p99_10k <= 2000)
    );
    // A published event, 1 thread, in every mode (the worst action of the per-action modes).
    println!(
        "1-thread callback timings ran {}",
        if FIFO_USED.load(std::sync::atomic::Ordering::Relaxed) {
            "in SCHED_FIFO priority 1, as FreeSWITCH's threads run by default"
        } else {
            "at normal priority (SCHED_FIFO not permitted: run as root to match FreeSWITCH's default)"
        }
    );
    println!(
        "targets, published event in every mode (1 thread): seed p50 <= 2000 ns: {}, p99 <= 20000 ns: {}; events=all p50 <= 2000 ns: {}, p99 <= 20000 ns: {}; envelope+stream p50 <= 2000 ns: {}, p99 <= 20000 ns: {}; envelope+stream throughput >= 0.4 x XADD P64: {}; state+stream p50 <= 2000 ns: {}, p99 <= 20000 ns: {}; state+stream throughput >= 0.3 x XADD P64: {}",
        yes(cb_published_p50 <= 2000),
        yes(cb_published_p99 <= 20_000),
        yes(cb_all.p50.0 <= 2000),
        yes(cb_all.p99.0 <= 20_000),
        yes(cb_env.p50.0 <= 2000),
        yes(cb_env.p99.0 <= 20_000),
        yes(ratio_env >= 0.4),
        yes(state.cb.p50.0 <= 2000),
        yes(state.cb.p99.0 <= 20_000),
        yes(state.ratio >= 0.3),
    );
    println!(
        "targets, tls: throughput over TLS >= 0.7 x plaintext: {}",
        yes(ratio_tls >= 0.7)
    );
    println!(
        "for information, 4 threads against the same bounds: events=all p50 {} ns {}, p99 {} ns {}; envelope+stream p50 {} ns {}, p99 {} ns {}; state+stream p50 {} ns {}, p99 {} ns {}",
        cb_all_4t.p50.0,
        within(cb_all_4t.p50.0 <= 2000),
        cb_all_4t.p99.0,
        within(cb_all_4t.p99.0 <= 20_000),
        cb_env_4t.p50.0,
        within(cb_env_4t.p50.0 <= 2000),
        cb_env_4t.p99.0,
        within(cb_env_4t.p99.0 <= 20_000),
        state.cb_4t.p50.0,
        within(state.cb_4t.p50.0 <= 2000),
        state.cb_4t.p99.0,
        within(state.cb_4t.p99.0 <= 20_000),
    );
    println!("machine at the end: {}", load_average());
    println!(
        "summary: throughput_eps={throughput:.0} ratio_p64={ratio_p64:.2} ratio_p1={ratio_p1:.2} cb_ignored_p50_ns={cb_ignored_p50} cb_ignored_p99_ns={cb_ignored_p99} cb_published_p50_ns={cb_published_p50} lat_p99_us_10k={lat_p99_10k} cb_published_p99_ns={cb_published_p99} cb_all_p50_ns={} cb_all_p99_ns={} cb_all_4t_p50_ns={} cb_all_4t_p99_ns={} cb_env_stream_p50_ns={} cb_env_stream_p99_ns={} cb_env_stream_4t_p50_ns={} cb_env_stream_4t_p99_ns={} throughput_env_stream_eps={throughput_env:.0} ref_xadd_p64={ref_xadd:.0} ratio_env_stream_xadd_p64={ratio_env:.2} cb_state_p50_ns={} cb_state_p99_ns={} cb_state_4t_p50_ns={} cb_state_4t_p99_ns={} throughput_state_eps={:.0} ref_xadd_p64_state={:.0} ratio_state_xadd_p64={:.2} state_redis_alone_eps={:.0} ratio_state_redis_alone_xadd_p64={:.2} state_cmds_us={:.2} state_worker_cpu_us={:.1} state_redis_cpu_us={:.1} xadd_us={:.2} seed_1k_agents_10k_members_ms={:.1} seed_read_ms={:.1} seed_write_ms={:.1} throughput_tls_eps={throughput_tls:.0} ratio_tls_plain={ratio_tls:.2}",
        cb_all.p50.0,
        cb_all.p99.0,
        cb_all_4t.p50.0,
        cb_all_4t.p99.0,
        cb_env.p50.0,
        cb_env.p99.0,
        cb_env_4t.p50.0,
        cb_env_4t.p99.0,
        state.cb.p50.0,
        state.cb.p99.0,
        state.cb_4t.p50.0,
        state.cb_4t.p99.0,
        state.eps,
        state.reference,
        state.ratio,
        state.redis_calls,
        state.redis_ratio,
        state.state_cmds_us,
        state.worker_cpu_us,
        state.redis_cpu_us,
        state.xadd_us,
        state.seed_ms,
        state.seed_read_ms,
        state.seed_write_ms,
    );
}

/// `--state`: the state mode alone, for work on the mirror's writes.
fn state_only(redis: &RedisServer, sub: &FastSubscriber, sizes: &Sizes) {
    let module = load_connected(redis.port, &envelope_params(&STREAM_MAXLEN.to_string()));
    let mut watch = StreamWatch::new(redis);
    let xadd = stream_reference(sub, &mut watch, &fixture("005-agent-offering.txt"));
    module.unload();
    let state = state_section(redis, sub, &mut watch, &xadd, sizes);
    println!(
        "targets: state+stream throughput >= 0.3 x XADD P64: {}",
        yes(state.ratio >= 0.3)
    );
    println!("machine at the end: {}", load_average());
    println!(
        "summary: throughput_state_eps={:.0} ref_xadd_p64_state={:.0} ratio_state_xadd_p64={:.2} state_redis_alone_eps={:.0} ratio_state_redis_alone_xadd_p64={:.2} state_worker_cpu_us={:.1} state_redis_cpu_us={:.1} seed_1k_agents_10k_members_ms={:.1}",
        state.eps, state.reference, state.ratio, state.redis_calls, state.redis_ratio, state.worker_cpu_us, state.redis_cpu_us, state.seed_ms
    );
}

fn yes(b: bool) -> &'static str {
    if b {
        "met"
    } else {
        "MISSED"
    }
}

fn within(b: bool) -> &'static str {
    if b {
        "(within)"
    } else {
        "(over)"
    }
}
