//! The Redis side: read the mirror's snapshot as README's recipe does (meta
//! and every hash in one MULTI), follow the stream from the snapshot's
//! `stream_id`, and start over, with a capped backoff, whenever Redis goes
//! away. Read-only: HGETALL, HKEYS, MULTI/EXEC and XREAD, nothing else.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::{
    AsyncCommands, AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo,
};

use crate::config::Config;
use crate::hub::{now_ms, Hub, Status};
use crate::model::{Applied, Entry, RawSnapshot};

/// How long one XREAD waits for entries. When it returns empty, meta is
/// checked against what we hold, which catches a wrong `--stream`.
const BLOCK: Duration = Duration::from_secs(5);
/// Entries taken per XREAD.
const COUNT: usize = 1000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Why following stopped.
enum Stop {
    /// Redis failed or went away: reconnect.
    Lost(String),
    /// Redis answers, but there is no mirror to follow yet.
    NotReady(String),
}

impl From<redis::RedisError> for Stop {
    fn from(e: redis::RedisError) -> Stop {
        Stop::Lost(e.to_string())
    }
}

async fn connect(cfg: &Config) -> Result<MultiplexedConnection, Stop> {
    let mut redis = RedisConnectionInfo::default()
        .set_db(cfg.redis_db)
        // redis-rs would send CLIENT SETINFO on connect; the minimal ACL does
        // not allow it, and a refused command fills Redis's ACL LOG.
        .set_skip_set_lib_name();
    if let Some(user) = &cfg.redis_user {
        redis = redis.set_username(user);
    }
    if let Some(password) = &cfg.redis_password {
        redis = redis.set_password(password);
    }
    let info = ConnectionAddr::Tcp(cfg.redis_host.clone(), cfg.redis_port)
        .into_connection_info()?
        .set_redis_settings(redis);
    let client = redis::Client::open(info)?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        // A blocked XREAD answers within BLOCK; longer means Redis hangs.
        .set_response_timeout(Some(BLOCK + Duration::from_secs(3)));
    Ok(client
        .get_multiplexed_async_connection_with_config(&config)
        .await?)
}

/// meta and every hash at one point (MULTI/EXEC), retried if a reseed
/// changed the queue list between HKEYS and the MULTI.
async fn read_snapshot(con: &mut MultiplexedConnection, prefix: &str) -> Result<RawSnapshot, Stop> {
    let meta_key = format!("{prefix}:meta");
    let meta: HashMap<String, String> = con.hgetall(&meta_key).await?;
    if !meta.contains_key("seeded_at") {
        return Err(Stop::NotReady(format!(
            "{meta_key} has no seeded_at: is mod_cc_events loaded with state=true and this --state-prefix, and is mod_callcenter loaded?"
        )));
    }
    loop {
        let queues: Vec<String> = con.hkeys(format!("{prefix}:queues")).await?;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hgetall(&meta_key)
            .hgetall(format!("{prefix}:agents"))
            .hgetall(format!("{prefix}:queues"));
        for q in &queues {
            pipe.hgetall(format!("{prefix}:members:{q}"));
        }
        let mut hashes: Vec<HashMap<String, String>> = pipe.query_async(con).await?;
        let mut rest = hashes.split_off(3).into_iter();
        let (meta, agents, qs) = {
            let mut h = hashes.into_iter();
            (
                h.next().unwrap_or_default(),
                h.next().unwrap_or_default(),
                h.next().unwrap_or_default(),
            )
        };
        if qs.len() != queues.len() || !queues.iter().all(|q| qs.contains_key(q)) {
            continue;
        }
        if !meta.contains_key("stream_id") {
            return Err(Stop::NotReady(format!(
                "{meta_key} has no stream_id: set the module's stream param (e.g. callcenter_stream), the wallboard follows that stream"
            )));
        }
        let members = queues
            .into_iter()
            .map(|q| (q, rest.next().unwrap_or_default()))
            .collect();
        return Ok(RawSnapshot {
            meta,
            agents,
            queues: qs,
            members,
        });
    }
}

fn entries(reply: StreamReadReply) -> Vec<Entry> {
    reply
        .keys
        .into_iter()
        .flat_map(|k| k.ids)
        .map(|e| Entry {
            action: e.get("action").unwrap_or_default(),
            state: e.get("state"),
            id: e.id,
        })
        .collect()
}

