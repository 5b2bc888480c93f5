//! Generates the FreeSWITCH bindings and builds the C half of the test host.
//!
//! Header choice, in order: `FREESWITCH_INCLUDE_DIR`, then `pkg-config freeswitch`
//! (an installed FreeSWITCH, as in distro builds), then the declarations this
//! project keeps in `freeswitch-headers/`. The choice is exported to the crate
//! and the tests as `CC_EVENTS_FS_HEADERS` so the layout test knows what it checks.

use std::env;
use std::path::PathBuf;
use std::process::Command;

/// Every FreeSWITCH function the module imports. The test host implements
/// exactly this list, so keep the two in step.
const FUNCTIONS: &[&str] = &[
    "switch_loadable_module_create_module_interface",
    "switch_loadable_module_create_interface",
    "switch_event_bind_removable",
    "switch_event_unbind",
    "switch_event_get_header_idx",
    "switch_core_session_perform_locate",
    "switch_core_session_get_channel",
    "switch_core_session_rwunlock",
    "switch_channel_get_variable_dup",
    "switch_xml_open_cfg",
    "switch_xml_child",
    "switch_xml_attr_soft",
    "switch_xml_free",
    "switch_console_set_complete",
    "switch_log_printf",
    "switch_api_execute",
    "switch_console_stream_write",
    "switch_console_stream_raw_write",
    "switch_core_get_uuid",
    "switch_core_get_switchname",
];

const TYPES: &[&str] = &[
    "switch_status_t",
    "switch_bool_t",
    "switch_log_level_t",
    "switch_text_channel_t",
    "switch_event_types_t",
    "switch_module_interface_name_t",
    "switch_event_t",
    "switch_event_header_t",
    "switch_stream_handle_t",
    "switch_api_interface_t",
    "switch_xml",
    "switch_loadable_module_function_table_t",
];

/// Passed through by pointer only; their insides differ between our subset
/// and the real headers and must never be read by the module.
const OPAQUE: &[&str] = &[
    "switch_loadable_module_interface",
    "switch_loadable_module_interface_t",
    "switch_memory_pool_t",
    "apr_pool_t",
    "switch_core_session",
    "switch_channel",
    "switch_event_node",
    "switch_thread_rwlock_t",
    "switch_mutex_t",
    "apr_thread_rwlock_t",
    "apr_thread_mutex_t",
];

fn installed_include_args() -> Option<(String, Vec<String>)> {
    println!("cargo:rerun-if-env-changed=FREESWITCH_INCLUDE_DIR");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    if let Ok(dir) = env::var("FREESWITCH_INCLUDE_DIR") {
        if !dir.is_empty() {
            assert!(
                PathBuf::from(&dir).join("switch.h").exists(),
                "FREESWITCH_INCLUDE_DIR={dir} has no switch.h: point it at FreeSWITCH's include/freeswitch directory, or unset it"
            );
            return Some((dir.clone(), vec![format!("-I{dir}")]));
        }
    }
    let out = Command::new("pkg-config")
        .args(["--cflags", "freeswitch"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let flags: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let dir = flags
        .iter()
        .find_map(|f| f.strip_prefix("-I"))
        .unwrap_or("")
        .to_owned();
    // A freeswitch.pc without the headers beside it (a runtime-only install)
    // is no reason to fail: the bundled declarations describe the same ABI.
    if !PathBuf::from(&dir).join("switch.h").exists() {
        println!(
            "cargo:warning=pkg-config freeswitch gives -I{dir} but there is no switch.h there; using freeswitch-headers/"
        );
        return None;
    }
    Some((dir, flags))
}

/// Tests that need something this machine may lack are `#[ignore]`d, with the
/// reason, unless build.rs found it: a skipped test must not show as passed.
fn test_cfgs(installed_headers: bool) {
    println!("cargo::rustc-check-cfg=cfg(freeswitch_prefix)");
    println!("cargo::rustc-check-cfg=cfg(freeswitch_installed_headers)");
    println!("cargo:rerun-if-env-changed=FREESWITCH_PREFIX");
    if env::var_os("FREESWITCH_PREFIX").is_some_and(|p| !p.is_empty()) {
        println!("cargo:rustc-cfg=freeswitch_prefix");
    }
    if installed_headers {
        println!("cargo:rustc-cfg=freeswitch_installed_headers");
    }
    // The README's Python recipe runs in a test when a python3 with redis-py
    // (Debian's python3-redis) is here.
    println!("cargo::rustc-check-cfg=cfg(python_redis)");
    println!("cargo:rerun-if-changed=/usr/lib/python3/dist-packages");
    let python = ["python3", "/usr/bin/python3"].into_iter().find(|py| {
        Command::new(py)
            .args(["-c", "import redis"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if let Some(py) = python {
        println!("cargo:rustc-cfg=python_redis");
        println!("cargo:rustc-env=CC_EVENTS_PYTHON={py}");
    }
}

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let bundled = manifest.join("freeswitch-headers");
    println!("cargo:rerun-if-changed=freeswitch-headers");
    println!("cargo:rerun-if-changed=tests/harness/host.c");
    for dir in ["tests", "benches", "examples"] {
        println!("cargo:rerun-if-changed={dir}");
    }

    let installed = installed_include_args();
    test_cfgs(installed.is_some());
    let (headers_dir, clang_args) = match installed {
        Some(found) => found,
        None => (
            bundled.display().to_string(),
            vec![format!("-I{}", bundled.display())],
        ),
    };
    println!("cargo:rustc-env=CC_EVENTS_FS_HEADERS={headers_dir}");

    let mut builder = bindgen::Builder::default()
        .header_contents("wrapper.h", "#include <switch.h>\n")
        .clang_args(&clang_args)
        .layout_tests(false)
        .derive_default(true)
        .generate_comments(false)
        .prepend_enum_name(true);
    for f in FUNCTIONS {
        builder = builder.allowlist_function(f);
    }
    for t in TYPES {
        builder = builder.allowlist_type(t);
    }
    for t in OPAQUE {
        builder = builder.opaque_type(t);
    }
    builder
        .allowlist_var("SWITCH_API_VERSION")
        .generate()
        .unwrap_or_else(|e| {
            panic!("bindgen failed on the FreeSWITCH headers in {headers_dir}: {e}")
        })
        .write_to_file(out.join("bindings.rs"))
        .expect("cannot write bindings.rs into OUT_DIR");

    // The test host's variadic functions (switch_log_printf, the stream writer)
    // cannot be written in stable Rust. Build them as a static library that only
    // test, bench and example binaries link; the module itself must keep every
    // switch_* symbol undefined.
    cc::Build::new()
        .file("tests/harness/host.c")
        .include(&bundled)
        .cargo_metadata(false)
        .warnings(true)
        .compile("cc_events_host");
    let lib = out.join("libcc_events_host.a");
    for (kind, dir) in [
        ("tests", "tests"),
        ("benches", "benches"),
        ("examples", "examples"),
    ] {
        // Cargo refuses link args for a kind of target the package does not have.
        let has_target = std::fs::read_dir(manifest.join(dir))
            .map(|d| {
                d.flatten()
                    .any(|e| e.path().extension().is_some_and(|x| x == "rs"))
            })
            .unwrap_or(false);
        if !has_target {
            continue;
        }
        println!(
            "cargo:rustc-link-arg-{kind}=-Wl,--whole-archive,{},--no-whole-archive",
            lib.display()
        );
        // Exports the host's switch_* functions so the dlopen()ed module binds to them.
        println!("cargo:rustc-link-arg-{kind}=-rdynamic");
    }
}
