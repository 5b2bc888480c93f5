//! The captured mod_callcenter events and member channels in tests/fixtures/.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use super::core::OwnedEvent;

pub fn dir() -> PathBuf {
    // A crate that borrows this harness from elsewhere in the workspace (the
    // wallboard) names the fixtures: its CARGO_MANIFEST_DIR is its own.
    match option_env!("CC_EVENTS_FIXTURES") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"),
    }
}

/// `%XX` decoding, as FreeSWITCH url-encodes `event plain` values.
pub fn url_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// `Name: url-encoded-value` lines, in order.
pub fn parse_plain(text: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    text.lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n.as_bytes().to_vec(), url_decode(v)))
        .collect()
}

/// One captured event file.
pub struct Fixture {
    pub file: String,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Fixture {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n == name.as_bytes())
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// The event as FreeSWITCH delivers it: CUSTOM, subclass from Event-Subclass.
    pub fn event(&self) -> OwnedEvent {
        let subclass = self.header("Event-Subclass").unwrap_or_default();
        let refs: Vec<(&[u8], &[u8])> =
            self.headers.iter().map(|(n, v)| (&n[..], &v[..])).collect();
        OwnedEvent::custom(&subclass, &refs)
    }
}

/// All 45 events in arrival order.
pub fn events() -> Vec<Fixture> {
    let mut files: Vec<_> = std::fs::read_dir(dir().join("events"))
        .expect("tests/fixtures/events")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| Fixture {
            file: p.file_name().unwrap().to_string_lossy().into_owned(),
            headers: parse_plain(&std::fs::read_to_string(&p).unwrap()),
        })
        .collect()
}

/// Member channel variables by session UUID, from `uuid_dump` files (`variable_` stripped).
pub fn member_channels() -> HashMap<String, HashMap<String, String>> {
    std::fs::read_dir(dir().join("member-channels"))
        .expect("tests/fixtures/member-channels")
        .flatten()
        .map(|e| {
            let path = e.path();
            let uuid = path.file_stem().unwrap().to_string_lossy().into_owned();
            let vars = parse_plain(&std::fs::read_to_string(&path).unwrap())
                .into_iter()
                .filter_map(|(n, v)| {
                    let n = String::from_utf8(n).ok()?;
                    let name = n.strip_prefix("variable_")?.to_string();
                    Some((name, String::from_utf8_lossy(&v).into_owned()))
                })
                .collect();
            (uuid, vars)
        })
        .collect()
}

/// Each member channel's caller profile by session UUID: the `Caller-*` headers
/// of its `uuid_dump`, as `switch_caller_get_field_by_name` names.
pub fn member_caller_profiles() -> HashMap<String, Vec<(&'static str, String)>> {
    std::fs::read_dir(dir().join("member-channels"))
        .expect("tests/fixtures/member-channels")
        .flatten()
        .map(|e| {
            let path = e.path();
            let uuid = path.file_stem().unwrap().to_string_lossy().into_owned();
            let headers = parse_plain(&std::fs::read_to_string(&path).unwrap());
            let fields = super::core::CALLER_PROFILE_FIELDS
                .iter()
                .filter_map(|&(field, suffix)| {
                    let header = format!("Caller-{}", suffix?);
                    let (_, v) = headers.iter().find(|(n, _)| n == header.as_bytes())?;
                    Some((field, String::from_utf8_lossy(v).into_owned()))
                })
                .collect();
            (uuid, fields)
        })
        .collect()
}

/// Registers every fixture member channel as a live session in the host, with
/// its channel variables and caller profile.
pub fn add_member_sessions() {
    let profiles = member_caller_profiles();
    for (uuid, vars) in member_channels() {
        super::core::add_session(&uuid, &vars);
        let fields: Vec<(&str, &str)> = profiles[&uuid]
            .iter()
            .map(|(f, v)| (*f, v.as_str()))
            .collect();
        super::core::set_caller_profile(&uuid, &fields);
    }
}
