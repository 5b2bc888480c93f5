//! End to end inside a real FreeSWITCH: mod_callcenter fires the events, this
//! module publishes them, a Redis subscriber checks them.
//!
//! Runs only when FREESWITCH_PREFIX names an installed FreeSWITCH (with
//! mod_callcenter, mod_loopback, mod_dptools, mod_commands, mod_dialplan_xml,
//! mod_event_socket). Without it (build.rs looks at the variable), `cargo test`
//! lists the test as ignored, with the reason.
//!
//!     FREESWITCH_PREFIX=/usr/local/freeswitch cargo test --test freeswitch_e2e -- --nocapture
//!
//! CC_EVENTS_KEEP_E2E=1 keeps the temporary FreeSWITCH directory (config, log) for a look.
//!
//! Five scenarios, one FreeSWITCH at a time: the seed format with unload/load
//! cycles and an in-place upgrade; TLS to a Redis that listens only on its
//! tls-port (rustls beside FreeSWITCH's own OpenSSL, unload/load, and a final
//! unload that leaves nothing mapped); Redis Sentinel (a master, a replica and
//! three sentinels; events, `via sentinel` in status, unload/load);
//! `events=all`, `format=envelope` with a stream: one call's lifecycle on
//! Pub/Sub and in the stream, then
//! `cc_events reload` twice while agent status changes flow (the second with
//! Redis frozen, so that events are queued on both sides of it); and the live
//! state mirror (`state=true`) compared with mod_callcenter's own `agent list`
//! and `member list` through a call, a waiting caller, status changes, an
//! unload/load (reseed) and an abandoned caller.

mod harness;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use harness::esl::Esl;
use harness::redis::{free_port, temp_dir, wait_until, RedisServer, Subscriber};
use harness::tls::{redis_tls_only, Certs};

const WAIT: Duration = Duration::from_secs(30);
const SEED_FIELDS: [&str; 11] = [
    "callrequest_id",
    "CC_Agent",
    "campaign_id",
    "CC_Member_CID_Name",
    "CC_Agent_System",
    "phonenumber",
    "callerid_number",
    "CC_Member_Session_UUID",
    "CC_Member_UUID",
    "CC_Member_CID_Number",
    "CC_Queue",
];

fn modules_dir(prefix: &Path) -> Option<PathBuf> {
    [
        prefix.join("mod"),
        prefix.join("lib/freeswitch/mod"),
        "/usr/lib/freeswitch/mod".into(),
    ]
    .into_iter()
    .find(|d| d.join("mod_callcenter.so").exists())
}

