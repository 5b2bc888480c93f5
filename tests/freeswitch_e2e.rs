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

mod harness;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use harness::esl::Esl;
use harness::redis::{free_port, temp_dir, wait_until, RedisServer, Subscriber};

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

/// A minimal configuration: one queue, one callback agent that answers (null endpoint),
/// a `queue` extension that sets the dialer's variables, the event socket on `esl_port`.
fn write_config(conf: &Path, esl_port: u16, redis_port: u16, module: &Path) {
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
    write(
        conf.join("autoload_configs/cc_events.conf.xml"),
        &format!(
            r#"<configuration name="cc_events.conf" description="Call-center events to Redis">
  <settings>
    <param name="host" value="127.0.0.1"/>
    <param name="port" value="{redis_port}"/>
    <param name="channel" value="callcenter_events"/>
  </settings>
</configuration>
"#
        ),
    );
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
            if !wait_until(Duration::from_secs(20), || !self.alive()) {
                // SAFETY: our own child FreeSWITCH, identified by its pid file.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
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
    let prefix = std::env::var_os("FREESWITCH_PREFIX")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .expect("FREESWITCH_PREFIX must name an installed FreeSWITCH 1.10");
    let bin = prefix.join("bin/freeswitch");
    assert!(bin.exists(), "{} not found", bin.display());
    let mod_dir = modules_dir(&prefix).expect("no mod_callcenter.so under FREESWITCH_PREFIX");

    let redis = RedisServer::start();
    let sub = Subscriber::new(&redis, "callcenter_events");
    let base = temp_dir("freeswitch");
    // FreeSWITCH derives the module table's symbol from the file name.
    let module = base.join("mod_cc_events.so");
    std::fs::copy(harness::core::module_path(), &module).unwrap();
    let esl_port = free_port();
    write_config(&base.join("conf"), esl_port, redis.port, &module);

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
    let mut esl = esl.unwrap();
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

    let _ = esl.api("fsctl shutdown");
    assert!(
        wait_until(WAIT, || !fs.alive()),
        "FreeSWITCH did not shut down"
    );
    let log = log();
    assert!(log.contains("mod_cc_events stopped:"), "shutdown ran");
    assert!(
        !log.contains("panic"),
        "no panic in {}",
        base.join("log/freeswitch.log").display()
    );
    drop(fs);
    if std::env::var_os("CC_EVENTS_KEEP_E2E").is_some() {
        eprintln!("kept {}", base.display());
    } else {
        let _ = std::fs::remove_dir_all(&base);
    }
}
