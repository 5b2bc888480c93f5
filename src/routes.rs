//! What one event sends: PUBLISH on its (templated) channel and on the extra
//! fixed channel, and XADD to the (templated) stream, as RESP commands in the
//! order they go into the pipelined batch. Pure.

use crate::callcenter::CapturedEvent;
use crate::link::resp;

/// What a placeholder with no value becomes: never an empty segment.
pub const MISSING: &str = "_";

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Queue,
    Agent,
    Event,
    Action,
    Host,
}

/// A channel or key name with `{queue}`, `{agent}`, `{event}`, `{action}` and `{host}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl Template {
    /// A name whose every `{...}` is a placeholder: anything else is a typo.
    pub fn parse(s: &str) -> Result<Template, String> {
        Self::parse_with(s, false)
    }

    /// With `hash_tags` (Redis Cluster), a `{...}` that is not a placeholder
    /// is kept as it is: it is a hash tag, which decides the key's slot.
    pub fn parse_with(s: &str, hash_tags: bool) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = s;
        while let Some(open) = rest.find('{') {
            text.push_str(&rest[..open]);
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("'{{' without '}}' in '{s}'"))?;
            let part = match &rest[open + 1..open + close] {
                "queue" => Part::Queue,
                "agent" => Part::Agent,
                "event" => Part::Event,
                "action" => Part::Action,
                "host" => Part::Host,
                _ if hash_tags => {
                    text.push_str(&rest[open..=open + close]);
                    rest = &rest[open + close + 1..];
                    continue;
                }
                other => {
                    return Err(format!(
                        "unknown placeholder '{{{other}}}'; use {{queue}}, {{agent}}, {{event}}, {{action}} or {{host}} (a Redis Cluster hash tag such as {{cc}} needs cluster=true)"
                    ))
                }
            };
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(part);
            rest = &rest[open + close + 1..];
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Template {
            source: s.to_string(),
            parts,
        })
    }

    /// The Redis Cluster hash tag of every name this renders, when it is the
    /// same whatever the placeholders hold: placeholders stand in without
    /// braces, as their values are written (`<host>`).
    pub fn hash_tag(&self) -> Option<String> {
        let mut shape = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => shape.push_str(t),
                Part::Queue => shape.push_str("<queue>"),
                Part::Agent => shape.push_str("<agent>"),
                Part::Event => shape.push_str("<event>"),
                Part::Action => shape.push_str("<action>"),
                Part::Host => shape.push_str("<host>"),
            }
        }
        hash_tag(&shape).map(str::to_string)
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn is_fixed(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }

    /// The name with only `{host}` known (no event): None when it has other placeholders.
    pub fn render_host(&self, host: &str) -> Option<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Host if !host.is_empty() => out.push_str(host),
                Part::Host => out.push_str(MISSING),
                _ => return None,
            }
        }
        Some(out)
    }

    pub fn render(&self, ev: &CapturedEvent, out: &mut String) {
        out.clear();
        for p in &self.parts {
            let value = match p {
                Part::Text(t) => Some(t.as_str()),
                Part::Queue => ev.header("Queue"),
                Part::Agent => ev.header("Agent"),
                Part::Event => Some(ev.name()),
                Part::Action => Some(ev.action()),
                Part::Host => ev.meta.host.map(|s| ev.text(s)),
            };
            match value {
                Some(v) if !v.is_empty() => out.push_str(v),
                _ => out.push_str(MISSING),
            }
        }
    }
}

/// The part of a key that Redis Cluster hashes: the text between the first
/// `{` and the first `}` after it, when that is not empty (else the whole key).
pub fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let close = key[open + 1..].find('}')?;
    Some(&key[open + 1..open + 1 + close]).filter(|t| !t.is_empty())
}

/// Where events go, from the settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routes {
    /// None: Pub/Sub is off (`channel` empty).
    pub channel: Option<Template>,
    /// Every event is also published here (`extra-channel`).
    pub extra_channel: Option<String>,
    /// None: no stream.
    pub stream: Option<Template>,
    pub stream_maxlen: u64,
    /// SPUBLISH (Redis 7 sharded Pub/Sub, for Cluster) instead of PUBLISH.
    pub sharded: bool,
}

impl Default for Routes {
    fn default() -> Self {
        Routes {
            channel: Template::parse("callcenter_events").ok(),
            extra_channel: None,
            stream: None,
            stream_maxlen: 100_000,
            sharded: false,
        }
    }
}