fn write(path: PathBuf, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// cc_events.conf.xml pointing at the test Redis on `redis_port`, with `params` after it.
fn cc_events_conf(redis_port: u16, params: &[(&str, &str)]) -> String {
    let port = redis_port.to_string();
    let mut all = vec![("host", "127.0.0.1"), ("port", port.as_str())];
    all.extend_from_slice(params);
    cc_events_settings(&all)
}

/// cc_events.conf.xml with exactly these params.
fn cc_events_settings(params: &[(&str, &str)]) -> String {
    let mut xml = String::from(
        r#"<configuration name="cc_events.conf" description="Call-center events to Redis">
  <settings>
"#,
    );
    for (name, value) in params {
        xml.push_str(&format!("    <param name=\"{name}\" value=\"{value}\"/>\n"));
    }
    xml.push_str("  </settings>\n</configuration>\n");
    xml
}

/// A minimal configuration: one queue, one callback agent that answers (null endpoint),
/// a `queue` extension that sets the dialer's variables, the event socket on `esl_port`,
/// and `cc_events` as cc_events.conf.xml.
fn write_config(conf: &Path, esl_port: u16, module: &Path, cc_events: &str) {
    write(
        conf.join("freeswitch.xml"),
        r#"<?xml version="1.0"?>
<document type="freeswitch/xml">
  <section name="configuration" description="Various Configuration">
    <X-PRE-PROCESS cmd="include" data="autoload_configs/*.xml"/>
  </section>
  <section name="dialplan" description="Regex/XML Dialplan">
    <X-PRE-PROCESS cmd="include" data="dialplan/*.xml"/>
  </section>
</document>
"#,
    );
    write(
        conf.join("autoload_configs/switch.conf.xml"),
        r#"<configuration name="switch.conf" description="Core">
  <settings>
    <param name="colorize-console" value="false"/>
    <param name="loglevel" value="debug"/>
    <param name="dump-cores" value="no"/>
  </settings>
</configuration>
"#,
    );
    write(
        conf.join("autoload_configs/modules.conf.xml"),
        &format!(
            r#"<configuration name="modules.conf" description="Modules">
  <modules>
    <load module="mod_logfile"/>
    <load module="mod_event_socket"/>
    <load module="mod_commands"/>
    <load module="mod_dptools"/>
    <load module="mod_dialplan_xml"/>
    <load module="mod_loopback"/>
    <load module="mod_callcenter"/>
    <load module="{}"/>
  </modules>
</configuration>
"#,
            module.display()
        ),
    );
    write(
        conf.join("autoload_configs/logfile.conf.xml"),
        r#"<configuration name="logfile.conf" description="File Logging">
  <profiles>
    <profile name="default">
      <mappings><map name="all" value="debug,info,notice,warning,err,crit,alert"/></mappings>
    </profile>
  </profiles>
</configuration>
"#,
    );
    write(
        conf.join("autoload_configs/event_socket.conf.xml"),
        &format!(
            r#"<configuration name="event_socket.conf" description="Socket Client">
  <settings>
    <param name="nat-map" value="false"/>
    <param name="listen-ip" value="127.0.0.1"/>
    <param name="listen-port" value="{esl_port}"/>
    <param name="password" value="ClueCon"/>
  </settings>
</configuration>
"#
        ),
    );
    write(
        conf.join("autoload_configs/callcenter.conf.xml"),
        r#"<configuration name="callcenter.conf" description="CallCenter">
  <settings/>
  <queues>
    <queue name="tenant-1@areski-queue">
      <param name="strategy" value="longest-idle-agent"/>
      <param name="moh-sound" value="silence_stream://-1"/>
      <param name="time-base-score" value="system"/>
      <param name="max-wait-time" value="0"/>
      <param name="max-wait-time-with-no-agent" value="0"/>
      <param name="discard-abandoned-after" value="60"/>
    </queue>
  </queues>
  <agents>
    <agent name="tenant-1@areski" type="callback" contact="[leg_timeout=10,execute_on_answer=sched_hangup +4 normal_clearing]null/areski" status="Logged Out" max-no-answer="3" wrap-up-time="2" reject-delay-time="2" busy-delay-time="2" no-answer-delay-time="2"/>
  </agents>
  <tiers>
    <tier agent="tenant-1@areski" queue="tenant-1@areski-queue" level="1" position="1"/>
  </tiers>
</configuration>
"#,
    );
    write(conf.join("autoload_configs/cc_events.conf.xml"), cc_events);
    write(
        conf.join("dialplan/default.xml"),
        r#"<include>
  <context name="default">
    <extension name="queue">
      <condition field="destination_number" expression="^queue$">
        <action application="set" data="callrequest_id=276547"/>
        <action application="set" data="campaign_id=295"/>
        <action application="set" data="phonenumber=34650844400"/>
        <action application="set" data="callerid_number=34650844400"/>
        <action application="set" data="effective_caller_id_name=Outbound Call"/>
        <action application="set" data="effective_caller_id_number=34650110022"/>
        <action application="answer"/>
        <action application="callcenter" data="tenant-1@areski-queue"/>
        <action application="hangup"/>
      </condition>
    </extension>
  </context>
</include>
"#,
    );
}

struct FreeSwitch {
    run_dir: PathBuf,
}

impl FreeSwitch {
    fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.run_dir.join("freeswitch.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn alive(&self) -> bool {
        // SAFETY: kill with signal 0 only checks that the process exists.
        self.pid().is_some_and(|p| unsafe { libc::kill(p, 0) } == 0)
    }
}

impl Drop for FreeSwitch {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            if self.alive() {
                // A test that failed before `fsctl shutdown`: ask it to stop.
                // SAFETY: our own child FreeSWITCH, identified by its pid file.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            if !wait_until(Duration::from_secs(20), || !self.alive()) {
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// One FreeSWITCH at a time: the tests in this file share 2 cores with everything else.
static ONE_FREESWITCH: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A FreeSWITCH started by `start_freeswitch`, with an event-socket client.
struct Running {
    esl: Esl,
    fs: FreeSwitch,
    base: PathBuf,
    /// The module file FreeSWITCH loads (a copy of the built one).
    module: PathBuf,
    esl_port: u16,
}

/// Writes the configuration (cc_events.conf.xml = `cc_events`), starts FreeSWITCH
/// from FREESWITCH_PREFIX on loopback and connects to its event socket.
fn start_freeswitch(tag: &str, cc_events: &str) -> Running {
    let prefix = std::env::var_os("FREESWITCH_PREFIX")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .expect("FREESWITCH_PREFIX must name an installed FreeSWITCH 1.10");
    let bin = prefix.join("bin/freeswitch");
    assert!(bin.exists(), "{} not found", bin.display());
    let mod_dir = modules_dir(&prefix).expect("no mod_callcenter.so under FREESWITCH_PREFIX");

    let base = temp_dir(tag);
    // FreeSWITCH derives the module table's symbol from the file name.
    let module = base.join("mod_cc_events.so");
    std::fs::copy(harness::core::module_path(), &module).unwrap();
    let esl_port = free_port();
    write_config(&base.join("conf"), esl_port, &module, cc_events);

    let dir = |d: &str| {
        let p = base.join(d);
        std::fs::create_dir_all(&p).unwrap();
        p
    };
    let mut cmd = Command::new(&bin);
    cmd.args(["-nc", "-np", "-nonat"]);
    for (flag, d) in [
        ("-conf", "conf"),
        ("-log", "log"),
        ("-db", "db"),
        ("-run", "run"),
        ("-storage", "storage"),
        ("-cache", "cache"),
        ("-temp", "temp"),
        ("-scripts", "scripts"),
        ("-sounds", "sounds"),
        ("-recordings", "recordings"),
        ("-certs", "certs"),
        ("-grammar", "grammar"),
        ("-htdocs", "htdocs"),
    ] {
        cmd.arg(flag).arg(dir(d));
    }
    cmd.arg("-mod").arg(&mod_dir);
    let status = cmd.status().expect("start freeswitch");
    assert!(status.success(), "freeswitch -nc exited with {status}");
    let fs = FreeSwitch {
        run_dir: base.join("run"),
    };

    let mut esl = None;
    assert!(
        wait_until(WAIT, || {
            esl = Esl::connect(esl_port, "ClueCon").ok();
            esl.is_some()
        }),
        "FreeSWITCH's event socket did not come up; see {}",
        base.join("log/freeswitch.log").display()
    );
    Running {
        esl: esl.unwrap(),
        fs,
        base,
        module,
        esl_port,
    }
}

/// The lines of /proc/<pid>/maps that map a file named like the module
/// (any directory, "(deleted)" or not).
fn module_mappings(pid: i32) -> Vec<String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/maps: {e}"));
    maps.lines()
        .filter(|l| l.contains("mod_cc_events"))
        .map(str::to_owned)
        .collect()
}

/// The inode column of a maps line: `address perms offset dev inode path`.
fn mapped_inode(line: &str) -> u64 {
    line.split_whitespace()
        .nth(4)
        .and_then(|i| i.parse().ok())
        .unwrap_or_else(|| panic!("no inode in maps line {line:?}"))
}

fn json_fields(payload: &str, outer: &str) -> Vec<(String, String)> {
    // Field order matters to the contract; read it from the text, not a map.
    let inner_start = payload.find(": {").expect("outer object") + 3;
    let inner = &payload[inner_start..payload.len() - 2];
    assert!(
        payload.starts_with(&format!("{{\"{outer}:\" : {{")),
        "{payload}"
    );
    let v: serde_json::Value = serde_json::from_str(&format!("{{{inner}}}")).unwrap();
    let obj = v.as_object().unwrap();
    let mut keys: Vec<(usize, String)> = obj
        .keys()
        .map(|k| (inner.find(&format!("\"{k}\":")).unwrap(), k.clone()))
        .collect();
    keys.sort();
    keys.into_iter()
        .map(|(_, k)| (k.clone(), obj[&k].as_str().unwrap().to_owned()))
        .collect()
}

#[test]
#[cfg_attr(
    not(freeswitch_prefix),
    ignore = "set FREESWITCH_PREFIX to an installed FreeSWITCH 1.10 to run this test"
)]
fn callcenter_events_reach_redis_from_a_real_freeswitch() {
    let _one = ONE_FREESWITCH.lock().unwrap_or_else(|e| e.into_inner());
    let redis = RedisServer::start();
    let sub = Subscriber::new(&redis, "callcenter_events");
    let Running {
        mut esl,
        fs,
        base,
        module,
        esl_port,
    } = start_freeswitch(
        "freeswitch",
        &cc_events_conf(redis.port, &[("channel", "callcenter_events")]),
    );
    let log = || std::fs::read_to_string(base.join("log/freeswitch.log")).unwrap_or_default();

    // The module loaded and connected.
    assert!(
        wait_until(WAIT, || esl
            .api("cc_events status")
            .unwrap()
            .contains("redis:      connected")),
        "{}",
        esl.api("cc_events status").unwrap()
    );
    assert!(log().contains(&format!(
        "mod_cc_events {} loaded: redis 127.0.0.1:",
        env!("CARGO_PKG_VERSION")
    )));

    // Unload and load again inside FreeSWITCH, a few times.
    for _ in 0..3 {
        let out = esl.api("unload mod_cc_events").unwrap();
        assert!(out.starts_with("+OK"), "unload: {out}");
        let out = esl.api(&format!("load {}", module.display())).unwrap();
        assert!(out.starts_with("+OK"), "load: {out}");
    }
    assert!(wait_until(WAIT, || esl
        .api("cc_events status")
        .unwrap()
        .contains("redis:      connected")));

    let out = esl
        .api("callcenter_config agent set status tenant-1@areski Available")
        .unwrap();
    assert!(out.starts_with("+OK"), "{out}");
    // mod_callcenter loads before this module and sets the agent's configured
    // status (Logged Out) as it starts; that event may still be in FreeSWITCH's
    // dispatch queue when this module binds, and is then published first.
    let startup = r#"{"Agent-Status-Change:" : {"CC_Agent": "tenant-1@areski", "CC_Agent_Status": "Logged Out"}}"#;
    let mut got = sub.take(1, WAIT);
    let startup_seen = got[0] == startup;
    if startup_seen {
        got = sub.take(1, WAIT);
    }
    assert_eq!(
        got[0],
        r#"{"Agent-Status-Change:" : {"CC_Agent": "tenant-1@areski", "CC_Agent_Status": "Available"}}"#
    );

    let out = esl
        .api("originate {origination_caller_id_number=34650110022,origination_caller_id_name='Outbound Call'}loopback/queue/default &park")
        .unwrap();
    assert!(out.starts_with("+OK"), "{out}");
    let got = sub.take(2, WAIT);
    for (payload, outer) in got
        .iter()
        .zip(["Offering-Call-Agent", "Connected-Call-Agent"])
    {
        eprintln!("received: {payload}");
        let fields = json_fields(payload, outer);
        let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, SEED_FIELDS, "{payload}");
        let get = |k: &str| fields.iter().find(|(n, _)| n == k).unwrap().1.clone();
        assert_eq!(get("callrequest_id"), "276547");
        assert_eq!(get("campaign_id"), "295");
        assert_eq!(get("phonenumber"), "34650844400");
        assert_eq!(get("callerid_number"), "34650844400");
        assert_eq!(get("CC_Agent"), "tenant-1@areski");
        assert_eq!(get("CC_Agent_System"), "single_box");
        assert_eq!(get("CC_Member_CID_Name"), "Outbound Call");
        assert_eq!(get("CC_Member_CID_Number"), "34650110022");
        assert_eq!(get("CC_Queue"), "tenant-1@areski-queue");
        assert_eq!(get("CC_Member_Session_UUID").len(), 36);
        assert_eq!(get("CC_Member_UUID").len(), 36);
    }

    let out = esl
        .api("callcenter_config agent set status tenant-1@areski 'Logged Out'")
        .unwrap();
    assert!(out.starts_with("+OK"), "{out}");
    let got = sub.take(1, WAIT);
    assert_eq!(
        got[0],
        r#"{"Agent-Status-Change:" : {"CC_Agent": "tenant-1@areski", "CC_Agent_Status": "Logged Out"}}"#
    );

    // The subscriber can see a message before the worker has read Redis's reply to it.
    assert!(wait_until(WAIT, || {
        let st = esl.api("cc_events status").unwrap();
        st.contains("queued:     0 of")
    }));
    let status = esl.api("cc_events status").unwrap();
    eprintln!("fs_cli> cc_events status\n{status}");
    // Available, Offering, Connected, Logged Out (and perhaps the startup status,
    // if this instance was the one bound when it was dispatched); nothing else.
    let count = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in {status}"))
    };
    assert_eq!(count("received:"), count("published:"), "{status}");
    assert!(
        (4..=4 + u64::from(startup_seen)).contains(&count("published:")),
        "{status}"
    );
    assert!(sub.drain().is_empty());
    assert!(status.contains("dropped:    0\n"), "{status}");

    // 100 unload/load cycles while another event-socket client keeps mod_callcenter
    // firing agent-status-change events.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let toggler = {
        let stop = stop.clone();
        let mut esl2 = Esl::connect(esl_port, "ClueCon").unwrap();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let status = if n.is_multiple_of(2) {
                    "Available"
                } else {
                    "'On Break'"
                };
                esl2.api(&format!(
                    "callcenter_config agent set status tenant-1@areski {status}"
                ))
                .unwrap();
                n += 1;
            }
            n
        })
    };
    for cycle in 0..100 {
        let out = esl.api("unload mod_cc_events").unwrap();
        assert!(out.starts_with("+OK"), "cycle {cycle} unload: {out}");
        let out = esl.api(&format!("load {}", module.display())).unwrap();
        assert!(out.starts_with("+OK"), "cycle {cycle} load: {out}");
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let toggles = toggler.join().unwrap();
    eprintln!(
        "100 unload/load cycles inside FreeSWITCH while {toggles} agent status changes were fired"
    );
    assert!(toggles > 100, "events kept flowing during the cycles");
    assert!(wait_until(WAIT, || esl
        .api("cc_events status")
        .unwrap()
        .contains("redis:      connected")));
    esl.api("callcenter_config agent set status tenant-1@areski 'Logged Out'")
        .unwrap();
    // The toggler's last changes may still be on their way; the module is
    // publishing again once our Logged Out arrives after them.
    let mut late = 0;
    loop {
        let msg = sub.take(1, WAIT).remove(0);
        if msg.contains("\"CC_Agent_Status\": \"Logged Out\"") {
            break;
        }
        assert!(msg.contains("\"CC_Agent\": \"tenant-1@areski\""), "{msg}");
        late += 1;
        assert!(late < 10_000, "Logged Out never arrived");
    }

    // `unload` must leave nothing of the module mapped in FreeSWITCH, after
    // events, `cc_events status` and the 100 cycles above have run through it:
    // an upgrade copies a new .so over the old one and loads it, and a mapping
    // left behind would keep the old code running (dlopen of the same path
    // finds the old object still loaded) and grow with every reload. glibc keeps
    // a dlclose()d object mapped while it has thread-local destructors registered
    // on a live thread (std::thread::spawn registers one on the calling thread).
    let pid = fs.pid().expect("freeswitch.pid");
    unload_leaves_nothing_mapped(&mut esl, pid);

    // An upgrade: the new file is written next to the installed one and renamed
    // over it (a new inode, as package managers do), then loaded.
    let staged = base.join("mod_cc_events.so.new");
    std::fs::copy(harness::core::module_path(), &staged).unwrap();
    std::fs::rename(&staged, &module).unwrap();
    let new_inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&module).unwrap());
    let out = esl.api(&format!("load {}", module.display())).unwrap();
    assert!(out.starts_with("+OK"), "load of the upgraded file: {out}");
    let maps = module_mappings(pid);
    let stale: Vec<&String> = maps
        .iter()
        .filter(|l| l.ends_with("(deleted)") || mapped_inode(l) != new_inode)
        .collect();
    assert!(
        !maps.is_empty() && stale.is_empty(),
        "after the upgrade FreeSWITCH must map only the new file (inode {new_inode}); /proc/{pid}/maps:\n{}",
        maps.join("\n")
    );
    assert!(
        wait_until(WAIT, || esl
            .api("cc_events status")
            .unwrap()
            .contains("redis:      connected")),
        "after the upgrade: {}",
        esl.api("cc_events status").unwrap()
    );
    esl.api("callcenter_config agent set status tenant-1@areski Available")
        .unwrap();
    assert_eq!(
        sub.take(1, WAIT)[0],
        r#"{"Agent-Status-Change:" : {"CC_Agent": "tenant-1@areski", "CC_Agent_Status": "Available"}}"#,
        "the upgraded module publishes"
    );

    let log = shut_down(&mut esl, &fs, &base);
    assert!(log.contains("mod_cc_events stopped:"), "shutdown ran");
    drop(fs);
    clean_up(&base);
}

