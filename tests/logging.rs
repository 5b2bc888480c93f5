//! Log lines name the file and line that logged them.

mod harness;

use std::time::Duration;

use harness::core::{self, LoadedModule};
use harness::redis::wait_until;

const WAIT: Duration = Duration::from_secs(10);
#[test]
fn log_lines_name_the_file_and_line_that_logged_them() {
    let _g = core::exclusive();
    core::take_logs();
    // Nothing listens on this port: the worker logs a connect error.
    harness::config_for(
        harness::redis::free_port(),
        &[("username", "u"), ("password", "pw-logging")],
    );
    let module = LoadedModule::load().expect("load");
    assert!(wait_until(WAIT, || core::logs()
        .iter()
        .any(|l| l.text.starts_with("cannot connect"))));
    module.unload();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for l in core::logs() {
        let text = std::fs::read_to_string(src.join(&l.file))
            .unwrap_or_else(|e| panic!("{:?} names {}: {e}", l.text, l.file));
        let line = text
            .lines()
            .nth(l.line as usize - 1)
            .unwrap_or_else(|| panic!("{} has no line {}", l.file, l.line));
        // The attributed line is a logging call (or the start of one).
        assert!(
            line.contains("log") || line.contains("failed(") || line.contains("connected("),
            "{:?} attributed to {}:{}: {line:?}",
            l.text,
            l.file,
            l.line
        );
    }
    let connect = core::logs()
        .into_iter()
        .find(|l| l.text.starts_with("cannot connect"))
        .unwrap();
    assert_eq!(connect.file, "src/health.rs", "{connect:?}");
}
