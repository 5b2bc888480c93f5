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
use crate::fs::{api, callcenter_api, event, thread, xml};
use crate::logger::Level;
use crate::publisher::Publisher;

pub const MODULE_NAME: &CStr = c"mod_cc_events";
pub const CONFIG_FILE: &CStr = c"cc_events.conf";
pub const SUBCLASS: &CStr = c"callcenter::info";
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
    crate::link::check_files(&settings.redis)
        .map_err(|e| log(Level::Error, &format!("{e}; mod_cc_events not loaded")))?;

    let publisher = Publisher::start(settings.clone(), logger(), thread::spawn, Some(source()))
        .map_err(|e| {
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
    let previous = state().replace(Running { binding });
    // Dropping an instance unbinds: never under the lock.
    if let Some(old) = previous {
        stop_running(old);
    }
    log(
        Level::Info,
        &format!(
            "mod_cc_events {} loaded: {settings}",
            env!("CARGO_PKG_VERSION")
        ),
    );
    Ok(())
}

/// How the state mirror reaches FreeSWITCH, from the worker thread.
fn source() -> crate::state::Source {
    crate::state::Source {
        query: callcenter_api::callcenter_config,
        member_vars: callcenter_api::member_vars,
        identity: callcenter_api::identity,
    }
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
    let scan = match callcenter::scan_raw(
        publisher.captured(),
        || publisher.catalogue(),
        event.c_headers(),
    ) {
        Ok(scan) => scan,
        Err(Skip::Ignored) => return,
        Err(Skip::NoAction) => return publisher.note_malformed(),
    };
    // The member's session may be gone by the time the worker runs, so its
    // variables are read now. A missing session or variable is normal.
    let member = scan.member_session().and_then(Channel::locate);
    let captured = scan.capture_reusing(publisher.spare(), |name| {
        member.as_ref()?.variable(name, callcenter::owned_value)
    });
    drop(member);
    publisher.offer(captured);
}

/// Tab completion for every subcommand.
pub fn add_completions() {
    for line in command::completions() {
        if let Ok(line) = std::ffi::CString::new(line) {
            api::set_complete(&line);
        }
    }
}

/// The `cc_events` API command's output.
pub fn api_command(args: &str) -> String {
    let cmd = command::parse(args);
    if cmd == Command::Usage {
        return command::USAGE.to_string();
    }
    let state = state();
    let Some(r) = &*state else {
        return "-ERR mod_cc_events is not running\n".to_string();
    };
    let p = r.binding.data();
    match cmd {
        Command::Usage => command::USAGE.to_string(),
        Command::Status => {
            let mut out = command::render_status(&p.settings(), &p.stats().snapshot());
            out.push_str(&command::state_line(p.state().as_ref()));
            out
        }
        Command::State => command::render_state(p.state().as_ref()),
        Command::StatusJson => command::render_status_json(&p.settings(), &p.stats().snapshot()),
        Command::Reload => reload(p),
        Command::Test(action) => test_event(p, &action),
    }
}

/// `cc_events reload`: validate everything first; a failed reload changes nothing.
fn reload(p: &Publisher) -> String {
    let params = xml::settings_params(CONFIG_FILE).unwrap_or_default();
    let parsed = match Settings::from_params(params.iter().map(|(n, v)| (n.as_str(), v.as_str()))) {
        Ok(parsed) => parsed,
        Err(e) => {
            log(
                Level::Error,
                &format!("{e}; cc_events reload: the running settings are unchanged"),
            );
            return format!("-ERR {e}\nthe running settings are unchanged\n");
        }
    };
    if let Err(e) = crate::link::check_files(&parsed.settings.redis) {
        log(
            Level::Error,
            &format!("{e}; cc_events reload: the running settings are unchanged"),
        );
        return format!("-ERR {e}\nthe running settings are unchanged\n");
    }
    let mut out = String::new();
    for w in &parsed.warnings {
        log(Level::Warning, w);
        out.push_str(&format!("warning: {w}\n"));
    }
    let settings = parsed.settings;
    let line = settings.to_string();
    let done = p.reconfigure(settings);
    log(Level::Info, &format!("cc_events reload: {line}"));
    out.push_str(&format!(
        "+OK reloaded: {line}\n{} events already queued are published with the settings they were captured with\n{}\n",
        done.queued,
        if done.reconnect {
            "connection settings changed: reconnecting to Redis"
        } else {
            "connection settings unchanged: the connection stays up"
        }
    ));
    out
}

/// `cc_events test [action]`: a synthetic event through the normal path.
fn test_event(p: &Publisher, action: &str) -> String {
    let catalogue = p.catalogue();
    if catalogue.lookup(action.as_bytes()).is_none() {
        return format!(
            "-ERR '{action}' is not published with the current events setting; test one of: {}\n",
            catalogue
                .entries
                .iter()
                .map(|e| e.def.action)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let now = crate::state::now_us().to_string();
    let headers = callcenter::test_headers(action, &now);
    let pairs = headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes()));
    let Ok(scan) = callcenter::scan(&catalogue, pairs) else {
        return "-ERR the test event could not be built\n".to_string();
    };
    let ev = scan.capture(|_| None);
    let name = ev.name().to_string();
    p.offer(ev);
    format!(
        "+OK test event {name} queued (agent and queue 'cc_events-test'); check your subscriber\n"
    )
}
