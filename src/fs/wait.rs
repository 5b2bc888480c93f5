//! Waiting for a socket with a time bound: the only blocking call the Redis
//! link makes, so that every connect, read and write honours a deadline.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    Read,
    Write,
}

/// Waits up to `limit` for `fd` to become readable or writable (an error or
/// hang-up counts as ready: the next read or write reports it).
/// Returns false when the time ran out.
pub fn ready(fd: RawFd, want: Want, limit: Duration) -> io::Result<bool> {
    let events = match want {
        Want::Read => libc::POLLIN,
        Want::Write => libc::POLLOUT,
    };
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // Round up so that a sub-millisecond remainder still waits.
    let ms = limit.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    loop {
        // SAFETY: pfd is one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n >= 0 {
            return Ok(n > 0);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// True when the peer has closed the connection (an orderly FIN is waiting),
/// without consuming anything and without blocking.
pub fn peer_closed(fd: RawFd) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN | libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: pfd is one valid pollfd; a zero timeout never blocks.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    if n <= 0 {
        return false;
    }
    pfd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}
