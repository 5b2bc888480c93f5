//! The seed document's format, byte for byte:
//! `{"Agent-Status-Change:" : {"CC_Agent": "tenant-1@areski", "CC_Agent_Status": "Logged Out"}}`.
//! Every value is a string; the outer key ends with a colon.

use super::{json_str, Format};
use crate::callcenter::CapturedEvent;

pub struct Seed;

impl Format for Seed {
    fn write(&self, ev: &CapturedEvent, out: &mut Vec<u8>) {
        // `{"Name:" : {`: the colon is inside the key, as the seed document has it.
        out.push(b'{');
        let mut outer = String::with_capacity(ev.name().len() + 1);
        outer.push_str(ev.name());
        outer.push(':');
        json_str(out, &outer);
        out.extend_from_slice(b" : {");
        let mut key = String::with_capacity(32);
        for (i, f) in ev.shown_fields().enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            key.clear();
            ev.key_into(f.key, &mut key);
            json_str(out, &key);
            out.extend_from_slice(b": ");
            json_str(out, ev.text(f.value));
        }
        out.extend_from_slice(b"}}");
    }
}

/// The seed payload as a string (tests, the `test` command).
pub fn to_string(ev: &CapturedEvent) -> String {
    let mut out = Vec::with_capacity(512);
    Seed.write(ev, &mut out);
    // serde_json writes valid UTF-8 and every other byte is ASCII.
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callcenter::{scan, Skip, MAX_VALUE_BYTES};
    use crate::catalogue::{Catalogue, EventSettings, Selection};
    use std::ffi::CStr;
    use std::sync::Arc;

    const SEED_OFFERING: &str = r#"{"Offering-Call-Agent:" : {"callrequest_id": "276547", "CC_Agent": "tenant-1@areski", "campaign_id": "295", "CC_Member_CID_Name": "Outbound Call", "CC_Agent_System": "single_box", "phonenumber": "34650844400", "callerid_number": "34650844400", "CC_Member_Session_UUID": "4dbd89c2-8e54-43a6-a0b4-a7d26b09ae6c", "CC_Member_UUID": "33e7df24-133c-47c1-9aec-b985d507d43e", "CC_Member_CID_Number": "34650110022", "CC_Queue": "tenant-1@areski-queue"}}"#;
    const SEED_STATUS: &str = r#"{"Agent-Status-Change:" : {"CC_Agent": "tenant-1@areski", "CC_Agent_Status": "Logged Out"}}"#;

    type Headers = Vec<(&'static [u8], &'static [u8])>;

    fn seed_offering_headers(action: &'static str) -> Headers {
        vec![
            (b"Event-Name", b"CUSTOM"),
            (b"CC-Queue", b"tenant-1@areski-queue"),
            (b"CC-Action", action.as_bytes()),
            (b"CC-Agent", b"tenant-1@areski"),
            (b"CC-Agent-Type", b"callback"),
            (b"CC-Agent-System", b"single_box"),
            (b"CC-Member-UUID", b"33e7df24-133c-47c1-9aec-b985d507d43e"),
            (
                b"CC-Member-Session-UUID",
                b"4dbd89c2-8e54-43a6-a0b4-a7d26b09ae6c",
            ),
            (b"CC-Member-CID-Name", b"Outbound Call"),
            (b"CC-Member-CID-Number", b"34650110022"),
        ]
    }

    fn seed_vars(name: &CStr) -> Option<String> {
        match name.to_bytes() {
            b"callrequest_id" => Some("276547".into()),
            b"campaign_id" => Some("295".into()),
            b"phonenumber" | b"callerid_number" => Some("34650844400".into()),
            _ => None,
        }
    }

    fn default_catalogue() -> Arc<Catalogue> {
        Arc::new(Catalogue::new(&EventSettings::default()))
    }

    fn payload(cat: &Arc<Catalogue>, h: &Headers) -> Result<String, Skip> {
        let s = scan(cat, h.iter().copied())?;
        Ok(to_string(&s.capture(seed_vars)))
    }

    #[test]
    fn seed_offering_example_byte_for_byte() {
        let cat = default_catalogue();
        let h = seed_offering_headers("agent-offering");
        let s = scan(&cat, h.iter().copied()).unwrap();
        assert_eq!(
            s.member_session(),
            Some(&b"4dbd89c2-8e54-43a6-a0b4-a7d26b09ae6c"[..])
        );
        assert_eq!(to_string(&s.capture(seed_vars)), SEED_OFFERING);
    }

    #[test]
    fn connected_uses_the_offering_field_list() {
        let expected = SEED_OFFERING.replace("Offering-Call-Agent", "Connected-Call-Agent");
        let h = seed_offering_headers("bridge-agent-start");
        assert_eq!(payload(&default_catalogue(), &h).unwrap(), expected);
    }

    #[test]
    fn seed_status_example_byte_for_byte() {
        let h: Headers = vec![
            (b"CC-Agent", b"tenant-1@areski"),
            (b"CC-Action", b"agent-status-change"),
            (b"CC-Agent-Status", b"Logged Out"),
        ];
        let cat = default_catalogue();
        let s = scan(&cat, h.iter().copied()).unwrap();
        assert_eq!(s.member_session(), None, "status needs no session lookup");
        assert_eq!(to_string(&s.capture(|_| panic!("no lookup"))), SEED_STATUS);
    }

    #[test]
    fn other_actions_and_missing_action_are_ignored_by_default() {
        let cat = default_catalogue();
        for action in [
            "agent-state-change",
            "bridge-agent-end",
            "member-queue-start",
            "agent-status-get",
            "",
            "Agent-Offering",
        ] {
            let h: Headers = vec![(b"CC-Action", action.as_bytes())];
            assert_eq!(payload(&cat, &h).unwrap_err(), Skip::Ignored, "{action}");
        }
        let h: Headers = vec![(b"CC-Agent", b"x")];
        assert_eq!(payload(&cat, &h).unwrap_err(), Skip::NoAction);
    }

    #[test]
    fn other_events_carry_every_cc_header_in_order_and_their_variables() {
        let cat = Arc::new(Catalogue::new(&EventSettings {
            selection: Selection::All,
            ..EventSettings::default()
        }));
        let h: Headers = vec![
            (b"Event-Name", b"CUSTOM"),
            (b"CC-Queue", b"q@x"),
            (b"CC-Action", b"members-count"),
            (b"CC-Count", b"1"),
            (b"CC-Selection", b"Single-Queue"),
        ];
        assert_eq!(
            payload(&cat, &h).unwrap(),
            r#"{"Members-Count:" : {"CC_Queue": "q@x", "CC_Action": "members-count", "CC_Count": "1", "CC_Selection": "Single-Queue"}}"#
        );
        let cat = Arc::new(Catalogue::new(&EventSettings {
            selection: Selection::All,
            variables: Some(vec!["campaign_id".into()]),
            ..EventSettings::default()
        }));
        // member-queue-* carry the member's channel: variables come from the event.
        let h: Headers = vec![
            (b"variable_campaign_id", b"295"),
            (b"CC-Action", b"member-queue-start"),
            (b"CC-Member-Session-UUID", b"u"),
        ];
        let s = scan(&cat, h.iter().copied()).unwrap();
        assert_eq!(s.member_session(), None);
        assert_eq!(
            to_string(&s.capture(|_| panic!("read from the event"))),
            r#"{"Member-Queue-Start:" : {"CC_Action": "member-queue-start", "CC_Member_Session_UUID": "u", "campaign_id": "295"}}"#
        );
    }

    #[test]
    fn absent_sources_are_left_out() {
        let cat = default_catalogue();
        let h: Headers = vec![(b"CC-Action", b"agent-offering"), (b"CC-Agent", b"a@b")];
        let json = to_string(&scan(&cat, h.iter().copied()).unwrap().capture(|_| None));
        assert_eq!(json, r#"{"Offering-Call-Agent:" : {"CC_Agent": "a@b"}}"#);
        let h: Headers = vec![(b"CC-Action", b"agent-status-change")];
        let json = to_string(&scan(&cat, h.iter().copied()).unwrap().capture(|_| None));
        assert_eq!(json, r#"{"Agent-Status-Change:" : {}}"#);
    }

    #[test]
    fn bad_utf8_and_huge_values_are_safe_json() {
        let huge = "é".repeat(5000);
        let h: Vec<(&[u8], &[u8])> = vec![
            (b"CC-Action", b"agent-status-change"),
            (b"CC-Agent", b"\xff\xfe\"quoted\"\n"),
            (b"CC-Agent-Status", huge.as_bytes()),
        ];
        let cat = default_catalogue();
        let ev = scan(&cat, h.iter().copied()).unwrap().capture(|_| None);
        let json = to_string(&ev);
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        let inner = &parsed["Agent-Status-Change:"];
        assert_eq!(inner["CC_Agent"], "\u{fffd}\u{fffd}\"quoted\"\n");
        let status = inner["CC_Agent_Status"].as_str().unwrap();
        assert!(status.len() <= MAX_VALUE_BYTES && status.len() > MAX_VALUE_BYTES - 4);
        assert!(ev.heap_bytes() < 4 * MAX_VALUE_BYTES);
    }

    #[test]
    fn a_renamed_event_is_escaped_like_any_key() {
        let cat = Arc::new(Catalogue::new(&EventSettings {
            renames: vec![("agent-status-change".into(), "a\"b".into())],
            ..EventSettings::default()
        }));
        let h: Headers = vec![(b"CC-Action", b"agent-status-change")];
        let json = payload(&cat, &h).unwrap();
        assert_eq!(json, r#"{"a\"b:" : {}}"#);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert!(v.get("a\"b:").is_some());
    }

    #[test]
    fn first_header_and_first_action_win() {
        let h: Headers = vec![
            (b"CC-Action", b"agent-status-change"),
            (b"CC-Action", b"agent-offering"),
            (b"CC-Agent", b"first"),
            (b"CC-Agent", b"second"),
        ];
        let json = payload(&default_catalogue(), &h).unwrap();
        assert!(json.starts_with(r#"{"Agent-Status-Change:""#), "{json}");
        assert!(json.contains("first") && !json.contains("second"), "{json}");
    }
}
