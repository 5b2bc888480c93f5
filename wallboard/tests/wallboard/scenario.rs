//! The recorded mod_callcenter scenario (tests/fixtures/events), fired into
//! the module as if it happened now: the demo and the browser test show
//! live timers, not the day it was recorded.
#![allow(dead_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::harness::core;
use crate::harness::fixtures::Fixture;
use crate::harness::redis::wait_until;
use crate::harness::state::meta;

pub const QUEUE: &str = "tenant-1@areski-queue";
pub const ARESKI: &str = "tenant-1@areski";
pub const BOB: &str = "tenant-1@bob";

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// `f` with its time moved to now (the CC-*-Time headers, in seconds, by
/// the same amount) and its Event-Sequence moved up by `seq_offset` (a demo
/// that loops must keep the sequence growing).
pub fn retimed(f: &Fixture, seq_offset: u64) -> Fixture {
    let now = now_us();
    let shift = f
        .header("Event-Date-Timestamp")
        .and_then(|t| t.parse::<i64>().ok())
        .map_or(0, |t| now - t);
    let headers = f
        .headers
        .iter()
        .map(|(n, v)| {
            let name = String::from_utf8_lossy(n);
            let value = String::from_utf8_lossy(v);
            let new = match name.as_ref() {
                "Event-Date-Timestamp" => Some(now.to_string()),
                "Event-Sequence" => value
                    .parse::<u64>()
                    .ok()
                    .map(|s| (s + seq_offset).to_string()),
                n if n.starts_with("CC-") && n.ends_with("-Time") => value
                    .parse::<i64>()
                    .ok()
                    .filter(|t| *t > 0)
                    .map(|t| (t + shift / 1_000_000).to_string()),
                _ => None,
            };
            (n.clone(), new.map_or_else(|| v.clone(), String::into_bytes))
        })
        .collect();
    Fixture {
        file: f.file.clone(),
        headers,
    }
}

/// Fires events `from..=to` (1-based, as the files are numbered) as of now,
/// and waits until the mirror has applied the last.
pub fn fire(
    events: &[Fixture],
    from: usize,
    to: usize,
    seq_offset: u64,
    con: &mut redis::Connection,
) {
    let mut last = String::new();
    for f in &events[from - 1..to] {
        let f = retimed(f, seq_offset);
        last = f.header("Event-Sequence").unwrap_or_default();
        core::fire(&mut f.event());
    }
    assert!(
        wait_until(Duration::from_secs(10), || meta(con, "cc_state")
            .get("sequence")
            == Some(&last)),
        "the mirror never applied event {to} (sequence {last}): {:?}",
        meta(con, "cc_state")
    );
}
