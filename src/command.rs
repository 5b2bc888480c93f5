//! The `cc_events` fs_cli command: parsing and output. Pure.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Settings;
use crate::stats::Snapshot;

pub const NAME: &str = "cc_events";
pub const SYNTAX: &str = "status [json] | state | reload | test [<CC-Action>]";
pub const USAGE: &str = "-USAGE: cc_events status [json] | state | reload | test [<CC-Action>]\n";

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Status,
    StatusJson,
    Reload,
    /// The live state mirror's counts.
    State,
    /// A synthetic event of this action (default agent-status-change).
    Test(String),
    Usage,
}

pub fn parse(args: &str) -> Command {
    let words: Vec<&str> = args.split_whitespace().collect();
    match words.as_slice() {
        ["status"] => Command::Status,
        ["status", "json"] => Command::StatusJson,
        ["reload"] => Command::Reload,
        ["state"] => Command::State,
        ["test"] => Command::Test("agent-status-change".into()),
        ["test", action] => Command::Test(action.to_string()),
        _ => Command::Usage,
    }
}

/// The `switch_console_set_complete` lines: one per subcommand and test action.
pub fn completions() -> Vec<String> {
    let mut lines = vec![
        "add cc_events status".to_string(),
        "add cc_events status json".to_string(),
        "add cc_events reload".to_string(),
        "add cc_events state".to_string(),
        "add cc_events test".to_string(),
    ];
    lines.extend(
        crate::catalogue::ACTIONS
            .iter()
            .map(|a| format!("add cc_events test {}", a.action)),
    );
    lines
}

/// Where Redis is: while connected, where the link connected (with Sentinel,
/// the master and the sentinel that named it); otherwise the settings.
fn target(settings: &Settings, s: &Snapshot) -> String {
    match (&s.target, s.connected) {
        (Some(t), true) => t.clone(),
        _ => settings.redis.describe(),
    }
}

/// What `cc_events status json` prints: the same as `status`, as one object.
pub fn render_status_json(settings: &Settings, s: &Snapshot) -> String {
    let by_event: serde_json::Map<String, serde_json::Value> = s
        .by_name
        .iter()
        .map(|(n, c)| (n.to_string(), serde_json::Value::from(*c)))
        .collect();
    let v = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "connected": s.connected,
        "redis": target(settings, s),
        "channel": settings.routes.channel.as_ref().map(|c| c.as_str()),
        "extra_channel": settings.routes.extra_channel,
        "stream": settings.routes.stream.as_ref().map(|c| c.as_str()),
        "format": settings.format.as_str(),
        "received": s.received,
        "published": s.published,
        "dropped": s.dropped,
        "queued": s.queued,
        "queue_size": settings.queue_size,
        "reconnects": s.reconnects,
        "last_error": s.last_error.as_ref().map(|(at, msg)| serde_json::json!({
            "at": utc(*at),
            "message": msg,
        })),
        "published_by_event": by_event,
    });
    format!("{v}\n")
}

/// What `cc_events status` prints.
pub fn render_status(settings: &Settings, s: &Snapshot) -> String {
    let link = if s.connected {
        "connected"
    } else {
        "NOT connected"
    };
    let last_error = match &s.last_error {
        Some((at, msg)) => format!("{} {msg}", utc(*at)),
        None => "none".to_string(),
    };
    format!(
        "mod_cc_events {version}\n\
         redis:      {link} ({where_})\n\
         {routes}\
         received:   {received}\n\
         published:  {published}\n\
         dropped:    {dropped}\n\
         queued:     {queued} of {capacity}\n\
         reconnects: {reconnects}\n\
         last error: {last_error}\n\
         by event:   {by_event}\n",
        version = env!("CARGO_PKG_VERSION"),
        where_ = target(settings, s),
        routes = settings.routes.status_lines(),
        received = s.received,
        published = s.published,
        dropped = s.dropped,
        queued = s.queued,
        capacity = settings.queue_size,
        reconnects = s.reconnects,
        by_event = if s.by_name.is_empty() {
            "none yet".to_string()
        } else {
            s.by_name
                .iter()
                .map(|(n, c)| format!("{n} {c}"))
                .collect::<Vec<_>>()
                .join(", ")
        },
    )
}

/// What `cc_events state` prints.
pub fn render_state(report: Option<&crate::state::Report>) -> String {
    let Some(r) = report else {
        return "-ERR the state mirror is off: add <param name=\"state\" value=\"true\"/> to cc_events.conf, then cc_events reload\n".to_string();
    };
    let seeded = match r.seeded_at {
        Some(us) => format!(
            "{} ({} seeds, {} refreshes)",
            utc(UNIX_EPOCH + std::time::Duration::from_micros(us)),
            r.seeds,
            r.refreshes
        ),
        None => "not yet".to_string(),
    };
    let source = match &r.waiting_for {
        None if r.seeded_at.is_some() => "read".to_string(),
        None => "not read yet".to_string(),
        Some(why) => format!("NOT available: {why}"),
    };
    format!(
        "keys:           {prefix}:agents {prefix}:queues {prefix}:members:<queue> {prefix}:meta\n\
         agents:         {agents}\n\
         queues:         {queues}\n\
         waiting:        {waiting}\n\
         answering:      {answering}\n\
         last seed:      {seeded}\n\
         last sequence:  {sequence}\n\
         mod_callcenter: {source}\n\
         writes:         {writes}\n",
        prefix = r.prefix,
        agents = r.counts.agents,
        queues = r.counts.queues,
        waiting = r.counts.waiting,
        answering = r.counts.answering,
        sequence = r.sequence.map_or("none yet".to_string(), |s| s.to_string()),
        writes = r.writes,
    )
}