/// `unload mod_cc_events`, after which nothing of the module stays mapped
/// in FreeSWITCH (process `pid`).
fn unload_leaves_nothing_mapped(esl: &mut Esl, pid: i32) {
    let out = esl.api("unload mod_cc_events").unwrap();
    assert!(out.starts_with("+OK"), "final unload: {out}");
    let mut left = Vec::new();
    assert!(
        wait_until(Duration::from_secs(5), || {
            left = module_mappings(pid);
            left.is_empty()
        }),
        "after `unload mod_cc_events`, FreeSWITCH (pid {pid}) still maps the module (/proc/{pid}/maps):\n{}",
        left.join("\n")
    );
}

/// `cycles` times: `unload` and `load` the module, wait until it is
/// `connected` again, and change an agent's status, which `sub` must get.
fn reload_cycles(esl: &mut Esl, module: &Path, sub: &Subscriber, connected: &str, cycles: usize) {
    for cycle in 0..cycles {
        let out = esl.api("unload mod_cc_events").unwrap();
        assert!(out.starts_with("+OK"), "cycle {cycle} unload: {out}");
        let out = esl.api(&format!("load {}", module.display())).unwrap();
        assert!(out.starts_with("+OK"), "cycle {cycle} load: {out}");
        wait_status(esl, connected);
        let status = if cycle % 2 == 0 {
            "On Break"
        } else {
            "Available"
        };
        esl.api(&format!(
            "callcenter_config agent set status tenant-1@areski '{status}'"
        ))
        .unwrap();
        next_status_change(sub, status);
    }
}

/// `fsctl shutdown`, waited for; returns FreeSWITCH's log, which holds no panic.
fn shut_down(esl: &mut Esl, fs: &FreeSwitch, base: &Path) -> String {
    let _ = esl.api("fsctl shutdown");
    assert!(
        wait_until(WAIT, || !fs.alive()),
        "FreeSWITCH did not shut down"
    );
    let path = base.join("log/freeswitch.log");
    let log = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(!log.contains("panic"), "no panic in {}", path.display());
    log
}

/// Removes a test's FreeSWITCH directory, unless CC_EVENTS_KEEP_E2E is set.
fn clean_up(base: &Path) {
    if std::env::var_os("CC_EVENTS_KEEP_E2E").is_some() {
        eprintln!("kept {}", base.display());
    } else {
        let _ = std::fs::remove_dir_all(base);
    }
}

/// The status line of a connected module, waited for (bounded).
fn wait_status(esl: &mut Esl, want: &str) -> String {
    let mut last = String::new();
    assert!(
        wait_until(WAIT, || {
            last = esl.api("cc_events status").unwrap();
            last.contains(want)
        }),
        "no {want:?} in `cc_events status`:\n{last}"
    );
    last
}

/// The next Agent-Status-Change for the test agent with `status`, skipping the
/// startup `Logged Out` mod_callcenter may have dispatched before the module bound.
fn next_status_change(sub: &Subscriber, status: &str) {
    let want = format!(
        r#"{{"Agent-Status-Change:" : {{"CC_Agent": "tenant-1@areski", "CC_Agent_Status": "{status}"}}}}"#
    );
    let startup = r#"{"Agent-Status-Change:" : {"CC_Agent": "tenant-1@areski", "CC_Agent_Status": "Logged Out"}}"#;
    let mut got = sub.take(1, WAIT).remove(0);
    if got != want && got == startup {
        got = sub.take(1, WAIT).remove(0);
    }
    assert_eq!(got, want);
}

#[test]
#[cfg_attr(
    not(freeswitch_prefix),
    ignore = "set FREESWITCH_PREFIX to an installed FreeSWITCH 1.10 to run this test"
)]
fn tls_to_redis_from_a_real_freeswitch_and_a_clean_unload() {
    // FreeSWITCH links OpenSSL itself; the module brings rustls (ring). Both in
    // one process: the handshake, publishing, unload/load and a final unload
    // that leaves nothing of the module mapped.
    let _one = ONE_FREESWITCH.lock().unwrap_or_else(|e| e.into_inner());
    let certs = Certs::make();
    let ca = certs.path("ca.crt");
    // Redis listens on TCP only on its TLS port; the subscriber uses its Unix socket.
    let (redis, tls_port) = redis_tls_only(&certs);
    let sub = Subscriber::new(&redis, "callcenter_events");
    let Running {
        mut esl,
        fs,
        base,
        module,
        ..
    } = start_freeswitch(
        "freeswitch-tls",
        &cc_events_conf(
            tls_port,
            &[
                ("channel", "callcenter_events"),
                ("tls", "true"),
                ("tls-ca-file", &ca),
            ],
        ),
    );
    let log = || std::fs::read_to_string(base.join("log/freeswitch.log")).unwrap_or_default();
    let pid = fs.pid().expect("freeswitch.pid");
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    assert!(
        maps.contains("libssl.so"),
        "this FreeSWITCH does not map OpenSSL's libssl; the test means to run rustls beside it"
    );

    let connected = format!("redis:      connected (127.0.0.1:{tls_port} db 0 tls)");
    let status = wait_status(&mut esl, &connected);
    eprintln!("fs_cli> cc_events status\n{status}");
    assert!(
        log().contains(&format!(
            "mod_cc_events {} loaded: redis 127.0.0.1:{tls_port} db 0 tls",
            env!("CARGO_PKG_VERSION")
        )),
        "the load line names the TLS target"
    );

    let out = esl
        .api("callcenter_config agent set status tenant-1@areski Available")
        .unwrap();
    assert!(out.starts_with("+OK"), "{out}");
    next_status_change(&sub, "Available");

    // A call: Offering and Connected go out over the same TLS connection.
    let out = esl
        .api("originate {origination_caller_id_number=34650110022,origination_caller_id_name='Outbound Call'}loopback/queue/default &park")
        .unwrap();
    assert!(out.starts_with("+OK"), "{out}");
    for (payload, outer) in sub
        .take(2, WAIT)
        .iter()
        .zip(["Offering-Call-Agent", "Connected-Call-Agent"])
    {
        let fields = json_fields(payload, outer);
        let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, SEED_FIELDS, "{payload}");
    }

    // Unload and load: each load makes a new TLS connection (and a new rustls
    // config) inside the same process.
    reload_cycles(&mut esl, &module, &sub, &connected, 5);
    let status = wait_status(&mut esl, "queued:     0 of");
    assert!(status.contains(&connected), "{status}");
    assert!(status.contains("dropped:    0\n"), "{status}");
    assert!(sub.drain().is_empty());

    // The final unload leaves nothing of the module (rustls and ring included:
    // they are linked into it) mapped in FreeSWITCH.
    unload_leaves_nothing_mapped(&mut esl, pid);
    // FreeSWITCH's own OpenSSL is still there and FreeSWITCH still answers.
    assert!(std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .contains("libssl.so"));
    let out = esl.api("status").unwrap();
    assert!(out.contains("UP"), "{out}");

    shut_down(&mut esl, &fs, &base);
    drop(fs);
    clean_up(&base);
}

/// A `redis-sentinel` monitoring `mymaster` at `master_port` (quorum 2), with
/// its own config file; killed by pid on drop (also when a test panics).
struct Sentinel {
    port: u16,
    child: Option<std::process::Child>,
    dir: PathBuf,
}

