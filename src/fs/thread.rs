//! Starting the module's threads with pthreads instead of `std::thread`.
//!
//! `std::thread::spawn` touches a thread-local with a destructor on the calling
//! thread (FreeSWITCH's loader thread or console thread). glibc registers that
//! destructor against this library and then refuses to unmap it on `dlclose`,
//! so `unload`, replace the file, `load` would keep running the old code.
//! A pthread of our own registers destructors only on itself, and they have run
//! by the time `pthread_join` returns.

use std::ffi::{c_void, CString};
use std::io;

const STACK_BYTES: usize = 2 * 1024 * 1024;

/// The body of a thread: run once, on the new thread.
pub type Body = Box<dyn FnOnce() + Send + 'static>;
/// Waits until the thread has ended, its thread-local destructors included.
pub type Join = Box<dyn FnOnce() + Send + 'static>;

/// Starts `body` on a new pthread named `name` (cut to the kernel's 15 bytes).
/// A panic in `body` is caught on that thread; `body` should report its own.
pub fn spawn(name: &str, body: Body) -> io::Result<Join> {
    // glibc's default stack is the soft stack limit, which FreeSWITCH's
    // service files set to about 240 KiB; give the worker std's 2 MiB.
    // SAFETY: attr is initialised before use and destroyed once.
    let mut attr: libc::pthread_attr_t = unsafe { std::mem::zeroed() };
    // SAFETY: attr is a valid pthread_attr_t to initialise.
    let rc = unsafe { libc::pthread_attr_init(&mut attr) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    // SAFETY: attr was initialised above.
    unsafe { libc::pthread_attr_setstacksize(&mut attr, STACK_BYTES) };
    let arg = Box::into_raw(Box::new(body)).cast::<c_void>();
    let mut id: libc::pthread_t = 0;
    // SAFETY: id is a valid out-pointer, attr is initialised; `trampoline` takes
    // ownership of `arg`, which stays valid because it is leaked until then.
    let rc = unsafe { libc::pthread_create(&mut id, &attr, trampoline, arg) };
    // SAFETY: attr was initialised and is no longer needed.
    unsafe { libc::pthread_attr_destroy(&mut attr) };
    if rc != 0 {
        // SAFETY: the thread was not created, so `arg` is still ours, once.
        drop(unsafe { Box::from_raw(arg.cast::<Body>()) });
        return Err(io::Error::from_raw_os_error(rc));
    }
    let short: Vec<u8> = name.bytes().filter(|&b| b != 0).take(15).collect();
    if let Ok(cname) = CString::new(short) {
        // SAFETY: id is a live thread we have not joined; cname fits the 16-byte limit.
        unsafe { libc::pthread_setname_np(id, cname.as_ptr()) };
    }
    Ok(Box::new(move || {
        // SAFETY: id is joinable and joined exactly once, here.
        unsafe { libc::pthread_join(id, std::ptr::null_mut()) };
    }))
}

extern "C" fn trampoline(arg: *mut c_void) -> *mut c_void {
    // SAFETY: `spawn` passed a leaked Box<Body>; this is its only owner.
    let body = unsafe { Box::from_raw(arg.cast::<Body>()) };
    // Never unwind out of a pthread start routine into C.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
    std::ptr::null_mut()
}
