//! What the state mirror asks of FreeSWITCH, from the worker thread:
//! mod_callcenter's `callcenter_config` lists through mod_commands' `json` API,
//! a member's channel variables, and this switch's name and core UUID.

use std::ffi::{CStr, CString};

use crate::ffi;
use crate::fs::session::Channel;

/// A `SWITCH_STANDARD_STREAM`: FreeSWITCH's own writer grows `data` with
/// realloc, so it starts from malloc and ends with free.
struct StandardStream {
    handle: ffi::switch_stream_handle_t,
}

const CHUNK: usize = 1024;

impl StandardStream {
    fn new() -> Option<StandardStream> {
        // SAFETY: plain malloc of CHUNK bytes, zeroed below; freed in Drop.
        let data = unsafe { libc::calloc(1, CHUNK) };
        if data.is_null() {
            return None;
        }
        // SAFETY: an all-zero stream handle is its initial state (the macro memsets it).
        let mut handle: ffi::switch_stream_handle_t = unsafe { std::mem::zeroed() };
        handle.data = data;
        handle.end = data;
        handle.data_size = CHUNK as _;
        handle.alloc_len = CHUNK as _;
        handle.alloc_chunk = CHUNK as _;
        handle.write_function = Some(ffi::switch_console_stream_write);
        handle.raw_write_function = Some(ffi::switch_console_stream_raw_write);
        Some(StandardStream { handle })
    }

    fn text(&self) -> String {
        if self.handle.data.is_null() {
            return String::new();
        }
        // SAFETY: FreeSWITCH's stream writer keeps data NUL-terminated.
        unsafe { CStr::from_ptr(self.handle.data.cast()) }
            .to_string_lossy()
            .into_owned()
    }
}

impl Drop for StandardStream {
    fn drop(&mut self) {
        // SAFETY: data came from calloc and may have been realloc'ed by the writer.
        unsafe { libc::free(self.handle.data) };
    }
}

/// `json {"command":"callcenter_config","data":{"arguments":"<args>"}}`.
pub fn callcenter_config(args: &str) -> Result<String, String> {
    let request = serde_json::json!({
        "command": "callcenter_config",
        "data": {"arguments": args},
    })
    .to_string();
    let request = CString::new(request).map_err(|_| "a NUL in the request".to_string())?;
    let mut stream = StandardStream::new().ok_or("out of memory")?;
    // SAFETY: both strings are NUL-terminated and live across the call; the
    // stream is a standard stream FreeSWITCH writes through its own functions.
    let status = unsafe {
        ffi::switch_api_execute(
            c"json".as_ptr(),
            request.as_ptr(),
            std::ptr::null_mut(),
            &mut stream.handle,
        )
    };
    let reply = stream.text();
    if status != ffi::switch_status_t_SWITCH_STATUS_SUCCESS || !reply.trim_start().starts_with('{')
    {
        let reply = reply.trim();
        return Err(format!(
            "FreeSWITCH's json API did not answer ({}): load mod_commands and mod_callcenter",
            if reply.is_empty() { "no reply" } else { reply }
        ));
    }
    Ok(reply)
}

/// The named channel variables of a live session, those that are set.
pub fn member_vars(session_uuid: &str, names: &[String]) -> Vec<(String, String)> {
    let Some(channel) = Channel::locate(session_uuid.as_bytes()) else {
        return Vec::new();
    };
    names
        .iter()
        .filter_map(|n| {
            let c = CString::new(n.as_str()).ok()?;
            let v = channel.variable(&c, crate::callcenter::owned_value)?;
            Some((n.clone(), v))
        })
        .collect()
}

/// (switchname, core UUID).
pub fn identity() -> (String, String) {
    let read = |p: *const std::ffi::c_char| {
        if p.is_null() {
            String::new()
        } else {
            // SAFETY: FreeSWITCH returns static, NUL-terminated runtime strings.
            unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
        }
    };
    // SAFETY: both take no arguments and return runtime-owned strings.
    let (name, uuid) = unsafe {
        (
            ffi::switch_core_get_switchname(),
            ffi::switch_core_get_uuid(),
        )
    };
    (read(name), read(uuid))
}
