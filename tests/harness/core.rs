//! A stand-in for the FreeSWITCH core: the `switch_*` functions the module
//! imports, with FreeSWITCH's semantics where the module can observe them.
//!
//! - Events: bound callbacks run under a read lock, on whatever threads fire;
//!   `switch_event_unbind` takes the write lock, so it waits for running callbacks.
//! - Sessions: `switch_core_session_perform_locate` read-locks a session until
//!   `switch_core_session_rwunlock`; a vanished session is simply not found, and
//!   one whose channel is hanging up is refused, as FreeSWITCH's read lock refuses it.
//! - Variables: `switch_channel_get_variable_dup` looks in the channel's variables,
//!   then its caller profile's fields, then the global variables, as FreeSWITCH does.
//! - XML: `switch_xml_open_cfg` serves `<configuration name="...">` from a file
//!   the test wrote, as a real `struct switch_xml` tree, until `switch_xml_free`.
//! - Modules: load/shutdown through the exported function table, API commands
//!   through the registered `switch_api_interface_t` with a real stream handle.
//!
//! The variadic functions (switch_log_printf, the stream writer) are in host.c.
#![allow(dead_code)]
// Boxes keep every node at a fixed address while its Vec grows: C holds pointers to them.
#![allow(clippy::vec_box)]

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, RwLock};

use super::ffi;

/// One log line the module wrote through switch_log_printf.
#[derive(Clone, Debug)]
pub struct LogLine {
    pub level: i32,
    pub text: String,
    /// The source file and line the module attributed the line to.
    pub file: String,
    pub line: i32,
}

struct Binding {
    node: usize,
    event_id: u32,
    subclass: Option<CString>,
    callback: unsafe extern "C" fn(*mut ffi::switch_event_t),
    user_data: usize,
}

/// `switch_channel_state_t` (switch_types.h): the states the harness uses.
/// A member waiting in a queue runs the callcenter application: CS_EXECUTE.
const CS_EXECUTE: u32 = 4;
/// `switch_channel_perform_hangup` (switch_channel.c) sets this; CS_REPORTING
/// and CS_DESTROY follow. `switch_channel_down_nosig` is `state >= CS_HANGUP`.
const CS_HANGUP: u32 = 10;

struct Session {
    /// Lower-cased names: FreeSWITCH looks variables up case-insensitively.
    vars: HashMap<Vec<u8>, CString>,
    /// `channel->caller_profile`. Its lock stands in for `channel->profile_mutex`,
    /// which `switch_channel_get_variable_dup` holds for the whole lookup.
    profile: Mutex<Option<CallerProfile>>,
    /// `channel->state`.
    state: AtomicU32,
    /// The session's memory pool: `dup = TRUE` copies live here until the session goes.
    pool: Mutex<Pool>,
}

/// Every field `switch_caller_get_field_by_name` (switch_caller.c) answers for,
/// in its order, with the header `switch_caller_profile_event_set_data` names it
/// by in a `uuid_dump` (`Caller-<suffix>`), where it has one.
/// Not modelled: the `soft` profile variables, looked up only when switch.conf
/// sets `caller-profile-soft-lookup-values` (off by default).
pub const CALLER_PROFILE_FIELDS: [(&str, Option<&str>); 37] = [
    ("dialplan", Some("Dialplan")),
    ("username", Some("Username")),
    ("caller_id_name", Some("Caller-ID-Name")),
    ("caller_id_number", Some("Caller-ID-Number")),
    ("orig_caller_id_name", Some("Orig-Caller-ID-Name")),
    ("orig_caller_id_number", Some("Orig-Caller-ID-Number")),
    ("callee_id_name", Some("Callee-ID-Name")),
    ("callee_id_number", Some("Callee-ID-Number")),
    ("ani", Some("ANI")),
    ("aniii", Some("ANI-II")),
    ("network_addr", Some("Network-Addr")),
    ("rdnis", Some("RDNIS")),
    ("destination_number", Some("Destination-Number")),
    ("uuid", Some("Unique-ID")),
    ("source", Some("Source")),
    ("transfer_source", Some("Transfer-Source")),
    ("context", Some("Context")),
    ("chan_name", Some("Channel-Name")),
    ("profile_index", Some("Profile-Index")),
    ("caller_ton", None),
    ("caller_numplan", None),
    ("destination_number_ton", None),
    ("destination_number_numplan", None),
    ("ani_ton", None),
    ("ani_numplan", None),
    ("rdnis_ton", None),
    ("rdnis_numplan", None),
    ("screen_bit", Some("Screen-Bit")),
    ("privacy_hide_name", Some("Privacy-Hide-Name")),
    ("privacy_hide_number", Some("Privacy-Hide-Number")),
    ("profile_created_time", Some("Profile-Created-Time")),
    ("created_time", Some("Channel-Created-Time")),
    ("answered_time", Some("Channel-Answered-Time")),
    ("progress_time", Some("Channel-Progress-Time")),
    ("progress_media_time", Some("Channel-Progress-Media-Time")),
    ("hungup_time", Some("Channel-Hangup-Time")),
    ("transferred_time", Some("Channel-Transfer-Time")),
];

