//! Resolving Redis's host name without ever waiting past a deadline.
//!
//! `getaddrinfo` blocks for as long as the system resolver likes (5 s per
//! server and attempt by default), and a shutdown cannot interrupt it. glibc's
//! `getaddrinfo_a` runs the lookup on a thread of glibc's own, so the worker
//! can poll it in slices and give up at the deadline. A lookup still running
//! is kept for the next attempt instead of starting another; one still running
//! at unload is left to glibc (its request block is leaked, a few hundred
//! bytes, so that glibc never writes into freed memory).
//! Where glibc has no `getaddrinfo_a` (looked up at run time), the lookup
//! blocks as before.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

#[repr(C)]
struct Gaicb {
    ar_name: *const c_char,
    ar_service: *const c_char,
    ar_request: *const libc::addrinfo,
    ar_result: *mut libc::addrinfo,
    ret: c_int,
    reserved: [c_int; 5],
}

type GetaddrinfoA = unsafe extern "C" fn(c_int, *const *mut Gaicb, c_int, *mut c_void) -> c_int;
type GaiError = unsafe extern "C" fn(*mut Gaicb) -> c_int;
type GaiCancel = unsafe extern "C" fn(*mut Gaicb) -> c_int;

const GAI_NOWAIT: c_int = 1;
const EAI_INPROGRESS: c_int = -100;
const EAI_CANCELED: c_int = -101;
const EAI_ALLDONE: c_int = -103;

struct Api {
    start: GetaddrinfoA,
    error: GaiError,
    cancel: GaiCancel,
}

fn api() -> Option<Api> {
    let sym = |name: &CStr| {
        // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only looks up.
        let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        (!p.is_null()).then_some(p)
    };
    let (start, error, cancel) = (
        sym(c"getaddrinfo_a")?,
        sym(c"gai_error")?,
        sym(c"gai_cancel")?,
    );
    // SAFETY: these are glibc's functions of exactly these signatures (netdb.h).
    unsafe {
        Some(Api {
            start: std::mem::transmute::<*mut c_void, GetaddrinfoA>(start),
            error: std::mem::transmute::<*mut c_void, GaiError>(error),
            cancel: std::mem::transmute::<*mut c_void, GaiCancel>(cancel),
        })
    }
}

/// One lookup in flight, at a fixed heap address glibc writes into.
struct Request {
    host: String,
    _name: CString,
    _hints: Box<libc::addrinfo>,
    cb: Box<Gaicb>,
}

// SAFETY: the raw pointers point into the request's own boxes; only the
// owning worker thread touches the request (glibc's thread writes `cb`).
unsafe impl Send for Request {}

/// Why a lookup gave no addresses.
pub enum Failed {
    /// Still running at the deadline; kept for the next attempt.
    TimedOut,
    Error(io::Error),
}

#[derive(Default)]
pub struct Resolver {
    pending: Option<Request>,
}

impl Resolver {
    /// The addresses of `host`, or why not, by `until`; `stop` says whether
    /// to give up early (shutdown). `slice` bounds each wait.
    pub fn lookup(
        &mut self,
        host: &str,
        port: u16,
        until: Instant,
        stop: &dyn Fn() -> bool,
    ) -> Result<Vec<SocketAddr>, Failed> {
        let Some(api) = api() else {
            return blocking(host, port);
        };
        if self.pending.as_ref().is_some_and(|r| r.host != host) {
            self.abandon();
        }
        if self.pending.is_none() {
            self.pending = Some(start(&api, host).map_err(Failed::Error)?);
        }
        loop {
            let req = self.pending.as_mut().expect("a lookup is pending");
            // SAFETY: cb is the block passed to getaddrinfo_a, alive in `req`.
            let rc = unsafe { (api.error)(&mut *req.cb) };
            if rc != EAI_INPROGRESS {
                let req = self.pending.take().expect("a lookup is pending");
                return finish(req, rc, port);
            }
            let now = Instant::now();
            if now >= until || stop() {
                return Err(Failed::TimedOut);
            }
            std::thread::sleep((until - now).min(Duration::from_millis(10)));
        }
    }

