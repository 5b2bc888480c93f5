//! The SSE hub: holds the model, folds the follower's changes into one
//! pending delta, and pushes it to every browser at most once per
//! `min_interval` (serialized once, whatever the number of browsers).
//! A browser that connects, or falls behind, gets a whole snapshot.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::json;
use tokio::sync::{broadcast, Notify};
use tokio::time::Instant;

use crate::model::{Applied, Delta, Entry, Model, RawSnapshot, Tick, TICKER_LEN};

/// Where the board's data stands, as the page shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "redis", rename_all = "lowercase")]
pub enum Status {
    /// Not yet read a snapshot.
    Connecting,
    /// Following the stream: the numbers are current.
    Live,
    /// Lost Redis (or it refused us); retrying. The page hides the numbers.
    Reconnecting { detail: String, since: u64 },
    /// Redis answers, but there is no mirror to show yet (the module is not
    /// seeded, or has no stream).
    Waiting { detail: String },
}

/// One message for every browser; `data` is JSON, serialized once.
#[derive(Clone, Debug)]
pub struct Frame {
    /// The SSE event name: `snapshot`, `patch` or `status`.
    pub event: &'static str,
    /// The last stream entry it holds, for the SSE `id:` line.
    pub id: Option<String>,
    pub data: Arc<str>,
}

struct Inner {
    model: Model,
    pending: Delta,
    status: Status,
    /// The last lines, for a browser's first snapshot.
    ticker: VecDeque<Tick>,
    last_push: Option<Instant>,
}

