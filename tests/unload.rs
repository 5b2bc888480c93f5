//! `unload mod_cc_events` really unloads: once FreeSWITCH has dlclose()d the
//! module, nothing of its `.so` is left mapped, whichever thread loaded it and
//! whichever threads delivered events or ran its API command. A module that
//! stays mapped keeps running old code after `reload` and leaks a copy per cycle.
//!
//! glibc keeps a library mapped after its last dlclose() while any thread still
//! has a thread-local destructor registered from it (`__cxa_thread_atexit_impl`),
//! until that thread exits. FreeSWITCH's threads (the console's, the event
//! dispatch threads) live as long as FreeSWITCH, so the module must leave none
//! behind on them.
//!
//! Each test loads its own copy of the built module: a module that stays mapped
//! in one test then cannot hide or fake the outcome of another.

mod harness;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use harness::core::{self, FileId, LoadedModule, OwnedEvent};
use harness::fixtures;
use harness::redis::{temp_dir, wait_until, RedisServer, Subscriber};

const WAIT: Duration = Duration::from_secs(10);

/// A fresh copy (a new inode) of the built module at `dest`, replacing any file there.
fn copy_module_to(dest: &Path) {
    let tmp = dest.with_extension("so.new");
    std::fs::copy(core::module_path(), &tmp).unwrap();
    std::fs::rename(&tmp, dest).unwrap();
}

/// Every fixture event, with member sessions, so the session lookup runs too.
fn fixture_events() -> Vec<OwnedEvent> {
    fixtures::events().iter().map(|f| f.event()).collect()
}

