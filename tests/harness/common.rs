//! What many tests say in the same words: a status change event, reading a
//! payload's agent, reading `cc_events status`, and writing a config with the
//! shipped defaults.

use super::core::{self, OwnedEvent};

/// An `agent-status-change` for `agent` (status Available), as mod_callcenter fires it.
pub fn status_event(agent: &str) -> OwnedEvent {
    OwnedEvent::custom(
        "callcenter::info",
        &[
            (b"CC-Agent", agent.as_bytes()),
            (b"CC-Action", b"agent-status-change"),
            (b"CC-Agent-Status", b"Available"),
        ],
    )
}

/// An `agent-status-change` to `status`, with `Event-Name` as FreeSWITCH sets it.
pub fn status_change(agent: &str, status: &str) -> OwnedEvent {
    OwnedEvent::custom(
        "callcenter::info",
        &[
            (b"Event-Name", b"CUSTOM"),
            (b"CC-Agent", agent.as_bytes()),
            (b"CC-Action", b"agent-status-change"),
            (b"CC-Agent-Status", status.as_bytes()),
        ],
    )
}

/// Threads of the module's worker (named cc_events-redis) in this process.
pub fn worker_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.trim() == "cc_events-redis")
        })
        .count()
}

/// The agent of an Agent-Status-Change payload, seed or envelope.
pub fn agent_of(payload: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(payload).unwrap();
    let agent = v
        .get("Agent-Status-Change:")
        .map(|inner| &inner["CC_Agent"])
        .unwrap_or(&v["agent"]);
    agent.as_str().unwrap().to_owned()
}

/// What `cc_events status` prints now.
pub fn status() -> String {
    core::api("cc_events", "status").expect("cc_events registered")
}

/// The number on a `cc_events status` line, e.g. `published`.
pub fn status_line(name: &str) -> u64 {
    let out = status();
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no '{name}:' in {out}"))
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// The module's config with the shipped defaults except these params.
pub fn config(port: u16, extra: &[(&str, &str)]) {
    let port = port.to_string();
    let mut params = vec![("port", port.as_str())];
    params.extend_from_slice(extra);
    super::write_config(&params);
}

/// Events are numbered in firing order. A re-sent event can arrive twice, but
/// its last copy must come after the last copy of every earlier event: a
/// consumer keeping the latest state then ends up right. Returns the duplicates.
pub fn assert_last_copies_in_order(ids: &[usize]) -> usize {
    let mut last = std::collections::BTreeMap::new();
    for (pos, &i) in ids.iter().enumerate() {
        last.insert(i, pos);
    }
    let positions: Vec<(usize, usize)> = last.into_iter().collect();
    if let Some(w) = positions.windows(2).find(|w| w[0].1 > w[1].1) {
        panic!(
            "the last copy of event {} arrived after that of event {}",
            w[0].0, w[1].0
        );
    }
    ids.len() - positions.len()
}
