//! The harness's stand-ins for FreeSWITCH's core functions answer as FreeSWITCH
//! 1.10.12 does, where the module can tell the difference. Called directly here,
//! without the module, so a change to the harness cannot drift unnoticed.

mod harness;

use std::collections::HashMap;
use std::ffi::CString;

use harness::core;
use harness::ffi;

const UUID: &str = "0b1e6a66-0000-4000-8000-00000000e5e5";

fn locate(uuid: &str) -> *mut ffi::switch_core_session_t {
    let uuid = CString::new(uuid).unwrap();
    core::switch_core_session_perform_locate(uuid.as_ptr(), c"host.rs".as_ptr(), c"t".as_ptr(), 1)
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
