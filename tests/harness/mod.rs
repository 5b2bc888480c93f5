//! The FreeSWITCH host harness: loads the built module exactly as FreeSWITCH
//! does and plays the core's part, with a real redis-server behind it.
#![allow(dead_code)]

pub mod callcenter;
pub mod cluster;
pub mod common;
pub mod core;
pub mod esl;
pub mod fixtures;
pub mod proxy;
pub mod redis;
pub mod state;
pub mod tls;

/// The same bindings the module is built with (see build.rs).
#[allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    dead_code
)]
#[allow(clippy::all)]
pub mod ffi {
    include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
}

use std::path::PathBuf;

/// Writes a cc_events.conf.xml with these params and points the host at it.
pub fn write_config(params: &[(&str, &str)]) -> PathBuf {
    let dir = redis::temp_dir("conf");
    let mut xml = String::from(
        "<configuration name=\"cc_events.conf\" description=\"test\">\n  <settings>\n",
    );
    for (n, v) in params {
        if n.contains("password") && !v.is_empty() {
            core::note_secret(v);
        }
        xml.push_str(&format!("    <param name=\"{n}\" value=\"{v}\"/>\n"));
    }
    xml.push_str("  </settings>\n</configuration>\n");
    let path = dir.join("cc_events.conf.xml");
    std::fs::write(&path, xml).unwrap();
    core::set_config_file(Some(&path));
    path
}

/// Config pointing at a test Redis on `port`, plus any extra params.
pub fn config_for(port: u16, extra: &[(&str, &str)]) -> PathBuf {
    let port = port.to_string();
    let mut params = vec![("port", port.as_str()), ("reconnect-max-ms", "200")];
    params.extend_from_slice(extra);
    write_config(&params)
}

/// The usual test setup: the module lock, a redis-server, the module configured
/// for it and loaded, and a subscriber on `callcenter_events`.
pub struct Loaded {
    pub sub: redis::Subscriber,
    pub redis: redis::RedisServer,
    pub module: core::LoadedModule,
    _exclusive: std::sync::MutexGuard<'static, ()>,
}

pub fn load_with_redis(extra: &[(&str, &str)]) -> Loaded {
    load_with_redis_after(extra, || {})
}

/// `load_with_redis`, with `setup` run once the module lock is held, before
/// the load (what the host should look like when the module starts).
pub fn load_with_redis_after(extra: &[(&str, &str)], setup: impl FnOnce()) -> Loaded {
    let exclusive = core::exclusive();
    setup();
    let redis = redis::RedisServer::start();
    config_for(redis.port, extra);
    let sub = redis::Subscriber::new(&redis, "callcenter_events");
    let module = core::LoadedModule::load().expect("load");
    Loaded {
        sub,
        redis,
        module,
        _exclusive: exclusive,
    }
}
