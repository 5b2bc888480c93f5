//! `format=envelope`: one JSON object per event, the same for every action:
//!
//! `{"event": "Members-Count", "action": "members-count", "timestamp": 1795587045922157,
//!   "sequence": 452, "host": "vm", "core_uuid": "...", "queue": "q@x",
//!   "data": {"CC_Queue": "q@x", "CC_Count": 1, ...}}`
//!
//! `timestamp` (µs since the epoch), `sequence` (FreeSWITCH's Event-Sequence),
//! `host` and `core_uuid` are null when the event lacks them; `queue`, `agent`
//! and `member_uuid` are present only when the event has them. In `data`,
//! counts and epochs (keys ending in `_Count` or `_Time`) are numbers when
//! they parse as integers; everything else is a string. `schema/envelope.schema.json`
//! defines it.

use super::{json_str, Format};
use crate::callcenter::CapturedEvent;

pub struct Envelope;

/// Whether a published key holds a count or an epoch.
pub fn is_numeric_key(key: &str) -> bool {
    key.ends_with("_Time") || key.ends_with("_Count")
}

fn opt_number(out: &mut Vec<u8>, n: Option<u64>) {
    match n {
        Some(n) => out.extend_from_slice(n.to_string().as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
}

impl Format for Envelope {
    fn write(&self, ev: &CapturedEvent, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"event\":");
        json_str(out, ev.name());
        out.extend_from_slice(b",\"action\":");
        json_str(out, ev.action());
        out.extend_from_slice(b",\"timestamp\":");
        opt_number(out, ev.meta.timestamp_us);
        out.extend_from_slice(b",\"sequence\":");
        opt_number(out, ev.meta.sequence);
        for (key, span) in [("host", ev.meta.host), ("core_uuid", ev.meta.core_uuid)] {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"\":");
            match span {
                Some(s) => json_str(out, ev.text(s)),
                None => out.extend_from_slice(b"null"),
            }
        }
        for (key, header) in [
            ("queue", "Queue"),
            ("agent", "Agent"),
            ("member_uuid", "Member-UUID"),
        ] {
            if let Some(v) = ev.header(header) {
                out.extend_from_slice(b",\"");
                out.extend_from_slice(key.as_bytes());
                out.extend_from_slice(b"\":");
                json_str(out, v);
            }
        }
        out.extend_from_slice(b",\"data\":{");
        let mut key = String::with_capacity(32);
        for (i, f) in ev.shown_fields().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            key.clear();
            ev.key_into(f.key, &mut key);
            json_str(out, &key);
            out.push(b':');
            let value = ev.text(f.value);
            match value.parse::<i64>() {
                Ok(n) if is_numeric_key(&key) => out.extend_from_slice(n.to_string().as_bytes()),
                _ => json_str(out, value),
            }
        }
        out.extend_from_slice(b"}}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callcenter::scan;
    use crate::catalogue::{Catalogue, EventSettings, Selection};
    use std::sync::Arc;

    #[test]
    fn carries_metadata_and_typed_data() {
        let cat = Arc::new(Catalogue::new(&EventSettings {
            selection: Selection::All,
            ..EventSettings::default()
        }));
        let h: Vec<(&[u8], &[u8])> = vec![
            (b"Core-UUID", b"core-1"),
            (b"FreeSWITCH-Hostname", b"fs1"),
            (b"Event-Date-Timestamp", b"1795587045922157"),
            (b"Event-Sequence", b"452"),
            (b"CC-Queue", b"q@x"),
            (b"CC-Action", b"bridge-agent-end"),
            (b"CC-Agent", b"a@x"),
            (b"CC-Agent-Called-Time", b"1795587046"),
            (b"CC-Member-UUID", b"m-1"),
            (b"CC-Hangup-Cause", b"SUCCESS"),
        ];
        let ev = scan(&cat, h.iter().copied()).unwrap().capture(|_| None);
        let mut out = Vec::new();
        Envelope.write(&ev, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["event"], "Bridge-Agent-End");
        assert_eq!(v["action"], "bridge-agent-end");
        assert_eq!(v["timestamp"], 1795587045922157u64);
        assert_eq!(v["sequence"], 452);
        assert_eq!(v["host"], "fs1");
        assert_eq!(v["core_uuid"], "core-1");
        assert_eq!(v["queue"], "q@x");
        assert_eq!(v["agent"], "a@x");
        assert_eq!(v["member_uuid"], "m-1");
        assert_eq!(v["data"]["CC_Agent_Called_Time"], 1795587046);
        assert_eq!(v["data"]["CC_Hangup_Cause"], "SUCCESS");
        let keys: Vec<&String> = v["data"].as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 6);
    }

    #[test]
    fn the_switchname_wins_over_the_hostname_and_absent_metadata_is_null() {
        let cat = Arc::new(Catalogue::new(&EventSettings::default()));
        let h: Vec<(&[u8], &[u8])> = vec![
            (b"FreeSWITCH-Hostname", b"host"),
            (b"FreeSWITCH-Switchname", b"switch"),
            (b"CC-Action", b"agent-status-change"),
            (b"CC-Agent", b"a"),
        ];
        let ev = scan(&cat, h.iter().copied()).unwrap().capture(|_| None);
        let mut out = Vec::new();
        Envelope.write(&ev, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["host"], "switch");
        assert!(v["timestamp"].is_null() && v["sequence"].is_null() && v["core_uuid"].is_null());
        assert!(v.get("queue").is_none());
        assert_eq!(v["agent"], "a");
        assert_eq!(v["data"]["CC_Agent"], "a");
    }
}
