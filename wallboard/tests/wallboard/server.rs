//! The server as a browser's EventSource sees it (no browser needed): the
//! token, the snapshot and its patches, coalescing, reconnects, Redis
//! restarts, and the README's ACL.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::harness::redis::{wait_until, RedisServer};
use crate::harness::{self, core, fixtures, state::serve_point};
use crate::scenario::{self, ARESKI, BOB, QUEUE};
use crate::support::{get, Event, Sse, Wallboard, WAIT};
use crate::synth::Synth;

/// A redis-server holding a synthetic mirror of `queues` x `per_queue` agents.
fn synth_redis(queues: usize, per_queue: usize) -> (RedisServer, Synth, redis::Connection) {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    let mut synth = Synth::new(queues, per_queue, queues);
    synth.seed(&mut con);
    (redis, synth, con)
}

/// Reads events until a snapshot taken while following Redis.
fn live_snapshot(sse: &mut Sse) -> Event {
    loop {
        let e = sse.expect("snapshot", WAIT);
        if e.json()["status"]["redis"] == "live" {
            return e;
        }
    }
}

/// Applies a patch to a snapshot-shaped JSON object, as the page does.
fn apply(model: &mut Value, patch: &Value) {
    for kind in ["agents", "queues"] {
        for (name, v) in patch[kind].as_object().unwrap() {
            let held = model[kind].as_object_mut().unwrap();
            if v.is_null() {
                held.remove(name);
            } else {
                held.insert(name.clone(), v.clone());
            }
        }
    }
    for (q, members) in patch["members"].as_object().unwrap() {
        let all = model["members"].as_object_mut().unwrap();
        let held = all
            .entry(q.clone())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .unwrap();
        for (uuid, m) in members.as_object().unwrap() {
            if m.is_null() {
                held.remove(uuid);
            } else {
                held.insert(uuid.clone(), m.clone());
            }
        }
        if held.is_empty() {
            all.remove(q);
        }
    }
}

/// (agents, queues, members) of a snapshot.
fn held(model: &Value) -> (Value, Value, Value) {
    (
        model["agents"].clone(),
        model["queues"].clone(),
        model["members"].clone(),
    )
}

#[test]
fn every_request_needs_the_token_when_one_is_set() {
    let (redis, _synth, _con) = synth_redis(2, 2);
    // From the environment: the fallback of --token.
    let w = Wallboard::start(
        redis.port,
        &[],
        &[("CC_WALLBOARD_TOKEN", "t0ken-for-tests")],
    );
    let refused: [(&str, &[(&str, &str)]); 6] = [
        ("/", &[]),
        ("/events", &[]),
        ("/?token=wrong", &[]),
        ("/?token=t0ken-for-test", &[]),
        ("/events", &[("Authorization", "Bearer t0ken-for-testsX")]),
        ("/no-such-page", &[]),
    ];
    for (path, headers) in refused {
        let r = get(w.port, path, headers);
        assert_eq!(r.status, 401, "{path} {headers:?}");
        assert!(
            r.body.contains("?token="),
            "the refusal says what to do: {}",
            r.body
        );
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"cc-wallboard\"")
        );
    }
    let page = get(w.port, "/?token=t0ken-for-tests", &[]);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<title>Call center wallboard</title>"));
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'sha256-"),
        "{csp}"
    );
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));

    let mut sse = Sse::open(
        w.port,
        "/events",
        &[("Authorization", "Bearer t0ken-for-tests")],
    );
    assert_eq!(sse.status, 200);
    assert_eq!(
        live_snapshot(&mut sse).json()["agents"]
            .as_object()
            .unwrap()
            .len(),
        4
    );
    let mut sse = Sse::open(w.port, "/events?token=t0ken-for-tests", &[]);
    assert_eq!(
        live_snapshot(&mut sse).json()["queues"]
            .as_object()
            .unwrap()
            .len(),
        2
    );
    assert!(
        !w.log().join("\n").contains("t0ken-for-tests"),
        "the token is never printed"
    );
}

