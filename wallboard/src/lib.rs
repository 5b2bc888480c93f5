//! cc-wallboard: a live wallboard for supervisors, fed by mod_cc_events'
//! state mirror and stream in Redis, pushed to browsers over Server-Sent Events.
//!
//! Redis ──(snapshot, then XREAD)──▶ follow ──▶ hub (model, coalescing) ──SSE──▶ http ──▶ browsers

pub mod auth;
pub mod config;
pub mod follow;
pub mod http;
pub mod hub;
pub mod model;
pub mod page;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

pub use config::Config;

/// Browsers get at most this many updates a second.
pub const MAX_UPDATES_PER_SECOND: u32 = 10;

/// Serves the wallboard on `listener` until the process ends.
pub async fn serve(listener: TcpListener, cfg: Config) -> std::io::Result<()> {
    let cfg = Arc::new(cfg);
    let hub = hub::Hub::new(
        &cfg.state_prefix,
        Duration::from_secs(1) / MAX_UPDATES_PER_SECOND,
    );
    tokio::spawn(hub.clone().push_loop());
    tokio::spawn(follow::run(cfg.clone(), hub.clone()));
    let token = cfg.token.as_deref().map(|t| Arc::new(auth::Token::new(t)));
    axum::serve(listener, http::router(hub, token)).await
}

/// Binds `cfg.listen` and serves, with errors that say what to change.
pub async fn run(cfg: Config) -> Result<(), String> {
    cfg.validate()?;
    if let Some(w) = cfg.exposure_warning() {
        eprintln!("cc-wallboard: warning: {w}");
    }
    let listener = TcpListener::bind(cfg.listen).await.map_err(|e| {
        format!("cannot listen on {} ({e}): choose another address with --listen or CC_WALLBOARD_LISTEN", cfg.listen)
    })?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    eprintln!(
        "cc-wallboard: serving http://{addr}/{}",
        if cfg.token.is_some() {
            "?token=..."
        } else {
            ""
        }
    );
    serve(listener, cfg)
        .await
        .map_err(|e| format!("the web server stopped: {e}"))
}
