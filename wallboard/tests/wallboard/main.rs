//! cc-wallboard end to end: the real binary against a real redis-server,
//! fed by the real module in the FreeSWITCH host harness (or, for scale, by
//! stream entries shaped like the module's), read over SSE and in a real
//! headless Chromium.
//!
//! One test binary: the harness's C half is linked into every test target,
//! and each target would otherwise rebuild the same dependencies.

#[path = "../../../tests/harness/mod.rs"]
mod harness;

mod browser;
mod scenario;
mod server;
mod support;
mod synth;