impl Sentinel {
    fn start(master_port: u16) -> Sentinel {
        let port = free_port();
        let dir = temp_dir("sentinel");
        let conf = format!(
            "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {}\nsentinel resolve-hostnames no\n\
             sentinel monitor mymaster 127.0.0.1 {master_port} 2\n\
             sentinel down-after-milliseconds mymaster 1000\n\
             sentinel failover-timeout mymaster 5000\n",
            dir.display()
        );
        // Sentinel rewrites its config file, so each gets its own.
        let path = dir.join("sentinel.conf");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new("redis-sentinel")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-sentinel not found: install Debian's redis-sentinel package");
        let s = Sentinel {
            port,
            child: Some(child),
            dir,
        };
        assert!(
            wait_until(Duration::from_secs(10), || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            }),
            "redis-sentinel on port {port} did not listen within 10 s"
        );
        s
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
#[cfg_attr(
    not(freeswitch_prefix),
    ignore = "set FREESWITCH_PREFIX to an installed FreeSWITCH 1.10 to run this test"
)]
fn sentinel_inside_a_real_freeswitch() {
    let _one = ONE_FREESWITCH.lock().unwrap_or_else(|e| e.into_inner());
    let master = RedisServer::start();
    let mp = master.port.to_string();
    let replica = RedisServer::start_with(free_port(), &["--replicaof", "127.0.0.1", &mp]);
    let mut rconn = replica.connection();
    assert!(
        wait_until(WAIT, || {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut rconn)
                .unwrap();
            info.contains("master_link_status:up")
        }),
        "the replica did not sync"
    );
    let sentinels: Vec<Sentinel> = (0..3).map(|_| Sentinel::start(master.port)).collect();
    let list = sentinels
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port))
        .collect::<Vec<_>>()
        .join(",");
    let sub = Subscriber::new(&master, "callcenter_events");
    let Running {
        mut esl,
        fs,
        base,
        module,
        ..
    } = start_freeswitch(
        "freeswitch-sentinel",
        &cc_events_settings(&[
            ("channel", "callcenter_events"),
            ("sentinels", &list),
            ("sentinel-master", "mymaster"),
        ]),
    );
    let connected = format!(
        "redis:      connected (master 'mymaster' 127.0.0.1:{} via sentinel 127.0.0.1:",
        master.port
    );
    let status = wait_status(&mut esl, &connected);
    eprintln!("fs_cli> cc_events status\n{status}");

    let out = esl
        .api("callcenter_config agent set status tenant-1@areski Available")
        .unwrap();
    assert!(out.starts_with("+OK"), "{out}");
    next_status_change(&sub, "Available");

    // Unload and load: each load asks the sentinels again.
    reload_cycles(&mut esl, &module, &sub, &connected, 3);
    let status = wait_status(&mut esl, "queued:     0 of");
    assert!(status.contains("dropped:    0\n"), "{status}");
    assert!(sub.drain().is_empty());

    let pid = fs.pid().expect("freeswitch.pid");
    unload_leaves_nothing_mapped(&mut esl, pid);

    let log = shut_down(&mut esl, &fs, &base);
    assert!(
        !log.contains("host and port are ignored"),
        "the config has no host/port"
    );
    drop(fs);
    drop(sentinels);
    clean_up(&base);
}

/// `cc_events status json`, parsed.
fn status_json(esl: &mut Esl) -> serde_json::Value {
    let out = esl.api("cc_events status json").unwrap();
    serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("cc_events status json is not JSON ({e}): {out:?}"))
}

/// Parses one envelope and checks its shape: the required keys with their types,
/// the optional ones as strings, `data` an object. Returns it.
fn envelope(payload: &str) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(payload).unwrap_or_else(|e| panic!("not JSON ({e}): {payload}"));
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {payload}"));
    for key in ["event", "action", "host", "core_uuid"] {
        assert!(
            obj.get(key)
                .is_some_and(|x| x.as_str().is_some_and(|s| !s.is_empty())),
            "{key} must be a non-empty string: {payload}"
        );
    }
    for key in ["timestamp", "sequence"] {
        assert!(
            obj.get(key).is_some_and(serde_json::Value::is_u64),
            "{key} must be an integer: {payload}"
        );
    }
    for key in ["queue", "agent", "member_uuid"] {
        assert!(
            obj.get(key).is_none_or(serde_json::Value::is_string),
            "{key}, when present, must be a string: {payload}"
        );
    }
    assert!(
        obj.get("data").is_some_and(serde_json::Value::is_object),
        "data must be an object: {payload}"
    );
    let known = [
        "event",
        "action",
        "timestamp",
        "sequence",
        "host",
        "core_uuid",
        "queue",
        "agent",
        "member_uuid",
        "data",
    ];
    assert!(
        obj.keys().all(|k| known.contains(&k.as_str())),
        "unknown key in {payload}"
    );
    // The timestamp is Event-Date-Timestamp: microseconds, and recent.
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let ts = v["timestamp"].as_u64().unwrap();
    assert!(
        ts <= now_us + 1_000_000 && ts + 600_000_000 > now_us,
        "timestamp {ts} is not microseconds of the last minutes (now {now_us}): {payload}"
    );
    v
}

/// Messages from a subscriber, kept in arrival order.
struct Feed<'a> {
    sub: &'a Subscriber,
    got: Vec<String>,
}

impl<'a> Feed<'a> {
    fn new(sub: &'a Subscriber) -> Self {
        Feed {
            sub,
            got: Vec::new(),
        }
    }

    fn pump(&mut self) -> usize {
        self.got.extend(self.sub.drain());
        self.got.len()
    }

