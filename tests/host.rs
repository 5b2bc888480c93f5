//! The harness's stand-ins for FreeSWITCH's core functions answer as FreeSWITCH
//! 1.10.12 does, where the module can tell the difference. Called directly here,
//! without the module, so a change to the harness cannot drift unnoticed.

mod harness;

use std::collections::HashMap;
use std::ffi::{CStr, CString};

use harness::core;
use harness::ffi;

const UUID: &str = "0b1e6a66-0000-4000-8000-00000000e5e5";

fn locate(uuid: &str) -> *mut ffi::switch_core_session_t {
    let uuid = CString::new(uuid).unwrap();
    core::switch_core_session_perform_locate(uuid.as_ptr(), c"host.rs".as_ptr(), c"t".as_ptr(), 1)
}

/// `switch_channel_get_variable_dup(channel, name, dup, idx)`, as a Rust string.
fn get(
    session: *mut ffi::switch_core_session_t,
    name: &str,
    dup: bool,
    idx: i32,
) -> Option<String> {
    let channel = core::switch_core_session_get_channel(session);
    let name = CString::new(name).unwrap();
    let dup = if dup {
        ffi::switch_bool_t_SWITCH_TRUE
    } else {
        ffi::switch_bool_t_SWITCH_FALSE
    };
    let v = core::switch_channel_get_variable_dup(channel, name.as_ptr(), dup, idx);
    // SAFETY: a non-null result is NUL-terminated and lives as long as the session.
    (!v.is_null()).then(|| unsafe { CStr::from_ptr(v) }.to_string_lossy().into_owned())
}

fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// switch_core_session_perform_locate + switch_core_session_read_lock.
#[test]
fn locate_refuses_a_hanging_up_session_and_holds_no_lock() {
    let _g = core::exclusive();
    core::add_session(UUID, &vars(&[("a", "1")]));
    let before = core::session_locks_held();

    let s = locate(UUID);
    assert!(!s.is_null(), "a live session is found");
    assert_eq!(core::session_locks_held(), before + 1);
    core::switch_core_session_rwunlock(s);
    assert_eq!(core::session_locks_held(), before);

    core::hangup_session(UUID);
    assert!(
        locate(UUID).is_null(),
        "CS_HANGUP: the read lock is refused"
    );
    assert_eq!(core::session_locks_held(), before, "and not left held");

    core::remove_session(UUID);
    assert!(locate(UUID).is_null(), "a destroyed session is not found");
    assert!(core::switch_core_session_perform_locate(
        std::ptr::null(),
        c"host.rs".as_ptr(),
        c"t".as_ptr(),
        1
    )
    .is_null());
}

/// switch_channel_get_variable_dup: channel variables, then the caller profile,
/// then the global variables.
#[test]
fn variable_lookup_falls_back_to_the_caller_profile_then_to_globals() {
    let _g = core::exclusive();
    core::clear_global_variables();
    core::add_session(
        UUID,
        &vars(&[("campaign_id", "295"), ("Caller_ID_Name", "chan")]),
    );
    for (name, value) in [
        ("campaign_id", "global"),
        ("queue_name", "global-queue"),
        ("caller_id_name", "global-name"),
        ("caller_id_number", "global-number"),
        ("transfer_source", "global-ts"),
        ("x", "global-x"),
        ("evil", "${hostname}"),
    ] {
        core::set_global_variable(name, Some(value));
    }
    let s = locate(UUID);
    assert!(!s.is_null());

    // Without a caller profile: channel variables, then globals.
    assert_eq!(get(s, "campaign_id", true, -1).as_deref(), Some("295"));
    assert_eq!(get(s, "CAMPAIGN_ID", true, -1).as_deref(), Some("295"));
    assert_eq!(get(s, "caller_id_name", true, -1).as_deref(), Some("chan"));
    assert_eq!(
        get(s, "QUEUE_NAME", true, -1).as_deref(),
        Some("global-queue")
    );
    assert_eq!(
        get(s, "caller_id_number", true, -1).as_deref(),
        Some("global-number")
    );
    assert_eq!(
        get(s, "aleg_x", true, -1),
        None,
        "no profile: no prefix stripping"
    );
    assert_eq!(get(s, "nowhere", true, -1), None);
    assert_eq!(get(s, "", true, -1), None);
    // idx > -1 asks for an element of an array variable; plain ones have none.
    assert_eq!(get(s, "campaign_id", true, 0).as_deref(), Some("global"));
    // switch_core_set_variable disables ${...} in the value it stores.
    assert_eq!(get(s, "evil", true, -1).as_deref(), Some("%{hostname}"));

    // With a caller profile, its fields come before the globals.
    core::set_caller_profile(UUID, &[("caller_id_number", "34650110022")]);
    assert_eq!(get(s, "caller_id_name", true, -1).as_deref(), Some("chan"));
    assert_eq!(
        get(s, "Caller_ID_Number", true, -1).as_deref(),
        Some("34650110022")
    );
    // Defaults of switch_caller_profile_new and switch_channel_set_caller_profile.
    assert_eq!(get(s, "ani", true, -1).as_deref(), Some("34650110022"));
    assert_eq!(get(s, "context", true, -1).as_deref(), Some("default"));
    assert_eq!(get(s, "uuid", true, -1).as_deref(), Some(UUID));
    assert_eq!(get(s, "destination_number", true, -1).as_deref(), Some(""));
    assert_eq!(get(s, "caller_ton", true, -1).as_deref(), Some("255"));
    assert_eq!(get(s, "screen_bit", true, -1).as_deref(), Some("true"));
    // A NULL field falls through to the globals; a blank one does not.
    assert_eq!(
        get(s, "transfer_source", true, -1).as_deref(),
        Some("global-ts")
    );
    // aleg_/bleg_ ask the originator's/originatee's profile (none here) and
    // then the globals, without the prefix.
    assert_eq!(get(s, "aleg_x", true, -1).as_deref(), Some("global-x"));
    assert_eq!(
        get(s, "bleg_caller_id_number", true, -1).as_deref(),
        Some("global-number")
    );
    assert_eq!(
        get(s, "ALEG_x", true, -1),
        None,
        "the prefix is case-sensitive"
    );
    assert_eq!(get(s, "campaign_id", true, -1).as_deref(), Some("295"));

    // Pool copies: dup = TRUE copies channel and profile values; a global is
    // always copied (switch_core_get_variable_pdup), and only once.
    let copies = core::pool_copies();
    get(s, "campaign_id", false, -1);
    get(s, "caller_id_number", false, -1);
    assert_eq!(core::pool_copies(), copies, "dup = FALSE: live values");
    get(s, "queue_name", false, -1);
    assert_eq!(core::pool_copies(), copies + 1);
    get(s, "queue_name", true, -1);
    assert_eq!(core::pool_copies(), copies + 2);

    core::switch_core_session_rwunlock(s);
    core::remove_session(UUID);
    core::clear_global_variables();
}
