//! The struct layouts and constants the module relies on are FreeSWITCH's own.
//!
//! tests/abi/layout.c prints them as the C compiler sees them through <switch.h>.
//! This test checks, in turn:
//! 1. the Rust bindings the module was built with match the C view of the same headers;
//! 2. the bundled `freeswitch-headers/` match the layout recorded from FreeSWITCH
//!    1.10.12's installed headers (x86_64);
//! 3. where FreeSWITCH is installed (FREESWITCH_INCLUDE_DIR, or pkg-config), the
//!    bundled headers match its headers, compiled here and now.

mod harness;

use std::mem::{offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;

use harness::ffi;

fn c_layout(include: &Path) -> String {
    let out_dir = harness::redis::temp_dir("abi");
    let exe = out_dir.join("layout");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/abi/layout.c");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .arg(format!("-I{}", include.display()))
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .status()
        .expect("a C compiler (cc)");
    assert!(
        status.success(),
        "compiling layout.c against {}",
        include.display()
    );
    let out = Command::new(&exe).output().unwrap();
    assert!(out.status.success());
    let _ = std::fs::remove_dir_all(&out_dir);
    String::from_utf8(out.stdout).unwrap()
}

macro_rules! size {
    ($s:ident, $cname:literal, $t:ty) => {
        $s.push_str(&format!("size {} {}\n", $cname, size_of::<$t>()))
    };
}
macro_rules! offset {
    ($s:ident, $cname:literal, $t:ty, $f:ident) => {
        $s.push_str(&format!(
            "offset {}.{} {}\n",
            $cname,
            stringify!($f),
            offset_of!($t, $f)
        ))
    };
}
macro_rules! value {
    ($s:ident, $cname:literal, $v:expr) => {
        $s.push_str(&format!("value {} {}\n", $cname, $v as i64))
    };
}

fn rust_layout() -> String {
    use ffi::*;
    let mut s = String::new();
    size!(s, "switch_event_header_t", switch_event_header_t);
    offset!(s, "switch_event_header_t", switch_event_header_t, name);
    offset!(s, "switch_event_header_t", switch_event_header_t, value);
    offset!(s, "switch_event_header_t", switch_event_header_t, next);
    size!(s, "switch_event_t", switch_event_t);
    offset!(s, "switch_event_t", switch_event_t, event_id);
    offset!(s, "switch_event_t", switch_event_t, subclass_name);
    offset!(s, "switch_event_t", switch_event_t, headers);
    offset!(s, "switch_event_t", switch_event_t, bind_user_data);
    size!(s, "switch_stream_handle_t", switch_stream_handle_t);
    offset!(
        s,
        "switch_stream_handle_t",
        switch_stream_handle_t,
        write_function
    );
    offset!(s, "switch_stream_handle_t", switch_stream_handle_t, data);
    offset!(
        s,
        "switch_stream_handle_t",
        switch_stream_handle_t,
        data_size
    );
    offset!(
        s,
        "switch_stream_handle_t",
        switch_stream_handle_t,
        data_len
    );
    offset!(
        s,
        "switch_stream_handle_t",
        switch_stream_handle_t,
        alloc_chunk
    );
    size!(s, "switch_api_interface_t", switch_api_interface_t);
    offset!(
        s,
        "switch_api_interface_t",
        switch_api_interface_t,
        interface_name
    );
    offset!(s, "switch_api_interface_t", switch_api_interface_t, desc);
    offset!(
        s,
        "switch_api_interface_t",
        switch_api_interface_t,
        function
    );
    offset!(s, "switch_api_interface_t", switch_api_interface_t, syntax);
    size!(s, "struct switch_xml", switch_xml);
    offset!(s, "struct switch_xml", switch_xml, name);
    offset!(s, "struct switch_xml", switch_xml, attr);
    offset!(s, "struct switch_xml", switch_xml, next);
    offset!(s, "struct switch_xml", switch_xml, sibling);
    offset!(s, "struct switch_xml", switch_xml, child);
    size!(
        s,
        "switch_loadable_module_function_table_t",
        switch_loadable_module_function_table_t
    );
    offset!(
        s,
        "switch_loadable_module_function_table_t",
        switch_loadable_module_function_table_t,
        switch_api_version
    );
    offset!(
        s,
        "switch_loadable_module_function_table_t",
        switch_loadable_module_function_table_t,
        load
    );
    offset!(
        s,
        "switch_loadable_module_function_table_t",
        switch_loadable_module_function_table_t,
        shutdown
    );
    offset!(
        s,
        "switch_loadable_module_function_table_t",
        switch_loadable_module_function_table_t,
        runtime
    );
    offset!(
        s,
        "switch_loadable_module_function_table_t",
        switch_loadable_module_function_table_t,
        flags
    );
    size!(s, "switch_status_t", switch_status_t);
    size!(s, "switch_event_types_t", switch_event_types_t);
    size!(s, "switch_bool_t", switch_bool_t);
    size!(s, "switch_log_level_t", switch_log_level_t);
    size!(s, "switch_text_channel_t", switch_text_channel_t);
    size!(
        s,
        "switch_module_interface_name_t",
        switch_module_interface_name_t
    );
    value!(s, "SWITCH_API_VERSION", SWITCH_API_VERSION);
    value!(
        s,
        "SWITCH_STATUS_SUCCESS",
        switch_status_t_SWITCH_STATUS_SUCCESS
    );
    value!(
        s,
        "SWITCH_STATUS_FALSE",
        switch_status_t_SWITCH_STATUS_FALSE
    );
    value!(
        s,
        "SWITCH_STATUS_NOUNLOAD",
        switch_status_t_SWITCH_STATUS_NOUNLOAD
    );
    value!(
        s,
        "SWITCH_EVENT_CUSTOM",
        switch_event_types_t_SWITCH_EVENT_CUSTOM
    );
    value!(
        s,
        "SWITCH_API_INTERFACE",
        switch_module_interface_name_t_SWITCH_API_INTERFACE
    );
    value!(s, "SWITCH_FALSE", switch_bool_t_SWITCH_FALSE);
    value!(s, "SWITCH_TRUE", switch_bool_t_SWITCH_TRUE);
    value!(
        s,
        "SWITCH_CHANNEL_ID_LOG",
        switch_text_channel_t_SWITCH_CHANNEL_ID_LOG
    );
    value!(s, "SWITCH_LOG_DEBUG", switch_log_level_t_SWITCH_LOG_DEBUG);
    value!(s, "SWITCH_LOG_INFO", switch_log_level_t_SWITCH_LOG_INFO);
    value!(s, "SWITCH_LOG_NOTICE", switch_log_level_t_SWITCH_LOG_NOTICE);
    value!(
        s,
        "SWITCH_LOG_WARNING",
        switch_log_level_t_SWITCH_LOG_WARNING
    );
    value!(s, "SWITCH_LOG_ERROR", switch_log_level_t_SWITCH_LOG_ERROR);
    s
}

fn bundled() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("freeswitch-headers")
}

