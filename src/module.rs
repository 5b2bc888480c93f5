//! The module's life cycle (start, stop) and its event path, in safe code.
//! State lives in one value that load creates and shutdown tears down, because
//! a second `load` after `unload` can find this library's statics as they were.

use std::ffi::CStr;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::callcenter::{self, Skip, HEADER_PREFIX};
use crate::command::{self, Command};
use crate::config::Settings;
use crate::fs::event::{Binding, Event};
use crate::fs::session::Channel;
use crate::fs::{api, event, log::log, xml};
use crate::logger::{Level, LogFn};
use crate::publisher::Publisher;

pub const MODULE_NAME: &CStr = c"mod_cc_events";
pub const CONFIG_FILE: &CStr = c"cc_events.conf";
pub const SUBCLASS: &CStr = c"callcenter::info";
pub const COMPLETE_ADD: &CStr = c"add cc_events status";
pub const COMPLETE_DEL: &CStr = c"del cc_events";

struct Running {
    // Declared first so it is unbound before the publisher it points to is dropped.
    binding: Option<Binding>,
    publisher: Box<Publisher>,
}

static STATE: Mutex<Option<Running>> = Mutex::new(None);

fn state() -> MutexGuard<'static, Option<Running>> {
    STATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn logger() -> LogFn {
    Arc::new(|level, msg| log(level, msg))
}

/// Reads the config, starts the worker and binds the event callback.
/// On error the reason has been logged and nothing is left running.
pub fn start(on_event: unsafe extern "C" fn(*mut crate::ffi::switch_event_t)) -> Result<(), ()> {
    let mut state = state();
    if let Some(old) = state.take() {
        log(
            Level::Warning,
            "load while already running: stopping the previous instance first",
        );
        stop_running(old);
    }

    let params = xml::settings_params(CONFIG_FILE).unwrap_or_else(|| {
        log(
            Level::Notice,
            "cc_events.conf not found: using defaults (add autoload_configs/cc_events.conf.xml to change them)",
        );
        Vec::new()
    });
    let parsed = Settings::from_params(params.iter().map(|(n, v)| (n.as_str(), v.as_str())))
        .map_err(|e| log(Level::Error, &format!("{e}; mod_cc_events not loaded")))?;
    for w in &parsed.warnings {
        log(Level::Warning, w);
    }
    let settings = parsed.settings;

    let publisher = Publisher::start(settings.clone(), logger())
        .map(Box::new)
        .map_err(|e| {
            log(
                Level::Error,
                &format!("cannot start the Redis worker thread: {e}"),
            )
        })?;
    let user_data = std::ptr::from_ref::<Publisher>(&publisher)
        .cast_mut()
        .cast();
    let Some(binding) = event::bind_custom(MODULE_NAME, SUBCLASS, on_event, user_data) else {
        log(
            Level::Error,
            "cannot bind to CUSTOM callcenter::info events; mod_cc_events not loaded",
        );
        publisher.shutdown();
        return Err(());
    };
    *state = Some(Running {
        binding: Some(binding),
        publisher,
    });
    log(
        Level::Info,
        &format!(
            "mod_cc_events {} loaded: {settings}",
            env!("CARGO_PKG_VERSION")
        ),
    );
    Ok(())
}

/// Unbinds, flushes within `shutdown-flush-ms`, joins the worker. Idempotent.
pub fn stop() {
    let running = state().take();
    if let Some(r) = running {
        stop_running(r);
    }
}

fn stop_running(mut r: Running) {
    if let Some(b) = r.binding.take() {
        b.unbind();
    }
    api::set_complete(COMPLETE_DEL);
    let report = r.publisher.shutdown();
    if report.worker_panicked {
        log(
            Level::Error,
            "the Redis worker thread had panicked; see the lines above",
        );
    }
    let level = if report.lost > 0 {
        Level::Warning
    } else {
        Level::Info
    };
    log(
        level,
        &format!(
            "mod_cc_events stopped: {} events published, {} still queued and not published",
            report.published, report.lost
        ),
    );
}

/// The hot path, on FreeSWITCH's event thread: keep only published actions,
/// copy what the payload needs, and hand it to the queue without blocking.
pub fn handle_event(event: &Event<'_>, publisher: &Publisher) {
    if !event.is_custom(SUBCLASS) {
        return;
    }
    let scan = match callcenter::scan(event.headers_with_prefix(HEADER_PREFIX)) {
        Ok(scan) => scan,
        Err(Skip::Ignored) => return,
        Err(Skip::NoAction) => return publisher.note_malformed(),
    };
    // The member's session may be gone by the time the worker runs, so its
    // variables are read now. A missing session or variable is normal.
    let member = scan.member_session().and_then(Channel::locate);
    let captured = scan.capture(|name| member.as_ref()?.variable(name, callcenter::owned_value));
    drop(member);
    publisher.offer(captured);
}

/// The `cc_events` API command's output.
pub fn api_command(args: &str) -> String {
    match command::parse(args) {
        Command::Usage => command::USAGE.to_string(),
        Command::Status => match &*state() {
            Some(r) => {
                command::render_status(r.publisher.settings(), &r.publisher.stats().snapshot())
            }
            None => "-ERR mod_cc_events is not running\n".to_string(),
        },
    }
}
