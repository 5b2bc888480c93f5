//! One link to Redis behind one small interface: connect, and send a batch of
//! commands and learn which replies succeeded. The worker knows nothing of the
//! topology; a standalone server is the only one today (Sentinel and Cluster
//! are other implementations of [`Link`]).

pub mod resp;
pub mod standalone;

use std::time::Instant;

/// Why a connect or an exchange did not fully succeed. Each message says what
/// the operator can do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Redis answered with an error reply (NOPERM, BUSY, LOADING, OOM, ...).
    /// The connection itself is fine.
    Refused(String),
    /// Redis accepted the connection but did not answer in time.
    Hung(String),
    /// No connection: refused, reset, closed, unresolvable.
    Broken(String),
}

impl Failure {
    pub fn message(&self) -> &str {
        match self {
            Failure::Refused(m) | Failure::Hung(m) | Failure::Broken(m) => m,
        }
    }
}

/// The outcome of one batch: how many replies, from the first, succeeded.
/// Replies after a failed one do not count, even if they succeeded: the
/// commands from the failed one on are sent again, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange {
    pub ok: usize,
    pub failure: Option<Failure>,
}

pub trait Link: Send {
    /// Connects and authenticates, or fails, by `until` (or the shutdown deadline).
    fn connect(&mut self, until: Instant) -> Result<(), Failure>;
    fn is_connected(&self) -> bool;
    fn close(&mut self);
    /// True when the server has closed this (idle) connection: Redis's
    /// `timeout`, a restart, or a proxy. Never blocks.
    fn closed_by_peer(&self) -> bool;
    /// Writes `commands` (RESP, `replies` of them) and reads their replies in
    /// order, by `until` (or the shutdown deadline). A hung or broken link is
    /// closed; an error reply leaves it open.
    fn exchange(&mut self, commands: &[u8], replies: usize, until: Instant) -> Exchange;
    /// Where it is connected, for status and log lines. Never a password.
    fn describe(&self) -> String;
}
