//! What a Redis subscriber receives for real mod_callcenter events, loaded and
//! fired through the FreeSWITCH host harness.

mod harness;

use harness::common::status_change;

use std::time::Duration;

use harness::core::{self, OwnedEvent};
use harness::fixtures;

const WAIT: Duration = Duration::from_secs(10);

// The seed document's two examples, without the document's surrounding quotes.
const SEED_OFFERING: &str = r#"{"Offering-Call-Agent:" : {"callrequest_id": "276547", "CC_Agent": "tenant-1@areski", "campaign_id": "295", "CC_Member_CID_Name": "Outbound Call", "CC_Agent_System": "single_box", "phonenumber": "34650844400", "callerid_number": "34650844400", "CC_Member_Session_UUID": "4dbd89c2-8e54-43a6-a0b4-a7d26b09ae6c", "CC_Member_UUID": "33e7df24-133c-47c1-9aec-b985d507d43e", "CC_Member_CID_Number": "34650110022", "CC_Queue": "tenant-1@areski-queue"}}"#;
/// The seed offering when the member's session cannot be locked: no channel variables.
const OFFERING_WITHOUT_VARIABLES: &str = r#"{"Offering-Call-Agent:" : {"CC_Agent": "tenant-1@areski", "CC_Member_CID_Name": "Outbound Call", "CC_Agent_System": "single_box", "CC_Member_Session_UUID": "4dbd89c2-8e54-43a6-a0b4-a7d26b09ae6c", "CC_Member_UUID": "33e7df24-133c-47c1-9aec-b985d507d43e", "CC_Member_CID_Number": "34650110022", "CC_Queue": "tenant-1@areski-queue"}}"#;
const SEED_UUID: &str = "4dbd89c2-8e54-43a6-a0b4-a7d26b09ae6c";
const SEED_STATUS: &str = r#"{"Agent-Status-Change:" : {"CC_Agent": "tenant-1@areski", "CC_Agent_Status": "Logged Out"}}"#;

/// The fixture's first agent-offering, rewritten to the seed example's values.
fn seed_offering_event() -> OwnedEvent {
    let f = fixtures::events()
        .into_iter()
        .find(|f| f.file == "005-agent-offering.txt")
        .unwrap();
    f.event()
        .with_header("CC-Member-Session-UUID", SEED_UUID.as_bytes())
        .with_header("CC-Member-UUID", b"33e7df24-133c-47c1-9aec-b985d507d43e")
}

const SEED_VARS: [(&str, &str); 4] = [
    ("callrequest_id", "276547"),
    ("campaign_id", "295"),
    ("phonenumber", "34650844400"),
    ("callerid_number", "34650844400"),
];

fn seed_member_session() {
    seed_member_session_without(&[]);
}

/// The seed member's session, without the channel variables named in `missing`.
fn seed_member_session_without(missing: &[&str]) {
    let vars = SEED_VARS
        .iter()
        .filter(|(k, _)| !missing.contains(k))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    core::add_session(SEED_UUID, &vars);
}

#[test]
fn seed_examples_arrive_byte_for_byte() {
    let t = harness::load_with_redis(&[]);
    seed_member_session();
    let copies_before = core::pool_copies();

    core::fire(&mut seed_offering_event());
    core::fire(&mut status_change("tenant-1@areski", "Logged Out"));
    let got = t.sub.take(2, WAIT);
    assert_eq!(got[0], SEED_OFFERING);
    assert_eq!(got[1], SEED_STATUS);

    assert_eq!(t.module.unload(), 0);
    assert_eq!(
        core::session_locks_held(),
        0,
        "every located session was unlocked"
    );
    // Four variables, copied under FreeSWITCH's channel lock (dup = TRUE).
    assert_eq!(core::pool_copies() - copies_before, 4);
}

#[test]
fn recorded_scenario_publishes_exactly_the_expected_payloads() {
    let t = harness::load_with_redis(&[]);
    fixtures::add_member_sessions();

    for f in fixtures::events() {
        core::fire(&mut f.event());
    }
    // A marker after the 45 events: once it arrives, anything the ignored
    // actions might have published would already be here.
    core::fire(&mut status_change("marker", "end"));

    let expected: Vec<String> =
        std::fs::read_to_string(fixtures::dir().join("expected-payloads.txt"))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
    assert_eq!(expected.len(), 13);
    let got = t.sub.take(expected.len() + 1, WAIT);
    assert_eq!(&got[..expected.len()], &expected[..]);
    assert_eq!(
        got[expected.len()],
        r#"{"Agent-Status-Change:" : {"CC_Agent": "marker", "CC_Agent_Status": "end"}}"#
    );

    // A subscriber can see a message before the worker has read Redis's reply.
    let settled = harness::redis::wait_until(WAIT, || {
        core::api("cc_events", "status")
            .unwrap()
            .contains("published:  14\n")
    });
    let status = core::api("cc_events", "status").unwrap();
    assert!(settled, "{status}");
    assert!(status.contains("received:   14\n"), "{status}");
    t.module.unload();
    core::clear_sessions();
}

#[test]
fn vanished_member_session_leaves_out_the_channel_variables() {
    let t = harness::load_with_redis(&[]);
    seed_member_session();
    core::remove_session(SEED_UUID);

    core::fire(&mut seed_offering_event());
    let got = t.sub.take(1, WAIT);
    assert_eq!(got[0], OFFERING_WITHOUT_VARIABLES);
    t.module.unload();
    assert_eq!(core::session_locks_held(), 0);
}

