//! Hostile input, as a property: whatever headers a `callcenter::info` event
//! carries, the pure path `scan` → `member_session`/`capture` → `seed_json`
//! does not panic, and what it publishes is valid JSON holding exactly the
//! documented cut of each field's source.
//!
//! The expected payload is computed here, independently of src/callcenter.rs:
//! - the first `CC-Action` header decides the event (none: not published;
//!   not one of the three published actions: ignored);
//! - a field's value is the first header of its name (names match exactly), or
//!   the member channel variable the capture closure returns; no source, no field;
//! - a header value is its first 1024 raw bytes, invalid UTF-8 replaced by U+FFFD,
//!   then cut to at most 1024 bytes at a character boundary; a variable is cut
//!   the same way;
//! - the outer key is the event name and `:`, the inner keys are the catalogue's
//!   (`Kind::fields()`) in its order, absent ones skipped.
//!
//! Two parts share that checker: the corpus in tests/fixtures/hostile/ (always
//! run; its README describes the format), and a proptest property: 256 cases in
//! a plain `cargo test`, `CC_EVENTS_PROPTEST_CASES=N` for more
//! (scripts/property-test.sh runs 1,000,000). Failures are not persisted to a
//! file: a failing run prints the minimal case in the corpus format, which goes
//! into the corpus as a new file.

// Every test binary links the host's FreeSWITCH symbols (build.rs), even one that
// never loads the module.
mod harness;

use std::cell::Cell;
use std::ffi::CStr;
use std::fmt;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::time::Instant;

use mod_cc_events::callcenter::{self, Kind, Skip, MAX_VALUE_BYTES};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

/// The documented cut (README: "values longer than 1024 bytes are cut").
const CUT: usize = 1024;

// ---------------------------------------------------------------------------
// A case: the event's headers in order, and the member channel's variables.
// Its Debug output is the corpus file format, so a failure can be pasted in.

/// A value: parts, each a chunk of bytes repeated a number of times.
#[derive(Clone, PartialEq)]
struct Val(Vec<(Vec<u8>, usize)>);

impl Val {
    fn one(chunk: Vec<u8>) -> Val {
        Val(vec![(chunk, 1)])
    }

    fn repeated(chunk: Vec<u8>, reps: usize) -> Val {
        Val(vec![(chunk, reps)])
    }

    fn len(&self) -> usize {
        self.0.iter().map(|(c, n)| c.len() * n).sum()
    }

    fn bytes(&self) -> Vec<u8> {
        self.0.iter().flat_map(|(c, n)| c.repeat(*n)).collect()
    }
}

#[derive(Clone, PartialEq)]
enum Line {
    Header(Vec<u8>, Val),
    /// A variable on the member's channel; its value is UTF-8.
    Var(Vec<u8>, Val),
    /// `n` headers; `{i}` in the name and value becomes 0, 1, ... n-1.
    Repeat(usize, Vec<u8>, Val),
}

#[derive(Clone, PartialEq)]
struct Case {
    lines: Vec<Line>,
}

fn substitute(bytes: &[u8], i: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix(b"{i}") {
            out.extend_from_slice(i.to_string().as_bytes());
            rest = after;
        } else {
            out.push(rest[0]);
            rest = &rest[1..];
        }
    }
    out
}

impl Case {
    fn headers(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        for line in &self.lines {
            match line {
                Line::Header(name, value) => out.push((name.clone(), value.bytes())),
                Line::Repeat(n, name, value) => {
                    let value = value.bytes();
                    out.extend((0..*n).map(|i| (substitute(name, i), substitute(&value, i))));
                }
                Line::Var(..) => {}
            }
        }
        out
    }

    fn vars(&self) -> Vec<(Vec<u8>, String)> {
        self.lines
            .iter()
            .filter_map(|line| match line {
                Line::Var(name, value) => Some((
                    name.clone(),
                    String::from_utf8(value.bytes()).expect("variable values are UTF-8"),
                )),
                _ => None,
            })
            .collect()
    }

    fn has_huge_value(&self) -> bool {
        self.lines.iter().any(|line| match line {
            Line::Header(_, v) | Line::Var(_, v) | Line::Repeat(_, _, v) => v.len() >= 1 << 20,
        })
    }

