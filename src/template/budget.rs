//! What rendering may cost. minijinja's fuel bounds the *instructions* a template runs, but not the
//! size of what they build: `{% set s = s ~ s %}` in a 40-turn loop is cheap in fuel and asks for a
//! terabyte. Two more bounds close that:
//!
//! * [`BoundedOutput`]: one template's rendered output stops at [`MAX_OUTPUT`] bytes with an error
//!   naming the template (upstream kolla's largest Dockerfile is ~20 kB);
//! * [`RenderAccounting`]: the `kolla-oci` binary's global allocator counts the bytes that threads
//!   held inside [`track`] (the renders, which run in parallel) and refuses an allocation that would
//!   take them past [`MAX_MEMORY`] together. Rust cannot unwind from a failed allocation, so the
//!   process then exits with status 1 — after printing which template was rendering — instead of
//!   swapping or being killed by the OOM killer. Rendering writes nothing to the store, so nothing is
//!   lost (the temporary work dir is left behind).
//!
//! The counter is approximate: memory a render allocates and another thread frees (the rendered
//! strings, handed back to the caller) stays counted. That is a few kB per image and only makes the
//! bound a little stricter.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io;
use std::sync::atomic::{AtomicIsize, Ordering};

/// Most bytes one template may render to.
pub const MAX_OUTPUT: usize = 8 << 20;

/// Most bytes all renders in progress may hold at once.
pub const MAX_MEMORY: usize = 256 << 20;

/// The end of the message printed when [`MAX_MEMORY`] is hit (formatting it would allocate).
const OVER_CAP: &[u8] =
    b" needs more than the 256 MiB render memory cap (a template that grows a string without bound?)\n";

/// Bytes held by tracked threads.
static HELD: AtomicIsize = AtomicIsize::new(0);

thread_local! {
    /// The template this thread is rendering (pointer and length of its name), or null when the
    /// thread is not rendering. Plain `Cell`s of `Copy` data: reading them allocates nothing.
    static RENDERING: Cell<(*const u8, usize)> = const { Cell::new((std::ptr::null(), 0)) };
}

/// Run `f` (one template's render) with this thread's allocations counted against [`MAX_MEMORY`];
/// `name` is what the process prints if the bound is hit.
pub fn track<R>(name: &str, f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            RENDERING.with(|r| r.set((std::ptr::null(), 0)));
        }
    }
    RENDERING.with(|r| r.set((name.as_ptr(), name.len())));
    let _reset = Reset;
    f()
}

/// The system allocator, counting (and bounding) what renders hold; see the module documentation.
/// Installed with `#[global_allocator]` by the `kolla-oci` binary.
pub struct RenderAccounting;

impl RenderAccounting {
    /// Accounts `grow` more bytes if this thread is rendering; exits the process when that passes the
    /// bound.
    fn admit(grow: usize) {
        let Ok((name, len)) = RENDERING.try_with(Cell::get) else { return };
        if name.is_null() {
            return;
        }
        let grow = grow as isize;
        if HELD.fetch_add(grow, Ordering::Relaxed) + grow <= MAX_MEMORY as isize {
            return;
        }
        // SAFETY: `track` keeps the name alive while it is set.
        let name = unsafe { std::slice::from_raw_parts(name, len) };
        let parts: [&[u8]; 3] = [b"kolla-oci: rendering ", name, OVER_CAP];
        for p in parts {
            // SAFETY: writing a valid buffer to stderr; no allocation.
            unsafe { libc::write(2, p.as_ptr().cast(), p.len()) };
        }
        // Rust cannot unwind out of an allocation, and an abort would look like a crash: exit as any
        // failed command does. Rendering has written nothing to the store, so nothing is left half-done.
        // SAFETY: `_exit` ends the process without running anything else.
        unsafe { libc::_exit(1) }
    }

    /// Gives back `shrink` bytes if this thread is rendering.
    fn release(shrink: usize) {
        if RENDERING.try_with(|r| !r.get().0.is_null()).unwrap_or(false) {
            HELD.fetch_sub(shrink as isize, Ordering::Relaxed);
        }
    }
}

// SAFETY: every call is forwarded to `System` unchanged (accounting only looks at sizes).
unsafe impl GlobalAlloc for RenderAccounting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::admit(layout.size());
        // SAFETY: forwarded as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::admit(layout.size());
        // SAFETY: forwarded as is.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        Self::release(layout.size());
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            Self::admit(new_size - layout.size());
        }
        // SAFETY: forwarded as is.
        let out = unsafe { System.realloc(ptr, layout, new_size) };
        if new_size < layout.size() && !out.is_null() {
            Self::release(layout.size() - new_size);
        }
        out
    }
}

/// An `io::Write` collecting one template's output, failing once it would pass [`MAX_OUTPUT`].
#[derive(Default)]
pub(super) struct BoundedOutput {
    /// What was written.
    pub(super) bytes: Vec<u8>,
    /// Whether a write was refused for size.
    pub(super) overflowed: bool,
}

impl io::Write for BoundedOutput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.bytes.len() + buf.len() > MAX_OUTPUT {
            self.overflowed = true;
            return Err(io::Error::other("rendered output too large"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn the_message_states_the_cap() {
        let text = String::from_utf8_lossy(OVER_CAP);
        assert!(text.contains(&format!("{} MiB", MAX_MEMORY >> 20)), "{text}");
    }

    #[test]
    fn output_stops_at_the_cap() {
        let mut out = BoundedOutput::default();
        out.write_all(&vec![b'x'; MAX_OUTPUT]).unwrap();
        assert!(!out.overflowed);
        assert!(out.write_all(b"y").is_err());
        assert!(out.overflowed && out.bytes.len() == MAX_OUTPUT);
    }
}