async fn xread(
    con: &mut MultiplexedConnection,
    stream: &str,
    after: &str,
    block: Option<Duration>,
) -> Result<Vec<Entry>, Stop> {
    let mut opts = StreamReadOptions::default().count(COUNT);
    if let Some(b) = block {
        opts = opts.block(b.as_millis() as usize);
    }
    let reply: Option<StreamReadReply> = con.xread_options(&[stream], &[after], &opts).await?;
    Ok(reply.map(entries).unwrap_or_default())
}

/// When XREAD found nothing: the entries after `last` if `meta` names a
/// later one (a write raced the XREAD), or None if the stream has none of
/// them, which means `--stream` is not the stream the module writes.
async fn quiet(
    con: &mut MultiplexedConnection,
    cfg: &Config,
    last: &str,
) -> Result<Option<Vec<Entry>>, Stop> {
    let meta: HashMap<String, String> = con.hgetall(format!("{}:meta", cfg.state_prefix)).await?;
    if meta.get("stream_id").is_none_or(|id| id == last) {
        return Ok(Some(Vec::new()));
    }
    let batch = xread(con, &cfg.stream, last, None).await?;
    Ok((!batch.is_empty()).then_some(batch))
}

/// One connection's life: snapshot, then the stream, until Redis fails.
async fn follow(cfg: &Config, hub: &Hub, backoff: &mut Duration) -> Result<Infallible, Stop> {
    let mut con = connect(cfg).await?;
    let mut warned = false;
    'snapshot: loop {
        let raw = read_snapshot(&mut con, &cfg.state_prefix).await?;
        hub.replace(&raw).map_err(|e| {
            Stop::NotReady(format!("the mirror holds {e}: is --state-prefix right?"))
        })?;
        let mut last = raw.meta["stream_id"].clone();
        eprintln!(
            "cc-wallboard: following {} from {last} ({} agents, {} queues)",
            cfg.stream,
            raw.agents.len(),
            raw.queues.len()
        );
        *backoff = BACKOFF_MIN;
        loop {
            let mut batch = xread(&mut con, &cfg.stream, &last, Some(BLOCK)).await?;
            if batch.is_empty() {
                match quiet(&mut con, cfg, &last).await? {
                    Some(entries) => batch = entries,
                    None => {
                        if !std::mem::replace(&mut warned, true) {
                            eprintln!(
                                "cc-wallboard: {}:meta names stream entries that {} does not have: is --stream the module's stream param? Until it is, the snapshot is read again every {} s",
                                cfg.state_prefix,
                                cfg.stream,
                                BLOCK.as_secs()
                            );
                        }
                        continue 'snapshot;
                    }
                }
            }
            let Some(end) = batch.last() else { continue };
            last = end.id.clone();
            let applied = hub
                .apply(&batch)
                .map_err(|e| Stop::NotReady(format!("{e}: is --stream the module's stream?")))?;
            if applied == Applied::Reseed {
                continue 'snapshot;
            }
        }
    }
}

/// Follows Redis for the life of the server, telling browsers (through the
/// hub's status) whenever the numbers are not current.
pub async fn run(cfg: Arc<Config>, hub: Arc<Hub>) {
    let mut backoff = BACKOFF_MIN;
    let mut said = String::new();
    loop {
        let Err(stop) = follow(&cfg, &hub, &mut backoff).await;
        if hub.status() == Status::Live {
            said.clear(); // a new outage: say it again
        }
        let (status, line) = match stop {
            Stop::Lost(e) => {
                let since = match hub.status() {
                    Status::Reconnecting { since, .. } => since,
                    _ => now_ms(),
                };
                let line = format!(
                    "cannot read Redis at {}:{} ({e}); retrying. Check --redis-host/--redis-port and the ACL user",
                    cfg.redis_host, cfg.redis_port
                );
                (Status::Reconnecting { detail: e, since }, line)
            }
            Stop::NotReady(why) => (
                Status::Waiting {
                    detail: why.clone(),
                },
                why,
            ),
        };
        hub.set_status(status);
        // One line per distinct problem, not one per retry.
        if line != said {
            eprintln!("cc-wallboard: {line}");
            said = line;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}