    fn header_count(&self) -> usize {
        self.lines
            .iter()
            .map(|line| match line {
                Line::Header(..) => 1,
                Line::Repeat(n, ..) => *n,
                Line::Var(..) => 0,
            })
            .sum()
    }
}

/// One token of the corpus format: printable ASCII but `\` and `"` as is, any
/// other byte as `\xHH`, `\` as `\\`, the empty string as `""`, and `+` or `*`
/// alone (the value syntax's operators) as `\xHH`.
fn escape(bytes: &[u8]) -> String {
    match bytes {
        b"" => return "\"\"".into(),
        b"+" | b"*" => return format!("\\x{:02x}", bytes[0]),
        _ => {}
    }
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\\' => s.push_str("\\\\"),
            b'"' => s.push_str("\\x22"),
            0x21..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s
}

fn unescape(token: &str) -> Result<Vec<u8>, String> {
    if token == "\"\"" {
        return Ok(Vec::new());
    }
    let b = token.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1)) {
            (b'\\', Some(b'\\')) => {
                out.push(b'\\');
                i += 2;
            }
            (b'\\', Some(b'x')) => {
                let hex = token
                    .get(i + 2..i + 4)
                    .ok_or_else(|| format!("short \\x escape in {token:?}"))?;
                out.push(
                    u8::from_str_radix(hex, 16)
                        .map_err(|_| format!("bad \\x{hex} in {token:?}"))?,
                );
                i += 4;
            }
            (b'\\', _) => return Err(format!("lone backslash in {token:?}: write \\\\")),
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

impl fmt::Debug for Val {
    /// Runs of 8 or more equal bytes are written `X * N`, so that a shrunk
    /// long value prints short.
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let mut parts = Vec::new();
        for (chunk, reps) in &self.0 {
            if *reps != 1 {
                parts.push(format!("{} * {reps}", escape(chunk)));
                continue;
            }
            let mut literal = Vec::new();
            for run in chunk.chunk_by(|a, b| a == b) {
                if run.len() < 8 {
                    literal.extend_from_slice(run);
                    continue;
                }
                if !literal.is_empty() {
                    parts.push(escape(&std::mem::take(&mut literal)));
                }
                parts.push(format!("{} * {}", escape(&run[..1]), run.len()));
            }
            if !literal.is_empty() || parts.is_empty() {
                parts.push(escape(&literal));
            }
        }
        write!(f, "{}", parts.join(" + "))
    }
}

impl fmt::Debug for Line {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Line::Header(name, v) => write!(f, "header {} {v:?}", escape(name)),
            Line::Var(name, v) => write!(f, "var {} {v:?}", escape(name)),
            Line::Repeat(n, name, v) => write!(f, "repeat {n} header {} {v:?}", escape(name)),
        }
    }
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        writeln!(f)?;
        for line in &self.lines {
            writeln!(f, "{line:?}")?;
        }
        Ok(())
    }
}

