//! Reading channel variables of a live session by its UUID.

use std::ffi::CStr;

use crate::ffi;

/// A located session's channel; the session's read lock is held while this exists.
pub struct Channel {
    session: *mut ffi::switch_core_session_t,
    channel: *mut ffi::switch_channel_t,
}

impl Channel {
    /// Finds the session and read-locks it. None when it is gone (a normal case).
    pub fn locate(uuid: &[u8]) -> Option<Channel> {
        // A UUID is 36 bytes; anything that does not fit cannot name a session.
        let mut buf = [0u8; 64];
        if uuid.is_empty() || uuid.len() >= buf.len() || uuid.contains(&0) {
            return None;
        }
        buf[..uuid.len()].copy_from_slice(uuid);
        // SAFETY: buf is NUL-terminated; file/func are static strings.
        let session = unsafe {
            ffi::switch_core_session_perform_locate(
                buf.as_ptr().cast(),
                c"mod_cc_events.rs".as_ptr(),
                c"member_session".as_ptr(),
                line!() as i32,
            )
        };
        if session.is_null() {
            return None;
        }
        // SAFETY: session is locked and valid until rwunlock in Drop.
        let channel = unsafe { ffi::switch_core_session_get_channel(session) };
        Some(Channel { session, channel })
    }

    /// Calls `f` with the variable's bytes, if set. The bytes are only valid inside `f`.
    pub fn variable<R>(&self, name: &CStr, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        if self.channel.is_null() {
            return None;
        }
        // SAFETY: the channel belongs to the session we hold locked. dup = TRUE makes
        // FreeSWITCH copy the value into the session's pool while it holds the
        // channel's profile mutex; with FALSE the pointer would be into the live
        // variable, which another thread may replace (and free) at any moment.
        let v = unsafe {
            ffi::switch_channel_get_variable_dup(
                self.channel,
                name.as_ptr(),
                ffi::switch_bool_t_SWITCH_TRUE,
                -1,
            )
        };
        if v.is_null() {
            return None;
        }
        // SAFETY: non-null result is a NUL-terminated copy in the session's pool,
        // which lives at least as long as our read lock on the session.
        Some(f(unsafe { CStr::from_ptr(v) }.to_bytes()))
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        // SAFETY: session was returned read-locked by switch_core_session_perform_locate.
        unsafe { ffi::switch_core_session_rwunlock(self.session) };
    }
}
