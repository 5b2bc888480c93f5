//! Which mod_callcenter `CC-Action` becomes which published event, where each
//! payload field comes from, and the payload format. Pure: no FreeSWITCH here.
//!
//! The default format is the documented contract (seed document): consumers
//! parse it byte for byte, so field order and separators are fixed.

use std::ffi::CStr;

/// Values longer than this are cut (at a character boundary) so that one
/// event's size, and with it the queue's memory, stays bounded.
pub const MAX_VALUE_BYTES: usize = 1024;

/// Prefix of every header this module reads; the event walk skips all others cheaply.
pub const HEADER_PREFIX: &[u8] = b"CC-";

/// The events this module publishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    OfferingCallAgent,
    ConnectedCallAgent,
    AgentStatusChange,
}

/// Where a payload field's value comes from.
#[derive(Clone, Copy, Debug)]
pub enum Source {
    /// A header of the callcenter::info event, by its slot in [`HEADERS`].
    Header(usize),
    /// A variable on the member's (caller's) channel.
    MemberVar(&'static CStr),
}

#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub key: &'static str,
    pub source: Source,
}

/// Headers read from the event, by slot. Names without the `CC-` prefix.
pub const HEADERS: [&[u8]; 8] = [
    b"Agent",
    b"Member-CID-Name",
    b"Agent-System",
    b"Member-Session-UUID",
    b"Member-UUID",
    b"Member-CID-Number",
    b"Queue",
    b"Agent-Status",
];
const H_AGENT: usize = 0;
const H_MEMBER_CID_NAME: usize = 1;
const H_AGENT_SYSTEM: usize = 2;
const H_MEMBER_SESSION_UUID: usize = 3;
const H_MEMBER_UUID: usize = 4;
const H_MEMBER_CID_NUMBER: usize = 5;
const H_QUEUE: usize = 6;
const H_AGENT_STATUS: usize = 7;

const fn header(key: &'static str, slot: usize) -> Field {
    Field {
        key,
        source: Source::Header(slot),
    }
}

const fn var(key: &'static str, name: &'static CStr) -> Field {
    Field {
        key,
        source: Source::MemberVar(name),
    }
}

/// The seed's field list and order for Offering-Call-Agent, reused for Connected-Call-Agent.
const CALL_FIELDS: &[Field] = &[
    var("callrequest_id", c"callrequest_id"),
    header("CC_Agent", H_AGENT),
    var("campaign_id", c"campaign_id"),
    header("CC_Member_CID_Name", H_MEMBER_CID_NAME),
    header("CC_Agent_System", H_AGENT_SYSTEM),
    var("phonenumber", c"phonenumber"),
    var("callerid_number", c"callerid_number"),
    header("CC_Member_Session_UUID", H_MEMBER_SESSION_UUID),
    header("CC_Member_UUID", H_MEMBER_UUID),
    header("CC_Member_CID_Number", H_MEMBER_CID_NUMBER),
    header("CC_Queue", H_QUEUE),
];

const STATUS_FIELDS: &[Field] = &[
    header("CC_Agent", H_AGENT),
    header("CC_Agent_Status", H_AGENT_STATUS),
];

impl Kind {
    /// The published event for a `CC-Action` value, or None for the actions we ignore.
    pub fn from_action(action: &[u8]) -> Option<Kind> {
        match action {
            b"agent-offering" => Some(Kind::OfferingCallAgent),
            b"bridge-agent-start" => Some(Kind::ConnectedCallAgent),
            b"agent-status-change" => Some(Kind::AgentStatusChange),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::OfferingCallAgent => "Offering-Call-Agent",
            Kind::ConnectedCallAgent => "Connected-Call-Agent",
            Kind::AgentStatusChange => "Agent-Status-Change",
        }
    }

    pub fn fields(self) -> &'static [Field] {
        match self {
            Kind::OfferingCallAgent | Kind::ConnectedCallAgent => CALL_FIELDS,
            Kind::AgentStatusChange => STATUS_FIELDS,
        }
    }

    fn wants_member_vars(self) -> bool {
        self.fields()
            .iter()
            .any(|f| matches!(f.source, Source::MemberVar(_)))
    }
}

/// What one walk over an event's headers found, borrowed from the event.
#[derive(Debug)]
pub struct Scan<'a> {
    pub kind: Kind,
    slots: [Option<&'a [u8]>; HEADERS.len()],
}

/// Why an event is not published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// A `CC-Action` this module does not publish.
    Ignored,
    /// No `CC-Action` header at all: not an event mod_callcenter sends.
    NoAction,
}