/// What a corpus file says the module does with its case.
#[derive(Debug, PartialEq)]
enum Outcome {
    Published(&'static str),
    Ignored,
    NoAction,
}

struct CorpusCase {
    case: Case,
    outcome: Option<Outcome>,
    /// `field KEY VALUE` lines: the published fields, all of them, in order.
    fields: Vec<(String, String)>,
    json: Option<String>,
}

/// `PART [+ PART ...]`, each PART `TOKEN` or `TOKEN * N`.
fn parse_val(tokens: &[&str]) -> Result<Val, String> {
    let mut parts = Vec::new();
    for part in tokens.split(|t| *t == "+") {
        parts.push(match part {
            [v] => (unescape(v)?, 1),
            [v, "*", n] => (
                unescape(v)?,
                n.parse().map_err(|_| format!("bad repeat count {n:?}"))?,
            ),
            _ => return Err(format!("expected TOKEN or TOKEN * N, got {part:?}")),
        });
    }
    Ok(Val(parts))
}

fn parse_corpus(text: &str) -> Result<CorpusCase, String> {
    let mut c = CorpusCase {
        case: Case { lines: Vec::new() },
        outcome: None,
        fields: Vec::new(),
        json: None,
    };
    for (no, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}", no + 1);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(json) = line.strip_prefix("json ") {
            c.json = Some(json.to_owned());
            continue;
        }
        let tokens: Vec<&str> = line.split(' ').collect();
        let parsed = match tokens.as_slice() {
            ["outcome", "ignored"] => {
                c.outcome = Some(Outcome::Ignored);
                continue;
            }
            ["outcome", "no-action"] => {
                c.outcome = Some(Outcome::NoAction);
                continue;
            }
            ["outcome", name] => {
                let kind = [
                    Kind::OfferingCallAgent,
                    Kind::ConnectedCallAgent,
                    Kind::AgentStatusChange,
                ]
                .into_iter()
                .find(|k| k.name() == *name)
                .ok_or_else(|| at(format!("unknown outcome {name:?}")))?;
                c.outcome = Some(Outcome::Published(kind.name()));
                continue;
            }
            ["field", key, rest @ ..] => {
                let v = parse_val(rest).map_err(at)?;
                let v =
                    String::from_utf8(v.bytes()).map_err(|e| at(format!("field value: {e}")))?;
                c.fields.push((key.to_string(), v));
                continue;
            }
            ["header", name, rest @ ..] => {
                Line::Header(unescape(name).map_err(at)?, parse_val(rest).map_err(at)?)
            }
            ["var", name, rest @ ..] => {
                let v = parse_val(rest).map_err(at)?;
                String::from_utf8(v.bytes()).map_err(|e| at(format!("var value: {e}")))?;
                Line::Var(unescape(name).map_err(at)?, v)
            }
            ["repeat", n, "header", name, rest @ ..] => Line::Repeat(
                n.parse().map_err(|_| at(format!("bad count {n:?}")))?,
                unescape(name).map_err(at)?,
                parse_val(rest).map_err(at)?,
            ),
            _ => return Err(at(format!("not understood: {line:?}"))),
        };
        c.case.lines.push(parsed);
    }
    Ok(c)
}

// ---------------------------------------------------------------------------
// The expected payload, computed independently of src/callcenter.rs.

/// Where a published field's value comes from (README, "What a subscriber receives").
#[derive(Clone, Copy)]
enum Source {
    Header(&'static [u8]),
    Var(&'static str),
}

type Sources = &'static [(&'static str, Source)];

const CALL_SOURCES: &[(&str, Source)] = &[
    ("callrequest_id", Source::Var("callrequest_id")),
    ("CC_Agent", Source::Header(b"CC-Agent")),
    ("campaign_id", Source::Var("campaign_id")),
    ("CC_Member_CID_Name", Source::Header(b"CC-Member-CID-Name")),
    ("CC_Agent_System", Source::Header(b"CC-Agent-System")),
    ("phonenumber", Source::Var("phonenumber")),
    ("callerid_number", Source::Var("callerid_number")),
    (
        "CC_Member_Session_UUID",
        Source::Header(b"CC-Member-Session-UUID"),
    ),
    ("CC_Member_UUID", Source::Header(b"CC-Member-UUID")),
    (
        "CC_Member_CID_Number",
        Source::Header(b"CC-Member-CID-Number"),
    ),
    ("CC_Queue", Source::Header(b"CC-Queue")),
];

const STATUS_SOURCES: &[(&str, Source)] = &[
    ("CC_Agent", Source::Header(b"CC-Agent")),
    ("CC_Agent_Status", Source::Header(b"CC-Agent-Status")),
];

/// The published event for the event's first `CC-Action`, and its field sources.
fn model_event(headers: &[(Vec<u8>, Vec<u8>)]) -> Result<(&'static str, Sources), Skip> {
    match first(headers, b"CC-Action").ok_or(Skip::NoAction)? {
        b"agent-offering" => Ok(("Offering-Call-Agent", CALL_SOURCES)),
        b"bridge-agent-start" => Ok(("Connected-Call-Agent", CALL_SOURCES)),
        b"agent-status-change" => Ok(("Agent-Status-Change", STATUS_SOURCES)),
        _ => Err(Skip::Ignored),
    }
}

fn first<'h>(headers: &'h [(Vec<u8>, Vec<u8>)], name: &[u8]) -> Option<&'h [u8]> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| &v[..])
}

