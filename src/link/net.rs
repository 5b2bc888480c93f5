//! What every transport to Redis shares: waiting for a socket in short slices
//! bounded by a deadline and by the shutdown deadline, and what such a wait
//! (or the socket call behind it) can end with. Plain TCP and TLS both wait
//! through here, so a hung Redis can never hold the worker (or `unload`)
//! longer than asked, whatever the transport.

use std::io;
use std::time::{Duration, Instant};

use crate::fs::wait::{self, Want};
use crate::stop::Stop;

/// The longest single wait, so that a shutdown request is seen within it.
const SLICE: Duration = Duration::from_millis(50);

/// Why a wait ended without the socket being ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    TimedOut,
    ShuttingDown,
}

/// How a connect, read or write on a transport failed.
#[derive(Debug)]
pub enum Io {
    Cut(Cut),
    Failed(io::Error),
    /// A TLS failure, already explained for the operator (see `tls.rs`).
    Tls(String),
}

/// Waits until `fd` is ready for `want`, by `until` or the shutdown deadline.
pub fn wait_for(fd: i32, want: Want, until: Instant, stop: &Stop) -> Result<(), Io> {
    loop {
        if stop.passed() {
            return Err(Io::Cut(Cut::ShuttingDown));
        }
        let now = Instant::now();
        if now >= until {
            return Err(Io::Cut(Cut::TimedOut));
        }
        if wait::ready(fd, want, (until - now).min(SLICE)).map_err(Io::Failed)? {
            return Ok(());
        }
    }
}