    /// Waits (bounded) for a message from index `from` on that satisfies `pred`; its index.
    fn wait_for(
        &mut self,
        from: usize,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> usize {
        let mut found = None;
        let ok = wait_until(WAIT, || {
            self.pump();
            found = self.got[from.min(self.got.len())..]
                .iter()
                .position(|m| serde_json::from_str(m).is_ok_and(|v| pred(&v)))
                .map(|i| i + from);
            found.is_some()
        });
        assert!(
            ok,
            "no {what} within {WAIT:?}; {} messages:\n{}",
            self.got.len(),
            self.got.join("\n")
        );
        found.unwrap()
    }
}

/// One XRANGE entry: id and fields in order.
type StreamEntry = (String, Vec<(String, String)>);

fn xrange(conn: &mut redis::Connection, key: &str) -> Vec<StreamEntry> {
    let raw: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query(conn)
        .unwrap();
    raw.into_iter()
        .map(|(id, flat)| {
            assert!(flat.len() % 2 == 0, "odd field list in {id}");
            let pairs = flat
                .chunks(2)
                .map(|p| (p[0].clone(), p[1].clone()))
                .collect();
            (id, pairs)
        })
        .collect()
}

fn xlen(conn: &mut redis::Connection, key: &str) -> usize {
    redis::cmd("XLEN").arg(key).query(conn).unwrap()
}

/// Waits until the module has nothing in flight and every event it published is
/// both in the stream and at the subscribers (the stream's length equals what the
/// subscribers hold), then returns that settled state: the status and the stream.
fn quiesce(
    esl: &mut Esl,
    conn: &mut redis::Connection,
    feeds: &mut [&mut Feed],
) -> (serde_json::Value, Vec<StreamEntry>) {
    let end = std::time::Instant::now() + WAIT;
    loop {
        let mut last = String::new();
        let left = end.saturating_duration_since(std::time::Instant::now());
        let ok = wait_until(left, || {
            let st = status_json(esl);
            let xl = xlen(conn, "callcenter_stream");
            let held: usize = feeds.iter_mut().map(|f| f.pump()).sum();
            last = format!("{st} XLEN {xl} subscribers {held}");
            st["queued"] == 0 && st["received"] == st["published"] && xl == held
        });
        assert!(ok, "not settled within {WAIT:?}: {last}");
        // Confirm with the full picture; an event fired meanwhile means try again.
        let st = status_json(esl);
        let stream = xrange(conn, "callcenter_stream");
        let held: usize = feeds.iter_mut().map(|f| f.pump()).sum();
        if st["queued"] == 0 && st["published"] == stream.len() as u64 && stream.len() == held {
            return (st, stream);
        }
    }
}

#[test]
#[cfg_attr(
    not(freeswitch_prefix),
    ignore = "set FREESWITCH_PREFIX to an installed FreeSWITCH 1.10 to run this test"
)]
fn envelope_stream_and_reload_in_a_real_freeswitch() {
    let _one = ONE_FREESWITCH.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = std::time::Instant::now();
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    // Subscribed before FreeSWITCH starts: every published event reaches it.
    let sub_events = Subscriber::new(&redis, "callcenter_events");
    let sub_after = Subscriber::new(&redis, "cc_after");
    let sub_third = Subscriber::new(&redis, "cc_third");
    let settings = |channel: &str| {
        cc_events_conf(
            redis.port,
            &[
                ("channel", channel),
                ("events", "all"),
                ("format", "envelope"),
                ("stream", "callcenter_stream"),
                // The test freezes Redis for a moment: no reconnect meanwhile.
                ("io-timeout-ms", "10000"),
            ],
        )
    };
    let mut fs = start_freeswitch("freeswitch-feed", &settings("callcenter_events"));
    let esl = &mut fs.esl;
    assert!(
        wait_until(WAIT, || status_json(esl)["connected"] == true),
        "{}",
        status_json(esl)
    );
    let st = status_json(esl);
    assert_eq!(st["format"], "envelope", "{st}");
    assert_eq!(st["channel"], "callcenter_events", "{st}");
    assert_eq!(st["stream"], "callcenter_stream", "{st}");
    eprintln!(
        "FreeSWITCH up and the module connected after {:?}",
        t0.elapsed()
    );

    // --- One call's lifecycle -------------------------------------------------
    let mut events = Feed::new(&sub_events);
    let out = esl
        .api("callcenter_config agent set status tenant-1@areski Available")
        .unwrap();
    assert!(out.starts_with("+OK"), "{out}");
    let t_call = std::time::Instant::now();
    let out = esl
        .api("originate {origination_caller_id_number=34650110022,origination_caller_id_name='Outbound Call'}loopback/queue/default &park")
        .unwrap();
    assert!(out.starts_with("+OK"), "{out}");
    let i = events.wait_for(0, "bridge-agent-start", |v| {
        v["action"] == "bridge-agent-start"
    });
    let connected = envelope(&events.got[i]);
    let member_uuid = connected["member_uuid"].as_str().unwrap().to_owned();
    let member_session = connected["data"]["CC_Member_Session_UUID"]
        .as_str()
        .unwrap_or_else(|| panic!("no CC_Member_Session_UUID: {connected}"))
        .to_owned();
    eprintln!(
        "Connected-Call-Agent {:?} after the originate (member {member_uuid}, session {member_session})",
        t_call.elapsed()
    );
    // bridge-agent-start fires before mod_callcenter bridges the two legs, and
    // it only counts the call as bridged once it has seen the agent's leg
    // bridged: a caller gone before then ends the call with neither a bridged
    // bridge-agent-end nor member-queue-end. It then sets the agent's state
    // to "In a queue call" (agent-state-change): hang up after that.
    let j = events.wait_for(i, "agent-state-change In a queue call", |v| {
        v["action"] == "agent-state-change" && v["data"]["CC_Agent_State"] == "In a queue call"
    });
    eprintln!(
        "agent In a queue call {:?} after the originate; hanging up the caller",
        t_call.elapsed()
    );
    let out = esl.api(&format!("uuid_kill {member_session}")).unwrap();
    assert!(out.starts_with("+OK"), "uuid_kill: {out}");
    events.wait_for(j, "member-queue-end of the call", |v| {
        v["action"] == "member-queue-end" && v["member_uuid"] == member_uuid.as_str()
    });
    eprintln!(
        "call's lifecycle done {:?} after the originate",
        t_call.elapsed()
    );
    let (_, stream) = quiesce(esl, &mut conn, &mut [&mut events]);

    let pubsub: Vec<serde_json::Value> = events.got.iter().map(|m| envelope(m)).collect();
    let core_uuid = pubsub[0]["core_uuid"].clone();
    assert!(
        pubsub.iter().all(|v| v["core_uuid"] == core_uuid),
        "one FreeSWITCH, one core_uuid"
    );
    let lifecycle = [
        ("member-queue-start", "Member-Queue-Start"),
        ("agent-offering", "Offering-Call-Agent"),
        ("bridge-agent-start", "Connected-Call-Agent"),
        ("bridge-agent-end", "Bridge-Agent-End"),
        ("member-queue-end", "Member-Queue-End"),
    ];
    let mut seqs = Vec::new();
    for (action, name) in lifecycle {
        let of_call: Vec<&serde_json::Value> = pubsub
            .iter()
            .filter(|v| v["action"] == action && v["member_uuid"] == member_uuid.as_str())
            .collect();
        assert_eq!(
            of_call.len(),
            1,
            "{action} for member {member_uuid} on callcenter_events: {of_call:?}"
        );
        let v = of_call[0];
        assert_eq!(v["event"], name, "{v}");
        assert_eq!(v["queue"], "tenant-1@areski-queue", "{v}");
        if !matches!(action, "agent-offering" | "bridge-agent-start") {
            // Every CC-* header (the seed's two keep exactly the seed's fields).
            assert_eq!(v["data"]["CC_Action"], action, "{v}");
            assert_eq!(v["data"]["CC_Member_UUID"], member_uuid.as_str(), "{v}");
        }
        if action != "member-queue-start" {
            assert_eq!(v["agent"], "tenant-1@areski", "{v}");
        }
        seqs.push(v["sequence"].as_u64().unwrap());
    }
    eprintln!(
        "lifecycle Event-Sequence: {}",
        lifecycle
            .iter()
            .zip(&seqs)
            .map(|((a, _), s)| format!("{a} {s}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "the lifecycle's Event-Sequence must increase strictly in the order {lifecycle:?}: {seqs:?}"
    );
    let by_action = |action: &str| {
        pubsub
            .iter()
            .find(|v| v["action"] == action && v["member_uuid"] == member_uuid.as_str())
            .unwrap()
    };
    for action in ["agent-offering", "bridge-agent-start"] {
        let data = by_action(action)["data"].as_object().unwrap();
        let mut keys: Vec<&str> = data.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut want = SEED_FIELDS.to_vec();
        want.sort_unstable();
        assert_eq!(keys, want, "{action}: {}", by_action(action));
        assert_eq!(data["callrequest_id"], "276547");
        assert_eq!(data["campaign_id"], "295");
        assert_eq!(data["CC_Member_UUID"], member_uuid.as_str());
    }
    let end = &by_action("bridge-agent-end")["data"];
    assert!(end["CC_Hangup_Cause"].is_string(), "{end}");
    assert_eq!(end["CC_Agent_Bridged"], "true", "{end}");
    assert!(end["CC_Bridge_Terminated_Time"].is_u64(), "{end}");
    assert_eq!(
        by_action("member-queue-end")["data"]["CC_Cause"],
        "Terminated"
    );

    // The stream holds the same events: same payloads, same order, and fields that agree.
    assert_eq!(stream.len(), events.got.len());
    for ((id, fields), (payload, v)) in stream.iter().zip(events.got.iter().zip(&pubsub)) {
        let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            ["event", "action", "sequence", "core_uuid", "payload"],
            "{id}"
        );
        let get = |k: &str| fields.iter().find(|(n, _)| n == k).unwrap().1.as_str();
        assert_eq!(get("payload"), payload, "stream entry {id} vs Pub/Sub");
        assert_eq!(get("event"), v["event"], "{id}");
        assert_eq!(get("action"), v["action"], "{id}");
        assert_eq!(get("sequence"), v["sequence"].to_string(), "{id}");
        assert_eq!(get("core_uuid"), v["core_uuid"], "{id}");
    }
    eprintln!(
        "{} events on callcenter_events and in callcenter_stream, identical; the call's five in Event-Sequence order",
        stream.len()
    );

    // --- cc_events reload while agent status changes flow ---------------------
    // Two reloads while another event-socket client keeps changing the agent's
    // status: callcenter_events -> cc_after with Redis answering, then
    // cc_after -> cc_third with Redis frozen, so that events captured before
    // the reload are still queued when it runs and more queue up after it.
    let mark = events.got.len();
    let mut after = Feed::new(&sub_after);
    let mut third = Feed::new(&sub_third);
    let fired = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let toggler = {
        let (fired, stop) = (fired.clone(), stop.clone());
        let mut esl2 = Esl::connect(fs.esl_port, "ClueCon").unwrap();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let n = fired.load(std::sync::atomic::Ordering::SeqCst);
                let status = if n % 2 == 0 {
                    "'On Break'"
                } else {
                    "Available"
                };
                let out = esl2
                    .api(&format!(
                        "callcenter_config agent set status tenant-1@areski {status}"
                    ))
                    .unwrap();
                assert!(out.starts_with("+OK"), "{out}");
                fired.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        })
    };
    let count = || fired.load(std::sync::atomic::Ordering::SeqCst);
    let conf_file = fs.base.join("conf/autoload_configs/cc_events.conf.xml");
    let reload = |esl: &mut Esl, channel: &str| -> (String, std::time::Duration) {
        std::fs::write(&conf_file, settings(channel)).unwrap();
        let out = esl.api("reloadxml").unwrap();
        assert!(out.starts_with("+OK"), "reloadxml: {out}");
        let t = std::time::Instant::now();
        let reply = esl.api("cc_events reload").unwrap();
        let took = t.elapsed();
        assert!(reply.starts_with("+OK reloaded"), "{reply}");
        assert!(reply.contains(&format!("channel '{channel}'")), "{reply}");
        assert!(reply.contains("connection settings unchanged"), "{reply}");
        (reply, took)
    };
    assert!(
        wait_until(WAIT, || count() >= 50),
        "status changes are not flowing"
    );

    let at_first = count();
    let (reply, first_took) = reload(esl, "cc_after");
    eprintln!(
        "fs_cli> cc_events reload ({first_took:?}, {at_first} status changes fired before it)\n{reply}"
    );
    // Keep firing until the new channel has been seen carrying them.
    after.wait_for(0, "status change on cc_after", |v| {
        v["action"] == "agent-status-change"
    });
    assert!(
        wait_until(WAIT, || count() >= at_first + 50),
        "status changes stopped flowing after the reload"
    );

    // Redis frozen: what the module captures stays queued (io-timeout-ms is
    // 10 s, so the worker waits for Redis rather than reconnecting).
    redis.pause();
    let queued = |esl: &mut Esl| status_json(esl)["queued"].as_u64().unwrap();
    let frozen = std::time::Instant::now();
    assert!(
        wait_until(WAIT, || queued(esl) >= 20),
        "events do not queue while Redis is frozen: {}",
        status_json(esl)
    );
    let at_second = count();
    let (reply, second_took) = reload(esl, "cc_third");
    eprintln!(
        "fs_cli> cc_events reload, Redis frozen ({second_took:?}, {at_second} status changes fired before it)\n{reply}"
    );
    let held: u64 = reply
        .lines()
        .nth(1)
        .and_then(|l| {
            l.strip_suffix(
                " events already queued are published with the settings they were captured with",
            )
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of queued events in {reply}"));
    assert!(held >= 20, "{held} events queued at the reload: {reply}");
    assert!(
        wait_until(WAIT, || count() >= at_second + 20
            && queued(esl) >= held + 20),
        "events captured after the reload do not queue: {}",
        status_json(esl)
    );
    redis.resume();
    let frozen_for = frozen.elapsed();
    third.wait_for(0, "status change on cc_third", |v| {
        v["action"] == "agent-status-change"
    });
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    toggler.join().expect("toggler");
    let fired = count();
    // A last change through the same path; when it is in, everything before it is.
    let out = esl
        .api("callcenter_config agent set status tenant-1@areski 'Logged Out'")
        .unwrap();
    assert!(out.starts_with("+OK"), "{out}");
    third.wait_for(0, "the closing Logged Out on cc_third", |v| {
        v["action"] == "agent-status-change" && v["data"]["CC_Agent_Status"] == "Logged Out"
    });
    let (st, stream) = quiesce(esl, &mut conn, &mut [&mut events, &mut after, &mut third]);

    let toggles = |msgs: &[String]| -> Vec<u64> {
        msgs.iter()
            .map(|m| envelope(m))
            .filter(|v| {
                v["action"] == "agent-status-change"
                    && (v["data"]["CC_Agent_Status"] == "Available"
                        || v["data"]["CC_Agent_Status"] == "On Break")
            })
            .map(|v| v["sequence"].as_u64().unwrap())
            .collect()
    };
    let phases = [
        ("callcenter_events", toggles(&events.got[mark..])),
        ("cc_after", toggles(&after.got)),
        ("cc_third", toggles(&third.got)),
    ];
    eprintln!(
        "status changes fired: {fired}; arrived on {}; Redis frozen for {frozen_for:?} with {held} queued at the second reload",
        phases
            .iter()
            .map(|(c, s)| format!("{c}: {}", s.len()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut all: Vec<u64> = phases.iter().flat_map(|(_, s)| s.iter().copied()).collect();
    let arrived = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(
        all.len(),
        arrived,
        "an Event-Sequence arrived twice across the channels"
    );
    assert_eq!(
        arrived, fired as usize,
        "status changes lost or duplicated across the reloads"
    );
    for (channel, seqs) in &phases {
        assert!(!seqs.is_empty(), "{channel} carried none");
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{channel}: Event-Sequence out of order"
        );
    }
    for w in phases.windows(2) {
        let (old_max, new_min) = (*w[0].1.last().unwrap(), w[1].1[0]);
        assert!(
            old_max < new_min,
            "a clean cut: every status change on {} precedes every one on {} (up to {old_max}, from {new_min})",
            w[0].0,
            w[1].0
        );
    }
    // The stream, unchanged by the reloads, holds the three channels' events in order.
    let tail: Vec<&str> = stream[mark..]
        .iter()
        .map(|(_, f)| f.iter().find(|(n, _)| n == "payload").unwrap().1.as_str())
        .collect();
    let want: Vec<&str> = events.got[mark..]
        .iter()
        .chain(&after.got)
        .chain(&third.got)
        .map(String::as_str)
        .collect();
    assert_eq!(tail.len(), want.len(), "stream entries since the call");
    assert!(
        tail == want,
        "the stream holds the first channel's events, then the second's, then the third's, in order"
    );

    eprintln!("fs_cli> cc_events status json\n{st}");
    assert_eq!(st["channel"], "cc_third", "{st}");
    assert_eq!(st["stream"], "callcenter_stream", "{st}");
    assert_eq!(st["format"], "envelope", "{st}");
    assert_eq!(st["connected"], true, "{st}");
    assert_eq!(st["dropped"], 0, "{st}");
    assert_eq!(st["reconnects"], 0, "the reloads kept the connection: {st}");
    assert_eq!(st["published"], stream.len() as u64, "{st}");
    let status_changes = stream
        .iter()
        .filter(|(_, f)| {
            f.iter()
                .any(|(n, v)| n == "action" && v == "agent-status-change")
        })
        .count() as u64;
    assert_eq!(
        st["published_by_event"]["Agent-Status-Change"], status_changes,
        "{st}"
    );

    let log = shut_down(esl, &fs.fs, &fs.base);
    assert!(log.contains("mod_cc_events stopped:"), "shutdown ran");
    assert!(log.contains("cc_events reload: "), "the reload was logged");
    eprintln!("the whole scenario took {:?}", t0.elapsed());
    let base = fs.base.clone();
    drop(fs);
    clean_up(&base);
}

// --- The live state mirror against mod_callcenter's own lists ----------------

/// The mirror's key prefix (`state-prefix` left at its default).
const STATE_PREFIX: &str = "cc_state";
const QUEUE: &str = "tenant-1@areski-queue";
const BOB_CONTACT: &str =
    "[leg_timeout=10,execute_on_answer=sched_hangup +4 normal_clearing]null/bob";
/// Agent fields both the mirror and `callcenter_config agent list` hold.
const AGENT_TEXT: [&str; 3] = ["status", "state", "contact"];
const AGENT_NUMBERS: [&str; 6] = [
    "calls_answered",
    "no_answer_count",
    "talk_time",
    "last_bridge_start",
    "last_bridge_end",
    "last_status_change",
];
/// Member fields both the mirror and `callcenter_config member list` hold.
const MEMBER_TEXT: [&str; 6] = [
    "uuid",
    "session_uuid",
    "state",
    "serving_agent",
    "cid_number",
    "cid_name",
];
const MEMBER_NUMBERS: [&str; 1] = ["joined_epoch"];

/// `callcenter_config <args>` through mod_commands' `json` API, over the event
/// socket: the rows of its `response` (all values strings, SQL NULLs left out).
fn callcenter_rows(esl: &mut Esl, args: &str) -> Vec<serde_json::Value> {
    let request = serde_json::json!({"command": "callcenter_config", "data": {"arguments": args}});
    let out = esl.api(&format!("json {request}")).unwrap();
    let v: serde_json::Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("json callcenter_config {args}: not JSON ({e}): {out}"));
    assert_eq!(v["status"], "success", "{out}");
    match &v["response"] {
        serde_json::Value::Array(rows) => rows.clone(),
        serde_json::Value::Null => Vec::new(),
        other => panic!("json callcenter_config {args}: response {other}"),
    }
}

/// One side's agents and members in the fields both sides hold, numbers as numbers:
/// `{"agents": {name: {...}}, "members": {uuid: {...}}}`.
type View = serde_json::Value;

/// mod_callcenter's view: its strings turned into numbers where the mirror has
/// numbers, a NULL column (left out of its JSON) as the mirror's "" or 0.
fn their_view(esl: &mut Esl) -> View {
    fn pick(row: &serde_json::Value, text: &[&str], numbers: &[&str]) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for k in text {
            let v = row.get(*k).cloned().unwrap_or(serde_json::json!(""));
            out.insert(k.to_string(), v);
        }
        for k in numbers {
            let v = match row.get(*k) {
                None => serde_json::json!(0),
                Some(serde_json::Value::String(s)) => s
                    .parse::<i64>()
                    .map_or_else(|_| serde_json::json!(s), |n| serde_json::json!(n)),
                Some(other) => other.clone(),
            };
            out.insert(k.to_string(), v);
        }
        serde_json::Value::Object(out)
    }
    let agents: serde_json::Map<String, serde_json::Value> = callcenter_rows(esl, "agent list")
        .iter()
        .map(|a| {
            let name = a["name"].as_str().unwrap().to_owned();
            (name, pick(a, &AGENT_TEXT, &AGENT_NUMBERS))
        })
        .collect();
    let members: serde_json::Map<String, serde_json::Value> = callcenter_rows(esl, "member list")
        .iter()
        .map(|m| {
            let uuid = m["uuid"].as_str().unwrap().to_owned();
            (uuid, pick(m, &MEMBER_TEXT, &MEMBER_NUMBERS))
        })
        .collect();
    serde_json::json!({"agents": agents, "members": members})
}

/// The mirror's view, its values as they are in Redis (a number stored as a
/// string would not compare equal).
fn our_view(s: &Snapshot) -> View {
    let pick = |v: &serde_json::Value, fields: &[&str]| -> serde_json::Value {
        fields
            .iter()
            .map(|k| (k.to_string(), v.get(*k).cloned().unwrap_or_default()))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let agent_fields: Vec<&str> = AGENT_TEXT.iter().chain(&AGENT_NUMBERS).copied().collect();
    let member_fields: Vec<&str> = MEMBER_TEXT.iter().chain(&MEMBER_NUMBERS).copied().collect();
    let agents: serde_json::Map<String, serde_json::Value> = s
        .get("agents")
        .into_iter()
        .flatten()
        .map(|(name, a)| (name.clone(), pick(a, &agent_fields)))
        .collect();
    let members: serde_json::Map<String, serde_json::Value> = s
        .iter()
        .filter(|(k, _)| k.starts_with("members:"))
        .flat_map(|(_, ms)| ms.iter())
        .map(|(uuid, m)| (uuid.clone(), pick(m, &member_fields)))
        .collect();
    serde_json::json!({"agents": agents, "members": members})
}

/// Every hash of the mirror, values parsed (harness::state::snapshot).
type Snapshot =
    std::collections::BTreeMap<String, std::collections::BTreeMap<String, serde_json::Value>>;

/// The entries where two views differ, one per line.
fn differences(ours: &View, theirs: &View) -> String {
    let mut out = Vec::new();
    for kind in ["agents", "members"] {
        let (o, t) = (&ours[kind], &theirs[kind]);
        let names: std::collections::BTreeSet<&String> = o
            .as_object()
            .into_iter()
            .chain(t.as_object())
            .flat_map(|m| m.keys())
            .collect();
        for n in names {
            if o.get(n) != t.get(n) {
                out.push(format!(
                    "  {kind} {n}:\n    mirror:         {}\n    mod_callcenter: {}",
                    o.get(n).map_or("(none)".into(), |v| v.to_string()),
                    t.get(n).map_or("(none)".into(), |v| v.to_string())
                ));
            }
        }
    }
    out.join("\n")
}

/// Waits (bounded) until mod_callcenter's lists satisfy `expect` and the
/// mirror agrees with them, then returns the mirror's snapshot and the agreed
/// view. mod_callcenter fires its events after updating its database, so the
/// mirror may lag it for a moment; beyond the bound, the test fails with both sides.
fn mirror_agrees(
    esl: &mut Esl,
    con: &mut redis::Connection,
    what: &str,
    expect: impl Fn(&View) -> bool,
) -> (Snapshot, View) {
    let t = std::time::Instant::now();
    let mut last = None;
    let ok = wait_until(WAIT, || {
        let theirs = their_view(esl);
        let s = harness::state::snapshot(con, STATE_PREFIX);
        let ours = our_view(&s);
        let done = expect(&theirs) && ours == theirs;
        last = Some((s, ours, theirs));
        done
    });
    let (s, ours, theirs) = last.unwrap();
    assert!(
        expect(&theirs),
        "{what}: mod_callcenter never got there within {WAIT:?}:\n{}",
        serde_json::to_string_pretty(&theirs).unwrap()
    );
    assert!(
        ok,
        "{what}: the mirror and mod_callcenter still differ after {WAIT:?}:\n{}\nmirror:\n{}\nmod_callcenter:\n{}",
        differences(&ours, &theirs),
        serde_json::to_string_pretty(&ours).unwrap(),
        serde_json::to_string_pretty(&theirs).unwrap()
    );
    eprintln!(
        "{what}: the mirror agrees with mod_callcenter ({:?}): {} agents, {} members",
        t.elapsed(),
        theirs["agents"].as_object().unwrap().len(),
        theirs["members"].as_object().unwrap().len()
    );
    (s, theirs)
}

/// Every value the mirror keeps as a number is a JSON number.
fn assert_numbers_are_numbers(s: &Snapshot) {
    let check = |hash: &str, name: &str, v: &serde_json::Value, keys: &[&str]| {
        for k in keys {
            assert!(
                v.get(*k).is_some_and(serde_json::Value::is_i64),
                "{hash} {name}: {k} must be a JSON number: {v}"
            );
        }
    };
    for (name, a) in s.get("agents").into_iter().flatten() {
        check(
            "agents",
            name,
            a,
            &[
                "max_no_answer",
                "wrap_up_time",
                "reject_delay_time",
                "busy_delay_time",
                "no_answer_delay_time",
                "last_bridge_start",
                "last_bridge_end",
                "last_offered_call",
                "last_status_change",
                "no_answer_count",
                "calls_answered",
                "talk_time",
                "ready_time",
                "updated",
            ],
        );
    }
    for (name, q) in s.get("queues").into_iter().flatten() {
        check(
            "queues",
            name,
            q,
            &[
                "waiting",
                "answering",
                "abandoned",
                "tier_rule_wait_second",
                "discard_abandoned_after",
                "max_wait_time",
                "max_wait_time_with_no_agent",
                "max_wait_time_with_no_agent_time_reached",
            ],
        );
        let since = &q["longest_wait_since"];
        assert!(since.is_null() || since.is_i64(), "queues {name}: {q}");
        for t in q["agents"].as_array().unwrap() {
            check("queues", name, t, &["level", "position"]);
        }
    }
    for (hash, ms) in s.iter().filter(|(k, _)| k.starts_with("members:")) {
        for (uuid, m) in ms {
            check(
                hash,
                uuid,
                m,
                &[
                    "joined_epoch",
                    "rejoined_epoch",
                    "bridge_epoch",
                    "abandoned_epoch",
                ],
            );
        }
    }
}

/// The mirror's queue holds `queue list`'s settings (numbers as numbers) and,
/// as `agents`, `tier list`'s tiers of the queue ordered by level and
/// position; returns those tiers.
fn assert_queue_matches(esl: &mut Esl, s: &Snapshot) -> serde_json::Value {
    let ours = &s["queues"][QUEUE];
    let theirs = callcenter_rows(esl, "queue list")
        .into_iter()
        .find(|q| q["name"] == QUEUE)
        .expect("the queue in queue list");
    for (k, v) in theirs.as_object().unwrap() {
        let want = match v.as_str().map(str::parse::<i64>) {
            Some(Ok(n)) if ours[k].is_number() => serde_json::json!(n),
            _ => v.clone(),
        };
        assert_eq!(
            ours[k], want,
            "queue {k}: mirror {ours}\nqueue list {theirs}"
        );
    }
    let mut tiers: Vec<(i64, i64, String, String)> = callcenter_rows(esl, "tier list")
        .iter()
        .filter(|t| t["queue"] == QUEUE)
        .map(|t| {
            let n = |k: &str| t[k].as_str().unwrap().parse::<i64>().unwrap();
            let s = |k: &str| t[k].as_str().unwrap().to_owned();
            (n("level"), n("position"), s("agent"), s("state"))
        })
        .collect();
    tiers.sort();
    let want: serde_json::Value = tiers
        .into_iter()
        .map(|(level, position, name, state)| {
            serde_json::json!({"name": name, "level": level, "position": position, "tier_state": state})
        })
        .collect();
    assert_eq!(ours["agents"], want, "the queue's tiers: mirror {ours}");
    want
}

/// `cc_events state`'s counts, by label.
fn state_counts(esl: &mut Esl) -> (String, std::collections::BTreeMap<String, String>) {
    let out = esl.api("cc_events state").unwrap();
    let lines = out
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    (out, lines)
}

/// `cc_events state` shows these counts of the mirror (the worker publishes
/// its report after each write Redis confirmed: wait for it).
fn assert_state_counts(esl: &mut Esl, want: [(&str, usize); 4]) -> String {
    let mut last = String::new();
    let ok = wait_until(WAIT, || {
        let (out, c) = state_counts(esl);
        last = out;
        want.iter().all(|(k, n)| c.get(*k) == Some(&n.to_string()))
            && c.get("mod_callcenter").map(String::as_str) == Some("read")
    });
    assert!(ok, "cc_events state never showed {want:?}:\n{last}");
    last
}

fn meta_of(con: &mut redis::Connection) -> std::collections::BTreeMap<String, String> {
    harness::state::meta(con, STATE_PREFIX)
}

fn api_ok(esl: &mut Esl, cmd: &str) {
    let out = esl.api(cmd).unwrap();
    assert!(out.starts_with("+OK"), "{cmd}: {out}");
}

fn agent<'a>(v: &'a View, name: &str) -> &'a serde_json::Value {
    &v["agents"][name]
}