/// Walks `CC-*` headers once, stopping as soon as the action is known to be one we ignore.
pub fn scan<'a, I>(headers: I) -> Result<Scan<'a>, Skip>
where
    I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
{
    let mut kind = None;
    let mut slots = [None; HEADERS.len()];
    for (name, value) in headers {
        let Some(rest) = name.strip_prefix(HEADER_PREFIX) else {
            continue;
        };
        if rest == b"Action" {
            // The first CC-Action decides, as FreeSWITCH's switch_event_get_header() reads it.
            if kind.is_none() {
                kind = Some(Kind::from_action(value).ok_or(Skip::Ignored)?);
            }
        } else if let Some(slot) = HEADERS.iter().position(|h| *h == rest) {
            // FreeSWITCH keeps the first header of a name; so do we.
            slots[slot].get_or_insert(value);
        }
    }
    let kind = kind.ok_or(Skip::NoAction)?;
    Ok(Scan { kind, slots })
}

impl<'a> Scan<'a> {
    /// The member's session UUID, when this event's payload needs member channel variables.
    pub fn member_session(&self) -> Option<&'a [u8]> {
        if self.kind.wants_member_vars() {
            self.slots[H_MEMBER_SESSION_UUID].filter(|v| !v.is_empty())
        } else {
            None
        }
    }

    /// Copies what the payload needs into an owned event. `member_var` reads
    /// one variable from the member's channel (None when absent or no session).
    pub fn capture(&self, mut member_var: impl FnMut(&CStr) -> Option<String>) -> CapturedEvent {
        let values = self
            .kind
            .fields()
            .iter()
            .map(|f| match f.source {
                Source::Header(slot) => self.slots[slot].map(owned_value),
                Source::MemberVar(name) => member_var(name).map(bounded),
            })
            .collect();
        CapturedEvent {
            kind: self.kind,
            values,
        }
    }
}

/// An event copied out of FreeSWITCH, ready for the worker thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapturedEvent {
    pub kind: Kind,
    /// One entry per `kind.fields()`, in order; None when the source was absent.
    pub values: Vec<Option<String>>,
}

impl CapturedEvent {
    /// Bytes this event holds on the heap, for the memory bound.
    pub fn heap_bytes(&self) -> usize {
        self.values.capacity() * std::mem::size_of::<Option<String>>()
            + self
                .values
                .iter()
                .flatten()
                .map(String::capacity)
                .sum::<usize>()
    }