/// A channel's caller profile: each field's value as `switch_caller_get_field_by_name`
/// returns it (None for a NULL field), in `CALLER_PROFILE_FIELDS` order.
struct CallerProfile {
    fields: Vec<(&'static str, Option<CString>)>,
}

impl CallerProfile {
    /// The profile `switch_caller_profile_new` builds from the constructor's
    /// arguments among `given` (username, dialplan, caller_id_name, caller_id_number,
    /// network_addr, ani, aniii, rdnis, source, context, destination_number), after
    /// `switch_channel_set_caller_profile` attached it to the channel of `uuid`;
    /// every other field in `given` then overrides what that left.
    /// Values are kept as given (FreeSWITCH also runs the constructor's through
    /// switch_clean_string, which only matters for unusual characters).
    fn new(uuid: &str, given: &[(&str, &str)]) -> CallerProfile {
        for (name, _) in given {
            assert!(
                CALLER_PROFILE_FIELDS.iter().any(|(f, _)| f == name),
                "{name} is not a caller profile field"
            );
        }
        let arg = |name: &str| {
            given
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| *v)
                .filter(|v| !v.is_empty())
        };
        // switch_caller_profile_new: zstr() arguments get these defaults,
        // profile_dup_clean() turns the remaining empty ones into SWITCH_BLANK_STRING.
        let context = arg("context").unwrap_or("default");
        let cid_name = arg("caller_id_name").unwrap_or(""); // SWITCH_DEFAULT_CLID_NAME
        let cid_number = arg("caller_id_number").unwrap_or("0000000000"); // SWITCH_DEFAULT_CLID_NUMBER
        let ani = arg("ani").unwrap_or(cid_number);
        // switch_channel_set_caller_profile stamps the times with switch_micro_time_now().
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros()
            .to_string();
        let default = |field: &str| -> Option<String> {
            Some(match field {
                "username" | "dialplan" | "network_addr" | "aniii" | "rdnis" | "source"
                | "destination_number" => arg(field).unwrap_or("").to_string(),
                "caller_id_name" | "orig_caller_id_name" => cid_name.to_string(),
                "caller_id_number" | "orig_caller_id_number" => cid_number.to_string(),
                "ani" => ani.to_string(),
                "context" => context.to_string(),
                // SWITCH_BLANK_STRING in switch_caller_profile_new.
                "callee_id_name" | "callee_id_number" => String::new(),
                // Set by switch_channel_set_caller_profile: the session's UUID and the
                // channel's name (the harness's channels have none), index of the first profile.
                "uuid" => uuid.to_string(),
                "chan_name" => String::new(),
                "profile_index" => "1".to_string(),
                // Left NULL by switch_caller_profile_new's memset.
                "transfer_source" => return None,
                // SWITCH_TON_UNDEF and SWITCH_NUMPLAN_UNDEF, printed with %u.
                f if f.ends_with("_ton") || f.ends_with("_numplan") => "255".to_string(),
                // SWITCH_CPF_SCREEN is set, the privacy flags are not.
                "screen_bit" => "true".to_string(),
                "privacy_hide_name" | "privacy_hide_number" => "false".to_string(),
                "profile_created_time" | "created_time" => now.clone(),
                _ => "0".to_string(),
            })
        };
        const ARGS: [&str; 11] = [
            "username",
            "dialplan",
            "caller_id_name",
            "caller_id_number",
            "network_addr",
            "ani",
            "aniii",
            "rdnis",
            "source",
            "context",
            "destination_number",
        ];
        let fields = CALLER_PROFILE_FIELDS
            .iter()
            .map(|&(field, _)| {
                let set_later = given
                    .iter()
                    .find(|(n, _)| *n == field && !ARGS.contains(n))
                    .map(|(_, v)| v.to_string());
                let value = set_later.or_else(|| default(field));
                (field, value.map(|v| CString::new(v).unwrap()))
            })
            .collect();
        CallerProfile { fields }
    }

    /// `switch_caller_get_field_by_name`: strcasecmp against each field name.
    fn field(&self, name: &[u8]) -> Option<&CString> {
        self.fields
            .iter()
            .find(|(f, _)| f.as_bytes().eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_ref())
    }
}

/// A bump allocator like the APR pool behind a FreeSWITCH session: cheap to
/// allocate from, freed all at once with the session.
#[derive(Default)]
struct Pool {
    chunks: Vec<Box<[u8]>>,
    used: usize,
}

impl Pool {
    const CHUNK: usize = 64 * 1024;

    fn strdup(&mut self, s: &[u8]) -> *const c_char {
        let need = s.len() + 1;
        let fits = self
            .chunks
            .last()
            .is_some_and(|c| c.len() - self.used >= need);
        if !fits {
            self.chunks
                .push(vec![0u8; need.max(Self::CHUNK)].into_boxed_slice());
            self.used = 0;
        }
        let chunk = self.chunks.last_mut().unwrap();
        let dst = &mut chunk[self.used..self.used + need];
        dst[..s.len()].copy_from_slice(s);
        dst[s.len()] = 0;
        self.used += need;
        dst.as_ptr().cast()
    }
}

struct ModuleIface {
    name: String,
    apis: Vec<Box<ffi::switch_api_interface_t>>,
}

/// Owns every allocation of one XML tree handed to the module.
struct XmlTree {
    nodes: Vec<Box<ffi::switch_xml>>,
    strings: Vec<CString>,
    attrs: Vec<Vec<*mut c_char>>,
}

#[derive(Default)]
struct Core {
    bindings: RwLock<Vec<Binding>>,
    next_node: AtomicUsize,
    sessions: Mutex<HashMap<Vec<u8>, Arc<Session>>>,
    /// `runtime.global_vars` (a switch_event_t: ordered, case-insensitive names)
    /// under `runtime.global_var_rwlock`.
    globals: RwLock<Vec<(Vec<u8>, CString)>>,
    session_locks: AtomicI64,
    pool_copies: AtomicI64,
    config_file: Mutex<Option<PathBuf>>,
    xml_trees: Mutex<HashMap<usize, XmlTree>>,
    logs: Mutex<Vec<LogLine>>,
    echo_logs: AtomicBool,
    completions: Mutex<Vec<String>>,
    modules: Mutex<Vec<usize>>,
    /// mod_callcenter's `callcenter_config` JSON API: the `response` for an
    /// `arguments` string. None: mod_callcenter is not loaded.
    callcenter: Mutex<Option<CallcenterApi>>,
    /// `json` API calls served, by their `arguments`.
    callcenter_calls: Mutex<Vec<String>>,
    /// Every password a test configured (see `note_secret`).
    secrets: Mutex<Vec<String>>,
    /// Module output that contained one of them.
    leaks: Mutex<Vec<String>>,
}

/// What `callcenter_config <arguments>` answers in its JSON API's `response`.
pub type CallcenterApi = Arc<dyn Fn(&str) -> Option<serde_json::Value> + Send + Sync>;

/// The switchname and core UUID the harness's FreeSWITCH reports.
pub const SWITCHNAME: &CStr = c"harness";

/// This host's switchname: `CC_EVENTS_HARNESS_SWITCHNAME`, else "harness", so
/// that a test can run several FreeSWITCH hosts as child processes.
pub fn switchname() -> &'static CStr {
    static NAME: LazyLock<CString> = LazyLock::new(|| {
        std::env::var("CC_EVENTS_HARNESS_SWITCHNAME")
            .ok()
            .and_then(|n| CString::new(n).ok())
            .unwrap_or_else(|| SWITCHNAME.to_owned())
    });
    &NAME
}
pub const CORE_UUID: &CStr = c"00000000-0000-4000-8000-00000000c0de";

// SAFETY: the raw pointers inside are only touched under the core's locks.
unsafe impl Send for XmlTree {}

static CORE: LazyLock<Core> = LazyLock::new(Core::default);
static EXCLUSIVE: Mutex<()> = Mutex::new(());

/// The module is one global instance, like in FreeSWITCH: tests that load it take this.
pub fn exclusive() -> MutexGuard<'static, ()> {
    EXCLUSIVE.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------- test-facing API