fn only_member(v: &View) -> Option<&serde_json::Value> {
    let ms = v["members"].as_object()?;
    (ms.len() == 1).then(|| ms.values().next().unwrap())
}

#[test]
#[cfg_attr(
    not(freeswitch_prefix),
    ignore = "set FREESWITCH_PREFIX to an installed FreeSWITCH 1.10 to run this test"
)]
fn state_mirror_follows_mod_callcenter_in_a_real_freeswitch() {
    let _one = ONE_FREESWITCH.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = std::time::Instant::now();
    let redis = RedisServer::start();
    let mut con = redis.connection();
    let mut fs = start_freeswitch(
        "freeswitch-state",
        &cc_events_conf(
            redis.port,
            &[
                ("events", "all"),
                ("stream", "cc_stream"),
                ("state", "true"),
                // Events alone keep the mirror current here: no periodic re-read
                // of mod_callcenter that would paper over a wrongly applied event.
                ("state-refresh-s", "0"),
            ],
        ),
    );
    let module = fs.module.clone();
    let esl = &mut fs.esl;
    let out = assert_state_counts(
        esl,
        [
            ("agents", 1),
            ("queues", 1),
            ("waiting", 0),
            ("answering", 0),
        ],
    );
    eprintln!("fs_cli> cc_events state\n{out}");
    let first_seed: u64 = meta_of(&mut con)["seeded_at"].parse().unwrap();
    let (s, _) = mirror_agrees(esl, &mut con, "at start", |v| {
        agent(v, "tenant-1@areski")["status"] == "Logged Out"
    });
    assert_queue_matches(esl, &s);

    // A second agent through the API: agent-add, then agent-contact-change.
    api_ok(esl, "callcenter_config agent add tenant-1@bob callback");
    api_ok(
        esl,
        &format!("callcenter_config agent set contact tenant-1@bob '{BOB_CONTACT}'"),
    );
    api_ok(
        esl,
        "callcenter_config agent set max_no_answer tenant-1@bob 3",
    );
    api_ok(
        esl,
        &format!("callcenter_config tier add {QUEUE} tenant-1@bob 1 2"),
    );
    mirror_agrees(esl, &mut con, "bob added", |v| {
        agent(v, "tenant-1@bob")["contact"] == BOB_CONTACT
    });

    // 1. areski becomes available.
    api_ok(
        esl,
        "callcenter_config agent set status tenant-1@areski Available",
    );
    mirror_agrees(esl, &mut con, "1. areski Available", |v| {
        agent(v, "tenant-1@areski")["status"] == "Available"
    });

    // 2. A caller is answered by areski (who hangs up 4 s after answering).
    api_ok(esl, "originate {origination_caller_id_number=34650110022,origination_caller_id_name='Outbound Call'}loopback/queue/default &park");
    let (s, v) = mirror_agrees(esl, &mut con, "2. the caller answered", |v| {
        agent(v, "tenant-1@areski")["state"] == "In a queue call"
            && only_member(v).is_some_and(|m| m["state"] == "Answered")
    });
    let answered = only_member(&v).unwrap().clone();
    assert_eq!(answered["serving_agent"], "tenant-1@areski", "{answered}");
    assert_eq!(answered["cid_number"], "34650110022", "{answered}");
    assert_eq!(answered["cid_name"], "Outbound Call", "{answered}");
    assert_eq!(agent(&v, "tenant-1@areski")["calls_answered"], 1);
    let q = &s["queues"][QUEUE];
    assert_eq!(
        (&q["waiting"], &q["answering"]),
        (&0.into(), &1.into()),
        "{q}"
    );
    let ours = &s[&format!("members:{QUEUE}")][answered["uuid"].as_str().unwrap()];
    assert_eq!(
        ours["variables"],
        serde_json::json!({"callrequest_id": "276547", "campaign_id": "295", "phonenumber": "34650844400", "callerid_number": "34650844400"}),
        "the member's channel variables, from member-queue-start: {ours}"
    );
    assert_numbers_are_numbers(&s);
    assert_state_counts(
        esl,
        [
            ("agents", 2),
            ("queues", 1),
            ("waiting", 0),
            ("answering", 1),
        ],
    );

    // 3. The call ends; areski logs out and a second caller waits with no agent.
    let (_, v) = mirror_agrees(esl, &mut con, "3. the call ended", |v| {
        v["members"].as_object().unwrap().is_empty()
            && agent(v, "tenant-1@areski")["last_bridge_end"] != 0
            && agent(v, "tenant-1@areski")["state"] == "Waiting"
    });
    let areski = agent(&v, "tenant-1@areski");
    assert!(
        areski["talk_time"].as_i64().unwrap() >= 3,
        "about 4 s of talk: {areski}"
    );
    api_ok(
        esl,
        "callcenter_config agent set status tenant-1@areski 'Logged Out'",
    );
    api_ok(esl, "originate {origination_caller_id_number=34650110099,origination_caller_id_name='Second Caller'}loopback/queue/default &park");
    let (s, v) = mirror_agrees(esl, &mut con, "3. a caller waits, no agent", |v| {
        agent(v, "tenant-1@areski")["status"] == "Logged Out"
            && only_member(v).is_some_and(|m| m["state"] == "Waiting")
    });
    let waiting = only_member(&v).unwrap().clone();
    let member_uuid = waiting["uuid"].as_str().unwrap().to_owned();
    let session = waiting["session_uuid"].as_str().unwrap().to_owned();
    assert_eq!(session.len(), 36, "{waiting}");
    assert_eq!(waiting["cid_number"], "34650110099", "{waiting}");
    assert_eq!(waiting["serving_agent"], "", "{waiting}");
    let q = &s["queues"][QUEUE];
    assert_eq!(q["waiting"], 1, "{q}");
    assert_eq!(q["longest_wait_since"], waiting["joined_epoch"], "{q}");
    assert_numbers_are_numbers(&s);

    // 4. Status changes.
    api_ok(
        esl,
        "callcenter_config agent set status tenant-1@bob 'On Break'",
    );
    mirror_agrees(esl, &mut con, "4. bob On Break", |v| {
        agent(v, "tenant-1@bob")["status"] == "On Break"
    });
    api_ok(
        esl,
        "callcenter_config agent set status tenant-1@bob 'Logged Out'",
    );
    mirror_agrees(esl, &mut con, "4. bob Logged Out", |v| {
        agent(v, "tenant-1@bob")["status"] == "Logged Out"
    });
    let out = assert_state_counts(
        esl,
        [
            ("agents", 2),
            ("queues", 1),
            ("waiting", 1),
            ("answering", 0),
        ],
    );
    eprintln!("fs_cli> cc_events state\n{out}");

    // 5. The module is unloaded and loaded again while the caller waits: the
    // new instance seeds the mirror again, from mod_callcenter's lists.
    let before = meta_of(&mut con);
    api_ok(esl, "unload mod_cc_events");
    api_ok(esl, &format!("load {}", module.display()));
    let mut reseeded = 0;
    assert!(
        wait_until(WAIT, || {
            reseeded = meta_of(&mut con)
                .get("seeded_at")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            reseeded > first_seed
        }),
        "no new seed after the load: {:?} (before the unload {before:?})",
        meta_of(&mut con)
    );
    let out = assert_state_counts(
        esl,
        [
            ("agents", 2),
            ("queues", 1),
            ("waiting", 1),
            ("answering", 0),
        ],
    );
    eprintln!("fs_cli> cc_events state (after unload and load)\n{out}");
    assert!(out.contains("(1 seeds, 0 refreshes)"), "{out}");
    let (s, v) = mirror_agrees(esl, &mut con, "5. reseeded after unload/load", |v| {
        only_member(v).is_some_and(|m| m["uuid"] == member_uuid.as_str())
    });
    assert_eq!(
        only_member(&v).unwrap(),
        &waiting,
        "the same caller, still waiting"
    );
    let ours = &s[&format!("members:{QUEUE}")][&member_uuid];
    assert_eq!(
        ours["variables"],
        serde_json::json!({"callrequest_id": "276547", "campaign_id": "295", "phonenumber": "34650844400", "callerid_number": "34650844400"}),
        "the seed reads the waiting member's channel variables from its session: {ours}"
    );
    // The seed reads the tiers too (tier add fires no event).
    let agents = assert_queue_matches(esl, &s);
    assert_eq!(
        agents,
        serde_json::json!([
            {"name": "tenant-1@areski", "level": 1, "position": 1, "tier_state": "Ready"},
            {"name": "tenant-1@bob", "level": 1, "position": 2, "tier_state": "Ready"},
        ])
    );
    assert_numbers_are_numbers(&s);

    // 6. The caller hangs up: mod_callcenter keeps the member as Abandoned.
    api_ok(esl, &format!("uuid_kill {session}"));
    let (s, v) = mirror_agrees(esl, &mut con, "6. the caller abandoned", |v| {
        only_member(v).is_some_and(|m| m["state"] == "Abandoned")
    });
    let abandoned = only_member(&v).unwrap();
    assert_eq!(abandoned["uuid"], member_uuid.as_str());
    assert_eq!(abandoned["session_uuid"], "", "{abandoned}");
    let q = &s["queues"][QUEUE];
    assert_eq!(
        (&q["waiting"], &q["answering"], &q["abandoned"]),
        (&0.into(), &0.into(), &1.into()),
        "{q}"
    );
    assert_eq!(q["longest_wait_since"], serde_json::Value::Null, "{q}");
    let m = &s[&format!("members:{QUEUE}")][&member_uuid];
    assert!(m["abandoned_epoch"].as_i64().unwrap() > 0, "{m}");
    assert_numbers_are_numbers(&s);
    let out = assert_state_counts(
        esl,
        [
            ("agents", 2),
            ("queues", 1),
            ("waiting", 0),
            ("answering", 0),
        ],
    );
    eprintln!("fs_cli> cc_events state\n{out}");

    // Once quiet: meta names the last stream entry and the last event applied.
    let mut last = String::new();
    assert!(
        wait_until(WAIT, || {
            let st = status_json(esl);
            last = st.to_string();
            st["queued"] == 0 && st["received"] == st["published"]
        }),
        "not quiet: {last}"
    );
    let stream = xrange(&mut con, "cc_stream");
    let meta = meta_of(&mut con);
    let (last_id, _) = stream.last().expect("entries in cc_stream");
    assert_eq!(meta.get("stream_id"), Some(last_id), "{meta:?}");
    let last_event = stream
        .iter()
        .rev()
        .find_map(|(_, f)| f.iter().find(|(k, _)| k == "sequence"))
        .map(|(_, v)| v.clone())
        .expect("an event in cc_stream");
    assert_eq!(meta.get("sequence"), Some(&last_event), "{meta:?}");
    let (out, c) = state_counts(esl);
    assert_eq!(c.get("last sequence"), Some(&last_event), "{out}");
    assert!(
        !meta["host"].is_empty() && meta["core_uuid"].len() == 36,
        "{meta:?}"
    );
    let seeds: Vec<&StreamEntry> = stream
        .iter()
        .filter(|(_, f)| f.iter().any(|(k, v)| k == "action" && v == "state-seed"))
        .collect();
    assert_eq!(seeds.len(), 2, "one seed per load: {seeds:?}");
    let seed_at = seeds[1].1.iter().find(|(k, _)| k == "seeded_at").unwrap();
    assert_eq!(seed_at.1, reseeded.to_string());
    assert_eq!(meta["seeded_at"], reseeded.to_string());
    eprintln!("{} entries in cc_stream; meta {meta:?}", stream.len());

    let _ = esl.api("hupall");
    let log = shut_down(esl, &fs.fs, &fs.base);
    assert!(log.contains("mod_cc_events stopped:"), "shutdown ran");
    assert!(
        !log.contains("state mirror: cannot read"),
        "mod_callcenter was there for every seed"
    );
    eprintln!("the whole scenario took {:?}", t0.elapsed());
    let base = fs.base.clone();
    drop(fs);
    clean_up(&base);
}
