//! Binding to events and reading an event's headers without copying them.

use std::ffi::{c_void, CStr};

use crate::ffi;

/// A borrowed `switch_event_t`, valid for the duration of a callback.
pub struct Event<'a> {
    raw: &'a ffi::switch_event_t,
}

impl<'a> Event<'a> {
    /// # Safety
    /// `ptr` must be null or point to an event that stays valid and unmodified for `'a`,
    /// as FreeSWITCH guarantees for the event passed to a bound callback.
    pub unsafe fn from_ptr(ptr: *const ffi::switch_event_t) -> Option<Event<'a>> {
        // SAFETY: the caller guarantees validity for 'a.
        unsafe { ptr.as_ref() }.map(|raw| Event { raw })
    }

    /// The `user_data` given at bind time (FreeSWITCH copies it into every event it delivers).
    pub fn bind_user_data(&self) -> *mut c_void {
        self.raw.bind_user_data
    }

    pub fn is_custom(&self, subclass: &CStr) -> bool {
        if self.raw.event_id != ffi::switch_event_types_t_SWITCH_EVENT_CUSTOM
            || self.raw.subclass_name.is_null()
        {
            return false;
        }
        // SAFETY: non-null subclass_name is a NUL-terminated string owned by the event.
        let name = unsafe { CStr::from_ptr(self.raw.subclass_name) };
        // Exact, as FreeSWITCH's own dispatch compares subclasses (strcmp).
        name == subclass
    }

    /// Every header as C strings, measured only when asked: the callback's
    /// walk compares prefixes and measures only what it keeps.
    pub fn c_headers(&self) -> impl Iterator<Item = (CText<'a>, CText<'a>)> + Clone + 'a {
        let mut cur = self.raw.headers;
        std::iter::from_fn(move || loop {
            // SAFETY: headers form a NULL-terminated list owned by the event, valid for 'a.
            let h = unsafe { cur.as_ref() }?;
            cur = h.next;
            if h.name.is_null() || h.value.is_null() {
                continue;
            }
            return Some((CText::new(h.name), CText::new(h.value)));
        })
    }
}

/// A header's name or value, a NUL-terminated string owned by the event.
#[derive(Clone, Copy)]
pub struct CText<'a> {
    ptr: *const std::ffi::c_char,
    _event: std::marker::PhantomData<&'a [u8]>,
}

impl<'a> CText<'a> {
    fn new(ptr: *const std::ffi::c_char) -> Self {
        CText {
            ptr,
            _event: std::marker::PhantomData,
        }
    }
}

impl<'a> crate::callcenter::Text<'a> for CText<'a> {
    fn has_prefix(self, prefix: &[u8]) -> bool {
        prefix.iter().enumerate().all(|(i, &b)| {
            // SAFETY: the loop stops at the first mismatch, and NUL never equals a
            // prefix byte, so no read goes past the string's terminator.
            unsafe { *self.ptr.add(i) as u8 == b }
        })
    }

    fn bytes(self) -> &'a [u8] {
        // SAFETY: a non-null NUL-terminated string owned by the event, valid for 'a.
        unsafe { CStr::from_ptr(self.ptr) }.to_bytes()
    }
}

/// A bound event callback and the data it is handed (`user_data`). The data
/// lives at a fixed heap address from bind to unbind, and is freed only after
/// FreeSWITCH has promised that no callback is running or will run again.
pub struct Binding<T> {
    node: *mut ffi::switch_event_node_t,
    data: *mut T,
}

// SAFETY: the node is an opaque handle that FreeSWITCH lets any thread unbind,
// and the data is only shared as &T, which T: Sync allows.
unsafe impl<T: Send + Sync> Send for Binding<T> {}
// SAFETY: as above; &Binding only hands out &T.
unsafe impl<T: Send + Sync> Sync for Binding<T> {}

/// Binds `callback` to CUSTOM events of `subclass`, handing it `data` as
/// `user_data`. Gives the data back if FreeSWITCH refuses the binding.
pub fn bind_custom<T: Send + Sync>(
    owner: &CStr,
    subclass: &CStr,
    callback: unsafe extern "C" fn(*mut ffi::switch_event_t),
    data: Box<T>,
) -> Result<Binding<T>, Box<T>> {
    let data = Box::into_raw(data);
    let mut node = std::ptr::null_mut();
    // SAFETY: the strings outlive the call (FreeSWITCH copies them); node is a valid
    // out-pointer; data stays valid until Binding::unbind has unbound.
    let status = unsafe {
        ffi::switch_event_bind_removable(
            owner.as_ptr(),
            ffi::switch_event_types_t_SWITCH_EVENT_CUSTOM,
            subclass.as_ptr(),
            Some(callback),
            data.cast(),
            &mut node,
        )
    };
    if status == ffi::switch_status_t_SWITCH_STATUS_SUCCESS && !node.is_null() {
        Ok(Binding { node, data })
    } else {
        // SAFETY: not bound, so data is still ours alone, taken back once.
        Err(unsafe { Box::from_raw(data) })
    }
}

impl<T> Binding<T> {
    pub fn data(&self) -> &T {
        // SAFETY: data is a live Box until unbind, and only shared immutably.
        unsafe { &*self.data }
    }

    /// Returns once no callback of this binding is running or will run again
    /// (FreeSWITCH takes its event write lock to unbind), with the data.
    pub fn unbind(mut self) -> Box<T> {
        self.release();
        let data = std::mem::replace(&mut self.data, std::ptr::null_mut());
        // SAFETY: unbound, so nothing else can reach data; taken back once, and
        // `self.data` is now null so that Drop does not free it again.
        unsafe { Box::from_raw(data) }
    }

    fn release(&mut self) {
        if !self.node.is_null() {
            // SAFETY: node came from switch_event_bind_removable; FreeSWITCH sets it to
            // NULL, so it is unbound once however this value goes away.
            unsafe { ffi::switch_event_unbind(&mut self.node) };
        }
    }
}

impl<T> Drop for Binding<T> {
    fn drop(&mut self) {
        self.release();
        if !self.data.is_null() {
            // SAFETY: unbound above, so no callback can reach data any more.
            drop(unsafe { Box::from_raw(self.data) });
        }
    }
}
