//! mod_cc_events benchmark: the real built module in the FreeSWITCH host
//! harness, a real redis-server on loopback, a real subscriber.
//!
//!     cargo bench --bench throughput              # full run (see BENCHMARKS.md)
//!     cargo bench --bench throughput -- --quick   # smaller sizes (CI smoke test)
//!
//! Prints the callback's cost on the firing thread, end-to-end throughput and
//! latency, memory with a full queue, and the same run's reference: redis-benchmark
//! PUBLISHing the same payload on the same channel to the same subscriber.
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

const CHANNEL: &str = "callcenter_events";

struct Sizes {
    callback_events: usize,
    throughput_events: usize,
    rounds: usize,
    latency_secs: f64,
    memory_queue: usize,
    reference_p1_events: usize,
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

/// Calls the bound callback directly on `n` copies of `ev`, from `threads`
/// threads at once, and returns each call's nanoseconds, sorted.
fn time_callback(ev: &OwnedEvent, n: usize, threads: usize) -> Vec<u64> {
    let (cb, user_data) = core::first_binding().expect("module bound");
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let mut ev = ev.clone();
            std::thread::spawn(move || {
                let per = n / threads;
                let mut times = Vec::with_capacity(per);
                let p = ev.as_delivered(user_data);
                for _ in 0..per {
                    let t = Instant::now();
                    // SAFETY: the module is loaded and bound; p is a valid event.
                    unsafe { cb(p) };
                    times.push(t.elapsed().as_nanos() as u64);
                }
                times
            })
        })
        .collect();
    let mut all: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort_unstable();
    all
}

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

fn redis_benchmark(port: u16, pipeline: usize, n: usize, payload: &str) -> f64 {
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-c", "1"])
        .args(["-P", &pipeline.to_string(), "-n", &n.to_string(), "--csv"])
        .args(["PUBLISH", CHANNEL, payload])
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
    format!("{cpu}, {cores} cores; {redis}")
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
    let scan = callcenter::scan(pairs.iter().map(|(n, v)| (&n[..], &v[..]))).unwrap();
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

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let sizes = if quick {
        Sizes {
            callback_events: 20_000,
            throughput_events: 20_000,
            rounds: 1,
            latency_secs: 0.5,
            memory_queue: 2_000,
            reference_p1_events: 5_000,
        }
    } else {
        Sizes {
            callback_events: 200_000,
            throughput_events: 200_000,
            rounds: 3,
            latency_secs: 3.0,
            memory_queue: 20_000,
            reference_p1_events: 50_000,
        }
    };
    println!(
        "mod_cc_events benchmark ({})",
        if quick { "quick" } else { "full" }
    );
    println!("machine: {}", machine());

    memory_section(&sizes);

    let epoch = Instant::now();
    let redis = RedisServer::start_with(
        free_port(),
        &["--client-output-buffer-limit", "pubsub 0 0 0"],
    );
    let sub = FastSubscriber::new(&redis, epoch);
    harness::config_for(redis.port, &[("queue-size", "1000000")]);
    fixtures::add_member_sessions();
    let module = LoadedModule::load().expect("load");
    assert!(wait_until(Duration::from_secs(10), || core::api(
        "cc_events",
        "status"
    )
    .unwrap()
    .contains("redis:      connected")));

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
            let t = time_callback(ev, sizes.callback_events, threads);
            let (p50, p99, max) = (
                percentile(&t, 0.5),
                percentile(&t, 0.99),
                *t.last().unwrap(),
            );
            println!("  {name:<44} {threads} thread(s): p50 {p50:>6}  p99 {p99:>6}  max {max:>8}");
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
    let cb_published_p50 = one_thread[2].0;

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
    let mut ours = Vec::new();
    let mut ratios_p64 = Vec::new();
    let mut refs_p64 = Vec::new();
    for round in 1..=sizes.rounds {
        // New calls each round: a session's pool keeps every variable copy until it ends.
        fixtures::add_member_sessions();
        let before = sub.count();
        let reference = redis_benchmark(redis.port, 64, sizes.throughput_events, &payload);
        assert!(wait_until(Duration::from_secs(60), || sub.count()
            >= before + sizes.throughput_events as u64));

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
        ours.push(eps);
        refs_p64.push(reference);
        ratios_p64.push(eps / reference);
    }
    let before = sub.count();
    let ref_p1 = redis_benchmark(redis.port, 1, sizes.reference_p1_events, &payload);
    assert!(wait_until(Duration::from_secs(60), || sub.count()
        >= before + sizes.reference_p1_events as u64));
    let throughput = median_f(&mut ours);
    let ratio_p64 = median_f(&mut ratios_p64);
    let ref_p64 = median_f(&mut refs_p64);
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
    drop(sub);
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
    println!(
        "summary: throughput_eps={throughput:.0} ratio_p64={ratio_p64:.2} ratio_p1={ratio_p1:.2} cb_ignored_p50_ns={cb_ignored_p50} cb_ignored_p99_ns={cb_ignored_p99} cb_published_p50_ns={cb_published_p50} lat_p99_us_10k={lat_p99_10k}"
    );
}

fn yes(b: bool) -> &'static str {
    if b {
        "met"
    } else {
        "MISSED"
    }
}
