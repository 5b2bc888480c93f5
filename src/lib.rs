//! mod_cc_events: streams mod_callcenter's `callcenter::info` events to Redis.
//!
//! This file holds only what FreeSWITCH calls: the module table, load,
//! shutdown, the event callback and the API function. Each one catches panics
//! so that none unwinds into C.

pub mod backoff;
pub mod callcenter;
pub mod catalogue;
pub mod command;
pub mod config;
mod ffi;
pub mod format;
mod fs;
mod health;
mod link;
pub mod logger;
mod module;
pub mod publisher;
mod queue;
pub mod routes;
mod spares;
pub mod state;
pub mod stats;
mod stop;
mod worker;

use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use logger::Level;

/// What FreeSWITCH looks up after `dlopen`.
#[no_mangle]
#[allow(non_upper_case_globals)]
pub static mod_cc_events_module_interface: ffi::switch_loadable_module_function_table_t =
    ffi::switch_loadable_module_function_table_t {
        switch_api_version: ffi::SWITCH_API_VERSION as i32,
        load: Some(mod_cc_events_load),
        shutdown: Some(mod_cc_events_shutdown),
        runtime: None,
        flags: 0,
    };

/// Runs `f`, turning a panic into one error line and `fallback`.
fn guarded<T>(what: &str, fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let why = logger::panic_message(&*payload);
        // Logging itself must not panic again.
        let _ = catch_unwind(|| {
            fs::log::log(
                Level::Error,
                &format!("mod_cc_events: panic in {what}: {why}"),
            )
        });
        fallback
    })
}

unsafe extern "C" fn mod_cc_events_load(
    module_interface: *mut *mut ffi::switch_loadable_module_interface_t,
    pool: *mut ffi::switch_memory_pool_t,
) -> ffi::switch_status_t {
    let status = guarded("load", fs::FALSE, || {
        if module_interface.is_null() {
            return fs::FALSE;
        }
        // SAFETY: FreeSWITCH passes a valid out-pointer and the module's pool.
        let mi = unsafe {
            ffi::switch_loadable_module_create_module_interface(pool, module::MODULE_NAME.as_ptr())
        };
        if mi.is_null() {
            return fs::FALSE;
        }
        // SAFETY: module_interface is valid for writing (checked non-null above).
        unsafe { *module_interface = mi };
        if module::start(on_event).is_err() {
            return fs::FALSE;
        }
        // SAFETY: mi is the interface just created for this load.
        let registered = unsafe {
            fs::api::register(
                mi,
                c"cc_events",
                c"mod_cc_events: Redis publisher for callcenter events",
                c"status [json] | reload | test [<CC-Action>]",
                api_cc_events,
            )
        };
        if !registered {
            fs::log::log(Level::Warning, "could not register the cc_events command");
        }
        module::add_completions();
        fs::SUCCESS
    });
    if status != fs::SUCCESS {
        // A failed load is unloaded without a shutdown call, so nothing of ours
        // may stay bound or running (this matters after a panic past start).
        guarded("load cleanup", (), module::stop);
    }
    status
}

unsafe extern "C" fn mod_cc_events_shutdown() -> ffi::switch_status_t {
    // After a panic here our callback or thread may still exist: NOUNLOAD
    // keeps FreeSWITCH from unmapping the code under them.
    guarded(
        "shutdown",
        ffi::switch_status_t_SWITCH_STATUS_NOUNLOAD,
        || {
            module::stop();
            fs::SUCCESS
        },
    )
}

unsafe extern "C" fn on_event(event: *mut ffi::switch_event_t) {
    guarded("the event callback", (), || {
        // SAFETY: FreeSWITCH passes a valid event that lives for this call.
        let Some(ev) = (unsafe { fs::event::Event::from_ptr(event) }) else {
            return;
        };
        let publisher = ev.bind_user_data().cast::<publisher::Publisher>();
        // SAFETY: user_data is the boxed Publisher that fs::event::Binding owns; it
        // is freed only after switch_event_unbind returns, so it outlives every callback.
        if let Some(publisher) = unsafe { publisher.as_ref() } {
            module::handle_event(&ev, publisher);
        }
    })
}

unsafe extern "C" fn api_cc_events(
    cmd: *const c_char,
    _session: *mut ffi::switch_core_session_t,
    stream: *mut ffi::switch_stream_handle_t,
) -> ffi::switch_status_t {
    guarded("the cc_events command", fs::SUCCESS, || {
        let args = if cmd.is_null() {
            String::new()
        } else {
            // SAFETY: non-null cmd is a NUL-terminated string for this call.
            unsafe { CStr::from_ptr(cmd) }
                .to_string_lossy()
                .into_owned()
        };
        let out = module::api_command(&args);
        // SAFETY: stream is the handle FreeSWITCH passed to this call.
        unsafe { fs::api::Stream::from_ptr(stream) }.write(&out);
        fs::SUCCESS
    })
}
