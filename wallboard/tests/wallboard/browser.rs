//! The page in a real headless Chromium (through chromedriver): the recorded
//! scenario step by step, a Redis restart, names that look like HTML, and
//! the time to apply an update at 1,000 agents.
//!
//! Ignored, with the reason, when chromium and chromedriver were not found
//! at build time (Debian: apt-get install chromium chromium-driver).

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::harness::callcenter::Callcenter;
use crate::harness::core::{self, LoadedModule};
use crate::harness::redis::{wait_until, RedisServer};
use crate::harness::state::{meta, serve_point};
use crate::harness::{self, fixtures};
use crate::scenario::{self, ARESKI, BOB, QUEUE};
use crate::support::{Browser, Wallboard, PAGE_STATUS, QUEUE_VIEW, WAIT};
use crate::synth::Synth;

/// The module loaded into the harness with the mirror and its stream,
/// against `redis`, once `setup` has chosen what mod_callcenter answers.
fn load_module(
    redis: &RedisServer,
    setup: impl FnOnce(),
) -> (std::sync::MutexGuard<'static, ()>, LoadedModule) {
    let exclusive = core::exclusive();
    setup();
    harness::config_for(
        redis.port,
        &[("state", "true"), ("stream", "callcenter_stream")],
    );
    let module = LoadedModule::load().expect("load the module");
    let mut con = redis.connection();
    assert!(
        wait_until(WAIT, || meta(&mut con, "cc_state")
            .contains_key("seeded_at")),
        "never seeded"
    );
    (exclusive, module)
}

fn shot(b: &Browser, name: &str) -> PathBuf {
    let dir = option_env!("CARGO_TARGET_TMPDIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let path = dir.join(format!("wallboard-{name}.png"));
    b.screenshot(&path);
    println!("screenshot: {}", path.display());
    path
}

fn queue(b: &Browser, name: &str) -> Value {
    b.js(QUEUE_VIEW, vec![json!(name)])
}

fn agent<'a>(view: &'a Value, name: &str) -> &'a Value {
    view["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["name"] == name))
        .unwrap_or(&Value::Null)
}

/// Waits until the queue's card shows `agent` with this status, state and colour.
fn wait_agent(b: &Browser, name: &str, status: &str, state: &str, tone: &str) -> Value {
    b.wait_for(
        &format!("{name} {status}/{state} ({tone})"),
        WAIT,
        |b| queue(b, QUEUE),
        |v| {
            let a = agent(v, name);
            a["status"] == status && a["state"] == state && a["tone"] == tone
        },
    )
}

fn ticker_top(b: &Browser) -> String {
    b.js(
        "return document.querySelector('#ticker li')?.textContent ?? ''",
        vec![],
    )
    .as_str()
    .unwrap_or_default()
    .to_string()
}