    /// The seed document's payload, e.g.
    /// `{"Agent-Status-Change:" : {"CC_Agent": "tenant-1@areski", "CC_Agent_Status": "Logged Out"}}`.
    pub fn write_seed_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"");
        out.extend_from_slice(self.kind.name().as_bytes());
        out.extend_from_slice(b":\" : {");
        let mut first = true;
        for (field, value) in self.kind.fields().iter().zip(&self.values) {
            let Some(value) = value else { continue };
            if !first {
                out.extend_from_slice(b", ");
            }
            first = false;
            out.push(b'"');
            out.extend_from_slice(field.key.as_bytes());
            out.extend_from_slice(b"\": ");
            // Writing a &str into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, value.as_str());
        }
        out.extend_from_slice(b"}}");
    }

    pub fn seed_json(&self) -> String {
        let mut out = Vec::with_capacity(512);
        self.write_seed_json(&mut out);
        // serde_json writes valid UTF-8 and every other byte is ASCII.
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Header bytes as a bounded, valid UTF-8 string (invalid sequences become U+FFFD).
pub fn owned_value(raw: &[u8]) -> String {
    let cut = &raw[..raw.len().min(MAX_VALUE_BYTES)];
    bounded(String::from_utf8_lossy(cut).into_owned())
}

fn bounded(mut s: String) -> String {
    if s.len() > MAX_VALUE_BYTES {
        let mut end = MAX_VALUE_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_OFFERING: &str = r#"{"Offering-Call-Agent:" : {"callrequest_id": "276547", "CC_Agent": "tenant-1@areski", "campaign_id": "295", "CC_Member_CID_Name": "Outbound Call", "CC_Agent_System": "single_box", "phonenumber": "34650844400", "callerid_number": "34650844400", "CC_Member_Session_UUID": "4dbd89c2-8e54-43a6-a0b4-a7d26b09ae6c", "CC_Member_UUID": "33e7df24-133c-47c1-9aec-b985d507d43e", "CC_Member_CID_Number": "34650110022", "CC_Queue": "tenant-1@areski-queue"}}"#;
    const SEED_STATUS: &str = r#"{"Agent-Status-Change:" : {"CC_Agent": "tenant-1@areski", "CC_Agent_Status": "Logged Out"}}"#;

    fn seed_offering_headers(action: &'static str) -> Vec<(&'static [u8], &'static [u8])> {
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

    #[test]
    fn seed_offering_example_byte_for_byte() {
        let s = scan(seed_offering_headers("agent-offering")).unwrap();
        assert_eq!(s.kind, Kind::OfferingCallAgent);
        assert_eq!(
            s.member_session(),
            Some(&b"4dbd89c2-8e54-43a6-a0b4-a7d26b09ae6c"[..])
        );
        assert_eq!(s.capture(seed_vars).seed_json(), SEED_OFFERING);
    }

    #[test]
    fn connected_uses_the_offering_field_list() {
        let s = scan(seed_offering_headers("bridge-agent-start")).unwrap();
        assert_eq!(s.kind, Kind::ConnectedCallAgent);
        let expected = SEED_OFFERING.replace("Offering-Call-Agent", "Connected-Call-Agent");
        assert_eq!(s.capture(seed_vars).seed_json(), expected);
    }

    #[test]
    fn seed_status_example_byte_for_byte() {
        let h: Vec<(&[u8], &[u8])> = vec![
            (b"CC-Agent", b"tenant-1@areski"),
            (b"CC-Action", b"agent-status-change"),
            (b"CC-Agent-Status", b"Logged Out"),
        ];
        let s = scan(h).unwrap();
        assert_eq!(s.member_session(), None, "status needs no session lookup");
        assert_eq!(s.capture(|_| panic!("no lookup")).seed_json(), SEED_STATUS);
    }

    #[test]
    fn other_actions_and_missing_action_are_ignored() {
        for action in [
            "agent-state-change",
            "bridge-agent-end",
            "bridge-agent-fail",
            "member-queue-start",
            "members-count",
            "agent-status-get",
            "",
            "Agent-Offering",
        ] {
            let h: Vec<(&[u8], &[u8])> = vec![(b"CC-Action", action.as_bytes())];
            assert_eq!(scan(h).unwrap_err(), Skip::Ignored, "{action}");
        }
        let h: Vec<(&[u8], &[u8])> = vec![(b"CC-Agent", b"x")];
        assert_eq!(scan(h).unwrap_err(), Skip::NoAction);
    }

    #[test]
    fn absent_sources_are_left_out() {
        let h: Vec<(&[u8], &[u8])> = vec![(b"CC-Action", b"agent-offering"), (b"CC-Agent", b"a@b")];
        let json = scan(h).unwrap().capture(|_| None).seed_json();
        assert_eq!(json, r#"{"Offering-Call-Agent:" : {"CC_Agent": "a@b"}}"#);
        let h: Vec<(&[u8], &[u8])> = vec![(b"CC-Action", b"agent-status-change")];
        let json = scan(h).unwrap().capture(|_| None).seed_json();
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
        let ev = scan(h).unwrap().capture(|_| None);
        let json = ev.seed_json();
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        let inner = &parsed["Agent-Status-Change:"];
        assert_eq!(inner["CC_Agent"], "\u{fffd}\u{fffd}\"quoted\"\n");
        let status = inner["CC_Agent_Status"].as_str().unwrap();
        assert!(status.len() <= MAX_VALUE_BYTES && status.len() > MAX_VALUE_BYTES - 4);
        assert!(ev.heap_bytes() < 4 * MAX_VALUE_BYTES);
    }

    #[test]
    fn first_action_decides() {
        // Found by tests/hostile_input.rs: the last CC-Action used to decide, and
        // an unpublished one after a published one got the event ignored.
        let h: Vec<(&[u8], &[u8])> = vec![
            (b"CC-Action", b"agent-offering"),
            (b"CC-Action", b"agent-status-change"),
            (b"CC-Action", b"members-count"),
        ];
        assert_eq!(scan(h).unwrap().kind, Kind::OfferingCallAgent);
        let h: Vec<(&[u8], &[u8])> = vec![
            (b"CC-Action", b"members-count"),
            (b"CC-Action", b"agent-offering"),
        ];
        assert_eq!(scan(h).unwrap_err(), Skip::Ignored);
    }

    #[test]
    fn first_header_of_a_name_wins() {
        let h: Vec<(&[u8], &[u8])> = vec![
            (b"CC-Action", b"agent-status-change"),
            (b"CC-Agent", b"first"),
            (b"CC-Agent", b"second"),
        ];
        let json = scan(h).unwrap().capture(|_| None).seed_json();
        assert!(json.contains("first") && !json.contains("second"), "{json}");
    }
}
