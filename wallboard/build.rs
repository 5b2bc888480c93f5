//! Two things the wallboard's tests and demo need at build time:
//!
//! - whether a headless Chromium and its chromedriver are here: the browser
//!   tests are `#[ignore]`d, with the reason, unless the `browser` cfg is set
//!   (a skipped test must not show as passed);
//! - the module's FreeSWITCH host harness (`../tests/harness`), which the
//!   tests and the demo borrow to run the real module: its bindings and its
//!   C half, built here as the root build.rs builds them for the module's own
//!   tests.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The first of `names` found executable in PATH, or the path in `var`.
fn find(var: &str, names: &[&str]) -> Option<PathBuf> {
    println!("cargo:rerun-if-env-changed={var}");
    if let Some(p) = env::var_os(var).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let path = env::var_os("PATH")?;
    names
        .iter()
        .flat_map(|n| env::split_paths(&path).map(move |d| d.join(n)))
        .find(|p| p.is_file())
}

fn runs(p: &Path) -> bool {
    Command::new(p)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn browser_cfg() {
    println!("cargo::rustc-check-cfg=cfg(browser)");
    // Installing the packages adds files here.
    println!("cargo:rerun-if-changed=/usr/bin");
    let chromium = find(
        "CC_WALLBOARD_CHROMIUM",
        &["chromium", "chromium-browser", "google-chrome"],
    );
    let driver = find("CC_WALLBOARD_CHROMEDRIVER", &["chromedriver"]);
    if let (Some(chromium), Some(driver)) = (chromium, driver) {
        if runs(&chromium) && runs(&driver) {
            println!("cargo:rustc-cfg=browser");
            println!(
                "cargo:rustc-env=CC_WALLBOARD_CHROMIUM={}",
                chromium.display()
            );
            println!(
                "cargo:rustc-env=CC_WALLBOARD_CHROMEDRIVER={}",
                driver.display()
            );
        }
    }
}

/// The harness's bindings and host.c. The bundled declarations are used
/// whatever the module was built against: they describe the same ABI
/// (tests/abi_layout.rs checks that), and the harness only plays the core.
fn harness(root: &Path, out: &Path) {
    let headers = root.join("freeswitch-headers");
    let host_c = root.join("tests/harness/host.c");
    println!("cargo:rerun-if-changed={}", headers.display());
    println!("cargo:rerun-if-changed={}", host_c.display());
    bindgen::Builder::default()
        .header(headers.join("switch.h").display().to_string())
        .allowlist_file(".*switch\\.h")
        .layout_tests(false)
        .derive_default(true)
        .generate_comments(false)
        .prepend_enum_name(true)
        .generate()
        .unwrap_or_else(|e| panic!("bindgen failed on {}: {e}", headers.display()))
        .write_to_file(out.join("bindings.rs"))
        .expect("cannot write bindings.rs into OUT_DIR");
    cc::Build::new()
        .file(&host_c)
        .include(&headers)
        .cargo_metadata(false)
        .warnings(true)
        .compile("cc_events_host");
    let lib = out.join("libcc_events_host.a");
    // Only the tests and the demo hold the harness; the benchmark does not.
    for kind in ["tests", "examples"] {
        // Cargo refuses link args for a kind of target the package does not have.
        if !root.join("wallboard").join(kind).is_dir() {
            continue;
        }
        println!(
            "cargo:rustc-link-arg-{kind}=-Wl,--whole-archive,{},--no-whole-archive",
            lib.display()
        );
        // Exports the host's switch_* functions so the dlopen()ed module binds to them.
        println!("cargo:rustc-link-arg-{kind}=-rdynamic");
    }
    // The harness finds the recorded events through this (its own
    // CARGO_MANIFEST_DIR would be this crate's).
    println!(
        "cargo:rustc-env=CC_EVENTS_FIXTURES={}",
        root.join("tests/fixtures").display()
    );
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest
        .parent()
        .expect("wallboard/ lives in the module's workspace");
    browser_cfg();
    harness(root, &PathBuf::from(env::var("OUT_DIR").unwrap()));
}
