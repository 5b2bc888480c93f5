//! Walking a `callcenter::info` event's headers on FreeSWITCH's thread and
//! copying what the catalogue asks for into an owned event for the worker.
//! Pure: no FreeSWITCH here (the module hands in the headers and a way to read
//! the member's channel variables).

use std::ffi::CStr;
use std::sync::Arc;

use crate::catalogue::{self, Catalogue, SeedSource};

/// Values longer than this are cut (at a character boundary) so that one
/// event's size, and with it the queue's memory, stays bounded.
pub const MAX_VALUE_BYTES: usize = 1024;

/// Prefix of mod_callcenter's own headers.
pub const HEADER_PREFIX: &[u8] = b"CC-";
/// Prefix of the channel variables in an event carrying channel data.
const VAR_PREFIX: &[u8] = b"variable_";

/// Why an event is not published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// A `CC-Action` this configuration does not publish.
    Ignored,
    /// No `CC-Action` header at all: not an event mod_callcenter sends.
    NoAction,
}

/// The first `CC-Action`, without looking further: the cheap test every
/// `callcenter::info` event goes through. FreeSWITCH's own header lookup
/// returns the first of a name, and so does every read here.
pub fn action<'a, I>(headers: I) -> Option<&'a [u8]>
where
    I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
{
    headers
        .into_iter()
        .find(|(n, _)| *n == b"CC-Action")
        .map(|(_, v)| v)
}

/// What one walk over a published event's headers found, borrowed from it.
#[derive(Debug)]
pub struct Scan<'a> {
    pub catalogue: Arc<Catalogue>,
    pub entry: usize,
    /// `CC-*` headers, first of each name, in event order (full names).
    cc: Vec<(&'a [u8], &'a [u8])>,
    /// `variable_*` headers the entry wants, as (variable index, value).
    event_vars: Vec<(usize, &'a [u8])>,
    meta: RawMeta<'a>,
}

#[derive(Debug, Default)]
struct RawMeta<'a> {
    timestamp: Option<&'a [u8]>,
    sequence: Option<&'a [u8]>,
    switchname: Option<&'a [u8]>,
    hostname: Option<&'a [u8]>,
    core_uuid: Option<&'a [u8]>,
}

/// A header name or value as the event holds it. FreeSWITCH's are C strings:
/// a prefix can be compared without measuring the whole string, so the walk
/// over a 200-header event only measures the few headers it keeps.
pub trait Text<'a>: Copy {
    fn has_prefix(self, prefix: &[u8]) -> bool;
    fn bytes(self) -> &'a [u8];
}

impl<'a> Text<'a> for &'a [u8] {
    fn has_prefix(self, prefix: &[u8]) -> bool {
        self.starts_with(prefix)
    }

    fn bytes(self) -> &'a [u8] {
        self
    }
}

/// Classifies the event and, when it is published, walks its headers once.
pub fn scan<'a, I>(catalogue: &Arc<Catalogue>, headers: I) -> Result<Scan<'a>, Skip>
where
    I: IntoIterator<Item = (&'a [u8], &'a [u8])> + Clone,
{
    scan_raw(catalogue.captured, || catalogue.clone(), headers)
}