#[test]
#[cfg_attr(
    not(browser),
    ignore = "needs chromium and chromedriver (apt-get install chromium chromium-driver); not found when this test was built"
)]
fn the_recorded_scenario_step_by_step_and_through_a_redis_restart() {
    let mut redis = RedisServer::start();
    let (_exclusive, module) = load_module(&redis, || serve_point("01-start"));
    fixtures::add_member_sessions();
    let mut con = redis.connection();
    let w = Wallboard::start(redis.port, &[], &[]);
    let b = Browser::start();
    b.goto(&w.url("/"));
    b.wait_for(
        "live data",
        WAIT,
        |b| b.js(PAGE_STATUS, vec![]),
        |s| s["status"] == "live" && s["board"] == true,
    );
    assert_eq!(
        b.text(&format!("article.queue[data-queue=\"{QUEUE}\"] .qname")),
        QUEUE
    );
    let v = wait_agent(&b, ARESKI, "Logged Out", "Waiting", "off");
    assert_eq!(agent(&v, BOB)["tone"], "off");
    assert_eq!(
        (
            v["waiting"].as_str(),
            v["answering"].as_str(),
            v["longest"].as_str()
        ),
        (Some("0"), Some("0"), Some("–"))
    );

    let events = fixtures::events();
    // areski Available; a caller joins and waits.
    scenario::fire(&events, 1, 3, 0, &mut con);
    let v = b.wait_for(
        "a caller waiting",
        WAIT,
        |b| queue(b, QUEUE),
        |v| v["waiting"] == "1" && agent(v, ARESKI)["tone"] == "ready",
    );
    assert_eq!(agent(&v, ARESKI)["status"], "Available");
    assert_eq!(v["callers"].as_array().unwrap().len(), 1);
    assert!(
        v["callers"][0].as_str().unwrap().contains("34650110022"),
        "{v}"
    );
    assert_ne!(v["longest"], "–", "the longest wait shows: {v}");
    shot(&b, "1-caller-waiting");

    // The call is offered to areski: Receiving.
    scenario::fire(&events, 4, 4, 0, &mut con);
    let v = wait_agent(&b, ARESKI, "Available", "Receiving", "ringing");
    assert!(
        !agent(&v, ARESKI)["time"].as_str().unwrap().contains('d'),
        "time in state is live, not the recording's day: {v}"
    );
    assert_eq!(
        ticker_top(&b).split_once(' ').map(|(_, t)| t),
        Some("tenant-1@areski: Receiving")
    );
    shot(&b, "2-receiving");

    // Answered: In a queue call; the caller is being answered.
    scenario::fire(&events, 5, 8, 0, &mut con);
    let v = wait_agent(&b, ARESKI, "Available", "In a queue call", "talking");
    assert_eq!(
        (v["waiting"].as_str(), v["answering"].as_str()),
        (Some("0"), Some("1"))
    );
    assert!(
        v["callers"][0]
            .as_str()
            .unwrap()
            .contains("with tenant-1@areski"),
        "{v}"
    );
    shot(&b, "3-in-a-queue-call");

    // The call ends: back to Waiting.
    scenario::fire(&events, 9, 11, 0, &mut con);
    let v = wait_agent(&b, ARESKI, "Available", "Waiting", "ready");
    assert_eq!(
        (
            v["answering"].as_str(),
            v["callers"].as_array().map(Vec::len)
        ),
        (Some("0"), Some(0))
    );

    scenario::fire(&events, 12, 12, 0, &mut con);
    wait_agent(&b, ARESKI, "On Break", "Waiting", "break");
    shot(&b, "4-on-break");
    scenario::fire(&events, 13, 13, 0, &mut con);
    wait_agent(&b, ARESKI, "Logged Out", "Waiting", "off");
    assert!(
        ticker_top(&b).ends_with("tenant-1@areski is Logged Out"),
        "{}",
        ticker_top(&b)
    );

    // Redis goes away: the page hides the numbers and says so.
    let port = redis.port;
    redis.stop();
    let s = b.wait_for(
        "reconnecting",
        WAIT,
        |b| b.js(PAGE_STATUS, vec![]),
        |s| s["status"] == "reconnecting",
    );
    assert_eq!(s["board"], false, "no stale numbers: {s}");
    assert!(
        s["banner"]
            .as_str()
            .unwrap()
            .starts_with("Reconnecting to Redis"),
        "{s}"
    );
    shot(&b, "5-reconnecting");

    // Meanwhile a caller arrives (the module queues the events), and Redis
    // comes back empty: the module seeds it again from mod_callcenter, and
    // the page shows the numbers now.
    serve_point("05-caller-waiting-no-agent");
    for f in &events[15..17] {
        core::fire(&mut scenario::retimed(f, 0).event());
    }
    let restarted = RedisServer::start_on(port);
    let mut admin = restarted.connection();
    let seeded = wait_until(WAIT, || {
        meta(&mut admin, "cc_state").contains_key("seeded_at")
    });
    assert!(
        seeded,
        "the module never seeded the restarted Redis:\n{}\n{}\n{:#?}",
        core::api("cc_events", "status").unwrap_or_default(),
        core::api("cc_events", "state").unwrap_or_default(),
        core::logs()
            .iter()
            .map(|l| l.text.clone())
            .collect::<Vec<_>>()
    );
    b.wait_for(
        "live data again",
        WAIT,
        |b| b.js(PAGE_STATUS, vec![]),
        |s| s["status"] == "live" && s["board"] == true,
    );
    let v = b.wait_for(
        "the caller who came during the outage",
        WAIT,
        |b| queue(b, QUEUE),
        |v| v["waiting"] == "1",
    );
    assert_eq!(
        (
            agent(&v, ARESKI)["tone"].as_str(),
            agent(&v, BOB)["tone"].as_str()
        ),
        (Some("off"), Some("off"))
    );
    assert!(
        v["callers"][0].as_str().unwrap().contains("34650110022"),
        "{v}"
    );
    shot(&b, "6-after-restart");
    assert!(b.alert().is_none());
    drop(b);
    drop(w);
    module.unload();
    drop(restarted);
}

const EVIL_AGENT: &str = "<img src=x onerror=alert(1)>";
const EVIL_CALLER: &str = "<script>alert(2)</script>";

