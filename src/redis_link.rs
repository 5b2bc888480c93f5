//! The Redis side of the worker: connecting with the configured settings, and
//! publishing one batch with a single time bound.

use std::time::{Duration, Instant};

use crate::config::RedisSettings;

/// Connects, authenticates (ACL user or password), selects the db, and sets
/// the I/O timeouts. A host name is resolved here, on the worker thread.
pub fn connect(s: &RedisSettings, timeout: Duration) -> redis::RedisResult<redis::Connection> {
    use redis::IntoConnectionInfo;
    let mut redis_info = redis::RedisConnectionInfo::default()
        .set_db(s.db)
        .set_lib_name("mod_cc_events", env!("CARGO_PKG_VERSION"));
    if let Some(u) = &s.username {
        redis_info = redis_info.set_username(u);
    }
    if let Some(p) = &s.password {
        redis_info = redis_info.set_password(p);
    }
    let info = redis::ConnectionAddr::Tcp(s.host.clone(), s.port)
        .into_connection_info()?
        .set_redis_settings(redis_info);
    let client = redis::Client::open(info)?;
    let conn = client.get_connection_with_timeout(timeout.max(Duration::from_millis(1)))?;
    conn.set_read_timeout(Some(s.io_timeout))?;
    conn.set_write_timeout(Some(s.io_timeout))?;
    Ok(conn)
}

/// Sends the whole batch in one write, reads the replies, and removes from the
/// batch what Redis accepted. Returns how many were accepted and the first
/// error, if any. What stays in the batch (refused with an error reply such as
/// NOAUTH or NOPERM, or unconfirmed when the connection failed or Redis did not
/// answer within `limit`) is sent again, in order, after reconnecting.
pub fn publish_batch(
    conn: &mut redis::Connection,
    channel: &str,
    batch: &mut Vec<Vec<u8>>,
    limit: Duration,
) -> (usize, Option<redis::RedisError>) {
    let mut pipe = redis::pipe();
    for payload in batch.iter() {
        pipe.cmd("PUBLISH").arg(channel).arg(payload.as_slice());
    }
    let limit = limit.max(Duration::from_millis(1));
    if let Err(e) = conn.set_read_timeout(Some(limit)) {
        return (0, Some(e));
    }
    if let Err(e) = conn.send_packed_command(&pipe.get_packed_pipeline()) {
        return (0, Some(e));
    }
    // Replies are read one by one, stopping at the first failure: a stalled
    // Redis costs at most about twice `limit`, not `limit` per reply.
    let started = Instant::now();
    let mut confirmed: Vec<bool> = Vec::with_capacity(batch.len());
    let mut first_error = None;
    while confirmed.len() < batch.len() {
        match conn.recv_response() {
            Ok(redis::Value::ServerError(e)) => {
                first_error.get_or_insert_with(|| e.into());
                confirmed.push(false);
            }
            Ok(_) => confirmed.push(true),
            Err(e) if e.is_timeout() => {
                first_error.get_or_insert_with(|| no_answer(limit));
                break;
            }
            Err(e) => {
                first_error.get_or_insert(e);
                break;
            }
        }
        if confirmed.len() < batch.len() && started.elapsed() > limit {
            first_error.get_or_insert_with(|| no_answer(limit));
            break;
        }
    }
    let mut replies = confirmed.into_iter();
    let before = batch.len();
    batch.retain(|_| !replies.next().unwrap_or(false));
    (before - batch.len(), first_error)
}

fn no_answer(limit: Duration) -> redis::RedisError {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!(
            "Redis did not answer a batch within {} ms (io-timeout-ms)",
            limit.as_millis()
        ),
    )
    .into()
}