    /// Gives up a lookup in flight: cancelled if glibc can, else left to it.
    fn abandon(&mut self) {
        let Some(mut req) = self.pending.take() else {
            return;
        };
        let Some(api) = api() else {
            return;
        };
        // SAFETY: cb is the block passed to getaddrinfo_a.
        let rc = unsafe { (api.cancel)(&mut *req.cb) };
        match rc {
            EAI_CANCELED => {}
            EAI_ALLDONE => free_result(&mut req.cb),
            // Still running on glibc's thread, which will write into it.
            _ => std::mem::forget(req),
        }
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        self.abandon();
    }
}

fn start(api: &Api, host: &str) -> io::Result<Request> {
    let name = CString::new(host).map_err(|_| io::Error::other("host contains a NUL byte"))?;
    // SAFETY: an all-zero addrinfo is a valid "no hints" value.
    let mut hints: Box<libc::addrinfo> = Box::new(unsafe { std::mem::zeroed() });
    hints.ai_socktype = libc::SOCK_STREAM;
    let mut cb = Box::new(Gaicb {
        ar_name: name.as_ptr(),
        ar_service: std::ptr::null(),
        ar_request: &*hints,
        ar_result: std::ptr::null_mut(),
        ret: 0,
        reserved: [0; 5],
    });
    let list = [&mut *cb as *mut Gaicb];
    // SAFETY: one valid request whose strings and hints outlive it (they move
    // with the boxes into Request, whose heap addresses do not change).
    let rc = unsafe { (api.start)(GAI_NOWAIT, list.as_ptr(), 1, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(gai_error(rc));
    }
    Ok(Request {
        host: host.to_string(),
        _name: name,
        _hints: hints,
        cb,
    })
}

fn finish(mut req: Request, rc: c_int, port: u16) -> Result<Vec<SocketAddr>, Failed> {
    if rc != 0 {
        return Err(Failed::Error(gai_error(rc)));
    }
    let mut addrs = Vec::new();
    let mut ai = req.cb.ar_result;
    // SAFETY: a finished lookup's result list, ours until freeaddrinfo.
    while let Some(a) = unsafe { ai.as_ref() } {
        if let Some(addr) = sockaddr(a, port) {
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
        ai = a.ai_next;
    }
    free_result(&mut req.cb);
    Ok(addrs)
}

fn sockaddr(a: &libc::addrinfo, port: u16) -> Option<SocketAddr> {
    if a.ai_addr.is_null() {
        return None;
    }
    match a.ai_family {
        libc::AF_INET => {
            // SAFETY: an AF_INET entry's address is a sockaddr_in.
            let sin = unsafe { &*(a.ai_addr as *const libc::sockaddr_in) };
            let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::new(ip.into(), port))
        }
        libc::AF_INET6 => {
            // SAFETY: an AF_INET6 entry's address is a sockaddr_in6.
            let sin6 = unsafe { &*(a.ai_addr as *const libc::sockaddr_in6) };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::new(ip.into(), port))
        }
        _ => None,
    }
}

fn free_result(cb: &mut Gaicb) {
    if !cb.ar_result.is_null() {
        // SAFETY: the result list getaddrinfo_a produced, freed once.
        unsafe { libc::freeaddrinfo(cb.ar_result) };
        cb.ar_result = std::ptr::null_mut();
    }
}

fn gai_error(rc: c_int) -> io::Error {
    // SAFETY: gai_strerror returns a static NUL-terminated string.
    let msg = unsafe { CStr::from_ptr(libc::gai_strerror(rc)) };
    io::Error::other(msg.to_string_lossy().into_owned())
}

fn blocking(host: &str, port: u16) -> Result<Vec<SocketAddr>, Failed> {
    (host, port)
        .to_socket_addrs()
        .map(|a| a.collect())
        .map_err(Failed::Error)
}