/// A member who hangs up while being offered: the session is still in FreeSWITCH's
/// session table, but switch_core_session_perform_locate refuses it (its read lock
/// refuses a channel in CS_HANGUP or later). The offering is published all the same.
#[test]
fn hanging_up_member_session_is_published_without_the_channel_variables() {
    let t = harness::load_with_redis(&[]);
    seed_member_session();
    core::hangup_session(SEED_UUID);
    let copies_before = core::pool_copies();

    core::fire(&mut seed_offering_event());
    let got = t.sub.take(1, WAIT);
    assert_eq!(got[0], OFFERING_WITHOUT_VARIABLES);
    assert_eq!(
        core::session_locks_held(),
        0,
        "the refused session is not left locked"
    );
    assert_eq!(core::pool_copies(), copies_before, "no variable was read");
    t.module.unload();
    core::remove_session(SEED_UUID);
}

/// Clears the host's global variables when a test ends, however it ends.
struct GlobalVariables;

impl Drop for GlobalVariables {
    fn drop(&mut self) {
        core::clear_global_variables();
    }
}

/// switch_channel_get_variable_dup falls back to the caller profile and then to
/// FreeSWITCH's global variables (vars.xml `<X-PRE-PROCESS cmd="set">`, `global_setvar`)
/// when the channel has no variable of that name. The module asks FreeSWITCH for
/// the member's variables, so it publishes what FreeSWITCH answers: the channel's
/// own value when it has one, the global one otherwise.
#[test]
fn a_global_variable_is_published_when_the_member_channel_has_none_of_that_name() {
    let t = harness::load_with_redis(&[]);
    let _globals = GlobalVariables;
    // Global names are case-insensitive too.
    core::set_global_variable("Campaign_ID", Some("from-vars-xml"));

    seed_member_session();
    core::fire(&mut seed_offering_event());
    // A caller profile does not shadow it: campaign_id is not a profile field.
    seed_member_session_without(&["campaign_id"]);
    core::set_caller_profile(
        SEED_UUID,
        &[
            ("caller_id_name", "Outbound Call"),
            ("caller_id_number", "34650110022"),
        ],
    );
    core::fire(&mut seed_offering_event());
    core::set_global_variable("campaign_id", None);
    core::fire(&mut seed_offering_event());

    let got = t.sub.take(3, WAIT);
    assert_eq!(got[0], SEED_OFFERING, "the channel's own variable wins");
    assert_eq!(
        got[1],
        SEED_OFFERING.replace(
            r#""campaign_id": "295""#,
            r#""campaign_id": "from-vars-xml""#
        ),
        "without one, FreeSWITCH answers with the global variable"
    );
    assert_eq!(
        got[2],
        SEED_OFFERING.replace(r#""campaign_id": "295", "#, ""),
        "with neither, the field is left out"
    );
    t.module.unload();
    assert_eq!(core::session_locks_held(), 0);
    core::remove_session(SEED_UUID);
}

#[test]
fn other_events_subclasses_and_malformed_events_publish_nothing_and_never_crash() {
    let t = harness::load_with_redis(&[]);
    let status = status_change("tenant-1@areski", "Available");
    let headers: Vec<(&[u8], &[u8])> = vec![
        (b"CC-Agent", b"x"),
        (b"CC-Action", b"agent-status-change"),
        (b"CC-Agent-Status", b"Available"),
    ];

    // Same headers, but not CUSTOM callcenter::info: the host does not even deliver
    // the first two; the module must ignore the third (a subclass-less CUSTOM).
    core::fire(&mut OwnedEvent::build(7, None, &headers));
    core::fire(&mut OwnedEvent::custom("callcenter::other", &headers));
    core::fire(&mut OwnedEvent::build(0, None, &headers));
    // callcenter::info without an action, with an empty one, with no headers at all.
    core::fire(&mut OwnedEvent::custom(
        "callcenter::info",
        &[(b"CC-Agent", b"x")],
    ));
    core::fire(&mut status.with_header("CC-Action", b""));
    core::fire(&mut OwnedEvent::custom("callcenter::info", &[]));
    // Invalid UTF-8 and a 1 MB value: published, as valid JSON, bounded.
    core::fire(&mut status.with_header("CC-Agent", b"\xff\xfeagent"));
    core::fire(&mut status.with_header("CC-Agent-Status", &vec![b'A'; 1 << 20]));
    core::fire(&mut status_change("marker", "end"));

    let got = t.sub.take(3, WAIT);
    let v: serde_json::Value = serde_json::from_str(&got[0]).unwrap();
    assert_eq!(
        v["Agent-Status-Change:"]["CC_Agent"],
        "\u{fffd}\u{fffd}agent"
    );
    let v: serde_json::Value = serde_json::from_str(&got[1]).unwrap();
    let long = v["Agent-Status-Change:"]["CC_Agent_Status"]
        .as_str()
        .unwrap();
    assert_eq!(long.len(), 1024, "huge values are cut to 1024 bytes");
    assert!(
        got[2].contains("marker"),
        "nothing else was published: {got:?}"
    );
    // Events without a CC-Action are not mod_callcenter's: one throttled warning says so.
    let warned = harness::redis::wait_until(WAIT, || {
        core::logs().iter().any(|l| {
            l.level == 4
                && l.text
                    .contains("callcenter::info events without a CC-Action header")
        })
    });
    assert!(warned, "{:?}", core::logs());
    assert!(
        !core::logs().iter().any(|l| l.text.contains("panic")),
        "{:?}",
        core::logs()
    );
    t.module.unload();
}