#[test]
fn rust_bindings_match_the_c_view_of_the_headers_they_came_from() {
    let headers = PathBuf::from(env!("CC_EVENTS_FS_HEADERS"));
    assert_eq!(
        rust_layout(),
        c_layout(&headers),
        "headers: {}",
        headers.display()
    );
}

#[test]
#[cfg(target_arch = "x86_64")]
fn bundled_headers_match_freeswitch_1_10_12() {
    let recorded = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/abi-layout-freeswitch-1.10.12-x86_64.txt"),
    )
    .unwrap();
    assert_eq!(c_layout(&bundled()), recorded);
}

#[test]
#[cfg_attr(
    not(freeswitch_installed_headers),
    ignore = "no installed FreeSWITCH headers: set FREESWITCH_INCLUDE_DIR or install freeswitch.pc (the recorded 1.10.12 layout is still checked)"
)]
fn bundled_headers_match_the_installed_freeswitch() {
    // The installed headers build.rs found (FREESWITCH_INCLUDE_DIR, or pkg-config).
    let real = PathBuf::from(env!("CC_EVENTS_FS_HEADERS"));
    assert_ne!(real, bundled(), "build.rs chose the bundled headers");
    assert_eq!(c_layout(&bundled()), c_layout(&real), "{}", real.display());
}