impl Routes {
    /// `channel 'x' [+ 'y'] [stream 'z' maxlen N]`, for the load line and status.
    pub fn describe(&self) -> String {
        let mut s = match &self.channel {
            Some(c) => format!("channel '{}'", c.as_str()),
            None => "channel off".to_string(),
        };
        if let Some(x) = &self.extra_channel {
            s.push_str(&format!(" + '{x}'"));
        }
        if let Some(st) = &self.stream {
            s.push_str(&format!(
                " stream '{}' maxlen ~{}",
                st.as_str(),
                self.stream_maxlen
            ));
        }
        s
    }

    /// The `channel:` (and `stream:`) lines of `cc_events status`.
    pub fn status_lines(&self) -> String {
        let mut s = format!(
            "channel:    {}",
            self.channel.as_ref().map_or("(off)", |c| c.as_str())
        );
        if let Some(x) = &self.extra_channel {
            s.push_str(&format!(" + {x}"));
        }
        s.push('\n');
        if let Some(st) = &self.stream {
            s.push_str(&format!(
                "stream:     {} (MAXLEN ~{})\n",
                st.as_str(),
                self.stream_maxlen
            ));
        }
        s
    }

    /// The PUBLISH commands of one event, appended to `out`; returns how many.
    pub fn publish(&self, ev: &CapturedEvent, payload: &[u8], out: &mut Vec<u8>) -> usize {
        let mut n = 0;
        let mut name = String::with_capacity(64);
        let publish: &[u8] = if self.sharded {
            b"SPUBLISH"
        } else {
            b"PUBLISH"
        };
        if let Some(ch) = &self.channel {
            ch.render(ev, &mut name);
            resp::command(out, &[publish, name.as_bytes(), payload]);
            n += 1;
        }
        if let Some(extra) = &self.extra_channel {
            if self.channel.is_none() || extra != &name {
                resp::command(out, &[publish, extra.as_bytes(), payload]);
                n += 1;
            }
        }
        n
    }

    /// The stream entry of one event (its key, and what its arguments need).
    pub fn stream_entry(&self, ev: &CapturedEvent) -> Option<StreamEntry> {
        let stream = self.stream.as_ref()?;
        let mut key = String::with_capacity(64);
        stream.render(ev, &mut key);
        Some(StreamEntry {
            key,
            maxlen: self.stream_maxlen.to_string(),
            sequence: ev.meta.sequence.map(|s| s.to_string()).unwrap_or_default(),
        })
    }

    /// Appends the event's commands to `out` and returns how many there are
    /// (each gets one reply).
    pub fn commands(&self, ev: &CapturedEvent, payload: &[u8], out: &mut Vec<u8>) -> usize {
        let mut n = self.publish(ev, payload, out);
        if let Some(entry) = self.stream_entry(ev) {
            let mut args: Vec<&[u8]> = vec![b"XADD", entry.key.as_bytes()];
            args.extend(entry.args(ev, Some(payload)));
            resp::command(out, &args);
            n += 1;
        }
        n
    }
}

/// What one event's XADD needs that is not in the event itself.
pub struct StreamEntry {
    pub key: String,
    maxlen: String,
    sequence: String,
}

