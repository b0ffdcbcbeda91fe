//! Direct-I/O buffers on transparent huge pages.
//!
//! A direct write goes to the device as a scatter list with one entry per
//! physically contiguous run of its buffer. From 4 KiB pages a 1 MiB write
//! needs 256 entries, and devices limit them: this host's virtio disk takes
//! 254 segments per request and has no indirect descriptors, so each such
//! write was split in two requests, each filling most of the 256-slot ring,
//! and the block layer requeued the next request until the ring drained
//! (bench/RESULTS.md, "Write buffers on huge pages"). NVMe pays for
//! scattered pages too, with a PRP list per 4 KiB. On a 2 MiB huge page a
//! 1 MiB buffer is one contiguous run: one segment per write.
//!
//! glommio allocates every `DmaBuffer`, and the registered `io_memory`
//! region, through the global allocator with 4 KiB alignment. [`DmaAlloc`]
//! recognises those requests (alignment of a page or more, at least
//! [`SLAB_MIN_BYTES`]) and serves them from 2 MiB-aligned anonymous memory
//! marked `MADV_HUGEPAGE`, which the kernel backs with huge pages when
//! transparent huge pages are `always` or `madvise` (otherwise it still
//! works, on small pages). Everything else goes to the system allocator.
//!
//! Blocks up to [`CLASS_MAX_BYTES`] come in power-of-two classes, carved
//! from 2 MiB chunks (a block larger than that is a chunk of its own), and
//! go back to their class's free list when freed; the memory is kept for
//! reuse, never returned to the kernel, so the process holds at most its
//! peak of such buffers (the engine bounds those: staged writes, free write
//! buffers and reads in flight, up to `FETCH_READ_BYTES_MAX` and
//! `RECOVERY_READ_BYTES`). Reuse matters: a fresh mapping costs page faults
//! and zeroing on first touch. Larger blocks get their own mapping,
//! unmapped when freed.
//!
//! Install in a binary with `#[global_allocator] static A: DmaAlloc = DmaAlloc;`
//! (or delegate to it from another allocator).

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Size of a huge page, and of the chunks blocks are carved from.
pub const HUGE_PAGE_BYTES: usize = 2 << 20;
/// Smallest page-aligned request served from huge pages. Smaller direct
/// I/O buffers (single sectors, index pages) gain nothing from contiguity
/// worth a class of their own.
pub const SLAB_MIN_BYTES: usize = 64 << 10;
/// Largest block kept in a class: the engine's largest reads
/// (`FETCH_READ_BYTES_MAX`, `RECOVERY_READ_BYTES`).
pub const CLASS_MAX_BYTES: usize = 8 << 20;
const PAGE_BYTES: usize = 4096;
const MIN_SHIFT: u32 = SLAB_MIN_BYTES.trailing_zeros();
const MAX_SHIFT: u32 = CLASS_MAX_BYTES.trailing_zeros();
const _: () = assert!(CLASS_MAX_BYTES >= crate::constants::FETCH_READ_BYTES_MAX);
const _: () = assert!(CLASS_MAX_BYTES >= crate::constants::RECOVERY_READ_BYTES);
const CLASSES: usize = (MAX_SHIFT - MIN_SHIFT + 1) as usize;

/// Free blocks of one class: an intrusive list (each free block's first
/// word holds the next one's address; 0 ends the list). The allocator
/// cannot allocate for its own bookkeeping.
struct FreeList(Mutex<usize>);

static FREE: [FreeList; CLASSES] = [const { FreeList(Mutex::new(0)) }; CLASSES];

/// The global allocator: page-aligned requests of [`SLAB_MIN_BYTES`] or
/// more on huge pages, the rest from [`System`].
pub struct DmaAlloc;

/// Set by [`use_small_pages`]: everything goes to the system allocator.
static SMALL_PAGES: AtomicBool = AtomicBool::new(false);

/// Serve direct-I/O buffers from the system allocator too, as without this
/// allocator (for A/B measurements). Call it before the first such buffer
/// is allocated: a block is freed by the path that allocated it only if
/// the choice has not changed in between.
pub fn use_small_pages() {
    SMALL_PAGES.store(true, Ordering::Relaxed);
}

/// Whether a request is a direct-I/O buffer served from huge pages.
pub fn is_dma_layout(l: &Layout) -> bool {
    l.align() >= PAGE_BYTES
        && l.align() <= HUGE_PAGE_BYTES
        && l.size() >= SLAB_MIN_BYTES
        && !SMALL_PAGES.load(Ordering::Relaxed)
}

/// The class index of a block of `size` bytes, if it is carved from chunks.
fn class_of(size: usize) -> Option<usize> {
    let shift = size.next_power_of_two().trailing_zeros().max(MIN_SHIFT);
    (shift <= MAX_SHIFT).then(|| (shift - MIN_SHIFT) as usize)
}