/// The walk behind `scan`, for any header representation. `captured` has bit
/// `i` set when `catalogue::ACTIONS[i]` is captured, so an ignored event is
/// recognised without touching the shared catalogue; `catalogue` is asked for
/// only when the event is published. Stops at `CC-Action` when it is ignored;
/// otherwise one walk, plus one over `variable_*` headers for the events that
/// carry the member's channel.
pub fn scan_raw<'a, T, I>(
    captured: u32,
    catalogue: impl FnOnce() -> Arc<Catalogue>,
    headers: I,
) -> Result<Scan<'a>, Skip>
where
    T: Text<'a>,
    I: IntoIterator<Item = (T, T)> + Clone,
{
    let mut meta = RawMetaOf::default();
    // CC-* headers before CC-Action: mod_callcenter puts one or two there, so
    // they live on the stack; a stranger event spills into `more`.
    let mut before: [Option<(&'a [u8], T)>; 4] = [None; 4];
    let mut more: Vec<(&'a [u8], T)> = Vec::new();
    let mut it = headers.clone().into_iter();
    let mut action = None;
    for (name, value) in it.by_ref() {
        if name.has_prefix(HEADER_PREFIX) {
            let n = name.bytes();
            if n == b"CC-Action" {
                action = Some((n, value.bytes()));
                break;
            }
            match before.iter_mut().find(|b| b.is_none()) {
                Some(slot) => *slot = Some((n, value)),
                None => more.push((n, value)),
            }
        } else {
            meta.note(name, value);
        }
    }
    let (action_name, action) = action.ok_or(Skip::NoAction)?;
    let index = catalogue::index(action).ok_or(Skip::Ignored)?;
    if captured & (1 << index) == 0 {
        return Err(Skip::Ignored);
    }
    let catalogue = catalogue();
    let entry = catalogue.entry_for(index).ok_or(Skip::Ignored)?;
    let mut cc: Vec<(&'a [u8], &'a [u8])> = Vec::with_capacity(24);
    // FreeSWITCH returns the first header of a name; so do we. A real event has
    // about 20 CC-* headers, best checked in a line; a hostile one with
    // thousands switches to a set, so the walk stays linear.
    let mut names: Option<std::collections::HashSet<&'a [u8]>> = None;
    let mut keep = |cc: &mut Vec<(&'a [u8], &'a [u8])>, name: &'a [u8], value: &'a [u8]| {
        let new = match &mut names {
            Some(set) => set.insert(name),
            None if cc.len() < 32 => !cc.iter().any(|(n, _)| *n == name),
            None => {
                let set = names.insert(cc.iter().map(|(n, _)| *n).collect());
                set.insert(name)
            }
        };
        if new {
            cc.push((name, value));
        }
    };
    for (n, v) in before.into_iter().flatten().chain(more) {
        keep(&mut cc, n, v.bytes());
    }
    keep(&mut cc, action_name, action);
    for (name, value) in it {
        if name.has_prefix(HEADER_PREFIX) {
            keep(&mut cc, name.bytes(), value.bytes());
        } else {
            meta.note(name, value);
        }
    }
    let e = catalogue.entry(entry);
    let mut event_vars = Vec::new();
    if e.def.carries_channel_data && !e.vars.is_empty() {
        for (name, value) in headers {
            if !name.has_prefix(VAR_PREFIX) {
                continue;
            }
            let var = &name.bytes()[VAR_PREFIX.len()..];
            if let Some(i) = e.vars.iter().position(|c| c.to_bytes() == var) {
                if !event_vars.iter().any(|(j, _)| *j == i) {
                    event_vars.push((i, value.bytes()));
                }
            }
        }
    }
    Ok(Scan {
        catalogue,
        entry,
        cc,
        event_vars,
        meta: meta.done(),
    })
}

/// The metadata headers, first of each name, measured only when they match.
struct RawMetaOf<T> {
    timestamp: Option<T>,
    sequence: Option<T>,
    switchname: Option<T>,
    hostname: Option<T>,
    core_uuid: Option<T>,
}

impl<T> Default for RawMetaOf<T> {
    fn default() -> Self {
        RawMetaOf {
            timestamp: None,
            sequence: None,
            switchname: None,
            hostname: None,
            core_uuid: None,
        }
    }
}

impl<'a, T: Text<'a>> RawMetaOf<T> {
    fn note(&mut self, name: T, value: T) {
        // Most headers start with none of E, F, C: one byte decides.
        if !(name.has_prefix(b"E") || name.has_prefix(b"F") || name.has_prefix(b"C")) {
            return;
        }
        let slot = if name.has_prefix(b"Event-") {
            match name.bytes() {
                b"Event-Date-Timestamp" => &mut self.timestamp,
                b"Event-Sequence" => &mut self.sequence,
                _ => return,
            }
        } else if name.has_prefix(b"FreeSWITCH-") {
            match name.bytes() {
                b"FreeSWITCH-Switchname" => &mut self.switchname,
                b"FreeSWITCH-Hostname" => &mut self.hostname,
                _ => return,
            }
        } else if name.has_prefix(b"Core-UUID") && name.bytes() == b"Core-UUID" {
            &mut self.core_uuid
        } else {
            return;
        };
        slot.get_or_insert(value);
    }

    fn done(self) -> RawMeta<'a> {
        RawMeta {
            timestamp: self.timestamp.map(Text::bytes),
            sequence: self.sequence.map(Text::bytes),
            switchname: self.switchname.map(Text::bytes),
            hostname: self.hostname.map(Text::bytes),
            core_uuid: self.core_uuid.map(Text::bytes),
        }
    }
}

impl<'a> Scan<'a> {
    fn header(&self, name_without_prefix: &str) -> Option<&'a [u8]> {
        self.cc
            .iter()
            .find(|(n, _)| &n[HEADER_PREFIX.len()..] == name_without_prefix.as_bytes())
            .map(|(_, v)| *v)
    }

    /// The member's session UUID, when this event's member variables are read
    /// from the member's session.
    pub fn member_session(&self) -> Option<&'a [u8]> {
        if !self.catalogue.entry(self.entry).vars_from_session() {
            return None;
        }
        self.header("Member-Session-UUID").filter(|v| !v.is_empty())
    }

    /// The bytes a capture copies in, before variables and UTF-8 repairs.
    fn capacity_hint(&self) -> usize {
        let cut = |b: &[u8]| b.len().min(MAX_VALUE_BYTES);
        let m = &self.meta;
        let meta: usize = [m.switchname.or(m.hostname), m.core_uuid]
            .into_iter()
            .flatten()
            .map(cut)
            .sum();
        let fields: usize = self.cc.iter().map(|(n, v)| cut(n) + cut(v)).sum();
        let vars: usize = self.event_vars.iter().map(|(_, v)| cut(v)).sum();
        meta + fields + vars + 64
    }

    /// Like `capture`, into the buffers of an event the worker has finished
    /// with: no allocation on FreeSWITCH's thread, and no buffer freed across
    /// threads (which makes the two threads queue on the allocator's lock).
    pub fn capture_reusing(
        &self,
        spare: Option<Spare>,
        member_var: impl FnMut(&CStr) -> Option<String>,
    ) -> CapturedEvent {
        self.capture_into(spare.unwrap_or_default(), member_var)
    }

    /// Copies what the payload needs into an owned event. `member_var` reads
    /// one variable from the member's channel (None when absent or no session).
    pub fn capture(&self, member_var: impl FnMut(&CStr) -> Option<String>) -> CapturedEvent {
        self.capture_into(Spare::default(), member_var)
    }

    fn capture_into(
        &self,
        spare: Spare,
        mut member_var: impl FnMut(&CStr) -> Option<String>,
    ) -> CapturedEvent {
        let e = self.catalogue.entry(self.entry);
        let Spare {
            mut buf,
            mut fields,
        } = spare;
        buf.clear();
        fields.clear();
        // Sized for everything that may be copied in (variables grow it), so
        // that one event is one buffer.
        buf.reserve(self.capacity_hint());
        fields.reserve(self.cc.len() + e.vars.len());
        let mut ev = CapturedEvent {
            catalogue: self.catalogue.clone(),
            entry: self.entry,
            buf,
            fields,
            meta: Meta {
                timestamp_us: self.meta.timestamp.and_then(number),
                sequence: self.meta.sequence.and_then(number),
                ..Meta::default()
            },
        };
        ev.meta.host = self
            .meta
            .switchname
            .filter(|v| !v.is_empty())
            .or(self.meta.hostname)
            .map(|v| ev.push_raw(v));
        ev.meta.core_uuid = self.meta.core_uuid.map(|v| ev.push_raw(v));

        // The member variables, read once each, in the configured order.
        let from_session = e.vars_from_session();
        let mut vars: Vec<Option<String>> = (0..e.vars.len())
            .map(|i| {
                if from_session {
                    member_var(&e.vars[i]).map(bounded)
                } else {
                    self.event_vars
                        .iter()
                        .find(|(j, _)| *j == i)
                        .map(|(_, v)| owned_value(v))
                }
            })
            .collect();

        match e.def.seed_fields {
            Some(layout) => {
                for (k, f) in layout.iter().enumerate() {
                    let value = match f.source {
                        SeedSource::Header(h) => {
                            if let Some(raw) = self.header(h) {
                                let value = ev.push_raw(raw);
                                ev.fields.push(Field {
                                    key: Key::Seed(k as u16),
                                    value,
                                });
                            }
                            continue;
                        }
                        // Taken, so that it is not appended again below.
                        SeedSource::Var(name) => e.var_index(name).and_then(|i| vars[i].take()),
                    };
                    if let Some(v) = value {
                        let value = ev.push(&v);
                        ev.fields.push(Field {
                            key: Key::Seed(k as u16),
                            value,
                        });
                    }
                }
            }
            None => {
                for (name, value) in &self.cc {
                    let key = ev.push_raw(name);
                    let value = ev.push_raw(value);
                    ev.fields.push(Field {
                        key: Key::Header(key),
                        value,
                    });
                }
            }
        }
        for (i, v) in vars.into_iter().enumerate() {
            if let Some(v) = v {
                let value = ev.push(&v);
                ev.fields.push(Field {
                    key: Key::Var(i as u16),
                    value,
                });
            }
        }
        ev
    }
}

