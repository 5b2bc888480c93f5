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