fn class_bytes(class: usize) -> usize {
    1 << (class as u32 + MIN_SHIFT)
}

/// Maps `len` bytes (a multiple of [`HUGE_PAGE_BYTES`]) at a 2 MiB-aligned
/// address, marked for huge pages. Null on failure.
fn map_huge(len: usize) -> *mut u8 {
    debug_assert!(len.is_multiple_of(HUGE_PAGE_BYTES));
    let over = len + HUGE_PAGE_BYTES;
    // SAFETY: an anonymous private mapping at an address of the kernel's
    // choosing; the parts outside the aligned range are unmapped below.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            over,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return ptr::null_mut();
    }
    let start = p as usize;
    let aligned = start.next_multiple_of(HUGE_PAGE_BYTES);
    let head = aligned - start;
    let tail = over - head - len;
    // SAFETY: both ranges lie inside the mapping made above and outside
    // the aligned range returned.
    unsafe {
        if head > 0 {
            libc::munmap(p, head);
        }
        if tail > 0 {
            libc::munmap((aligned + len) as *mut libc::c_void, tail);
        }
        // Advice only: without transparent huge pages the memory stays on
        // small pages and everything still works.
        libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
    }
    aligned as *mut u8
}

fn pop(class: usize) -> *mut u8 {
    let mut head = FREE[class].0.lock().unwrap_or_else(|e| e.into_inner());
    let block = *head;
    if block != 0 {
        // SAFETY: a free block holds the address of the next in its first word.
        *head = unsafe { ptr::read(block as *const usize) };
    }
    block as *mut u8
}

fn push(class: usize, block: *mut u8) {
    let mut head = FREE[class].0.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: the block is free, at least a page long and page-aligned.
    unsafe { ptr::write(block as *mut usize, *head) };
    *head = block as usize;
}

/// A block of `class`: from the free list, else carved from a new chunk
/// whose other blocks go to the list.
fn alloc_class(class: usize) -> *mut u8 {
    let block = pop(class);
    if !block.is_null() {
        return block;
    }
    let size = class_bytes(class);
    let chunk_len = size.max(HUGE_PAGE_BYTES);
    let chunk = map_huge(chunk_len);
    if chunk.is_null() {
        return chunk;
    }
    for i in 1..chunk_len / size {
        // SAFETY: inside the chunk just mapped.
        push(class, unsafe { chunk.add(i * size) });
    }
    chunk
}

/// Bytes of the mapping that serves a request too large for the classes.
fn large_len(size: usize) -> usize {
    size.next_multiple_of(HUGE_PAGE_BYTES)
}