pub fn set_config_file(path: Option<&Path>) {
    *CORE.config_file.lock().unwrap() = path.map(Path::to_path_buf);
}

/// A password a test puts in the module's config: nothing the module prints
/// may contain it (checked on every log line and API reply, and at unload).
pub fn note_secret(secret: &str) {
    assert!(
        secret.len() >= 6,
        "test passwords must be at least 6 characters, so that looking for them in the module's output means something: {secret:?}"
    );
    let mut s = CORE.secrets.lock().unwrap();
    if !s.iter().any(|x| x == secret) {
        s.push(secret.to_string());
        append_output("secrets", secret);
    }
}

/// `<CARGO_TARGET_TMPDIR>/module-output/<pid>.<what>`: what every test process
/// printed, and the passwords it configured, for `tests/no-secrets.sh`.
fn append_output(what: &str, line: &str) {
    if let Some(dir) = option_env!("CARGO_TARGET_TMPDIR") {
        use std::io::Write;
        let dir = Path::new(dir).join("module-output");
        let _ = std::fs::create_dir_all(&dir);
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{}.{what}", std::process::id())))
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// Records what the module printed (for CI's grep over the whole run) and
/// any configured password in it.
fn watch_output(kind: &str, text: &str) {
    for secret in CORE.secrets.lock().unwrap().iter() {
        if text.contains(secret.as_str()) {
            CORE.leaks
                .lock()
                .unwrap()
                .push(format!("{kind} contains a configured password: {text}"));
        }
    }
    append_output("log", &format!("{kind}: {}", text.trim_end()));
}

/// Fails the test if the module ever printed a configured password.
pub fn assert_no_leaks() {
    let leaks = std::mem::take(&mut *CORE.leaks.lock().unwrap());
    assert!(leaks.is_empty(), "{leaks:#?}");
}

/// Loads (Some) or unloads (None) the harness's mod_callcenter JSON API.
pub fn set_callcenter(api: Option<CallcenterApi>) {
    *CORE.callcenter.lock().unwrap() = api;
}

/// The `arguments` of every `callcenter_config` JSON call so far, and clears them.
pub fn take_callcenter_calls() -> Vec<String> {
    std::mem::take(&mut *CORE.callcenter_calls.lock().unwrap())
}

pub fn echo_logs(on: bool) {
    CORE.echo_logs.store(on, SeqCst);
}

pub fn take_logs() -> Vec<LogLine> {
    std::mem::take(&mut *CORE.logs.lock().unwrap())
}

pub fn logs() -> Vec<LogLine> {
    CORE.logs.lock().unwrap().clone()
}

pub fn completions() -> Vec<String> {
    CORE.completions.lock().unwrap().clone()
}

pub fn bound_callbacks() -> usize {
    CORE.bindings.read().unwrap().len()
}

pub fn session_locks_held() -> i64 {
    CORE.session_locks.load(SeqCst)
}

/// Variable values copied into a session pool (`switch_channel_get_variable_dup(.., SWITCH_TRUE, ..)`).
pub fn pool_copies() -> i64 {
    CORE.pool_copies.load(SeqCst)
}

pub fn open_xml_trees() -> usize {
    CORE.xml_trees.lock().unwrap().len()
}

/// Makes a live session with these channel variables (names without `variable_`).
/// Its channel is in CS_EXECUTE and has no caller profile until `set_caller_profile`.
pub fn add_session(uuid: &str, vars: &HashMap<String, String>) {
    let vars = vars
        .iter()
        .map(|(k, v)| {
            (
                k.to_ascii_lowercase().into_bytes(),
                CString::new(v.as_str()).unwrap(),
            )
        })
        .collect();
    let session = Session {
        vars,
        profile: Mutex::new(None),
        state: AtomicU32::new(CS_EXECUTE),
        pool: Mutex::default(),
    };
    CORE.sessions
        .lock()
        .unwrap()
        .insert(uuid.as_bytes().to_vec(), Arc::new(session));
}

fn session(uuid: &str) -> Arc<Session> {
    CORE.sessions
        .lock()
        .unwrap()
        .get(uuid.as_bytes())
        .cloned()
        .unwrap_or_else(|| panic!("no session {uuid}"))
}

/// Gives the session's channel a caller profile, as an endpoint does with
/// `switch_caller_profile_new` + `switch_channel_set_caller_profile`. `fields` are
/// `switch_caller_get_field_by_name` names (see `CALLER_PROFILE_FIELDS`); the
/// others keep FreeSWITCH's defaults (caller_id_number 0000000000, context default, ...).
pub fn set_caller_profile(uuid: &str, fields: &[(&str, &str)]) {
    let s = session(uuid);
    *s.profile.lock().unwrap() = Some(CallerProfile::new(uuid, fields));
}

/// The session's channel hangs up (`switch_channel_perform_hangup` sets CS_HANGUP).
/// The session stays in the session table until it is destroyed (`remove_session`),
/// but `switch_core_session_perform_locate` no longer hands it out.
pub fn hangup_session(uuid: &str) {
    session(uuid).state.store(CS_HANGUP, SeqCst);
}

/// The session is destroyed: later lookups do not find it.
pub fn remove_session(uuid: &str) {
    CORE.sessions.lock().unwrap().remove(uuid.as_bytes());
}

/// `switch_core_set_variable` (switch_core.c): replaces any global variable of
/// that name (case-insensitively), or deletes it when `value` is None.
pub fn set_global_variable(name: &str, value: Option<&str>) {
    let mut globals = CORE.globals.write().unwrap();
    globals.retain(|(n, _)| !n.eq_ignore_ascii_case(name.as_bytes()));
    if let Some(v) = value {
        let mut v = v.as_bytes().to_vec();
        string_var_check_disable(&mut v);
        globals.push((name.as_bytes().to_vec(), CString::new(v).unwrap()));
    }
}

/// `switch_string_var_check(v, SWITCH_TRUE)` (switch_utils.h), which
/// switch_core_set_variable applies: a `$` opening `${` (backslashes allowed
/// between) becomes `%`, so a global never expands as a variable reference.
fn string_var_check_disable(s: &mut [u8]) {
    let mut dol: Option<usize> = None;
    for i in 0..s.len() {
        if s[i] == b'$' {
            dol = Some(i);
        } else if let Some(d) = dol {
            if s[i] == b'{' {
                s[d] = b'%';
                dol = None;
            } else if s[i] != b'\\' {
                dol = None;
            }
        }
    }
}

/// No global variables at all (a FreeSWITCH core sets hostname, base_dir and
/// the like at startup; the harness starts with none).
pub fn clear_global_variables() {
    CORE.globals.write().unwrap().clear();
}

pub fn clear_sessions() {
    CORE.sessions.lock().unwrap().clear();
}

/// An event as FreeSWITCH hands it to consumers: a `switch_event_t` with a
/// linked list of `switch_event_header_t`, all owned here.
pub struct OwnedEvent {
    raw: Box<ffi::switch_event_t>,
    headers: Vec<Box<ffi::switch_event_header_t>>,
    strings: Vec<CString>,
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
    subclass: Option<Vec<u8>>,
}

// SAFETY: an OwnedEvent is only used by one thread at a time; the pointers are into its own boxes.
unsafe impl Send for OwnedEvent {}

impl OwnedEvent {
    /// A CUSTOM event with the given subclass and headers, in order.
    pub fn custom(subclass: &str, headers: &[(&[u8], &[u8])]) -> OwnedEvent {
        Self::build(0, Some(subclass.as_bytes()), headers)
    }

    pub fn build(event_id: u32, subclass: Option<&[u8]>, headers: &[(&[u8], &[u8])]) -> OwnedEvent {
        let mut ev = OwnedEvent {
            raw: Box::default(),
            headers: Vec::new(),
            strings: Vec::new(),
            pairs: headers
                .iter()
                .map(|(n, v)| (n.to_vec(), v.to_vec()))
                .collect(),
            subclass: subclass.map(<[u8]>::to_vec),
        };
        ev.raw.event_id = event_id;
        if let Some(s) = subclass {
            let s = CString::new(s).unwrap();
            ev.raw.subclass_name = s.as_ptr().cast_mut();
            ev.strings.push(s);
        }
        for (name, value) in headers {
            let n = CString::new(*name).expect("header name without NUL");
            let v = CString::new(*value).expect("header value without NUL");
            let mut h: Box<ffi::switch_event_header_t> = Box::default();
            h.name = n.as_ptr().cast_mut();
            h.value = v.as_ptr().cast_mut();
            h.idx = 0;
            ev.strings.push(n);
            ev.strings.push(v);
            ev.headers.push(h);
        }
        let count = ev.headers.len();
        for i in 0..count {
            let next = if i + 1 < count {
                &mut *ev.headers[i + 1] as *mut ffi::switch_event_header_t
            } else {
                null_mut()
            };
            ev.headers[i].next = next;
        }
        if count > 0 {
            ev.raw.headers = &mut *ev.headers[0];
            ev.raw.last_header = &mut *ev.headers[count - 1];
        }
        ev
    }

    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name.as_bytes())
            .map(|(_, v)| v.as_slice())
    }

    /// A copy with one header's value replaced (or appended).
    pub fn with_header(&self, name: &str, value: &[u8]) -> OwnedEvent {
        let mut pairs = self.pairs.clone();
        match pairs.iter_mut().find(|(n, _)| n == name.as_bytes()) {
            Some(p) => p.1 = value.to_vec(),
            None => pairs.push((name.as_bytes().to_vec(), value.to_vec())),
        }
        let refs: Vec<(&[u8], &[u8])> = pairs.iter().map(|(n, v)| (&n[..], &v[..])).collect();
        Self::build(self.raw.event_id, self.subclass.as_deref(), &refs)
    }

    /// Replaces an existing header's value in place (its position is kept),
    /// without rebuilding the event: for firing one event many times with a
    /// few values moving on (timestamps, sequence numbers).
    pub fn set_header(&mut self, name: &str, value: &[u8]) {
        let i = self
            .pairs
            .iter()
            .position(|(n, _)| n == name.as_bytes())
            .unwrap_or_else(|| panic!("no header {name} to set"));
        let v = CString::new(value).expect("header value without NUL");
        self.headers[i].value = v.as_ptr().cast_mut();
        // build() pushed the subclass first, then each header's name and value.
        let at = usize::from(self.subclass.is_some()) + 2 * i + 1;
        self.strings[at] = v;
        self.pairs[i].1 = value.to_vec();
    }
}

