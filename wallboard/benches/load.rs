//! cc-wallboard under a big contact center's load: 1,000 agents in 100
//! queues, 2,000 stream entries a second for 30 s (entries shaped like the
//! module's, with their `state` deltas, XADDed straight into Redis), and one
//! browser's EventSource. Reports the server's CPU use (from its
//! /proc/<pid>/stat), the delay from each XADD to the push that carried it
//! to the browser, and the size of the first snapshot; says whether each
//! target was met. No pass/fail on speed.
//!
//!     cargo bench -p cc-wallboard --bench load              # 30 s
//!     cargo bench -p cc-wallboard --bench load -- --quick   # 5 s (CI)

#[path = "../../tests/harness/redis.rs"]
pub mod redis_server;
/// support.rs finds the redis-server helpers where the tests keep them.
mod harness {
    pub use super::redis_server as redis;
}
#[path = "../tests/wallboard/support.rs"]
mod support;
#[path = "../tests/wallboard/synth.rs"]
mod synth;

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::redis::RedisServer;
use support::{Sse, Wallboard};
use synth::Synth;

const RATE: usize = 2000;
const P99_TARGET_MS: f64 = 150.0;
const CPU_TARGET: f64 = 10.0;

/// user + system CPU time of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces): state is the
    // 3rd field, utime and stime the 14th and 15th.
    let rest: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = rest[11].parse::<u64>().unwrap() + rest[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// A stream ID as a comparable pair.
fn id(s: &str) -> (u64, u64) {
    let (ms, seq) = s.split_once('-').unwrap();
    (ms.parse().unwrap(), seq.parse().unwrap())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let secs = if quick { 5 } else { 30 };
    let redis = RedisServer::start();
    let mut con = redis.connection();
    let mut synth = Synth::new(100, 10, 200);
    synth.seed(&mut con);
    let w = Wallboard::start(redis.port, &[], &[]);

    let mut sse = Sse::open(w.port, "/events", &[]);
    let snapshot = loop {
        let e = sse.expect("snapshot", support::WAIT);
        if e.json()["status"]["redis"] == "live" {
            break e;
        }
    };
    // Each push as it arrives: (arrival, last entry it holds).
    let pushes = Arc::new(Mutex::new(Vec::<(Instant, (u64, u64))>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (pushes, stop) = (pushes.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(SeqCst) {
                if let Some(e) = sse.next(Duration::from_millis(200)) {
                    if e.event == "patch" {
                        pushes
                            .lock()
                            .unwrap()
                            .push((e.arrived, id(e.id.as_deref().unwrap())));
                    }
                }
            }
        })
    };

    println!(
        "cc-wallboard load: 1,000 agents in 100 queues, {RATE} entries/s for {secs} s, one browser"
    );
    let cpu0 = cpu_seconds(w.pid());
    let t0 = Instant::now();
    let tick = Duration::from_millis(10);
    let mut next = t0;
    let mut sent: Vec<((u64, u64), Instant)> = Vec::with_capacity(RATE * secs);
    while t0.elapsed() < Duration::from_secs(secs as u64) {
        let mut pipe = redis::pipe();
        for _ in 0..RATE / 100 {
            synth.xadd_next(&mut pipe);
        }
        let at = Instant::now();
        let ids: Vec<String> = pipe.query(&mut con).unwrap();
        sent.extend(ids.iter().map(|i| (id(i), at)));
        next += tick;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = (cpu_seconds(w.pid()) - cpu0) / elapsed * 100.0;
    let last = sent.last().unwrap().0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while pushes.lock().unwrap().last().is_none_or(|p| p.1 < last) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, SeqCst);
    reader.join().unwrap();

    // Each entry reached the browser with the first push at or after it.
    let pushes = pushes.lock().unwrap();
    let mut delays = Vec::with_capacity(sent.len());
    let mut p = 0;
    for (entry, at) in &sent {
        while p < pushes.len() && pushes[p].1 < *entry {
            p += 1;
        }
        let Some((arrived, _)) = pushes.get(p) else {
            break;
        };
        delays.push(arrived.duration_since(*at).as_secs_f64() * 1000.0);
    }
    assert_eq!(
        delays.len(),
        sent.len(),
        "entries never pushed to the browser"
    );
    delays.sort_by(f64::total_cmp);
    let p99 = percentile(&delays, 0.99);
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    // Pushes per second between the first and the last: the ones after the
    // sending stopped would inflate a rate taken over the sending time.
    let span = pushes
        .last()
        .unwrap()
        .0
        .duration_since(pushes[0].0)
        .as_secs_f64();
    println!(
        "  entries: {} sent, {} pushes to the browser ({:.1}/s)",
        sent.len(),
        pushes.len(),
        (pushes.len() - 1) as f64 / span
    );
    println!(
        "  XADD -> browser: p50 {:.0} ms, p99 {p99:.0} ms, max {:.0} ms (target p99 <= {P99_TARGET_MS} ms: {})",
        percentile(&delays, 0.50),
        delays.last().unwrap(),
        met(p99 <= P99_TARGET_MS)
    );
    println!(
        "  server CPU: {cpu:.1} % of one core (target <= {CPU_TARGET} %: {})",
        met(cpu <= CPU_TARGET)
    );
    println!(
        "  first snapshot to a browser: {} bytes ({:.0} KiB)",
        snapshot.data.len(),
        snapshot.data.len() as f64 / 1024.0
    );
}
