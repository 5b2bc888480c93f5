//! Log levels and the log function type the pure parts take, so they can log
//! through FreeSWITCH in the module and into a buffer in unit tests.

use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Notice,
    Warning,
    Error,
}

pub type LogFn = Arc<dyn Fn(Level, &str) + Send + Sync>;

/// The message a caught panic carries, for its log line.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
