//! Logging through `switch_log_printf`, so lines land in FreeSWITCH's console and log files.

use std::ffi::CString;
use std::panic::Location;

use crate::ffi;
use crate::logger::{Level, LogFn};

fn level(l: Level) -> ffi::switch_log_level_t {
    match l {
        Level::Debug => ffi::switch_log_level_t_SWITCH_LOG_DEBUG,
        Level::Info => ffi::switch_log_level_t_SWITCH_LOG_INFO,
        Level::Notice => ffi::switch_log_level_t_SWITCH_LOG_NOTICE,
        Level::Warning => ffi::switch_log_level_t_SWITCH_LOG_WARNING,
        Level::Error => ffi::switch_log_level_t_SWITCH_LOG_ERROR,
    }
}

/// Logs one line, attributed to the caller. Safe from any thread, including
/// FreeSWITCH's event threads.
#[track_caller]
pub fn log(l: Level, msg: &str) {
    log_at(l, msg, Location::caller());
}

/// The log function handed to the pure parts.
pub fn logger() -> LogFn {
    LogFn::new(log_at)
}

fn log_at(l: Level, msg: &str, at: &'static Location<'static>) {
    let mut text = msg.replace('\0', "\\0");
    text.push('\n');
    let (Ok(text), Ok(file)) = (CString::new(text), CString::new(at.file())) else {
        return;
    };
    // SAFETY: every pointer is a NUL-terminated string that outlives the call,
    // and the message goes through "%s", never as the format itself.
    unsafe {
        ffi::switch_log_printf(
            ffi::switch_text_channel_t_SWITCH_CHANNEL_ID_LOG,
            file.as_ptr(),
            c"mod_cc_events".as_ptr(),
            at.line() as i32,
            std::ptr::null(),
            level(l),
            c"%s".as_ptr(),
            text.as_ptr(),
        );
    }
}