impl Clone for OwnedEvent {
    fn clone(&self) -> Self {
        let refs: Vec<(&[u8], &[u8])> = self.pairs.iter().map(|(n, v)| (&n[..], &v[..])).collect();
        Self::build(self.raw.event_id, self.subclass.as_deref(), &refs)
    }
}

/// Delivers the event to every matching bound callback, as switch_event_deliver does:
/// under the read lock, with `bind_user_data` set from the binding.
pub fn fire(ev: &mut OwnedEvent) {
    let bindings = CORE.bindings.read().unwrap();
    for b in bindings.iter() {
        if b.event_id != ev.raw.event_id {
            continue;
        }
        if let Some(sub) = &b.subclass {
            // strcmp, as switch_event_deliver does.
            let matches = ev.subclass.as_deref() == Some(sub.to_bytes());
            if !matches {
                continue;
            }
        }
        ev.raw.bind_user_data = b.user_data as *mut c_void;
        // SAFETY: the callback was bound by the loaded module and stays valid until unbind,
        // which cannot run while we hold the read lock.
        unsafe { (b.callback)(&mut *ev.raw) };
    }
}

/// The first bound callback and its user data, for calling it directly from a
/// benchmark: FreeSWITCH's own dispatch cost is not the module's.
pub fn first_binding() -> Option<(unsafe extern "C" fn(*mut ffi::switch_event_t), usize)> {
    CORE.bindings
        .read()
        .unwrap()
        .first()
        .map(|b| (b.callback, b.user_data))
}

impl OwnedEvent {
    /// The event as the callback receives it, with `bind_user_data` set.
    pub fn as_delivered(&mut self, user_data: usize) -> *mut ffi::switch_event_t {
        self.raw.bind_user_data = user_data as *mut c_void;
        &mut *self.raw
    }
}

/// Runs an fs_cli API command through the interface the module registered.
pub fn api(command: &str, args: &str) -> Option<String> {
    let modules = CORE.modules.lock().unwrap();
    for &m in modules.iter() {
        // SAFETY: registered module interfaces live until their module is unloaded.
        let module = unsafe { &*(m as *const ModuleIface) };
        for api in &module.apis {
            if api.interface_name.is_null() {
                continue;
            }
            // SAFETY: the module set interface_name to a static C string.
            let name = unsafe { CStr::from_ptr(api.interface_name) };
            if name.to_bytes() != command.as_bytes() {
                continue;
            }
            let func = api.function.expect("API interface without a function");
            let cargs = CString::new(args).unwrap();
            let mut stream = ffi::switch_stream_handle_t::default();
            // SAFETY: host.c initialises and frees the stream like FreeSWITCH's SWITCH_STANDARD_STREAM.
            unsafe {
                cc_events_host_stream_init(&mut stream);
                func(cargs.as_ptr(), null_mut(), &mut stream);
                let out = CStr::from_ptr(stream.data as *const c_char)
                    .to_string_lossy()
                    .into_owned();
                cc_events_host_stream_free(&mut stream);
                watch_output(&format!("{command} {args}"), &out);
                return Some(out);
            }
        }
    }
    None
}

