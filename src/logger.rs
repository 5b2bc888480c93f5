//! Log levels and the log function the pure parts take, so they can log
//! through FreeSWITCH in the module and into a buffer in unit tests. Each line
//! carries the file and line of the code that logged it.

use std::panic::Location;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Notice,
    Warning,
    Error,
}

type Sink = dyn Fn(Level, &str, &'static Location<'static>) + Send + Sync;

#[derive(Clone)]
pub struct LogFn(Arc<Sink>);

impl LogFn {
    pub fn new(
        f: impl Fn(Level, &str, &'static Location<'static>) + Send + Sync + 'static,
    ) -> Self {
        LogFn(Arc::new(f))
    }

    /// Logs one line, attributed to the caller's file and line.
    #[track_caller]
    pub fn log(&self, level: Level, msg: &str) {
        (self.0)(level, msg, Location::caller());
    }
}

/// The message a caught panic carries, for its log line.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