fn var<'v>(vars: &'v [(Vec<u8>, String)], name: &[u8]) -> Option<&'v str> {
    vars.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The longest prefix of at most CUT bytes that ends at a character boundary.
fn cut(s: &str) -> &str {
    let mut end = 0;
    for (i, c) in s.char_indices() {
        if i + c.len_utf8() > CUT {
            break;
        }
        end = i + c.len_utf8();
    }
    &s[..end]
}

fn cut_raw(raw: &[u8]) -> String {
    cut(&String::from_utf8_lossy(&raw[..raw.len().min(CUT)])).to_owned()
}

/// The published payload as parsed back: outer and inner keys in their order.
struct Entries<V>(Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Entries<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Object<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Object<V> {
            type Value = Entries<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries<V>, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        d.deserialize_map(Object(PhantomData))
    }
}

fn short(s: &str) -> String {
    if s.len() <= 300 {
        return format!("{s:?}");
    }
    let mut end = 300;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}... ({} bytes)", &s[..end], s.len())
}

/// Where two values part, with a little context.
fn value_diff(got: &str, want: &str) -> String {
    let at = got
        .bytes()
        .zip(want.bytes())
        .position(|(g, w)| g != w)
        .unwrap_or(got.len().min(want.len()));
    let around = |s: &str| {
        let mut start = at.saturating_sub(16);
        while !s.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = (at + 16).min(s.len());
        while !s.is_char_boundary(end) {
            end += 1;
        }
        format!("{:?}", &s[start..end])
    };
    format!(
        "{} bytes, expected {}; from byte {at}: {} where {} was expected",
        got.len(),
        want.len(),
        around(got),
        around(want)
    )
}

/// Runs the module's pure path on `case` and checks it against the model.
/// Returns what the module did, and the payload when it published.
fn check(case: &Case) -> Result<(Outcome, Option<String>), String> {
    let headers = case.headers();
    let vars = case.vars();
    let expected = model_event(&headers);

    let scan = match callcenter::scan(headers.iter().map(|(n, v)| (&n[..], &v[..]))) {
        Ok(scan) => scan,
        Err(skip) => {
            if expected.map(|(name, _)| name) != Err(skip) {
                return Err(format!(
                    "scan skipped the event ({skip:?}), expected {expected:?}",
                    expected = expected.map(|(n, _)| n)
                ));
            }
            let outcome = match skip {
                Skip::Ignored => Outcome::Ignored,
                Skip::NoAction => Outcome::NoAction,
            };
            return Ok((outcome, None));
        }
    };
    let (name, sources) = expected.map_err(|skip| {
        format!(
            "scan published {}, expected it to be skipped ({skip:?})",
            scan.kind.name()
        )
    })?;
    if scan.kind.name() != name {
        return Err(format!("scan chose {}, expected {name}", scan.kind.name()));
    }

    let wants_vars = sources.iter().any(|(_, s)| matches!(s, Source::Var(_)));
    let session =
        first(&headers, b"CC-Member-Session-UUID").filter(|v| wants_vars && !v.is_empty());
    if scan.member_session() != session {
        return Err(format!(
            "member_session() = {:?}, expected {session:?}",
            scan.member_session().map(String::from_utf8_lossy)
        ));
    }

    let fields = scan.kind.fields();
    let catalogue: Vec<&str> = fields.iter().map(|f| f.key).collect();
    let modelled: Vec<&str> = sources.iter().map(|(k, _)| *k).collect();
    if catalogue != modelled {
        return Err(format!(
            "{name}: the catalogue's keys are {catalogue:?}, this test models {modelled:?}"
        ));
    }
    let expected: Vec<(&str, String)> = sources
        .iter()
        .filter_map(|(key, source)| {
            let value = match source {
                Source::Header(h) => first(&headers, h).map(cut_raw),
                Source::Var(v) => var(&vars, v.as_bytes()).map(|s| cut(s).to_owned()),
            };
            value.map(|v| (*key, v))
        })
        .collect();

    let event = scan.capture(|n: &CStr| var(&vars, n.to_bytes()).map(str::to_owned));
    let payload = event.seed_json();

    let parsed: Entries<Entries<String>> = serde_json::from_str(&payload)
        .map_err(|e| format!("not valid JSON ({e}): {}", short(&payload)))?;
    let [(outer, inner)] = parsed.0.as_slice() else {
        return Err(format!("not one outer key: {}", short(&payload)));
    };
    if *outer != format!("{name}:") {
        return Err(format!("outer key {outer:?}, expected \"{name}:\""));
    }
    let got: Vec<(&str, &str)> = inner
        .0
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let want: Vec<(&str, &str)> = expected.iter().map(|(k, v)| (*k, v.as_str())).collect();
    if got != want {
        fn keys<'a>(e: &[(&'a str, &str)]) -> Vec<&'a str> {
            e.iter().map(|(k, _)| *k).collect()
        }
        let first_diff = got.iter().zip(&want).find(|(g, w)| g != w).map(|(g, w)| {
            if g.0 != w.0 {
                format!("key {:?}, expected {:?}", g.0, w.0)
            } else {
                format!("{}: {}", g.0, value_diff(g.1, w.1))
            }
        });
        return Err(format!(
            "fields differ: keys {:?}, expected {:?}; first difference: {}",
            keys(&got),
            keys(&want),
            first_diff.unwrap_or_else(|| "in the number of fields".into())
        ));
    }

    // The documented format, byte for byte: `{"Name:" : {"k": "v", ...}}`.
    let fields = expected
        .iter()
        .map(|(k, v)| format!("\"{k}\": {}", serde_json::to_string(v).unwrap()))
        .collect::<Vec<_>>()
        .join(", ");
    let exact = format!("{{\"{name}:\" : {{{fields}}}}}");
    if payload != exact {
        return Err(format!(
            "payload {}\nexpected {}",
            short(&payload),
            short(&exact)
        ));
    }
    Ok((Outcome::Published(name), Some(payload)))
}