/// The buffers of a captured event, kept for the next one.
#[derive(Debug, Default)]
pub struct Spare {
    pub buf: String,
    pub fields: Vec<Field>,
}

impl Spare {
    /// Heap bytes held, to keep only modest buffers.
    pub fn bytes(&self) -> usize {
        self.buf.capacity() + self.fields.capacity() * std::mem::size_of::<Field>()
    }
}

/// A span of `CapturedEvent::buf`.
pub type Span = (u32, u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// Field `i` of the entry's seed layout.
    Seed(u16),
    /// A header, by its name as FreeSWITCH sent it (`CC-Foo-Bar`).
    Header(Span),
    /// Member variable `i` of the entry.
    Var(u16),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub key: Key,
    pub value: Span,
}

/// What the envelope needs besides the fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    pub timestamp_us: Option<u64>,
    pub sequence: Option<u64>,
    pub host: Option<Span>,
    pub core_uuid: Option<Span>,
}

/// An event copied out of FreeSWITCH, ready for the worker thread. It keeps
/// the catalogue it was captured with, so a reload never reinterprets it.
#[derive(Clone, Debug)]
pub struct CapturedEvent {
    pub catalogue: Arc<Catalogue>,
    pub entry: usize,
    /// Every captured name and value, each bounded and valid UTF-8.
    pub buf: String,
    /// In publishing order; absent sources are left out.
    pub fields: Vec<Field>,
    pub meta: Meta,
}

