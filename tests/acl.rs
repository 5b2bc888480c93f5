//! The README's ACL rule for the module's user with every feature on, exactly:
//! the module works under it, and the user can do nothing else.

mod harness;

use std::collections::BTreeMap;
use std::time::Duration;

use redis::Commands;

use harness::callcenter::Callcenter;
use harness::core;
use harness::redis::wait_until;

const WAIT: Duration = Duration::from_secs(10);

/// As README.md gives it (section "A Redis user with least privilege").
const EVERY_FEATURE: &[&str] = &[
    "resetchannels",
    "&callcenter_events",
    "&callcenter_events:*",
    "resetkeys",
    "~cc_state:*",
    "~callcenter_stream",
    "-@all",
    "+publish",
    "+spublish",
    "+ping",
    "+xadd",
    "+multi",
    "+exec",
    "+eval",
    "+evalsha",
    "+script|load",
    "+hset",
    "+hdel",
    "+del",
    "+hkeys",
];

#[test]
fn the_rule_here_is_the_readmes() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let prefix = "ACL SETUSER cc_events on >CHANGE-ME ";
    let rule = readme
        .lines()
        .find(|l| l.starts_with(prefix) && l.contains("~cc_state:*"))
        .expect("the every-feature rule in README.md");
    let words: Vec<&str> = rule[prefix.len()..].split_whitespace().collect();
    assert_eq!(words, EVERY_FEATURE);
}

fn status_json() -> serde_json::Value {
    serde_json::from_str(&core::api("cc_events", "status json").unwrap()).unwrap()
}

fn run(sharded: bool) {
    let cc = Callcenter::new(2, 2);
    let sharded = if sharded { "true" } else { "false" };
    let t = harness::load_with_redis_after(
        &[
            ("username", "ccevents"),
            ("password", "acl-s3cret"),
            ("events", "all"),
            ("format", "envelope"),
            ("channel", "callcenter_events:{queue}"),
            ("extra-channel", "callcenter_events"),
            ("stream", "callcenter_stream"),
            ("state", "true"),
            ("sharded-pubsub", sharded),
        ],
        || cc.serve(),
    );
    let mut admin = t.redis.connection();
    let mut args = vec!["SETUSER", "ccevents", "on", ">acl-s3cret"];
    args.extend_from_slice(EVERY_FEATURE);
    let () = redis::cmd("ACL").arg(&args).query(&mut admin).unwrap();
    assert!(
        wait_until(WAIT, || admin
            .hexists::<_, _, bool>("cc_state:meta", "seeded_at")
            .unwrap()),
        "never seeded: {}",
        harness::common::status()
    );
    for i in 0..20 {
        cc.call(i % 2, i);
    }
    let fired = cc.fired() - 1000;
    assert!(
        wait_until(WAIT, || status_json()["published"] == fired),
        "{}",
        harness::common::status()
    );
    if sharded == "false" {
        // Pub/Sub: every event on the extra channel (the templated one is
        // another channel, so each event is published twice).
        t.sub.take(fired as usize, WAIT);
    }
    let len: u64 = admin.xlen("callcenter_stream").unwrap();
    assert_eq!(len, fired + 1, "every event and the seed's entry");
    let agents: BTreeMap<String, String> = admin.hgetall("cc_state:agents").unwrap();
    assert_eq!(agents.len(), 4);
    assert!(
        !core::logs().iter().any(|l| l.text.contains("NOPERM")),
        "{:?}",
        core::logs().iter().map(|l| &l.text).collect::<Vec<_>>()
    );
    // The only error: the user did not exist yet when the module first connected.
    let last = status_json()["last_error"]["message"].to_string();
    assert!(
        !last.contains("NOPERM") && !last.contains("refused a command"),
        "{last}"
    );
    // Nothing beyond the rule: no reads, no other keys or channels.
    let mut user = redis::Client::open(format!(
        "redis://ccevents:acl-s3cret@127.0.0.1:{}/",
        t.redis.port
    ))
    .unwrap()
    .get_connection()
    .unwrap();
    assert!(user
        .hgetall::<_, BTreeMap<String, String>>("cc_state:agents")
        .is_err());
    assert!(user.xlen::<_, u64>("callcenter_stream").is_err());
    assert!(user.set::<_, _, ()>("cc_state:x", "1").is_err());
    assert!(user.hset::<_, _, _, i64>("other", "f", "v").is_err());
    assert!(user.publish::<_, _, i64>("other", "x").is_err());
    t.module.unload();
}

#[test]
fn every_feature_works_under_the_readmes_least_privilege_rule() {
    run(false);
}

#[test]
fn sharded_pubsub_works_under_the_same_rule() {
    run(true);
}