/// The module's `.so`, built by cargo next to the test/bench/example binaries.
pub fn module_path() -> PathBuf {
    if let Ok(p) = std::env::var("CC_EVENTS_MODULE") {
        return PathBuf::from(p);
    }
    // Tests and benches run from target/<profile>/deps, examples from .../examples.
    // Cargo rebuilds the library in deps/ for them; the copy one level up is
    // only refreshed by a plain `cargo build`, so deps/ comes first.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let fresh = profile_dir.join("deps/libmod_cc_events.so");
    if fresh.exists() {
        fresh
    } else {
        profile_dir.join("libmod_cc_events.so")
    }
}

/// A file's identity as /proc/self/maps shows it: device (major, minor) and inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileId {
    pub major: u64,
    pub minor: u64,
    pub inode: u64,
}

impl FileId {
    /// The file at `path` now.
    pub fn of(path: &Path) -> FileId {
        use std::os::unix::fs::MetadataExt;
        let meta =
            std::fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
        let dev = meta.dev();
        // glibc's gnu_dev_major / gnu_dev_minor.
        FileId {
            major: ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff),
            minor: (dev & 0xff) | ((dev >> 12) & !0xff),
            inode: meta.ino(),
        }
    }

    /// The identity in one line of /proc/self/maps (`start-end perms offset maj:min inode path`).
    pub fn of_maps_line(line: &str) -> Option<FileId> {
        let mut f = line.split_whitespace().skip(3);
        let (major, minor) = f.next()?.split_once(':')?;
        Some(FileId {
            major: u64::from_str_radix(major, 16).ok()?,
            minor: u64::from_str_radix(minor, 16).ok()?,
            inode: f.next()?.parse().ok()?,
        })
    }
}

/// The path field of a /proc/self/maps line (empty for anonymous mappings).
fn maps_path(line: &str) -> &str {
    // Five fields, then the path, which may contain spaces (" (deleted)").
    let mut rest = line;
    for _ in 0..5 {
        rest = rest.trim_start();
        rest = rest.find(' ').map_or("", |i| &rest[i..]);
    }
    rest.trim_start()
}

/// `path` as the kernel prints it: symlinks resolved. Works for a file that is gone.
fn resolved(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| {
        let dir = path.parent().expect("a file path");
        std::fs::canonicalize(dir).map_or_else(
            |_| path.to_path_buf(),
            |d| d.join(path.file_name().expect("a file path")),
        )
    })
}

/// Lines of /proc/self/maps mapping the file `id`.
pub fn mappings_of(id: FileId) -> Vec<String> {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| FileId::of_maps_line(l) == Some(id))
        .map(str::to_owned)
        .collect()
}

/// Lines of /proc/self/maps that belong to the file at `path`: by its resolved
/// path (which the kernel suffixes with " (deleted)" once the file is unlinked
/// or replaced), or by the device and inode the path names now.
pub fn module_mappings(path: &Path) -> Vec<String> {
    let want = resolved(path);
    let want = want.to_str().expect("a UTF-8 path");
    let deleted = format!("{want} (deleted)");
    let id = path.exists().then(|| FileId::of(path));
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| {
            let p = maps_path(l);
            p == want || p == deleted || (id.is_some() && FileId::of_maps_line(l) == id)
        })
        .map(str::to_owned)
        .collect()
}

/// A module loaded the way FreeSWITCH loads one.
pub struct LoadedModule {
    lib: *mut c_void,
    table: *const ffi::switch_loadable_module_function_table_t,
    iface: usize,
}

// SAFETY: handles are used from one thread at a time by the tests.
unsafe impl Send for LoadedModule {}

#[derive(Debug)]
pub struct LoadError {
    pub status: u32,
    pub message: String,
}

impl LoadedModule {
    /// dlopen, look up `mod_cc_events_module_interface`, check the API version, call load.
    pub fn load() -> Result<LoadedModule, LoadError> {
        Self::load_from(&module_path())
    }