pub struct Hub {
    prefix: String,
    min_interval: Duration,
    inner: Mutex<Inner>,
    frames: broadcast::Sender<Frame>,
    wake: Notify,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Frames a browser may fall behind by before it is sent a fresh snapshot.
const BACKLOG: usize = 64;

impl Hub {
    pub fn new(prefix: &str, min_interval: Duration) -> Arc<Hub> {
        Arc::new(Hub {
            prefix: prefix.to_string(),
            min_interval,
            inner: Mutex::new(Inner {
                model: Model::default(),
                pending: Delta::default(),
                status: Status::Connecting,
                ticker: VecDeque::new(),
                last_push: None,
            }),
            frames: broadcast::channel(BACKLOG).0,
            wake: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere must not take the board down with it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn snapshot_of(inner: &Inner) -> Frame {
        let data = json!({
            "server_time": now_ms(),
            "status": inner.status,
            "id": inner.model.id,
            "agents": inner.model.agents,
            "queues": inner.model.queues,
            "members": inner.model.members,
            "ticker": inner.ticker,
        });
        Frame {
            event: "snapshot",
            id: Some(inner.model.id.clone()).filter(|id| !id.is_empty()),
            data: data.to_string().into(),
        }
    }

    fn status_of(status: &Status) -> Frame {
        let data = json!({"server_time": now_ms(), "status": status});
        Frame {
            event: "status",
            id: None,
            data: data.to_string().into(),
        }
    }

    /// A new browser: the whole state now, and every frame after it.
    /// Frames already folded into the snapshot may come again; each holds
    /// whole values, so applying one twice changes nothing.
    pub fn subscribe(&self) -> (Frame, broadcast::Receiver<Frame>) {
        let inner = self.lock();
        (Self::snapshot_of(&inner), self.frames.subscribe())
    }

    /// The whole state now, for a browser that fell behind.
    pub fn snapshot(&self) -> Frame {
        Self::snapshot_of(&self.lock())
    }

    pub fn status(&self) -> Status {
        self.lock().status.clone()
    }

    /// Replaces the model with a snapshot just read, and sends it to every
    /// browser at once (it supersedes anything pending).
    pub fn replace(&self, raw: &RawSnapshot) -> Result<(), String> {
        let mut inner = self.lock();
        inner.model = Model::from_snapshot(raw, &inner.model)?;
        inner.pending = Delta::default();
        inner.status = Status::Live;
        let _ = self.frames.send(Self::snapshot_of(&inner));
        Ok(())
    }

    /// Applies stream entries in order; stops at a `state-seed` entry and
    /// returns `Reseed` (the follower then reads the snapshot again).
    pub fn apply(&self, entries: &[Entry]) -> Result<Applied, String> {
        let result = {
            let mut guard = self.lock();
            let inner = &mut *guard;
            entries
                .iter()
                .map(|e| inner.model.apply(&self.prefix, e, &mut inner.pending))
                .find(|r| *r != Ok(Applied::Done))
                .unwrap_or(Ok(Applied::Done))
        };
        self.wake.notify_one();
        result
    }

    /// Sends a status change to every browser at once (not rate-limited: it
    /// changes rarely and the page must not show stale numbers meanwhile).
    pub fn set_status(&self, status: Status) {
        let mut inner = self.lock();
        if inner.status == status {
            return;
        }
        inner.status = status;
        let _ = self.frames.send(Self::status_of(&inner.status));
    }

    /// Pushes the pending delta, at most once per `min_interval`; runs for
    /// the life of the server.
    pub async fn push_loop(self: Arc<Self>) {
        loop {
            self.wake.notified().await;
            let due = self.lock().last_push.map(|t| t + self.min_interval);
            if let Some(due) = due {
                // Changes that arrive meanwhile join this push.
                tokio::time::sleep_until(due).await;
            }
            let delta = {
                let mut inner = self.lock();
                if inner.pending.is_empty() {
                    continue;
                }
                let delta = std::mem::take(&mut inner.pending);
                inner.ticker.extend(delta.ticker.iter().cloned());
                let extra = inner.ticker.len().saturating_sub(TICKER_LEN);
                inner.ticker.drain(..extra);
                inner.last_push = Some(Instant::now());
                delta
            };
            // Serialized without the lock, so that the follower goes on
            // applying. A browser that subscribes meanwhile has these
            // changes in its snapshot already; getting them again is harmless.
            let mut data = serde_json::to_value(&delta).unwrap_or_default();
            data["server_time"] = now_ms().into();
            let _ = self.frames.send(Frame {
                event: "patch",
                id: Some(delta.to),
                data: data.to_string().into(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn entry(id: &str, agent: &str, state: &str) -> Entry {
        Entry {
            id: id.into(),
            action: "agent-state-change".into(),
            state: Some(
                json!({"p:agents": {agent: {"status": "Available", "state": state}}}).to_string(),
            ),
        }
    }

    fn data(f: &Frame) -> Value {
        serde_json::from_str(&f.data).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn changes_are_coalesced_into_one_push_per_interval() {
        let hub = Hub::new("p", Duration::from_millis(100));
        tokio::spawn(hub.clone().push_loop());
        let (first, mut rx) = hub.subscribe();
        assert_eq!(data(&first)["status"]["redis"], "connecting");

        hub.apply(&[entry("1-0", "a", "Receiving")]).unwrap();
        let f = rx.recv().await.unwrap();
        let t0 = Instant::now();
        assert_eq!((f.event, f.id.as_deref()), ("patch", Some("1-0")));
        assert_eq!(data(&f)["agents"]["a"]["state"], "Receiving");

        // Three changes inside the interval: one push, after it, with the last value.
        hub.apply(&[entry("2-0", "a", "In a queue call")]).unwrap();
        hub.apply(&[entry("3-0", "b", "Receiving"), entry("4-0", "a", "Waiting")])
            .unwrap();
        let f = rx.recv().await.unwrap();
        assert!(
            t0.elapsed() >= Duration::from_millis(100),
            "{:?}",
            t0.elapsed()
        );
        let d = data(&f);
        assert_eq!(
            (d["from"].as_str(), d["to"].as_str()),
            (Some("2-0"), Some("4-0"))
        );
        assert_eq!(d["agents"]["a"]["state"], "Waiting");
        assert_eq!(d["agents"]["b"]["state"], "Receiving");
        assert!(rx.try_recv().is_err(), "nothing else was pushed");
    }

    #[tokio::test]
    async fn a_snapshot_and_a_status_go_out_at_once_and_a_seed_entry_stops_the_batch() {
        let hub = Hub::new("p", Duration::from_secs(3600));
        let (_, mut rx) = hub.subscribe();
        let raw = RawSnapshot {
            meta: [("stream_id".to_string(), "9-0".to_string())].into(),
            ..RawSnapshot::default()
        };
        hub.replace(&raw).unwrap();
        let f = rx.recv().await.unwrap();
        assert_eq!((f.event, f.id.as_deref()), ("snapshot", Some("9-0")));
        assert_eq!(data(&f)["status"]["redis"], "live");

        hub.set_status(Status::Waiting { detail: "x".into() });
        hub.set_status(Status::Waiting { detail: "x".into() });
        let f = rx.recv().await.unwrap();
        assert_eq!(
            data(&f)["status"],
            json!({"redis": "waiting", "detail": "x"})
        );
        assert!(
            rx.try_recv().is_err(),
            "an unchanged status is not sent again"
        );

        let seed = Entry {
            id: "11-0".into(),
            action: "state-seed".into(),
            state: None,
        };
        let r = hub.apply(&[
            entry("10-0", "a", "Idle"),
            seed,
            entry("12-0", "a", "Waiting"),
        ]);
        assert_eq!(r, Ok(Applied::Reseed));
        assert_eq!(
            data(&hub.snapshot())["agents"]["a"]["state"],
            "Idle",
            "applied up to the seed, not after"
        );
    }
}