#[test]
#[cfg_attr(
    not(browser),
    ignore = "needs chromium and chromedriver (apt-get install chromium chromium-driver); not found when this test was built"
)]
fn names_that_look_like_html_show_as_text() {
    let cc = Callcenter::new(1, 2);
    {
        // One agent named like markup, in the queue's tier list too.
        let mut db = cc.db.lock().unwrap();
        let a = db.agents.remove("agent-0-1@test").unwrap();
        db.agents.insert(EVIL_AGENT.into(), a);
        for t in &mut db.tiers {
            if t.1 == "agent-0-1@test" {
                t.1 = EVIL_AGENT.into();
            }
        }
    }
    let redis = RedisServer::start();
    let (_exclusive, module) = load_module(&redis, || cc.serve());
    let w = Wallboard::start(redis.port, &[], &[]);
    let b = Browser::start();
    b.goto(&w.url("/"));
    // From the snapshot, then from live patches.
    b.wait_for(
        "the agent from the snapshot",
        WAIT,
        |b| queue(b, "q0@test"),
        |v| agent(v, EVIL_AGENT)["tone"] == "off",
    );
    cc.set_status(EVIL_AGENT, "Available");
    cc.join("q0@test", "m-1", "s-1", EVIL_CALLER);
    let v = b.wait_for(
        "the live changes",
        WAIT,
        |b| queue(b, "q0@test"),
        |v| agent(v, EVIL_AGENT)["tone"] == "ready" && v["waiting"] == "1",
    );
    assert!(
        v["callers"][0].as_str().unwrap().starts_with(EVIL_CALLER),
        "{v}"
    );
    let markup = b.js(
        "return document.querySelectorAll('#board img, #board script, #board [onerror]').length",
        vec![],
    );
    assert_eq!(markup, 0, "a name became markup");
    let names = b.js("return [...document.querySelectorAll('#ticker li')].map((li) => li.textContent).join('\\n')", vec![]);
    assert!(
        names
            .as_str()
            .unwrap()
            .contains(&format!("{EVIL_AGENT} is Available")),
        "{names}"
    );
    assert!(
        names
            .as_str()
            .unwrap()
            .contains(&format!("{EVIL_CALLER} is waiting in q0@test")),
        "{names}"
    );
    assert_eq!(b.alert(), None, "the page ran a name as script");
    drop(b);
    drop(w);
    module.unload();
}

/// Not an assertion on time: reports how long the page takes to apply its
/// first snapshot and one update batch with 1,000 agents in 100 queues.
#[test]
#[cfg_attr(
    not(browser),
    ignore = "needs chromium and chromedriver (apt-get install chromium chromium-driver); not found when this test was built"
)]
fn the_page_applies_an_update_batch_at_a_thousand_agents() {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    let mut synth = Synth::new(100, 10, 100);
    synth.seed(&mut con);
    let w = Wallboard::start(redis.port, &[], &[]);
    let b = Browser::start();
    b.goto(&w.url("/"));
    let count = "return [document.querySelectorAll('article.queue').length, document.querySelectorAll('li.agent').length, document.body.dataset.status]";
    b.wait_for(
        "100 queues, 1,000 agent rows",
        WAIT,
        |b| b.js(count, vec![]),
        |v| *v == json!([100, 1000, "live"]),
    );
    let snapshot_ms = b.js("return window.wallboard.snapshotApplyMs", vec![]);
    let before = b.js("return window.wallboard.frames", vec![]);

    // 200 entries: what 100 ms at 2,000 events/s brings, one push's worth.
    let mut pipe = redis::pipe();
    for _ in 0..200 {
        synth.xadd_next(&mut pipe);
    }
    let ids: Vec<String> = pipe.query(&mut con).unwrap();
    let last = json!(ids.last().unwrap());
    b.wait_for(
        "the batch applied",
        WAIT,
        |b| b.js("return window.wallboard.lastId", vec![]),
        |id| *id == last,
    );
    let frames = b.js(
        "return window.wallboard.log.filter((f) => f.seq > arguments[0])",
        vec![before],
    );
    let patches: Vec<&Value> = frames
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "patch")
        .collect();
    assert!(!patches.is_empty());
    let busy = b.js(
        "return document.querySelectorAll('li.agent.ringing, li.agent.talking').length",
        vec![],
    );
    assert!(busy.as_u64().unwrap() > 0, "the batch's calls show");
    let worst = patches
        .iter()
        .map(|f| f["ms"].as_f64().unwrap())
        .fold(0.0, f64::max);
    let changes: u64 = patches.iter().map(|f| f["changes"].as_u64().unwrap()).sum();
    println!(
        "page at 1,000 agents / 100 queues: snapshot applied in {:.1} ms; {} entries arrived as {} push(es) of {changes} changes, applied in {worst:.1} ms at most (JS, DOM and layout)",
        snapshot_ms.as_f64().unwrap(),
        ids.len(),
        patches.len()
    );
    // A busier moment for the picture: calls at every step.
    let mut pipe = redis::pipe();
    for _ in 0..400 {
        synth.xadd_next(&mut pipe);
    }
    let ids: Vec<String> = pipe.query(&mut con).unwrap();
    let last = json!(ids.last().unwrap());
    b.wait_for(
        "the second batch applied",
        WAIT,
        |b| b.js("return window.wallboard.lastId", vec![]),
        |id| *id == last,
    );
    shot(&b, "scale");
}