    pub fn load_from(path: &Path) -> Result<LoadedModule, LoadError> {
        let cpath = CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: plain dlopen/dlsym on a path we built; FreeSWITCH uses RTLD_NOW | RTLD_LOCAL.
        unsafe {
            let lib = libc::dlopen(cpath.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
            if lib.is_null() {
                let err = CStr::from_ptr(libc::dlerror())
                    .to_string_lossy()
                    .into_owned();
                return Err(LoadError {
                    status: u32::MAX,
                    message: format!("dlopen {}: {err}", path.display()),
                });
            }
            let sym = libc::dlsym(lib, c"mod_cc_events_module_interface".as_ptr());
            if sym.is_null() {
                libc::dlclose(lib);
                return Err(LoadError {
                    status: u32::MAX,
                    message: "no mod_cc_events_module_interface symbol".into(),
                });
            }
            let table = sym as *const ffi::switch_loadable_module_function_table_t;
            if (*table).switch_api_version != ffi::SWITCH_API_VERSION as i32 {
                libc::dlclose(lib);
                return Err(LoadError {
                    status: u32::MAX,
                    message: format!("api version {}", (*table).switch_api_version),
                });
            }
            let load = (*table).load.expect("module table without load");
            let mut iface: *mut ffi::switch_loadable_module_interface_t = null_mut();
            // The pool is opaque to modules; any stable address will do.
            let pool = &*CORE as *const Core as *mut ffi::switch_memory_pool_t;
            let status = load(&mut iface, pool);
            if status != ffi::switch_status_t_SWITCH_STATUS_SUCCESS {
                if !iface.is_null() {
                    destroy_module_iface(iface as usize);
                }
                libc::dlclose(lib);
                return Err(LoadError {
                    status,
                    message: "load returned failure".into(),
                });
            }
            assert!(
                !iface.is_null(),
                "load succeeded without a module interface"
            );
            Ok(LoadedModule {
                lib,
                table,
                iface: iface as usize,
            })
        }
    }

    /// shutdown, drop the module's interfaces, dlclose: what `unload` does.
    pub fn unload(self) -> u32 {
        // SAFETY: table and lib come from a successful load and are used once here.
        unsafe {
            // FreeSWITCH removes the module's API commands, then calls shutdown,
            // then destroys the module's pool, then dlclose()s it.
            CORE.modules.lock().unwrap().retain(|&m| m != self.iface);
            let shutdown = (*self.table)
                .shutdown
                .expect("module table without shutdown");
            let status = shutdown();
            destroy_module_iface(self.iface);
            if status != ffi::switch_status_t_SWITCH_STATUS_NOUNLOAD {
                libc::dlclose(self.lib);
            }
            assert_no_leaks();
            status
        }
    }
}

fn destroy_module_iface(ptr: usize) {
    CORE.modules.lock().unwrap().retain(|&m| m != ptr);
    // SAFETY: ptr came from Box::into_raw in switch_loadable_module_create_module_interface.
    drop(unsafe { Box::from_raw(ptr as *mut ModuleIface) });
}

extern "C" {
    fn cc_events_host_stream_init(stream: *mut ffi::switch_stream_handle_t);
    fn cc_events_host_stream_free(stream: *mut ffi::switch_stream_handle_t);
}

// ---------------------------------------------------------------- the core functions

/// Writes through the stream's own write function, as FreeSWITCH's API code does.
fn stream_write(stream: *mut ffi::switch_stream_handle_t, text: &str) {
    let text = CString::new(text.replace('\0', "")).unwrap();
    // SAFETY: the caller's stream is valid for this call; "%s" takes one C string.
    unsafe {
        let write = (*stream)
            .write_function
            .expect("stream without write_function");
        write(stream, c"%s".as_ptr(), text.as_ptr());
    }
}

/// `switch_api_execute` (switch_loadable_module.c): only the `json` command of
/// mod_commands is here, and through it only mod_callcenter's JSON API, with
/// `switch_json_api_execute`'s reply shapes.
#[no_mangle]
pub extern "C" fn switch_api_execute(
    cmd: *const c_char,
    arg: *const c_char,
    _session: *mut ffi::switch_core_session_t,
    stream: *mut ffi::switch_stream_handle_t,
) -> ffi::switch_status_t {
    assert!(!stream.is_null(), "switch_api_execute asserts a stream");
    // SAFETY: the module passes NUL-terminated strings or NULL.
    let cmd = (!cmd.is_null()).then(|| {
        unsafe { CStr::from_ptr(cmd) }
            .to_string_lossy()
            .into_owned()
    });
    // SAFETY: as above.
    let arg = (!arg.is_null()).then(|| {
        unsafe { CStr::from_ptr(arg) }
            .to_string_lossy()
            .into_owned()
    });
    if cmd.as_deref() != Some("json") {
        stream_write(stream, "INVALID COMMAND!\n");
        return ffi::switch_status_t_SWITCH_STATUS_FALSE;
    }
    // mod_commands' json_function.
    let Some(mut request) = arg
        .as_deref()
        .and_then(|a| serde_json::from_str::<serde_json::Value>(a).ok())
    else {
        stream_write(stream, "-ERR Parse error.\n");
        return ffi::switch_status_t_SWITCH_STATUS_SUCCESS;
    };
    let api = CORE.callcenter.lock().unwrap().clone();
    let known = request["command"] == "callcenter_config" && request.get("data").is_some();
    match api.filter(|_| known) {
        Some(api) => {
            let args = request["data"]["arguments"]
                .as_str()
                .unwrap_or("")
                .to_string();
            CORE.callcenter_calls.lock().unwrap().push(args.clone());
            match api(&args) {
                Some(response) => {
                    request["status"] = "success".into();
                    request["response"] = response;
                }
                None => {
                    request["status"] = "error".into();
                    request["message"] = "The command returned an error".into();
                    request["response"] = serde_json::Value::Null;
                }
            }
        }
        None => {
            request["status"] = "error".into();
            request["message"] = "Invalid request or non-existant command".into();
            request["response"] = serde_json::Value::Null;
        }
    }
    stream_write(stream, &format!("{request}\n"));
    ffi::switch_status_t_SWITCH_STATUS_SUCCESS
}

#[no_mangle]
pub extern "C" fn switch_core_get_uuid() -> *mut c_char {
    CORE_UUID.as_ptr().cast_mut()
}

#[no_mangle]
pub extern "C" fn switch_core_get_switchname() -> *const c_char {
    switchname().as_ptr()
}

#[no_mangle]
pub extern "C" fn cc_events_host_log(
    level: c_int,
    file: *const c_char,
    _func: *const c_char,
    line: c_int,
    msg: *const c_char,
) {
    let file = if file.is_null() {
        String::new()
    } else {
        // SAFETY: the module passes a NUL-terminated file name.
        unsafe { CStr::from_ptr(file) }
            .to_string_lossy()
            .into_owned()
    };
    // SAFETY: host.c passes the formatted NUL-terminated message.
    let text = unsafe { CStr::from_ptr(msg) }
        .to_string_lossy()
        .into_owned();
    if CORE.echo_logs.load(SeqCst) || std::env::var_os("CC_EVENTS_HOST_LOG").is_some() {
        eprint!("[module log {level}] {text}");
    }
    watch_output("log", &text);
    CORE.logs.lock().unwrap().push(LogLine {
        level,
        text,
        file,
        line,
    });
}

#[no_mangle]
pub extern "C" fn switch_loadable_module_create_module_interface(
    _pool: *mut ffi::switch_memory_pool_t,
    name: *const c_char,
) -> *mut ffi::switch_loadable_module_interface_t {
    // SAFETY: the module passes a NUL-terminated name.
    let name = unsafe { CStr::from_ptr(name) }
        .to_string_lossy()
        .into_owned();
    let m = Box::into_raw(Box::new(ModuleIface {
        name,
        apis: Vec::new(),
    }));
    CORE.modules.lock().unwrap().push(m as usize);
    m.cast()
}

#[no_mangle]
pub extern "C" fn switch_loadable_module_create_interface(
    module: *mut ffi::switch_loadable_module_interface_t,
    iname: ffi::switch_module_interface_name_t,
) -> *mut c_void {
    if iname != ffi::switch_module_interface_name_t_SWITCH_API_INTERFACE || module.is_null() {
        return null_mut();
    }
    // SAFETY: module came from switch_loadable_module_create_module_interface.
    let module = unsafe { &mut *(module as *mut ModuleIface) };
    let mut api: Box<ffi::switch_api_interface_t> = Box::default();
    let ptr: *mut ffi::switch_api_interface_t = &mut *api;
    module.apis.push(api);
    ptr.cast()
}

#[no_mangle]
pub extern "C" fn switch_event_bind_removable(
    _id: *const c_char,
    event: ffi::switch_event_types_t,
    subclass_name: *const c_char,
    callback: ffi::switch_event_callback_t,
    user_data: *mut c_void,
    node: *mut *mut ffi::switch_event_node_t,
) -> ffi::switch_status_t {
    let Some(callback) = callback else {
        return ffi::switch_status_t_SWITCH_STATUS_FALSE;
    };
    let subclass = (!subclass_name.is_null())
        // SAFETY: non-null subclass is NUL-terminated; FreeSWITCH copies it, so do we.
        .then(|| unsafe { CStr::from_ptr(subclass_name) }.to_owned());
    let id = CORE.next_node.fetch_add(1, SeqCst) + 0x1000;
    CORE.bindings.write().unwrap().push(Binding {
        node: id,
        event_id: event,
        subclass,
        callback,
        user_data: user_data as usize,
    });
    if !node.is_null() {
        // SAFETY: node is the module's out-pointer.
        unsafe { *node = id as *mut ffi::switch_event_node_t };
    }
    ffi::switch_status_t_SWITCH_STATUS_SUCCESS
}

#[no_mangle]
pub extern "C" fn switch_event_unbind(
    node: *mut *mut ffi::switch_event_node_t,
) -> ffi::switch_status_t {
    if node.is_null() {
        return ffi::switch_status_t_SWITCH_STATUS_FALSE;
    }
    // SAFETY: node is the module's in/out pointer.
    let id = unsafe { *node } as usize;
    let mut bindings = CORE.bindings.write().unwrap();
    let before = bindings.len();
    bindings.retain(|b| b.node != id);
    let found = bindings.len() != before;
    // SAFETY: as above; FreeSWITCH clears the caller's node.
    unsafe { *node = null_mut() };
    if found {
        ffi::switch_status_t_SWITCH_STATUS_SUCCESS
    } else {
        ffi::switch_status_t_SWITCH_STATUS_FALSE
    }
}

#[no_mangle]
pub extern "C" fn switch_event_get_header_idx(
    event: *mut ffi::switch_event_t,
    header_name: *const c_char,
    _idx: c_int,
) -> *mut c_char {
    if event.is_null() || header_name.is_null() {
        return null_mut();
    }
    // SAFETY: a valid event and NUL-terminated name, as FreeSWITCH requires.
    unsafe {
        let want = CStr::from_ptr(header_name).to_bytes();
        let mut h = (*event).headers;
        while let Some(hdr) = h.as_ref() {
            if CStr::from_ptr(hdr.name)
                .to_bytes()
                .eq_ignore_ascii_case(want)
            {
                return hdr.value;
            }
            h = hdr.next;
        }
    }
    null_mut()
}

/// `switch_core_session_perform_locate` (switch_core_session.c): under
/// `runtime.session_hash_mutex`, find the session and take its read lock with
/// `switch_core_session_read_lock` (switch_core_rwlock.c). That is a *try* read
/// lock which is then given back, and the session refused, when the session is
/// SSF_DESTROYED or `switch_channel_down_nosig(channel)`, i.e. its state is
/// CS_HANGUP or later. A session being destroyed is write-locked (so the try
/// fails) and then leaves the table: the harness models both as `remove_session`.
#[no_mangle]
pub extern "C" fn switch_core_session_perform_locate(
    uuid_str: *const c_char,
    _file: *const c_char,
    _func: *const c_char,
    _line: c_int,
) -> *mut ffi::switch_core_session_t {
    if uuid_str.is_null() {
        return null_mut();
    }
    // SAFETY: NUL-terminated UUID from the module.
    let uuid = unsafe { CStr::from_ptr(uuid_str) }.to_bytes();
    let sessions = CORE.sessions.lock().unwrap();
    let Some(s) = sessions.get(uuid) else {
        return null_mut();
    };
    if s.state.load(SeqCst) >= CS_HANGUP {
        // "not available, forget it": no lock is left held.
        return null_mut();
    }
    CORE.session_locks.fetch_add(1, SeqCst);
    Arc::into_raw(s.clone()).cast_mut().cast()
}

#[no_mangle]
pub extern "C" fn switch_core_session_get_channel(
    session: *mut ffi::switch_core_session_t,
) -> *mut ffi::switch_channel_t {
    // One channel per session; the test host uses the session's address for both.
    session.cast()
}

#[no_mangle]
pub extern "C" fn switch_core_session_rwunlock(session: *mut ffi::switch_core_session_t) {
    assert!(!session.is_null(), "rwunlock(NULL)");
    CORE.session_locks.fetch_sub(1, SeqCst);
    // SAFETY: session came from Arc::into_raw in perform_locate, released once here.
    drop(unsafe { Arc::from_raw(session as *const Session) });
}

/// `switch_channel_get_variable_dup` (switch_channel.c), under the channel's
/// profile mutex. An empty name finds nothing. Otherwise, the first of:
/// 1. the channel's scope variables (not modelled: the module never sets any);
/// 2. the channel's variables, case-insensitively (`switch_event_get_header_idx`;
///    with `idx > -1` only an array variable's element, and the harness has none);
/// 3. the caller profile's field of that name (`switch_caller_get_field_by_name`),
///    if the channel has a profile. A name starting with `aleg_` / `bleg_` (case-
///    sensitive) loses the prefix and asks the originator's / originatee's profile
///    instead: the harness's channels have neither, so such a name goes on to 4
///    without its prefix. A field that is NULL (not an empty string) also goes on;
/// 4. the global variable of that name (`switch_core_get_variable_pdup`), always
///    copied into the session's pool, even with `dup = FALSE`.
///
/// With `dup = TRUE` a value from 2 or 3 is copied into the session's pool;
/// with `FALSE` it is the live value.
#[no_mangle]
pub extern "C" fn switch_channel_get_variable_dup(
    channel: *mut ffi::switch_channel_t,
    varname: *const c_char,
    dup: ffi::switch_bool_t,
    idx: c_int,
) -> *const c_char {
    // SAFETY: channel is a locked session (see get_channel).
    let session = unsafe { &*(channel as *const Session) };
    let profile = session.profile.lock().unwrap();
    if varname.is_null() {
        return std::ptr::null();
    }
    // SAFETY: varname is NUL-terminated.
    let mut name = unsafe { CStr::from_ptr(varname) }.to_bytes();
    if name.is_empty() {
        return std::ptr::null();
    }
    let pool_copy = |v: &[u8]| {
        CORE.pool_copies.fetch_add(1, SeqCst);
        session.pool.lock().unwrap().strdup(v)
    };
    let local = if idx > -1 {
        None
    } else {
        session.vars.get(&name.to_ascii_lowercase())
    };
    let local = local.or_else(|| {
        let mut cp = profile.as_ref();
        if cp.is_some() && (name.starts_with(b"aleg_") || name.starts_with(b"bleg_")) {
            // cp->originator_caller_profile / cp->originatee_caller_profile: none here.
            cp = None;
            name = &name[5..];
        }
        cp.and_then(|p| p.field(name))
    });
    if let Some(v) = local {
        if dup == ffi::switch_bool_t_SWITCH_FALSE {
            // The live value: FreeSWITCH may free it as soon as another thread sets the variable.
            return v.as_ptr();
        }
        return pool_copy(v.to_bytes());
    }
    let globals = CORE.globals.read().unwrap();
    match globals.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
        Some((_, v)) => pool_copy(v.to_bytes()),
        None => std::ptr::null(),
    }
}