/// Entries XADDed in a burst reach the browser coalesced (at most one push
/// per 100 ms, stamped by the server), and a browser that reconnects with
/// Last-Event-ID gets a snapshot equal to everything it had applied.
#[test]
fn the_stream_arrives_coalesced_and_a_reconnecting_browser_gets_a_fresh_snapshot() {
    let (redis, mut synth, mut con) = synth_redis(4, 3);
    let w = Wallboard::start(redis.port, &[], &[]);
    let mut sse = Sse::open(w.port, "/events", &[]);
    assert_eq!(sse.header_value("x-accel-buffering"), Some("no"));
    let first = live_snapshot(&mut sse);
    let mut model = first.json();
    assert_eq!(model["agents"].as_object().unwrap().len(), 12);
    assert!(model["agents"]
        .as_object()
        .unwrap()
        .values()
        .all(|a| a["state"] == "Waiting"));

    let mut pipe = redis::pipe();
    // Not a whole number of calls: some are in progress at the end.
    for _ in 0..310 {
        synth.xadd_next(&mut pipe);
    }
    let ids: Vec<String> = pipe.query(&mut con).unwrap();
    let last = ids.last().unwrap().clone();

    let mut pushed_at = Vec::new();
    loop {
        let e = sse.expect("patch", WAIT);
        let p = e.json();
        apply(&mut model, &p);
        pushed_at.push(p["server_time"].as_u64().unwrap());
        if e.id.as_deref() == Some(last.as_str()) {
            assert_eq!(p["to"], json!(last));
            break;
        }
    }
    assert!(
        pushed_at.len() < ids.len(),
        "{} pushes for {} entries",
        pushed_at.len(),
        ids.len()
    );
    for pair in pushed_at.windows(2) {
        assert!(
            pair[1] - pair[0] >= 99,
            "two pushes {} ms apart: {pushed_at:?}",
            pair[1] - pair[0]
        );
    }
    let busy = model["agents"]
        .as_object()
        .unwrap()
        .values()
        .filter(|a| a["state"] != "Waiting")
        .count();
    assert!(busy > 0, "the calls in progress show");

    // A browser that lost the stream reconnects with Last-Event-ID: it gets
    // the state now, which is exactly what the patches built.
    drop(sse);
    let mut again = Sse::open(w.port, "/events", &[("Last-Event-ID", ids[10].as_str())]);
    let fresh = again.next(WAIT).expect("an event");
    assert_eq!(
        (fresh.event.as_str(), fresh.id.as_deref()),
        ("snapshot", Some(last.as_str()))
    );
    assert_eq!(held(&fresh.json()), held(&model));
}

/// Redis restarts (empty, as without persistence): the browser is told at
/// once that the numbers are not current, then gets the new snapshot.
#[test]
fn a_redis_restart_shows_reconnecting_then_the_new_numbers() {
    let (mut redis, _synth, _con) = synth_redis(3, 2);
    let port = redis.port;
    let w = Wallboard::start(port, &[], &[]);
    let mut sse = Sse::open(w.port, "/events", &[]);
    assert_eq!(
        live_snapshot(&mut sse).json()["queues"]
            .as_object()
            .unwrap()
            .len(),
        3
    );

    redis.stop();
    let status = sse.expect("status", WAIT).json();
    assert_eq!(status["status"]["redis"], "reconnecting", "{status}");
    assert!(status["status"]["since"].as_u64().unwrap() > 0);

    let restarted = RedisServer::start_on(port);
    // Up, but the module has not seeded yet: the page says why it waits.
    let status = sse.expect("status", WAIT).json();
    assert_eq!(status["status"]["redis"], "waiting", "{status}");
    assert!(
        status["status"]["detail"]
            .as_str()
            .unwrap()
            .contains("seeded_at"),
        "{status}"
    );

    let mut synth = Synth::new(5, 1, 5);
    synth.seed(&mut restarted.connection());
    let snap = live_snapshot(&mut sse).json();
    assert_eq!(snap["queues"].as_object().unwrap().len(), 5);
    let log = w.log().join("\n");
    assert!(
        log.contains(&format!("cannot read Redis at 127.0.0.1:{port}")),
        "{log}"
    );
    drop(restarted);
    drop(redis);
}

/// A module without `stream` leaves nothing to follow: the page says which
/// param to set. A wrong --stream is named in the log.
#[test]
fn a_mirror_without_a_stream_and_a_wrong_stream_are_named() {
    let (redis, mut synth, mut con) = synth_redis(1, 1);
    let () = redis::cmd("HDEL")
        .arg("cc_state:meta")
        .arg("stream_id")
        .query(&mut con)
        .unwrap();
    let w = Wallboard::start(redis.port, &[], &[]);
    let mut sse = Sse::open(w.port, "/events", &[]);
    // In the first snapshot, or in a status change after it.
    let waiting = loop {
        let s = sse.next(WAIT).expect("a status").json();
        if s["status"]["redis"] == "waiting" {
            break s;
        }
    };
    assert!(
        waiting["status"]["detail"]
            .as_str()
            .unwrap()
            .contains("set the module's stream param"),
        "{waiting}"
    );
    drop(w);

    synth.seed(&mut con);
    let w = Wallboard::start(redis.port, &["--stream", "not_the_modules_stream"], &[]);
    live_snapshot(&mut Sse::open(w.port, "/events", &[]));
    // The module moves on: its stream and meta, not the one we follow.
    let mut pipe = redis::pipe();
    synth.xadd_next(&mut pipe);
    let ids: Vec<String> = pipe.query(&mut con).unwrap();
    let () = redis::cmd("HSET")
        .arg("cc_state:meta")
        .arg("stream_id")
        .arg(&ids[0])
        .query(&mut con)
        .unwrap();
    assert!(
        wait_until(WAIT, || w
            .log()
            .iter()
            .any(|l| l.contains("is --stream the module's stream param?"))),
        "{:?}",
        w.log()
    );
}

