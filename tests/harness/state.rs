//! The state mirror's side of the harness: mod_callcenter's JSON API served
//! from the recorded replies, and reading the mirror back from Redis.

use std::collections::BTreeMap;
use std::sync::Arc;

use redis::Commands;
use serde_json::Value;

use super::core;
use super::fixtures;

/// A recorded `callcenter_config <what>` reply's `response`.
pub fn recorded(point: &str, what: &str) -> Value {
    let file = fixtures::dir()
        .join("callcenter-json")
        .join(format!("{point}.{}.json", what.replace(' ', "-")));
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let v: Value = serde_json::from_str(&text).unwrap();
    v["response"].clone()
}

/// mod_callcenter answers as it did at `point` of the recorded scenario.
pub fn serve_point(point: &'static str) {
    core::set_callcenter(Some(Arc::new(move |args: &str| {
        Some(recorded(point, args))
    })));
}

/// Every hash of the mirror under `prefix`, values parsed: `agents`,
/// `queues`, `meta` and `members:<queue>` for each queue, as one MULTI reads them.
pub fn snapshot(
    con: &mut redis::Connection,
    prefix: &str,
) -> BTreeMap<String, BTreeMap<String, Value>> {
    let queues: Vec<String> = con.hkeys(format!("{prefix}:queues")).unwrap();
    let mut pipe = redis::pipe();
    pipe.atomic();
    for k in ["agents", "queues"] {
        pipe.hgetall(format!("{prefix}:{k}"));
    }
    for q in &queues {
        pipe.hgetall(format!("{prefix}:members:{q}"));
    }
    let hashes: Vec<BTreeMap<String, String>> = pipe.query(con).unwrap();
    let mut out = BTreeMap::new();
    let names = ["agents".to_string(), "queues".to_string()]
        .into_iter()
        .chain(queues.iter().map(|q| format!("members:{q}")));
    for (name, h) in names.zip(hashes) {
        let parsed = h
            .into_iter()
            .map(|(f, v)| (f, serde_json::from_str(&v).unwrap_or(Value::String(v))))
            .collect();
        out.insert(name, parsed);
    }
    out
}

pub fn meta(con: &mut redis::Connection, prefix: &str) -> BTreeMap<String, String> {
    con.hgetall(format!("{prefix}:meta")).unwrap()
}