#[no_mangle]
pub extern "C" fn switch_xml_open_cfg(
    file_path: *const c_char,
    node: *mut ffi::switch_xml_t,
    _params: *mut ffi::switch_event_t,
) -> ffi::switch_xml_t {
    // SAFETY: NUL-terminated name and a valid out-pointer, from the module.
    let want = unsafe { CStr::from_ptr(file_path) }
        .to_string_lossy()
        .into_owned();
    unsafe { *node = null_mut() };
    let Some(path) = CORE.config_file.lock().unwrap().clone() else {
        return null_mut();
    };
    let Ok(text) = std::fs::read_to_string(&path) else {
        return null_mut();
    };
    let doc = roxmltree::Document::parse(&text)
        .unwrap_or_else(|e| panic!("test config {} is not XML: {e}", path.display()));
    let Some(cfg) = doc
        .descendants()
        .find(|n| n.has_tag_name("configuration") && n.attribute("name") == Some(want.as_str()))
    else {
        return null_mut();
    };
    let mut tree = XmlTree {
        nodes: Vec::new(),
        strings: Vec::new(),
        attrs: Vec::new(),
    };
    let root = tree.alloc("document", &[], null_mut());
    let cfg_node = tree.build(cfg, root);
    // SAFETY: both nodes are owned by `tree`, which lives until switch_xml_free.
    unsafe {
        (*root).child = cfg_node;
        *node = cfg_node;
    }
    CORE.xml_trees.lock().unwrap().insert(root as usize, tree);
    root
}

