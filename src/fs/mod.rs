//! Thin safe wrappers over the FreeSWITCH core functions the module imports.
//! Together with `lib.rs` this is the only code with `unsafe`.

pub mod api;
pub mod callcenter_api;
pub mod event;
pub mod log;
pub mod resolve;
pub mod session;
pub mod thread;
pub mod wait;
pub mod xml;

use crate::ffi;

/// The status codes the module returns to FreeSWITCH.
pub const SUCCESS: ffi::switch_status_t = ffi::switch_status_t_SWITCH_STATUS_SUCCESS;
pub const FALSE: ffi::switch_status_t = ffi::switch_status_t_SWITCH_STATUS_FALSE;
