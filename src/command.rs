//! The `cc_events` fs_cli command: parsing and output. Pure.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Settings;
use crate::stats::Snapshot;

pub const NAME: &str = "cc_events";
pub const SYNTAX: &str = "status";
pub const USAGE: &str = "-USAGE: cc_events status\n";

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Status,
    Usage,
}

pub fn parse(args: &str) -> Command {
    let words: Vec<&str> = args.split_whitespace().collect();
    match words.as_slice() {
        ["status"] => Command::Status,
        _ => Command::Usage,
    }
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
         last error: {last_error}\n",
        version = env!("CARGO_PKG_VERSION"),
        where_ = settings.redis.describe(),
        routes = settings.routes.status_lines(),
        received = s.received,
        published = s.published,
        dropped = s.dropped,
        queued = s.queued,
        capacity = settings.queue_size,
        reconnects = s.reconnects,
    )
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
            last_error: Some((UNIX_EPOCH, "boom".into())),
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
    }
}
