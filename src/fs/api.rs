//! fs_cli commands: the API interface, its output stream and tab completion.

use std::ffi::{CStr, CString};

use crate::ffi;

pub type ApiFunction = unsafe extern "C" fn(
    *const std::ffi::c_char,
    *mut ffi::switch_core_session_t,
    *mut ffi::switch_stream_handle_t,
) -> ffi::switch_status_t;

/// Registers an API command on the module interface created at load.
/// The strings are static because FreeSWITCH keeps the pointers.
///
/// # Safety
/// `module_interface` must be the interface FreeSWITCH gave this module's load.
pub unsafe fn register(
    module_interface: *mut ffi::switch_loadable_module_interface_t,
    name: &'static CStr,
    desc: &'static CStr,
    syntax: &'static CStr,
    function: ApiFunction,
) -> bool {
    // SAFETY: the caller guarantees the module interface; FreeSWITCH returns a zeroed
    // switch_api_interface_t from the module's pool, or NULL.
    let api = unsafe {
        ffi::switch_loadable_module_create_interface(
            module_interface,
            ffi::switch_module_interface_name_t_SWITCH_API_INTERFACE,
        )
    }
    .cast::<ffi::switch_api_interface_t>();
    // SAFETY: api is null or a valid, exclusively ours, interface struct.
    let Some(api) = (unsafe { api.as_mut() }) else {
        return false;
    };
    api.interface_name = name.as_ptr();
    api.desc = desc.as_ptr();
    api.syntax = syntax.as_ptr();
    api.function = Some(function);
    true
}

/// `switch_console_set_complete("add ...")` / `("del ...")`.
pub fn set_complete(line: &CStr) {
    // SAFETY: line is NUL-terminated; FreeSWITCH copies it.
    unsafe { ffi::switch_console_set_complete(line.as_ptr()) };
}

/// The output stream of one API call.
pub struct Stream {
    raw: *mut ffi::switch_stream_handle_t,
}

impl Stream {
    /// # Safety
    /// `raw` must be null or the stream handle FreeSWITCH passed to this API call.
    pub unsafe fn from_ptr(raw: *mut ffi::switch_stream_handle_t) -> Stream {
        Stream { raw }
    }

    pub fn write(&mut self, text: &str) {
        // SAFETY: raw is null or valid for this call.
        let Some(stream) = (unsafe { self.raw.as_mut() }) else {
            return;
        };
        let Some(write) = stream.write_function else {
            return;
        };
        let Ok(text) = CString::new(text.replace('\0', "\\0")) else {
            return;
        };
        // SAFETY: write_function is variadic printf-style; the text goes through "%s".
        unsafe { write(stream, c"%s".as_ptr(), text.as_ptr()) };
    }
}
