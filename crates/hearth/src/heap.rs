//! Live heap bytes, counted at the global allocator, for `/metrics`, and
//! the process's refusal of transparent huge pages.
//!
//! The RSS alone cannot tell a leak from memory the allocator keeps for
//! reuse; the bytes Rust code has allocated and not freed can. Counting
//! costs one relaxed atomic add per allocation and per free, and the hot
//! paths allocate per broadcast and per batch written, not per delivery.
//! SQLite allocates through its own `malloc` and is counted by
//! [`crate::db::sqlite_memory_bytes`] instead.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering};

static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Wraps an allocator and counts the bytes it has handed out and not taken back.
pub struct Counting<A>(pub A);

/// Bytes allocated through [`Counting`] and not yet freed.
pub fn live_bytes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

// SAFETY: every call is forwarded unchanged to the wrapped allocator, which
// upholds GlobalAlloc's contract; the counter is bookkeeping only.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's guarantees for `layout` are passed on.
        let ptr = unsafe { self.0.alloc(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { self.0.alloc_zeroed(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator with `layout` (the caller's promise).
        unsafe { self.0.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`, and `new_size` is the caller's valid size.
        let new = unsafe { self.0.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            if new_size >= layout.size() {
                LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        new
    }
}

/// Asks Linux not to back this process's memory with transparent huge
/// pages; call it first thing, before the heap grows.
///
/// mimalloc leaves THP allowed and advises its large reservations as
/// huge-page candidates, so where THP is on (`always`, or `madvise` as on
/// the benchmark machine) a whole 2 MiB page can be resident where a few
/// KiB of idle connections were touched. With 19,000 idle connections, 80
/// of the server's 163 MiB were huge pages, and it took 7.55 KiB per
/// connection against 6.46 with them refused (BENCHMARKS.md, run 6).
/// Returns whether the kernel agreed.
pub fn refuse_huge_pages() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE takes plain integer arguments and
        // touches no memory of ours.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;

    #[test]
    fn counts_what_is_held_and_forgets_what_is_freed() {
        let counting = Counting(System);
        let before = live_bytes();
        let layout = Layout::from_size_align(4096, 8).unwrap();
        // SAFETY: a non-zero layout; each pointer is freed once with its layout.
        unsafe {
            let a = counting.alloc(layout);
            assert!(!a.is_null());
            assert!(live_bytes() >= before + 4096);
            let b = counting.realloc(a, layout, 8192);
            assert!(live_bytes() >= before + 8192);
            counting.dealloc(b, Layout::from_size_align(8192, 8).unwrap());
        }
        // Other tests allocate through the same counter only if it is the
        // global allocator, which it is not in tests: back to where it was.
        assert_eq!(live_bytes(), before);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn huge_pages_are_refused_for_the_whole_process() {
        assert!(refuse_huge_pages());
        // SAFETY: PR_GET_THP_DISABLE takes no pointers.
        let disabled = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        assert_eq!(disabled, 1);
    }
}