// ---------------------------------------------------------------------------
// The corpus.

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile")
}

#[test]
fn regression_corpus() {
    assert_eq!(MAX_VALUE_BYTES, CUT, "the README documents a 1024-byte cut");
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("tests/fixtures/hostile")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "case"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "corpus has only {} cases", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let file = path.file_name().unwrap().to_string_lossy();
        let text = std::fs::read_to_string(path).unwrap();
        let c = parse_corpus(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        let want = c
            .outcome
            .unwrap_or_else(|| panic!("{file}: no `outcome` line"));
        let Ok(result) = std::panic::catch_unwind(|| check(&c.case)) else {
            failures.push(format!("{file}: panicked"));
            continue;
        };
        match result {
            Err(e) => failures.push(format!("{file}: {e}")),
            Ok((got, _)) if got != want => {
                failures.push(format!("{file}: {got:?}, the file says {want:?}"))
            }
            Ok((_, payload)) => {
                let payload = payload.unwrap_or_default();
                if let Some(json) = c.json {
                    if payload != json {
                        failures.push(format!(
                            "{file}: payload {}, the file says {json}",
                            short(&payload)
                        ));
                    }
                }
                if !c.fields.is_empty() {
                    let parsed: Entries<Entries<String>> = serde_json::from_str(&payload).unwrap();
                    let got = &parsed.0[0].1 .0;
                    if *got != c.fields {
                        let diff = got.iter().zip(&c.fields).position(|(g, w)| g != w);
                        failures.push(format!(
                            "{file}: {} fields, the file says {}; first difference at field {diff:?}",
                            got.len(),
                            c.fields.len()
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus cases failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    eprintln!("hostile corpus: {} cases passed", files.len());
}

// ---------------------------------------------------------------------------
// The property.

const ACTIONS: &[&[u8]] = &[
    b"agent-offering",
    b"bridge-agent-start",
    b"agent-status-change",
];

/// Actions mod_callcenter sends but this module ignores, and near misses of the published ones.
const OTHER_ACTIONS: &[&[u8]] = &[
    b"agent-state-change",
    b"agent-contact-change",
    b"bridge-agent-end",
    b"bridge-agent-fail",
    b"member-queue-start",
    b"member-queue-end",
    b"members-count",
    b"agent-status-get",
    b"agent-max-no-answer",
    b"",
    b"Agent-Offering",
    b"AGENT-STATUS-CHANGE",
    b"agent-offering ",
    b" agent-offering",
    b"agent-offering\x00",
    b"agent-offering\n",
    b"agent_offering",
    b"agent-offerin",
    b"bridge-agent-start\xff",
];

/// The headers the published fields come from.
const FIELD_HEADERS: &[&[u8]] = &[
    b"CC-Agent",
    b"CC-Member-CID-Name",
    b"CC-Agent-System",
    b"CC-Member-Session-UUID",
    b"CC-Member-UUID",
    b"CC-Member-CID-Number",
    b"CC-Queue",
    b"CC-Agent-Status",
];

const OTHER_NAMES: &[&[u8]] = &[
    // Other CC- headers mod_callcenter sends.
    b"CC-Agent-Type",
    b"CC-Agent-UUID",
    b"CC-Agent-State",
    b"CC-Count",
    b"CC-Hangup-Cause",
    b"CC-Cause",
    b"CC-Member-Joined-Time",
    // Near misses of the read ones: no or another prefix, case, padding, NUL.
    b"Agent",
    b"Agent-Status",
    b"Action",
    b"cc-agent",
    b"CC-agent",
    b"cc-Agent",
    b"CC_Agent",
    b"CC-AGENT",
    b"CC-Agent ",
    b" CC-Agent",
    b"XCC-Agent",
    b"CC-CC-Agent",
    b"CC-Agent\x00",
    b"CC-Agent-Status-",
    b"CC-Member-Session-UUID2",
    b"CC-",
    b"CC",
    b"",
    b"cc-action",
    b"CC-ACTION",
    b"CC-Action ",
    b"CC-Action\x00",
    b"variable_CC-Agent",
    b"CC\xe2\x80\x90Agent",
    // Ordinary FreeSWITCH headers.
    b"Event-Name",
    b"Event-Subclass",
    b"Core-UUID",
    b"Unique-ID",
    b"variable_callrequest_id",
    b"callrequest_id",
];

const VAR_NAMES: &[&[u8]] = &[
    b"callrequest_id",
    b"campaign_id",
    b"phonenumber",
    b"callerid_number",
    b"CALLREQUEST_ID",
    b"callrequest_id ",
    b"variable_campaign_id",
];

/// Pieces that are hard on JSON writers and UTF-8 decoders.
const FRAGMENTS: &[&[u8]] = &[
    b"\"",
    b"\\",
    b"\\\"",
    b"\\u0000",
    b"\\ud800",
    b"\x00",
    b"\n",
    b"\r\n",
    b"\t",
    b"\x08\x0c",
    b"\x1b[31m",
    b"\x7f",
    b"\x01",
    b"\x1f",
    b"\xff",
    b"\xfe",
    b"\xc3",
    b"\xc3\xa9",
    b"\xe2\x82",
    b"\xe2\x82\xac",
    b"\xf0\x9f\x98",
    b"\xf0\x9f\x98\x80",
    b"\xed\xa0\x80",
    b"\xc0\xaf",
    b"\xef\xbf\xbd",
    b"\xe2\x80\xa8",
    b"\xc2\x85",
    b"{",
    b"}",
    b"\": \"",
    b"\", \"CC_Agent\": \"evil",
    b"}}",
    b"</script>",
    b"%22",
    b" ",
    b"a",
    b"tenant-1@areski",
    b"4dbd89c2-8e54-43a6-a0b4-a7d26b09ae6c",
    b"Logged Out",
];

/// What long values are made of before they are cut.
const FILLERS: &[&[u8]] = &[
    b"a",
    b"\xc3\xa9",
    b"\xe2\x82\xac",
    b"\xf0\x9f\x98\x80",
    b"\xff",
    b"\"",
    b"\\",
];

/// Fillers for variables, which are UTF-8 (FreeSWITCH's side makes them so).
const TEXT_FILLERS: &[&str] = &["a", "é", "€", "😀", "\"", "\\", "\u{0}"];

fn fragments(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(select(FRAGMENTS), 0..max).prop_map(|f| f.concat())
}

/// Short values: fragments, arbitrary bytes, empty.
fn small_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        5 => fragments(10),
        4 => vec(any::<u8>(), 0..24),
        1 => Just(Vec::new()),
    ]
}

/// A filler run of 990..1040 bytes (mostly 1016..1026), maybe cut inside a
/// character, then fragments: the cut falls on every kind of boundary.
fn near_cut_bytes() -> impl Strategy<Value = Vec<u8>> {
    let len = prop_oneof![1 => 990usize..1040, 2 => 1016usize..1026];
    (select(FILLERS), len, fragments(4)).prop_map(|(filler, len, tail)| {
        let mut v = filler.repeat(len / filler.len() + 1);
        v.truncate(len);
        v.extend_from_slice(&tail);
        v
    })
}

fn value() -> impl Strategy<Value = Val> {
    prop_oneof![
        30 => small_bytes(),
        1 => near_cut_bytes(),
    ]
    .prop_map(Val::one)
}

/// About 1 MB: a short chunk repeated.
fn huge_value() -> impl Strategy<Value = Val> {
    prop_oneof![
        2 => select(FILLERS).prop_map(<[u8]>::to_vec),
        1 => vec(any::<u8>(), 1..8),
    ]
    .prop_map(|chunk| Val::repeated(chunk.clone(), (1 << 20) / chunk.len() + 1))
}

fn header_name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => select(FIELD_HEADERS).prop_map(<[u8]>::to_vec),
        3 => select(OTHER_NAMES).prop_map(<[u8]>::to_vec),
        1 => vec(any::<u8>(), 0..12),
        1 => vec(any::<u8>(), 0..6).prop_map(|v| [&b"CC-"[..], &v].concat()),
    ]
}

fn header() -> impl Strategy<Value = Line> {
    (header_name(), value()).prop_map(|(n, v)| Line::Header(n, v))
}

fn var_text() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => vec(any::<char>(), 0..12).prop_map(|c| String::from_iter(c).into_bytes()),
        3 => small_bytes().prop_map(|b| String::from_utf8_lossy(&b).into_owned().into_bytes()),
        1 => near_cut_bytes().prop_map(|b| String::from_utf8_lossy(&b).into_owned().into_bytes()),
    ]
}

fn var_line() -> impl Strategy<Value = Line> {
    (select(VAR_NAMES), var_text()).prop_map(|(n, v)| Line::Var(n.to_vec(), Val::one(v)))
}

/// `CC-Action` headers, each with its position among the other headers:
/// usually one, sometimes none or several.
fn actions() -> impl Strategy<Value = Vec<(Index, Vec<u8>)>> {
    let action = prop_oneof![
        6 => select(ACTIONS).prop_map(<[u8]>::to_vec),
        2 => select(OTHER_ACTIONS).prop_map(<[u8]>::to_vec),
        1 => small_bytes(),
    ];
    prop_oneof![
        1 => Just(Vec::new()),
        16 => vec((any::<Index>(), action.clone()), 1),
        3 => vec((any::<Index>(), action), 2..5),
    ]
}

/// An event made of `headers`, `CC-Action` headers among them, and member variables.
fn event(headers: impl Strategy<Value = Vec<Line>>) -> impl Strategy<Value = Case> {
    (headers, actions(), vec(var_line(), 0..6)).prop_map(|(mut lines, actions, vars)| {
        for (at, action) in actions {
            let at = at.index(lines.len() + 1);
            lines.insert(at, Line::Header(b"CC-Action".to_vec(), Val::one(action)));
        }
        lines.extend(vars);
        Case { lines }
    })
}

/// A small event with one ~1 MB header or variable somewhere.
fn huge_value_event() -> BoxedStrategy<Case> {
    let huge_line = prop_oneof![
        3 => (select(FIELD_HEADERS), huge_value())
            .prop_map(|(n, v)| Line::Header(n.to_vec(), v)),
        1 => (header_name(), huge_value()).prop_map(|(n, v)| Line::Header(n, v)),
        1 => (select(VAR_NAMES), select(TEXT_FILLERS)).prop_map(|(n, chunk)| Line::Var(
            n.to_vec(),
            Val::repeated(chunk.as_bytes().to_vec(), (1 << 20) / chunk.len() + 1),
        )),
    ];
    (event(vec(header(), 0..12)), huge_line, any::<Index>())
        .prop_map(|(mut case, line, at)| {
            let at = at.index(case.lines.len() + 1);
            case.lines.insert(at, line);
            case
        })
        .boxed()
}

const BLOCK_NAMES: &[&[u8]] = &[
    b"X-Header-{i}",
    b"variable_v{i}",
    b"CC-{i}",
    b"CC-Agent",
    b"CC-Action",
    b"CC-Member-Session-UUID",
    b"cc-agent",
];

/// 10,000 headers: random ones, or one block repeated (`{i}` numbers them).
fn many_headers_event() -> BoxedStrategy<Case> {
    let block = (
        select(BLOCK_NAMES),
        prop_oneof![
            3 => small_bytes(),
            1 => Just(b"{i}".to_vec()),
            1 => select(ACTIONS).prop_map(<[u8]>::to_vec),
        ],
    );
    prop_oneof![
        1 => event(vec(header(), 10_000)),
        2 => (event(vec(header(), 0..12)), block, any::<Index>()).prop_map(
            |(mut case, (name, value), at)| {
                let at = at.index(case.lines.len() + 1);
                case.lines.insert(at, Line::Repeat(10_000, name.to_vec(), Val::one(value)));
                case
            }
        ),
    ]
    .boxed()
}

/// Most cases small, a few huge: the weights keep 1,000,000 cases within minutes.
fn hostile_event() -> impl Strategy<Value = Case> {
    prop_oneof![
        9_000 => event(vec(header(), 0..12)).boxed(),
        950 => event(vec(header(), 12..200)).boxed(),
        30 => huge_value_event(),
        20 => many_headers_event(),
    ]
}

fn config() -> Config {
    let cases = match std::env::var("CC_EVENTS_PROPTEST_CASES") {
        Ok(n) => n
            .trim()
            .parse()
            .expect("CC_EVENTS_PROPTEST_CASES is a number of cases"),
        Err(_) => 256,
    };
    Config {
        // No proptest-regressions file in the source tree: a failure prints
        // its minimal case in the corpus format instead (see the file's top).
        failure_persistence: None,
        max_shrink_iters: 20_000,
        max_shrink_time: 300_000,
        ..Config::with_cases(cases)
    }
}

#[derive(Default)]
struct Tally {
    published: Cell<u64>,
    ignored: Cell<u64>,
    no_action: Cell<u64>,
    huge_value: Cell<u64>,
    many_headers: Cell<u64>,
}

fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

#[test]
fn hostile_events_publish_valid_json_with_the_documented_cut() {
    let config = config();
    let cases = config.cases;
    let mut runner = TestRunner::new(config);
    let tally = Tally::default();
    let start = Instant::now();
    let result = runner.run(&hostile_event(), |case| {
        let (outcome, _) = check(&case).map_err(TestCaseError::fail)?;
        match outcome {
            Outcome::Published(_) => bump(&tally.published),
            Outcome::Ignored => bump(&tally.ignored),
            Outcome::NoAction => bump(&tally.no_action),
        }
        if case.has_huge_value() {
            bump(&tally.huge_value);
        }
        if case.header_count() >= 10_000 {
            bump(&tally.many_headers);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}\n(add the case above to tests/fixtures/hostile/ as a .case file)");
    }
    eprintln!(
        "hostile property: {cases} cases in {:.1} s: {} published, {} ignored, {} without CC-Action; \
         {} with a 1 MB value, {} with 10,000 headers",
        start.elapsed().as_secs_f64(),
        tally.published.get(),
        tally.ignored.get(),
        tally.no_action.get(),
        tally.huge_value.get(),
        tally.many_headers.get(),
    );
}

/// The failure output is the corpus format: printing a case and parsing it back is lossless.
#[test]
fn failures_print_in_the_corpus_format() {
    let mut runner = TestRunner::new(Config {
        failure_persistence: None,
        ..Config::with_cases(1024)
    });
    runner
        .run(&hostile_event(), |case| {
            let text = format!("{case:?}");
            let back = parse_corpus(&text).map_err(TestCaseError::fail)?.case;
            prop_assert!(back.headers() == case.headers(), "{text}");
            prop_assert!(back.vars() == case.vars(), "{text}");
            Ok(())
        })
        .unwrap();
}