/// One FreeSWITCH event dispatch thread: delivers events until the module is
/// unloaded (so some callbacks race the unbind), then stays alive, idle, until
/// the test has looked at the mappings and drops it.
struct DispatchThread {
    fired: Arc<AtomicU64>,
    stop_firing: Arc<AtomicBool>,
    exit: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl DispatchThread {
    fn start() -> DispatchThread {
        let fired = Arc::new(AtomicU64::new(0));
        let stop_firing = Arc::new(AtomicBool::new(false));
        let (exit, exit_rx) = mpsc::channel::<()>();
        let (f, s) = (fired.clone(), stop_firing.clone());
        let thread = std::thread::spawn(move || {
            let mut events = fixture_events();
            while !s.load(SeqCst) {
                for ev in &mut events {
                    core::fire(ev);
                }
                f.fetch_add(events.len() as u64, SeqCst);
            }
            // Blocks until the DispatchThread is dropped: no sleeping.
            let _ = exit_rx.recv();
        });
        DispatchThread {
            fired,
            stop_firing,
            exit: Some(exit),
            thread: Some(thread),
        }
    }

    fn stop_firing(&self) {
        self.stop_firing.store(true, SeqCst);
    }
}

impl Drop for DispatchThread {
    /// Ends the thread, also when a test fails while it is still firing.
    fn drop(&mut self) {
        self.stop_firing();
        drop(self.exit.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Short-lived threads, each delivering every fixture event once and exiting.
fn fire_from_short_lived_threads(n: usize) {
    let threads: Vec<_> = (0..n)
        .map(|_| {
            std::thread::spawn(|| {
                for mut ev in fixture_events() {
                    core::fire(&mut ev);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// The module's traffic while loaded: events from short-lived threads and from
/// long-lived dispatch threads, and `cc_events status` from this (long-lived)
/// thread, as fs_cli's runs on FreeSWITCH's console thread. Returns the
/// dispatch threads, still firing.
fn exercise(redis: &RedisServer, sub: &Subscriber) -> Vec<DispatchThread> {
    fire_from_short_lived_threads(3);
    let dispatch: Vec<_> = (0..2).map(|_| DispatchThread::start()).collect();
    for d in &dispatch {
        assert!(
            wait_until(WAIT, || d.fired.load(SeqCst) > 0),
            "dispatch thread delivered events"
        );
    }
    // Messages reached Redis: the worker connected and published, not only queued.
    sub.take(1, WAIT);
    let status = core::api("cc_events", "status").expect("cc_events command registered");
    assert!(
        status.contains(&format!("connected (127.0.0.1:{}", redis.port)),
        "{status}"
    );
    dispatch
}

fn mapped_report(so: &Path, id: FileId) -> String {
    format!(
        "mapped by path:\n{}\nmapped by inode {id:?}:\n{}",
        core::module_mappings(so).join("\n"),
        core::mappings_of(id).join("\n")
    )
}

/// Loads a copy of the module (on a thread that then exits, or on this thread),
/// drives it from several threads, unloads it, and checks nothing is left mapped
/// while every long-lived thread is still alive.
fn unload_leaves_nothing_mapped(load_on_exiting_thread: bool) {
    let _g = core::exclusive();
    let redis = RedisServer::start();
    harness::config_for(redis.port, &[]);
    fixtures::add_member_sessions();
    let sub = Subscriber::new(&redis, "callcenter_events");
    let dir = temp_dir("unload");
    let so: PathBuf = dir.join("mod_cc_events.so");
    copy_module_to(&so);
    let id = FileId::of(&so);

    let module = if load_on_exiting_thread {
        let path = so.clone();
        std::thread::spawn(move || LoadedModule::load_from(&path).expect("load"))
            .join()
            .unwrap()
    } else {
        LoadedModule::load_from(&so).expect("load")
    };
    // The checks below would pass vacuously if these found nothing.
    assert!(
        !core::mappings_of(id).is_empty() && !core::module_mappings(&so).is_empty(),
        "the loaded module shows in /proc/self/maps, by inode and by path"
    );

    let dispatch = exercise(&redis, &sub);
    assert_eq!(module.unload(), 0, "shutdown returned SUCCESS");
    for d in &dispatch {
        d.stop_firing();
    }

    let left_by_path = core::module_mappings(&so);
    let left_by_inode = core::mappings_of(id);
    let report = mapped_report(&so, id);
    drop(dispatch);
    core::clear_sessions();
    // A mapping outlives its file; the 19 MB copy need not.
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        left_by_path.is_empty() && left_by_inode.is_empty(),
        "the module is still mapped after unload; {report}"
    );
}

#[test]
fn unload_leaves_nothing_mapped_when_loaded_from_a_thread_that_exits() {
    unload_leaves_nothing_mapped(true);
}

#[test]
fn unload_leaves_nothing_mapped_when_loaded_from_a_long_lived_thread() {
    unload_leaves_nothing_mapped(false);
}

/// `reload mod_cc_events` after installing a new build: the old file is replaced
/// (a new inode at the same path) and the new code must be what runs.
#[test]
fn reload_after_replacing_the_file_maps_only_the_new_one() {
    let _g = core::exclusive();
    let redis = RedisServer::start();
    harness::config_for(redis.port, &[]);
    fixtures::add_member_sessions();
    let sub = Subscriber::new(&redis, "callcenter_events");
    let dir = temp_dir("reload");
    let so: PathBuf = dir.join("mod_cc_events.so");
    copy_module_to(&so);
    let old = FileId::of(&so);

    let module = LoadedModule::load_from(&so).expect("first load");
    let dispatch = exercise(&redis, &sub);
    assert_eq!(module.unload(), 0);
    for d in &dispatch {
        d.stop_firing();
    }
    let old_left = core::mappings_of(old);

    copy_module_to(&so);
    let new = FileId::of(&so);
    assert_ne!(old, new, "the replacement is a new inode");
    let module = LoadedModule::load_from(&so).expect("second load");
    let mapped = core::module_mappings(&so);
    let ids: Vec<_> = mapped
        .iter()
        .map(|l| FileId::of_maps_line(l).unwrap())
        .collect();
    let new_mapped = core::mappings_of(new);
    // The reloaded module works: this instance's own counters show its traffic.
    for mut ev in fixture_events() {
        core::fire(&mut ev);
    }
    let published = wait_until(WAIT, || {
        core::api("cc_events", "status").is_some_and(|s| !s.contains("published:  0\n"))
    });
    assert!(published, "{:?}", core::api("cc_events", "status"));
    assert_eq!(module.unload(), 0);
    drop(dispatch);
    core::clear_sessions();
    let _ = std::fs::remove_dir_all(&dir);

    let after_reload = match (new_mapped.is_empty(), ids.iter().all(|&i| i == new)) {
        (false, true) => "only the new file",
        (false, false) => "the new file and the old one",
        (true, _) => "not the new file at all (dlopen handed back the old module)",
    };
    assert!(
        old_left.is_empty() && after_reload == "only the new file",
        "first module {old:?} still mapped after unload: {}; after reload the path maps {after_reload} \
         (want only the new file {new:?}):\n{}",
        if old_left.is_empty() { "no" } else { "yes" },
        mapped.join("\n")
    );
}

/// The lowest free pthread key: what the next `pthread_key_create` returns.
fn next_free_pthread_key() -> libc::pthread_key_t {
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: a valid out-pointer and no destructor; the key is deleted at once.
    unsafe {
        assert_eq!(libc::pthread_key_create(&mut key, None), 0);
        libc::pthread_key_delete(key);
    }
    key
}

/// glibc has 1024 pthread keys per process. A module whose worker registers
/// one per load (std does, for its thread handle, when a thread it did not
/// start blocks in a std channel) runs FreeSWITCH out of them after about a
/// thousand reloads, with the key's destructor pointing into unmapped code.
#[test]
fn load_traffic_unload_cycles_leave_no_pthread_key_behind() {
    let _g = core::exclusive();
    let redis = RedisServer::start();
    harness::config_for(redis.port, &[]);
    let sub = Subscriber::new(&redis, "callcenter_events");
    fixtures::add_member_sessions();
    // One cycle first, so that anything the harness itself sets up once is in place.
    let cycle = || {
        let module = LoadedModule::load().expect("load");
        for mut ev in fixture_events() {
            core::fire(&mut ev);
        }
        assert!(wait_until(WAIT, || core::api("cc_events", "status")
            .unwrap()
            .contains("queued:     0 ")));
        core::api("cc_events", "status").unwrap();
        module.unload();
    };
    cycle();
    let before = next_free_pthread_key();
    for _ in 0..20 {
        cycle();
    }
    let after = next_free_pthread_key();
    sub.drain();
    core::clear_sessions();
    assert_eq!(
        after,
        before,
        "{} pthread keys leaked over 20 cycles",
        after - before
    );
}
