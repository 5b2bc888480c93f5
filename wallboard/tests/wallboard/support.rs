//! What the tests drive: the cc-wallboard binary, a plain SSE client, and a
//! headless Chromium through chromedriver (WebDriver).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::redis::{free_port, temp_dir, wait_until};

pub const WAIT: Duration = Duration::from_secs(20);

/// The cc-wallboard binary, started with `args` and `env` (on top of the
/// Redis port and a free listen port), stopped by pid when dropped.
pub struct Wallboard {
    child: Child,
    pub port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl Wallboard {
    pub fn start(redis_port: u16, args: &[&str], env: &[(&str, &str)]) -> Wallboard {
        let port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_cc-wallboard"))
            .args([
                "--redis-port",
                &redis_port.to_string(),
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start cc-wallboard");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut w = Wallboard { child, port, log };
        let up = wait_until(WAIT, || {
            w.exited().is_none() && TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "cc-wallboard did not listen on {port}: {:?}", w.log());
        w
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// What it printed on stderr so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Wallboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response's status line code, headers (names lower-cased) and body.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends a GET and reads the status line and headers. `version` 1.0 makes
/// a server end a streamed body with the connection rather than chunk it;
/// chromedriver only answers 1.1.
fn request(
    port: u16,
    version: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (BufReader<TcpStream>, u16, Vec<(String, String)>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut req =
        format!("GET {path} HTTP/{version}\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut hs = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((n, v)) = l.split_once(':') {
            hs.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    (r, status, hs)
}

pub fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Response {
    let (mut r, status, headers) = request(port, "1.1", path, headers);
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let mut body = String::new();
    match length {
        // chromedriver keeps the connection open whatever the request says.
        Some(n) => {
            let mut bytes = vec![0; n];
            r.read_exact(&mut bytes).unwrap();
            body = String::from_utf8_lossy(&bytes).into_owned();
        }
        None => {
            r.read_to_string(&mut body).unwrap();
        }
    }
    Response {
        status,
        headers,
        body,
    }
}

/// One Server-Sent Event.
#[derive(Clone, Debug)]
pub struct Event {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
    pub arrived: Instant,
}

impl Event {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

/// A plain EventSource: reads `/events` as a browser would.
pub struct Sse {
    reader: BufReader<TcpStream>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Sse {
    pub fn open(port: u16, path: &str, headers: &[(&str, &str)]) -> Sse {
        let (reader, status, headers) = request(port, "1.0", path, headers);
        Sse {
            reader,
            status,
            headers,
        }
    }

    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The next event, or None if none came within `limit`.
    pub fn next(&mut self, limit: Duration) -> Option<Event> {
        let end = Instant::now() + limit;
        let mut ev = Event {
            event: "message".into(),
            id: None,
            data: String::new(),
            arrived: Instant::now(),
        };
        let mut line = String::new();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.reader.get_ref().set_read_timeout(Some(left)).unwrap();
            line.clear();
            match self.reader.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None
                }
                Err(e) => panic!("reading the event stream: {e}"),
            }
            let l = line.trim_end_matches(['\r', '\n']);
            if l.is_empty() {
                if !ev.data.is_empty() {
                    ev.arrived = Instant::now();
                    return Some(ev);
                }
                continue;
            }
            match l
                .split_once(':')
                .map(|(k, v)| (k, v.strip_prefix(' ').unwrap_or(v)))
            {
                Some(("event", v)) => ev.event = v.to_string(),
                Some(("id", v)) => ev.id = Some(v.to_string()),
                Some(("data", v)) => ev.data.push_str(v),
                _ => {} // comments (keep-alives) and retry:
            }
        }
    }

    /// The next event named `kind`, skipping others; panics after `limit`.
    pub fn expect(&mut self, kind: &str, limit: Duration) -> Event {
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.next(left) {
                Some(e) if e.event == kind => return e,
                Some(_) => continue,
                None => panic!("no {kind} event within {limit:?}"),
            }
        }
    }
}

/// Browser tests take turns: two Chromiums on a 2-core machine make every
/// wait longer and prove nothing more.
static BROWSERS: Mutex<()> = Mutex::new(());

/// chromedriver, stopped by its pid when dropped: also when the session
/// cannot be started, which would otherwise leave it running.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A headless Chromium driven through its chromedriver, both started here
/// and stopped when dropped. Calls block, so that tests read top to bottom.
pub struct Browser {
    rt: tokio::runtime::Runtime,
    client: Option<fantoccini::Client>,
    _driver: Driver,
    profile: PathBuf,
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl Browser {
    pub fn start() -> Browser {
        // Set by build.rs when it found both; the tests that get here are
        // otherwise ignored.
        let (Some(chromium), Some(chromedriver)) = (
            option_env!("CC_WALLBOARD_CHROMIUM"),
            option_env!("CC_WALLBOARD_CHROMEDRIVER"),
        ) else {
            panic!("chromium and chromedriver were not found when this test was built: apt-get install chromium chromium-driver");
        };
        let turn = BROWSERS.lock().unwrap_or_else(|p| p.into_inner());
        let port = free_port();
        let driver = Driver(
            Command::new(chromedriver)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start chromedriver"),
        );
        let ready = wait_until(WAIT, || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
                && get(port, "/status", &[]).body.contains("\"ready\":true")
        });
        assert!(ready, "chromedriver on port {port} never said ready");
        let profile = temp_dir("chromium");
        let caps = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    // Containers give /dev/shm 64 MB, which Chromium outgrows.
                    "--disable-dev-shm-usage",
                    "--window-size=1920,1080",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = rt
            .block_on(
                fantoccini::ClientBuilder::new(
                    hyper_util::client::legacy::connect::HttpConnector::new(),
                )
                .capabilities(caps.as_object().unwrap().clone())
                .connect(&format!("http://127.0.0.1:{port}")),
            )
            .expect("a WebDriver session in headless Chromium");
        Browser {
            rt,
            client: Some(client),
            _driver: driver,
            profile,
            _turn: turn,
        }
    }

    fn c(&self) -> &fantoccini::Client {
        self.client.as_ref().unwrap()
    }

    pub fn goto(&self, url: &str) {
        self.rt.block_on(self.c().goto(url)).unwrap();
    }

    /// Runs `script` in the page (as a function body: `arguments`, `return`).
    pub fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.rt.block_on(self.c().execute(script, args)).unwrap()
    }

    /// The text of the first element matching `css`, through WebDriver.
    pub fn text(&self, css: &str) -> String {
        let e = self
            .rt
            .block_on(self.c().find(fantoccini::Locator::Css(css)))
            .unwrap();
        self.rt.block_on(e.text()).unwrap()
    }

    /// Polls `cond` until it holds; panics with `what` and the last value after `limit`.
    pub fn wait_for<T: std::fmt::Debug>(
        &self,
        what: &str,
        limit: Duration,
        mut probe: impl FnMut(&Browser) -> T,
        ok: impl Fn(&T) -> bool,
    ) -> T {
        let end = Instant::now() + limit;
        loop {
            let v = probe(self);
            if ok(&v) {
                return v;
            }
            if Instant::now() >= end {
                panic!("the page never showed {what} within {limit:?}; last: {v:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn screenshot(&self, path: &Path) {
        let png = self.rt.block_on(self.c().screenshot()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// The text of an open alert(), if the page opened one.
    pub fn alert(&self) -> Option<String> {
        self.rt.block_on(self.c().get_alert_text()).ok()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            let _ = self.rt.block_on(c.close());
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// The page's DOM for one queue, as the supervisor sees it: its card's
/// numbers and each agent row (name as text, status, state, colour).
pub const QUEUE_VIEW: &str = r#"
const card = [...document.querySelectorAll('article.queue')].find((q) => q.dataset.queue === arguments[0]);
if (!card) return null;
const num = (c) => card.querySelector(`.stat.${c} .num`).textContent;
return {
  waiting: num('waiting'), longest: num('longest'), answering: num('answering'), abandoned: num('abandoned'),
  callers: [...card.querySelectorAll('.callers li')].map((li) => li.textContent),
  agents: [...card.querySelectorAll('li.agent')].map((li) => ({
    name: li.querySelector('.name').textContent, status: li.querySelector('.status').textContent,
    state: li.querySelector('.state').textContent, tone: li.dataset.tone, time: li.querySelector('.time').textContent,
  })),
};
"#;

/// Which board the page shows: `body[data-status]`, whether the queue board
/// is displayed, and the banner's text when it is not.
pub const PAGE_STATUS: &str = r#"
return {
  status: document.body.dataset.status,
  board: getComputedStyle(document.getElementById('board')).display !== 'none',
  banner: getComputedStyle(document.getElementById('banner')).display !== 'none' ? document.getElementById('banner').textContent : null,
};
"#;
