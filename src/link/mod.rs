//! One link to Redis behind one small interface: connect, and send a batch of
//! commands and learn which replies succeeded. The worker knows nothing of the
//! topology: [`for_settings`] picks the implementation (a standalone server, or
//! the master that Sentinel names; Cluster is another implementation of [`Link`]).

pub mod cluster;
pub mod net;
pub mod resp;
pub mod sentinel;
pub mod standalone;
pub mod tls;

use std::sync::Arc;
use std::time::Instant;

use crate::config::{RedisSettings, Topology};
use crate::stop::Stop;

/// The link the settings ask for.
pub fn for_settings(settings: &RedisSettings, stop: Arc<Stop>) -> Box<dyn Link> {
    match &settings.topology {
        Topology::Standalone => Box::new(standalone::Standalone::new(settings.clone(), stop)),
        Topology::Sentinel(_) => Box::new(sentinel::Sentinel::new(settings.clone(), stop)),
        Topology::Cluster(_) => Box::new(cluster::Cluster::new(settings.clone(), stop)),
    }
}

/// Reads the files the settings name (TLS's CA, certificate and key) once,
/// so that a missing or invalid one fails the load or the reload at once,
/// naming its param and path, instead of failing every connect.
pub fn check_files(settings: &RedisSettings) -> Result<(), tls::FileError> {
    match &settings.tls {
        Some(t) => tls::TlsClient::new(t).map(|_| ()),
        None => Ok(()),
    }
}

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
    /// The first half of an exchange, so that the worker can format the
    /// next events while Redis runs these: writes `commands` and returns
    /// None, the replies to be read by [`Link::read`]. A link that cannot
    /// split an exchange (Cluster, which routes and retries each command)
    /// does all of it here and returns its outcome.
    fn write(&mut self, commands: &[u8], replies: usize, until: Instant) -> Option<Exchange> {
        Some(self.exchange(commands, replies, until))
    }
    /// The second half: the replies of what [`Link::write`] wrote.
    fn read(&mut self, replies: usize, until: Instant) -> Exchange {
        let _ = (replies, until);
        Exchange {
            ok: 0,
            failure: Some(Failure::Broken(
                "mod_cc_events bug: replies read from a link that wrote none".into(),
            )),
        }
    }
    /// Where it is connected, for status and log lines. Never a password.
    fn describe(&self) -> String;
}