/// The `state:` line of `cc_events status`.
pub fn state_line(report: Option<&crate::state::Report>) -> String {
    match report {
        None => "state:      off\n".to_string(),
        Some(r) => match (&r.waiting_for, r.seeded_at) {
            (Some(why), _) => format!(
                "state:      {}:* waiting for mod_callcenter: {why}\n",
                r.prefix
            ),
            (None, None) => format!("state:      {}:* not seeded yet\n", r.prefix),
            (None, Some(_)) => format!(
                "state:      {}:* {} agents, {} queues, {} waiting\n",
                r.prefix, r.counts.agents, r.counts.queues, r.counts.waiting
            ),
        },
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC`, without a date crate.
fn utc(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn parses_status_and_everything_else_is_usage() {
        assert_eq!(parse("status"), Command::Status);
        assert_eq!(parse("  status "), Command::Status);
        assert_eq!(parse(""), Command::Usage);
        assert_eq!(parse("stats"), Command::Usage);
        assert_eq!(parse("status now"), Command::Usage);
        assert_eq!(parse("status json"), Command::StatusJson);
        assert_eq!(parse("reload"), Command::Reload);
        assert_eq!(parse("test"), Command::Test("agent-status-change".into()));
        assert_eq!(
            parse("test members-count"),
            Command::Test("members-count".into())
        );
    }

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        // The Event-Date-Timestamp of the fixtures' first event (06:10:45 GMT).
        let t = UNIX_EPOCH + Duration::from_secs(1_795_587_045);
        assert_eq!(utc(t), "2026-11-25 06:10:45 UTC");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(utc(leap), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn status_shows_counts_and_never_the_password() {
        let mut settings = Settings::default();
        settings.redis.password = Some("hunter2".into());
        let snap = Snapshot {
            received: 7,
            published: 5,
            dropped: 1,
            queued: 1,
            reconnects: 2,
            connected: true,
            target: None,
            last_error: Some((UNIX_EPOCH, "boom".into())),
            by_name: vec![(std::sync::Arc::from("Agent-Status-Change"), 5)],
        };
        let out = render_status(&settings, &snap);
        assert!(!out.contains("hunter2"));
        assert!(
            out.contains("redis:      connected (127.0.0.1:6379 db 0 (password set))"),
            "{out}"
        );
        assert!(out.contains("received:   7\n"));
        assert!(out.contains("queued:     1 of 10000\n"));
        assert!(out.contains("last error: 1970-01-01 00:00:00 UTC boom\n"));
        assert!(out.contains("by event:   Agent-Status-Change 5\n"), "{out}");
        let json: serde_json::Value =
            serde_json::from_str(&render_status_json(&settings, &snap)).unwrap();
        assert_eq!(json["published"], 5);
        assert_eq!(json["queue_size"], 10000);
        assert_eq!(json["published_by_event"]["Agent-Status-Change"], 5);
        assert_eq!(json["last_error"]["message"], "boom");
        assert!(!json.to_string().contains("hunter2"));
    }

    #[test]
    fn status_shows_where_the_link_connected_and_the_settings_when_not_connected() {
        let settings = Settings::from_params([
            ("sentinels", "127.0.0.1:26379,127.0.0.1:26380"),
            ("sentinel-master", "mymaster"),
        ])
        .unwrap()
        .settings;
        let mut snap = Snapshot {
            received: 0,
            published: 0,
            dropped: 0,
            queued: 0,
            reconnects: 0,
            connected: true,
            target: Some(
                "master 'mymaster' 127.0.0.1:6380 via sentinel 127.0.0.1:26380 db 0".into(),
            ),
            last_error: None,
            by_name: Vec::new(),
        };
        let line = "redis:      connected (master 'mymaster' 127.0.0.1:6380 via sentinel 127.0.0.1:26380 db 0)\n";
        assert!(render_status(&settings, &snap).contains(line));
        let json: serde_json::Value =
            serde_json::from_str(&render_status_json(&settings, &snap)).unwrap();
        assert_eq!(
            json["redis"],
            "master 'mymaster' 127.0.0.1:6380 via sentinel 127.0.0.1:26380 db 0"
        );
        snap.connected = false;
        let line = "redis:      NOT connected (sentinel master 'mymaster' via 127.0.0.1:26379,127.0.0.1:26380 db 0)\n";
        assert!(render_status(&settings, &snap).contains(line));
    }
}