impl XmlTree {
    fn cstr(&mut self, s: &str) -> *mut c_char {
        let c = CString::new(s).unwrap();
        let p = c.as_ptr().cast_mut();
        self.strings.push(c);
        p
    }

    fn alloc(
        &mut self,
        name: &str,
        attrs: &[(&str, &str)],
        parent: ffi::switch_xml_t,
    ) -> ffi::switch_xml_t {
        let mut n: Box<ffi::switch_xml> = Box::default();
        n.name = self.cstr(name);
        let mut arr: Vec<*mut c_char> = Vec::new();
        for (k, v) in attrs {
            arr.push(self.cstr(k));
            arr.push(self.cstr(v));
        }
        arr.push(null_mut());
        n.attr = arr.as_mut_ptr();
        self.attrs.push(arr);
        n.txt = self.cstr("");
        n.parent = parent;
        let p: *mut ffi::switch_xml = &mut *n;
        self.nodes.push(n);
        p
    }

    /// Links children like FreeSWITCH's parser: `child` is the first, `sibling`
    /// jumps to the next different name, `next` to the next of the same name.
    fn build(&mut self, el: roxmltree::Node, parent: ffi::switch_xml_t) -> ffi::switch_xml_t {
        let attrs: Vec<(&str, &str)> = el.attributes().map(|a| (a.name(), a.value())).collect();
        let me = self.alloc(el.tag_name().name(), &attrs, parent);
        let mut firsts: Vec<ffi::switch_xml_t> = Vec::new();
        let mut lasts: HashMap<String, ffi::switch_xml_t> = HashMap::new();
        let mut prev_ordered: ffi::switch_xml_t = null_mut();
        for child in el.children().filter(|c| c.is_element()) {
            let c = self.build(child, me);
            let name = child.tag_name().name().to_string();
            // SAFETY: all nodes are owned by self and alive.
            unsafe {
                if let Some(&last) = lasts.get(&name) {
                    (*last).next = c;
                } else {
                    if let Some(&prev_first) = firsts.last() {
                        (*prev_first).sibling = c;
                    } else {
                        (*me).child = c;
                    }
                    firsts.push(c);
                }
                if !prev_ordered.is_null() {
                    (*prev_ordered).ordered = c;
                }
            }
            lasts.insert(name, c);
            prev_ordered = c;
        }
        me
    }
}

#[no_mangle]
pub extern "C" fn switch_xml_child(
    xml: ffi::switch_xml_t,
    name: *const c_char,
) -> ffi::switch_xml_t {
    if xml.is_null() {
        return null_mut();
    }
    // SAFETY: xml is a node of a live tree; names are NUL-terminated.
    unsafe {
        let want = CStr::from_ptr(name);
        let mut c = (*xml).child;
        while !c.is_null() && CStr::from_ptr((*c).name) != want {
            c = (*c).sibling;
        }
        c
    }
}

#[no_mangle]
pub extern "C" fn switch_xml_attr_soft(
    xml: ffi::switch_xml_t,
    attr: *const c_char,
) -> *const c_char {
    if xml.is_null() {
        return c"".as_ptr();
    }
    // SAFETY: attr arrays are NULL-terminated name/value pairs owned by the tree.
    unsafe {
        let want = CStr::from_ptr(attr);
        let mut a = (*xml).attr;
        while !a.is_null() && !(*a).is_null() {
            if CStr::from_ptr(*a) == want {
                return *a.add(1);
            }
            a = a.add(2);
        }
    }
    c"".as_ptr()
}

#[no_mangle]
pub extern "C" fn switch_xml_free(xml: ffi::switch_xml_t) {
    let removed = CORE.xml_trees.lock().unwrap().remove(&(xml as usize));
    assert!(
        removed.is_some() || xml.is_null(),
        "switch_xml_free of a node that is not an open root"
    );
}

#[no_mangle]
pub extern "C" fn switch_console_set_complete(string: *const c_char) -> ffi::switch_status_t {
    // SAFETY: NUL-terminated from the module.
    let s = unsafe { CStr::from_ptr(string) }
        .to_string_lossy()
        .into_owned();
    CORE.completions.lock().unwrap().push(s);
    ffi::switch_status_t_SWITCH_STATUS_SUCCESS
}