impl CapturedEvent {
    fn push(&mut self, s: &str) -> Span {
        let start = self.buf.len() as u32;
        self.buf.push_str(s);
        (start, self.buf.len() as u32)
    }

    /// Copies header bytes in as `owned_value` would, without a temporary
    /// String when they are valid UTF-8 (the usual case).
    fn push_raw(&mut self, raw: &[u8]) -> Span {
        let cut = &raw[..raw.len().min(MAX_VALUE_BYTES)];
        match String::from_utf8_lossy(cut) {
            std::borrow::Cow::Borrowed(s) => self.push(s),
            std::borrow::Cow::Owned(s) => self.push(&bounded(s)),
        }
    }

    pub fn text(&self, span: Span) -> &str {
        &self.buf[span.0 as usize..span.1 as usize]
    }

    pub fn name(&self) -> &str {
        &self.catalogue.entry(self.entry).name
    }

    pub fn action(&self) -> &'static str {
        self.catalogue.entry(self.entry).def.action
    }

    /// Every captured member variable, shown or kept for the state, by name.
    pub fn variables(&self) -> impl Iterator<Item = (&str, &str)> {
        let e = self.catalogue.entry(self.entry);
        self.fields.iter().filter_map(move |f| match f.key {
            Key::Var(i) => Some((e.var_name(i as usize), self.text(f.value))),
            _ => None,
        })
    }

    /// The fields the payload shows: all but the variables kept only for the state.
    pub fn shown_fields(&self) -> impl Iterator<Item = &Field> {
        let shown = self.catalogue.entry(self.entry).shown_vars;
        self.fields
            .iter()
            .filter(move |f| !matches!(f.key, Key::Var(i) if i as usize >= shown))
    }

    /// A field's key as published, written through `f` (a header's `-` become `_`).
    pub fn key_into(&self, key: Key, out: &mut String) {
        let e = self.catalogue.entry(self.entry);
        match key {
            Key::Seed(i) => out.push_str(e.def.seed_fields.map_or("", |l| l[i as usize].key)),
            Key::Header(s) => {
                out.extend(self.text(s).chars().map(|c| if c == '-' { '_' } else { c }))
            }
            Key::Var(i) => out.push_str(e.var_name(i as usize)),
        }
    }

    /// The value of header `CC-{name}`, wherever the layout put it.
    pub fn header(&self, name_without_prefix: &str) -> Option<&str> {
        let e = self.catalogue.entry(self.entry);
        self.fields.iter().find_map(|f| {
            let hit = match f.key {
                Key::Seed(i) => e.def.seed_fields.is_some_and(|l| {
                    matches!(l[i as usize].source, SeedSource::Header(h) if h == name_without_prefix)
                }),
                Key::Header(s) => {
                    let n = self.text(s);
                    n.len() == HEADER_PREFIX.len() + name_without_prefix.len()
                        && n.ends_with(name_without_prefix)
                }
                Key::Var(_) => false,
            };
            hit.then(|| self.text(f.value))
        })
    }

    /// Gives the event's buffers back for reuse.
    pub fn into_spare(self) -> Spare {
        Spare {
            buf: self.buf,
            fields: self.fields,
        }
    }

    /// Bytes this event holds on the heap, for the memory bound.
    pub fn heap_bytes(&self) -> usize {
        self.buf.capacity() + self.fields.capacity() * std::mem::size_of::<Field>()
    }
}

