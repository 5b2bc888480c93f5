//! The payload formats, behind one small trait. Formatting runs on the worker
//! thread, never on FreeSWITCH's.

pub mod envelope;
pub mod seed;

use crate::callcenter::CapturedEvent;

pub trait Format: Send + Sync {
    /// Appends the event's payload to `out`.
    fn write(&self, ev: &CapturedEvent, out: &mut Vec<u8>);
}

/// The `format` setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The seed document's format, byte for byte (the default).
    Seed,
    /// One JSON object with the event's metadata and its fields under `data`.
    Envelope,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "seed" => Some(Kind::Seed),
            "envelope" => Some(Kind::Envelope),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Seed => "seed",
            Kind::Envelope => "envelope",
        }
    }

    pub fn format(self) -> &'static dyn Format {
        match self {
            Kind::Seed => &seed::Seed,
            Kind::Envelope => &envelope::Envelope,
        }
    }
}

/// Writes a JSON string (quotes and escapes included).
pub(crate) fn json_str(out: &mut Vec<u8>, s: &str) {
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}