unsafe impl GlobalAlloc for DmaAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if !is_dma_layout(&l) {
            // SAFETY: forwarded with the caller's layout.
            return unsafe { System.alloc(l) };
        }
        match class_of(l.size()) {
            Some(class) => alloc_class(class),
            None => map_huge(large_len(l.size())),
        }
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if !is_dma_layout(&l) {
            // SAFETY: forwarded with the caller's layout.
            return unsafe { System.alloc_zeroed(l) };
        }
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { self.alloc(l) };
        // A block from a class may be reused and hold old bytes; a larger
        // block is a fresh mapping, already zero.
        if !p.is_null() && class_of(l.size()).is_some() {
            // SAFETY: the block is at least `l.size()` bytes.
            unsafe { ptr::write_bytes(p, 0, l.size()) };
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if !is_dma_layout(&l) {
            // SAFETY: `p` came from `System` with this layout.
            return unsafe { System.dealloc(p, l) };
        }
        match class_of(l.size()) {
            Some(class) => push(class, p),
            // SAFETY: `p` is a mapping of this length made by `map_huge`.
            None => unsafe {
                libc::munmap(p as *mut libc::c_void, large_len(l.size()));
            },
        }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` is valid for `l.align()`.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, l.align()) };
        if !is_dma_layout(&l) && !is_dma_layout(&new) {
            // SAFETY: forwarded; both layouts are the system allocator's.
            return unsafe { System.realloc(p, l, new_size) };
        }
        // SAFETY: the caller's contract, passed on.
        unsafe { realloc_by_copy(self, p, l, new) }
    }
}

/// `realloc` as a new block, a copy and a free, for an allocator whose
/// blocks of `l` and `new` may come from different places.
///
/// # Safety
/// As [`GlobalAlloc::realloc`]: `p` was allocated by `a` with `l`, and `new`
/// has `l`'s alignment and a non-zero size.
pub unsafe fn realloc_by_copy<A: GlobalAlloc>(a: &A, p: *mut u8, l: Layout, new: Layout) -> *mut u8 {
    // SAFETY: `new` is a valid layout (the caller's contract).
    let q = unsafe { a.alloc(new) };
    if !q.is_null() {
        // SAFETY: both blocks are valid for the smaller size.
        unsafe { ptr::copy_nonoverlapping(p, q, l.size().min(new.size())) };
        // SAFETY: `p` was allocated by `a` with `l`.
        unsafe { a.dealloc(p, l) };
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn classes_round_up_to_powers_of_two_up_to_the_largest_class() {
        assert_eq!(class_of(1), Some(0));
        assert_eq!(class_of(SLAB_MIN_BYTES), Some(0));
        assert_eq!(class_of(SLAB_MIN_BYTES + 1), Some(1));
        assert_eq!(class_bytes(class_of(1 << 20).unwrap()), 1 << 20);
        assert_eq!(class_bytes(class_of((1 << 20) + 12).unwrap()), 2 << 20);
        assert_eq!(class_bytes(class_of(HUGE_PAGE_BYTES + 1).unwrap()), 2 * HUGE_PAGE_BYTES);
        assert_eq!(class_of(CLASS_MAX_BYTES), Some(CLASSES - 1));
        assert_eq!(class_of(CLASS_MAX_BYTES + 1), None);
    }

    #[test]
    fn only_page_aligned_buffers_of_the_minimum_size_take_huge_pages() {
        assert!(is_dma_layout(&layout(1 << 20, 4096)));
        assert!(is_dma_layout(&layout(8 << 20, 4096)));
        assert!(!is_dma_layout(&layout(1 << 20, 8)), "ordinary vectors stay on the system allocator");
        assert!(!is_dma_layout(&layout(4096, 4096)), "a sector buffer stays on the system allocator");
    }

    #[test]
    fn blocks_are_aligned_distinct_reused_and_zeroed_on_request() {
        let a = DmaAlloc;
        let l = layout(1 << 20, 4096);
        // SAFETY: each block is used within its layout and freed once.
        unsafe {
            let x = a.alloc(l);
            let y = a.alloc(l);
            assert!(!x.is_null() && !y.is_null() && x != y);
            assert_eq!(x as usize % 4096, 0);
            assert!((x as usize).abs_diff(y as usize) >= 1 << 20, "blocks overlap");
            ptr::write_bytes(x, 0xAB, l.size());
            ptr::write_bytes(y, 0xCD, l.size());
            assert_eq!(*x.add(l.size() - 1), 0xAB, "a write to one block reached the other");
            a.dealloc(x, l);
            let z = a.alloc_zeroed(l);
            assert!(std::slice::from_raw_parts(z, l.size()).iter().all(|&b| b == 0));
            a.dealloc(z, l);
            a.dealloc(y, l);
        }
    }

    #[test]
    fn blocks_above_a_huge_page_are_chunks_of_their_own_and_reused() {
        let a = DmaAlloc;
        let l = layout(5 << 20, 4096);
        // SAFETY: each block is used within its layout and freed once.
        unsafe {
            let x = a.alloc(l);
            assert!(!x.is_null());
            assert_eq!(x as usize % HUGE_PAGE_BYTES, 0);
            ptr::write_bytes(x, 7, l.size());
            a.dealloc(x, l);
            let y = a.alloc_zeroed(l);
            assert!(
                std::slice::from_raw_parts(y, l.size()).iter().all(|&b| b == 0),
                "a reused block is zeroed on request"
            );
            a.dealloc(y, l);
        }
    }

    #[test]
    fn larger_blocks_get_their_own_aligned_mapping() {
        let a = DmaAlloc;
        let l = layout(CLASS_MAX_BYTES + (1 << 20), 4096);
        // SAFETY: the block is used within its layout and freed once.
        unsafe {
            let x = a.alloc_zeroed(l);
            assert!(!x.is_null());
            assert_eq!(x as usize % HUGE_PAGE_BYTES, 0);
            assert_eq!(*x.add(l.size() - 1), 0);
            ptr::write_bytes(x, 1, l.size());
            let y = a.realloc(x, l, l.size() + (1 << 20));
            assert_eq!(*y.add(l.size() - 1), 1, "realloc kept the contents");
            a.dealloc(y, layout(l.size() + (1 << 20), 4096));
        }
    }

    #[test]
    fn system_blocks_pass_through() {
        let a = DmaAlloc;
        let l = layout(100, 8);
        // SAFETY: used within its layout and freed once.
        unsafe {
            let x = a.alloc(l);
            assert!(!x.is_null());
            let y = a.realloc(x, l, 1 << 20);
            assert!(!y.is_null());
            a.dealloc(y, layout(1 << 20, 8));
        }
    }
}