/// The headers of `cc_events test`'s synthetic event: marked as a test in
/// every name a subscriber sees (agent, queue, member) and by `CC-Test`.
pub fn test_headers(action: &str, timestamp_us: &str) -> Vec<(String, String)> {
    let mark = "cc_events-test";
    [
        ("Event-Name", "CUSTOM"),
        ("Event-Subclass", "callcenter::info"),
        ("Event-Date-Timestamp", timestamp_us),
        ("CC-Queue", mark),
        ("CC-Action", action),
        ("CC-Agent", mark),
        ("CC-Agent-Status", "Test"),
        ("CC-Agent-State", "Test"),
        ("CC-Agent-System", "single_box"),
        ("CC-Member-UUID", "00000000-0000-0000-0000-000000000000"),
        (
            "CC-Member-Session-UUID",
            "00000000-0000-0000-0000-000000000000",
        ),
        ("CC-Member-CID-Name", mark),
        ("CC-Member-CID-Number", "0000000000"),
        ("CC-Count", "0"),
        ("CC-Test", "true"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect()
}

fn number(raw: &[u8]) -> Option<u64> {
    std::str::from_utf8(raw).ok()?.trim().parse().ok()
}

/// Header bytes as a bounded, valid UTF-8 string (invalid sequences become U+FFFD).
pub fn owned_value(raw: &[u8]) -> String {
    let cut = &raw[..raw.len().min(MAX_VALUE_BYTES)];
    bounded(String::from_utf8_lossy(cut).into_owned())
}

/// Cuts a string to `MAX_VALUE_BYTES` at a character boundary.
pub fn bounded(mut s: String) -> String {
    if s.len() > MAX_VALUE_BYTES {
        let mut end = MAX_VALUE_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}
