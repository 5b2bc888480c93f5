//! The module's life cycle (start, stop) and its event path, in safe code.
//! State lives in one value that load creates and shutdown tears down, because
//! a second `load` after `unload` can find this library's statics as they were.

use std::ffi::CStr;
use std::sync::{Mutex, MutexGuard};

use crate::callcenter::{self, Skip};
use crate::command::{self, Command};
use crate::config::Settings;
use crate::fs::event::{Binding, Event};
use crate::fs::log::{log, logger};
use crate::fs::session::Channel;
use crate::fs::{api, event, thread, xml};
use crate::logger::Level;
use crate::publisher::Publisher;

pub const MODULE_NAME: &CStr = c"mod_cc_events";
pub const CONFIG_FILE: &CStr = c"cc_events.conf";
pub const SUBCLASS: &CStr = c"callcenter::info";
pub const COMPLETE_ADD: &CStr = c"add cc_events status";
pub const COMPLETE_DEL: &CStr = c"del cc_events";

struct Running {
    /// Owns the publisher the callback is handed; unbinding gives it back.
    binding: Binding<Publisher>,
}

// Never held across a FreeSWITCH call that takes the event write lock
// (bind, unbind): an API call on a dispatch thread (an inline mod_lua hook)
// would then deadlock with load or unload.
static STATE: Mutex<Option<Running>> = Mutex::new(None);

fn state() -> MutexGuard<'static, Option<Running>> {
    STATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Reads the config, starts the worker and binds the event callback.
/// On error the reason has been logged and nothing is left running.
pub fn start(on_event: unsafe extern "C" fn(*mut crate::ffi::switch_event_t)) -> Result<(), ()> {
    let previous = state().take();
    if let Some(old) = previous {
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

    let publisher = Publisher::start(settings.clone(), logger(), thread::spawn).map_err(|e| {
        log(
            Level::Error,
            &format!("cannot start the Redis worker thread: {e}; mod_cc_events not loaded"),
        )
    })?;
    let binding = event::bind_custom(MODULE_NAME, SUBCLASS, on_event, Box::new(publisher))
        .map_err(|publisher| {
            log(
                Level::Error,
                "cannot bind to CUSTOM callcenter::info events; mod_cc_events not loaded",
            );
            publisher.shutdown();
        })?;
    *state() = Some(Running { binding });
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

fn stop_running(r: Running) {
    let publisher = r.binding.unbind();
    api::set_complete(COMPLETE_DEL);
    let report = publisher.shutdown();
    if report.worker_panicked {
        log(
            Level::Error,
            "the Redis worker thread had panicked; see the lines above",
        );
    }
    let lost = report.rejected + report.lost;
    let level = if lost > 0 {
        Level::Warning
    } else {
        Level::Info
    };
    let mut line = format!(
        "mod_cc_events stopped: {} events published, {lost} lost ({} dropped because the queue was full, {} not published when shutdown-flush-ms ran out",
        report.published, report.rejected, report.lost
    );
    if report.unconfirmed > 0 {
        line.push_str(&format!(
            ", of which {} were sent but not confirmed: Redis may still publish them",
            report.unconfirmed
        ));
    }
    line.push(')');
    log(level, &line);
}

/// The hot path, on FreeSWITCH's event thread: keep only published actions,
/// copy what the payload needs, and hand it to the queue without blocking.
pub fn handle_event(event: &Event<'_>, publisher: &Publisher) {
    if !event.is_custom(SUBCLASS) {
        return;
    }
    let catalogue = publisher.catalogue();
    let scan = match callcenter::scan(&catalogue, event.headers()) {
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
                let p = r.binding.data();
                command::render_status(p.settings(), &p.stats().snapshot())
            }
            None => "-ERR mod_cc_events is not running\n".to_string(),
        },
    }
}
