//! A global allocator that keeps a lying length prefix from killing the
//! broker.
//!
//! `kafka-protocol` sizes a decoded array with `Vec::with_capacity(n)`, `n`
//! read from the wire. A 20-byte frame can claim two billion elements; the
//! system allocator refuses hundreds of gigabytes, and an allocation failure
//! aborts the process (it cannot be caught). This allocator serves every
//! request of [`HUGE_BYTES`] or more with an anonymous `MAP_NORESERVE`
//! mapping instead: it reserves address space, not memory, so the bogus
//! `with_capacity` succeeds, the decoder then fails on the missing bytes
//! (an error, which closes the connection), and the mapping is unmapped.
//! Legitimate allocations that large do not occur in the broker (frames are
//! capped at `socket.request.max.bytes`); if one did, it would simply be
//! served by the same mapping, touched pages becoming real memory.
//!
//! Everything else goes to [`DmaAlloc`]: direct-I/O buffers on huge pages,
//! the rest to the system allocator.
//!
//! Install with `#[global_allocator] static A: GuardedAlloc = GuardedAlloc;`.

use spindle_engine::dma_alloc::{realloc_by_copy, DmaAlloc};
use std::alloc::{GlobalAlloc, Layout};

/// Requests at least this large are served by `mmap(MAP_NORESERVE)`.
pub const HUGE_BYTES: usize = 1 << 30;
const PAGE_BYTES: usize = 4096;

pub struct GuardedAlloc;

fn is_huge(l: &Layout) -> bool {
    l.size() >= HUGE_BYTES && l.align() <= PAGE_BYTES
}

unsafe fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping with no fixed address.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p as *mut u8
    }
}

unsafe impl GlobalAlloc for GuardedAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if is_huge(&l) {
            unsafe { map(l.size()) }
        } else {
            unsafe { DmaAlloc.alloc(l) }
        }
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if is_huge(&l) {
            // Fresh anonymous pages are zero.
            unsafe { map(l.size()) }
        } else {
            unsafe { DmaAlloc.alloc_zeroed(l) }
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if is_huge(&l) {
            // SAFETY: `p` came from `map` with this size.
            unsafe { libc::munmap(p as *mut libc::c_void, l.size()) };
        } else {
            unsafe { DmaAlloc.dealloc(p, l) }
        }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { Layout::from_size_align_unchecked(new_size, l.align()) };
        if !is_huge(&l) && !is_huge(&new) {
            return unsafe { DmaAlloc.realloc(p, l, new_size) };
        }
        // SAFETY: the caller's contract, passed on.
        unsafe { realloc_by_copy(self, p, l, new) }
    }
}
