//! The routes: `/` (the page) and `/events` (Server-Sent Events: a snapshot,
//! then patches and status changes), both behind the token when one is set.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{middleware, Router};
use futures_util::stream::{self, Stream};
use tokio::sync::broadcast::error::RecvError;

use crate::auth::{self, Token};
use crate::hub::{Frame, Hub};
use crate::page::Page;

#[derive(Clone)]
struct App {
    hub: Arc<Hub>,
    page: Arc<Page>,
}

/// How long a browser waits before reconnecting after it lost the stream.
const RETRY: Duration = Duration::from_secs(2);
/// Comment lines on a quiet stream, so that proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub fn router(hub: Arc<Hub>, token: Option<Arc<Token>>) -> Router {
    let app = App {
        hub,
        page: Arc::new(Page::build()),
    };
    Router::new()
        .route("/", get(page))
        .route("/events", get(events))
        .with_state(app)
        .layer(middleware::from_fn_with_state(token, auth::require))
        .layer(middleware::from_fn(common_headers))
}

/// On every response, the 401 too: nothing is cached (it is live data, and a
/// token may be in the URL) and no Referer carries the token anywhere.
async fn common_headers(req: axum::extract::Request, next: middleware::Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

async fn page(State(app): State<App>) -> Response {
    let csp = HeaderValue::from_str(&app.page.csp).expect("the CSP is ASCII");
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CONTENT_SECURITY_POLICY, csp),
        ],
        app.page.html.clone(),
    )
        .into_response()
}

fn event(f: &Frame) -> Event {
    let e = Event::default().event(f.event).data(&*f.data);
    match &f.id {
        Some(id) => e.id(id),
        None => e,
    }
}

/// Every connection starts with a whole snapshot: a browser that reconnects
/// (EventSource sends Last-Event-ID) gets the state now, not a replay.
async fn events(State(app): State<App>) -> impl IntoResponse {
    let (first, rx) = app.hub.subscribe();
    let first = event(&first).retry(RETRY);
    let hub = app.hub.clone();
    let rest = stream::unfold((rx, hub), |(mut rx, hub)| async move {
        let frame = match rx.recv().await {
            Ok(f) => f,
            // Fell behind by more than the backlog: start it over from now.
            Err(RecvError::Lagged(_)) => hub.snapshot(),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok::<_, Infallible>(event(&frame)), (rx, hub)))
    });
    let s: std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>> = Box::pin(
        futures_util::StreamExt::chain(stream::once(async { Ok(first) }), rest),
    );
    (
        // nginx: do not buffer this response (see README, reverse proxy).
        [("x-accel-buffering", "no")],
        Sse::new(s).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)),
    )
}
