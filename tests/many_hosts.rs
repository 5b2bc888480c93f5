//! Several FreeSWITCH servers, one Redis: each host (a harness in its own
//! process, with its own switchname) publishes on `callcenter_events:{host}`,
//! appends to `callcenter_stream:{host}` and mirrors its state under
//! `cc_state:{host}`, and a consumer tells them apart by channel, key and the
//! envelope's `host`.

mod harness;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use redis::Commands;
use serde_json::Value;

use harness::callcenter::Callcenter;
use harness::core;
use harness::redis::{wait_until, RedisServer, Subscriber};

const WAIT: Duration = Duration::from_secs(20);
const CALLS: usize = 10;
const HOSTS: [&str; 2] = ["fs-a", "fs-b"];

fn host_config(port: u16) -> Vec<(String, String)> {
    [
        ("port", port.to_string()),
        ("events", "all".into()),
        ("format", "envelope".into()),
        ("channel", "callcenter_events:{host}".into()),
        ("extra-channel", "callcenter_events".into()),
        ("stream", "callcenter_stream:{host}".into()),
        ("state", "true".into()),
        ("state-prefix", "cc_state:{host}".into()),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v))
    .collect()
}

#[test]
fn two_freeswitch_servers_share_one_redis_and_a_consumer_tells_them_apart() {
    let redis = RedisServer::start();
    let all = Subscriber::new(&redis, "callcenter_events");
    let per_host: Vec<Subscriber> = HOSTS
        .iter()
        .map(|h| Subscriber::new(&redis, &format!("callcenter_events:{h}")))
        .collect();
    let children: Vec<_> = HOSTS
        .iter()
        .map(|h| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "one_freeswitch_host", "--ignored", "--nocapture"])
                .env("CC_EVENTS_HARNESS_SWITCHNAME", h)
                .env("CC_TEST_REDIS_PORT", redis.port.to_string())
                .output_async()
        })
        .collect();
    let mut outputs = Vec::new();
    for c in children {
        outputs.push(c.wait_with_output().unwrap());
    }
    for (h, out) in HOSTS.iter().zip(&outputs) {
        assert!(
            out.status.success(),
            "host {h}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut con = redis.connection();
    let mut total = 0;
    for (h, sub) in HOSTS.iter().zip(&per_host) {
        let fired: usize = con.get(format!("cc_test:fired:{h}")).unwrap();
        total += fired;
        // Its own channel: only its events, each saying which host it came from.
        for msg in sub.take(fired, WAIT) {
            let v: Value = serde_json::from_str(&msg).unwrap();
            assert_eq!(v["host"], *h, "{msg}");
        }
        assert!(sub.drain().is_empty());
        // Its own stream and state.
        let len: usize = con.xlen(format!("callcenter_stream:{h}")).unwrap();
        assert_eq!(len, fired + 1, "{h}: its events and its seed's entry");
        let meta: BTreeMap<String, String> = con.hgetall(format!("cc_state:{h}:meta")).unwrap();
        assert_eq!(meta["host"], *h);
        let agents: BTreeMap<String, String> = con.hgetall(format!("cc_state:{h}:agents")).unwrap();
        assert!(
            agents.keys().all(|a| a.ends_with(&format!("@{h}"))),
            "{agents:?}"
        );
        assert_eq!(agents.len(), 2);
    }
    // The shared channel has both, told apart by `host`.
    let mut by_host: BTreeMap<String, usize> = BTreeMap::new();
    for msg in all.take(total, WAIT) {
        let v: Value = serde_json::from_str(&msg).unwrap();
        *by_host
            .entry(v["host"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(
        by_host.keys().collect::<Vec<_>>(),
        HOSTS.iter().collect::<Vec<_>>()
    );
    eprintln!("one Redis, two hosts: {by_host:?}");
}

/// One FreeSWITCH host, run as a child process by the test above.
#[test]
#[ignore = "a child process of two_freeswitch_servers_share_one_redis_and_a_consumer_tells_them_apart"]
fn one_freeswitch_host() {
    let port: u16 = std::env::var("CC_TEST_REDIS_PORT")
        .unwrap()
        .parse()
        .unwrap();
    let host = core::switchname().to_str().unwrap().to_string();
    let cc = Callcenter::new(1, 2);
    {
        // Agents named for their host, as two sites would have.
        let mut db = cc.db.lock().unwrap();
        db.agents = std::mem::take(&mut db.agents)
            .into_iter()
            .map(|(n, a)| (n.replace("@test", &format!("@{host}")), a))
            .collect();
        for t in db.tiers.iter_mut() {
            t.1 = t.1.replace("@test", &format!("@{host}"));
        }
    }
    let _g = core::exclusive();
    cc.serve();
    let params = host_config(port);
    harness::write_config(
        &params
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
    );
    let module = core::LoadedModule::load().expect("load");
    let mut con = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .unwrap()
        .get_connection()
        .unwrap();
    assert!(wait_until(WAIT, || con
        .hexists::<_, _, bool>(format!("cc_state:{host}:meta"), "seeded_at")
        .unwrap()));
    for i in 0..CALLS {
        cc.set_status(
            &format!("agent-0-{}@{host}", i % 2),
            if i % 2 == 0 { "Available" } else { "On Break" },
        );
    }
    let fired = cc.fired() - 1000;
    assert!(wait_until(WAIT, || {
        let s: Value =
            serde_json::from_str(&core::api("cc_events", "status json").unwrap()).unwrap();
        s["published"] == fired
    }));
    let () = con.set(format!("cc_test:fired:{host}"), fired).unwrap();
    module.unload();
}

trait OutputAsync {
    fn output_async(&mut self) -> std::process::Child;
}

impl OutputAsync for Command {
    fn output_async(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
}