/// The README's ACL line for the wallboard's user, exactly as written there.
fn readme_acl() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| l.starts_with("ACL SETUSER cc_wallboard "))
        .expect(
            "README.md gives the wallboard's ACL as a line starting `ACL SETUSER cc_wallboard `",
        );
    line.split_whitespace()
        .skip(1)
        .map(|w| {
            if w == ">CHANGE-ME" {
                ">acl-wallboard-s3cret".to_string()
            } else {
                w.to_string()
            }
        })
        .collect()
}

/// The real module in the harness writes the mirror and its stream; the
/// wallboard reads them as a user with exactly the README's ACL, and Redis
/// refuses it nothing (its ACL LOG stays empty). The user cannot write.
#[test]
fn works_under_exactly_the_readmes_acl() {
    let _exclusive = core::exclusive();
    serve_point("01-start");
    let redis = RedisServer::start();
    harness::config_for(
        redis.port,
        &[("state", "true"), ("stream", "callcenter_stream")],
    );
    let module = core::LoadedModule::load().expect("load the module");
    fixtures::add_member_sessions();
    let mut admin = redis.connection();
    let () = redis::cmd("ACL")
        .arg(readme_acl())
        .query(&mut admin)
        .unwrap();
    assert!(wait_until(WAIT, || harness::state::meta(
        &mut admin, "cc_state"
    )
    .contains_key("seeded_at")));

    // The user from a flag, its password from the environment.
    let w = Wallboard::start(
        redis.port,
        &["--redis-user", "cc_wallboard"],
        &[("CC_WALLBOARD_REDIS_PASSWORD", "acl-wallboard-s3cret")],
    );
    let mut sse = Sse::open(w.port, "/events", &[]);
    let snap = live_snapshot(&mut sse).json();
    assert_eq!(snap["agents"][ARESKI]["status"], "Logged Out");
    assert!(snap["queues"][QUEUE]["agents"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == BOB));

    let events = fixtures::events();
    scenario::fire(&events, 1, 4, 0, &mut admin);
    let mut agents = Map::new();
    while agents.get(ARESKI).is_none_or(|a| a["state"] != "Receiving") {
        let p = sse.expect("patch", WAIT).json();
        agents.extend(p["agents"].as_object().unwrap().clone());
    }
    assert_eq!(agents[ARESKI]["status"], "Available");

    let log: Vec<redis::Value> = redis::cmd("ACL").arg("LOG").query(&mut admin).unwrap();
    assert!(
        log.is_empty(),
        "Redis refused the wallboard something: {log:?}"
    );
    assert!(
        !w.log().join("\n").contains("acl-wallboard-s3cret"),
        "the password is never printed"
    );

    // And the rule gives it nothing more.
    let mut user = redis::Client::open(format!(
        "redis://cc_wallboard:acl-wallboard-s3cret@127.0.0.1:{}/",
        redis.port
    ))
    .unwrap()
    .get_connection()
    .unwrap();
    for cmd in [
        redis::cmd("HSET")
            .arg("cc_state:agents")
            .arg("x")
            .arg("y")
            .clone(),
        redis::cmd("DEL").arg("cc_state:meta").clone(),
        redis::cmd("GET").arg("other").clone(),
        redis::cmd("PUBLISH")
            .arg("callcenter_events")
            .arg("x")
            .clone(),
        redis::cmd("XADD")
            .arg("callcenter_stream")
            .arg("*")
            .arg("a")
            .arg("b")
            .clone(),
    ] {
        let r: redis::RedisResult<redis::Value> = cmd.query(&mut user);
        assert!(
            r.as_ref()
                .is_err_and(|e| e.to_string().contains("no permissions")),
            "{r:?}"
        );
    }
    let mut scans: BTreeMap<&str, bool> = BTreeMap::new();
    for key in ["cc_state:agents", "other"] {
        let r: redis::RedisResult<redis::Value> = redis::cmd("HGETALL").arg(key).query(&mut user);
        scans.insert(key, r.is_ok());
    }
    assert_eq!(
        scans,
        BTreeMap::from([("cc_state:agents", true), ("other", false)])
    );
    drop(w);
    module.unload();
}