impl StreamEntry {
    /// The arguments after the key, borrowed from the event and from `self`.
    /// `payload` None: an action only the state mirror captures, whose entry
    /// carries the state change alone.
    pub fn args<'a>(&'a self, ev: &'a CapturedEvent, payload: Option<&'a [u8]>) -> Vec<&'a [u8]> {
        let core = ev.meta.core_uuid.map_or("", |s| ev.text(s));
        let mut args: Vec<&[u8]> = Vec::with_capacity(16);
        args.extend_from_slice(&[
            b"MAXLEN",
            b"~",
            self.maxlen.as_bytes(),
            b"*",
            b"event",
            ev.name().as_bytes(),
            b"action",
            ev.action().as_bytes(),
            b"sequence",
            self.sequence.as_bytes(),
            b"core_uuid",
            core.as_bytes(),
        ]);
        if let Some(p) = payload {
            args.push(b"payload");
            args.push(p);
        }
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callcenter::scan;
    use crate::catalogue::{Catalogue, EventSettings, Selection};
    use std::sync::Arc;

    fn event(headers: &[(&'static [u8], &'static [u8])]) -> CapturedEvent {
        let cat = Arc::new(Catalogue::new(&EventSettings {
            selection: Selection::All,
            ..EventSettings::default()
        }));
        scan(&cat, headers.iter().copied())
            .unwrap()
            .capture(|_| None)
    }

    #[test]
    fn placeholders_fill_in_and_missing_values_become_an_underscore() {
        let ev = event(&[
            (b"FreeSWITCH-Switchname", b"fs1"),
            (b"CC-Queue", b"sales@x"),
            (b"CC-Action", b"members-count"),
        ]);
        let t = Template::parse("cc:{host}:{queue}:{agent}:{event}:{action}").unwrap();
        let mut out = String::new();
        t.render(&ev, &mut out);
        assert_eq!(out, "cc:fs1:sales@x:_:Members-Count:members-count");
        assert!(!t.is_fixed());
        assert!(Template::parse("callcenter_events").unwrap().is_fixed());
    }

    #[test]
    fn unknown_or_unclosed_placeholders_are_errors() {
        assert!(Template::parse("cc:{queu}")
            .unwrap_err()
            .contains("unknown placeholder '{queu}'"));
        assert!(Template::parse("cc:{queue").is_err());
    }

    #[test]
    fn with_cluster_other_braces_are_hash_tags_kept_as_written() {
        let t = Template::parse_with("{cc}:{host}:stream", true).unwrap();
        let ev = event(&[
            (b"FreeSWITCH-Switchname", b"fs1"),
            (b"CC-Action", b"members-count"),
        ]);
        let mut out = String::new();
        t.render(&ev, &mut out);
        assert_eq!(out, "{cc}:fs1:stream");
        assert_eq!(t.render_host("fs1").as_deref(), Some("{cc}:fs1:stream"));
        assert_eq!(t.hash_tag().as_deref(), Some("cc"));
        assert!(Template::parse_with("{cc}:events", true)
            .unwrap()
            .is_fixed());
        // A placeholder is never a tag: its value has no braces.
        let t = Template::parse_with("{host}:{cc}", true).unwrap();
        assert_eq!(t.hash_tag().as_deref(), Some("cc"));
        assert_eq!(
            Template::parse_with("{host}:s", true).unwrap().hash_tag(),
            None
        );
        // Without cluster a tag is still a typo.
        let e = Template::parse("{cc}:events").unwrap_err();
        assert!(
            e.contains("unknown placeholder '{cc}'") && e.contains("cluster=true"),
            "{e}"
        );
    }

    #[test]
    fn the_hash_tag_is_what_redis_hashes() {
        assert_eq!(hash_tag("{cc}:state"), Some("cc"));
        assert_eq!(hash_tag("a{b}c{d}"), Some("b"));
        assert_eq!(
            hash_tag("{}x{y}"),
            None,
            "an empty first tag hashes the whole key"
        );
        assert_eq!(hash_tag("{a"), None);
        assert_eq!(hash_tag("plain"), None);
        assert_eq!(hash_tag("x{{a}}"), Some("{a"));
    }

    #[test]
    fn one_event_publishes_on_its_channel_the_extra_one_and_appends_to_the_stream() {
        let ev = event(&[
            (b"CC-Queue", b"q"),
            (b"CC-Action", b"members-count"),
            (b"Event-Sequence", b"7"),
        ]);
        let routes = Routes {
            channel: Template::parse("cc:{queue}").ok(),
            extra_channel: Some("callcenter_events".into()),
            stream: Template::parse("ccs").ok(),
            stream_maxlen: 1000,
            sharded: false,
        };
        let mut out = Vec::new();
        assert_eq!(routes.commands(&ev, b"{}", &mut out), 3);
        let text = String::from_utf8(out).unwrap();
        let publish = text.find("PUBLISH\r\n$4\r\ncc:q").unwrap();
        let extra = text.find("callcenter_events").unwrap();
        let xadd = text
            .find("XADD\r\n$3\r\nccs\r\n$6\r\nMAXLEN\r\n$1\r\n~\r\n$4\r\n1000")
            .unwrap();
        assert!(publish < extra && extra < xadd, "{text}");
        assert!(text.contains("sequence\r\n$1\r\n7"));
        // Pub/Sub off: only the stream.
        let off = Routes {
            channel: None,
            ..routes
        };
        let mut out = Vec::new();
        assert_eq!(
            off.commands(&ev, b"{}", &mut out),
            2,
            "extra channel and stream"
        );
    }
}
