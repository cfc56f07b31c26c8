//! The binary's global allocator: a pooling allocator (mimalloc, which `main` tells to keep
//! freed memory mapped, since fresh pages cost a third of a Lite0 fine-tune step) for all but
//! very large blocks, which on Linux are mapped fresh, in huge pages, and unmapped when freed:
//! kept in the pool, blocks of hundreds of MB (VGG16's early activations and their gradients
//! at batch 32) fragment it, and its resident size grew a gigabyte past the bytes in use.
//!
//! It also counts the bytes in use in blocks of at least [`COUNTED_BYTES`] (tensors, not the
//! many small blocks whose shared counter, updated from every thread, slowed the head-only
//! epoch by a quarter) and their peak, which `bench` reports beside the peak RSS.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Blocks of at least this many bytes bypass the pool. Lite0's largest tensor at batch 32 is
/// 154 MB and ResNet-18's 103 MB, so their steps keep reusing pooled memory; mapping a block
/// this large fresh in 2 MB pages costs a few percent of the work done on it.
pub const DIRECT_BYTES: usize = 256 << 20;

/// Blocks of at least this many bytes are counted.
pub const COUNTED_BYTES: usize = 64 << 10;

static IN_USE_BYTES: AtomicUsize = AtomicUsize::new(0);
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);

/// The pooling allocator `A` for blocks under [`DIRECT_BYTES`], fresh mappings for larger ones,
/// counting the bytes handed out.
#[derive(Debug)]
pub struct Heap<A>(pub A);

fn allocated(bytes: usize) {
    if bytes >= COUNTED_BYTES {
        let now = IN_USE_BYTES.fetch_add(bytes, Ordering::Relaxed) + bytes;
        PEAK_BYTES.fetch_max(now, Ordering::Relaxed);
    }
}

fn freed(bytes: usize) {
    if bytes >= COUNTED_BYTES {
        IN_USE_BYTES.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// Whether a block of `layout` is mapped directly.
fn direct(layout: Layout) -> bool {
    cfg!(target_os = "linux") && layout.size() >= DIRECT_BYTES && layout.align() <= 4096
}

/// Fresh anonymous mappings (zeroed by the kernel), with transparent huge pages asked for:
/// in 4 KiB pages the first touch of a VGG16 step's large blocks was 1.4 million page faults.
/// Out of line: the pool's path is the hot one (with the mapping inlined into it, Lite0's
/// head-only epoch, which makes many small allocations, took 10.7 ms against 6.9).
#[cfg(target_os = "linux")]
mod mapped {
    /// # Safety
    /// `len` is not zero.
    #[cold]
    #[inline(never)]
    pub unsafe fn map(len: usize) -> *mut u8 {
        // SAFETY: a new private anonymous mapping; nothing else refers to that address range.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if p == libc::MAP_FAILED {
                return std::ptr::null_mut();
            }
            // Advice only: without huge pages the block still works.
            libc::madvise(p, len, libc::MADV_HUGEPAGE);
            p.cast()
        }
    }

    /// # Safety
    /// `p` and `len` are a mapping from [`map`].
    #[cold]
    #[inline(never)]
    pub unsafe fn unmap(p: *mut u8, len: usize) {
        // SAFETY: the caller's contract.
        unsafe { libc::munmap(p.cast(), len) };
    }
}

#[cfg(not(target_os = "linux"))]
mod mapped {
    pub unsafe fn map(_len: usize) -> *mut u8 {
        unreachable!("blocks are mapped directly on Linux only")
    }

    pub unsafe fn unmap(_p: *mut u8, _len: usize) {
        unreachable!("blocks are mapped directly on Linux only")
    }
}

impl<A: GlobalAlloc> Heap<A> {
    /// # Safety
    /// [`GlobalAlloc::alloc`]'s (or `alloc_zeroed`'s, with `zeroed`).
    unsafe fn get(&self, layout: Layout, zeroed: bool) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe {
            match (direct(layout), zeroed) {
                (true, _) => mapped::map(layout.size()),
                (false, true) => self.0.alloc_zeroed(layout),
                (false, false) => self.0.alloc(layout),
            }
        };
        if !p.is_null() {
            allocated(layout.size());
        }
        p
    }
}

// SAFETY: each block is allocated and freed by the same allocator, chosen by its layout, which
// every call carries; a resize involving a mapped block moves it.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Heap<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        unsafe { self.get(layout, false) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        unsafe { self.get(layout, true) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract; `ptr` came from the allocator its size picks.
        unsafe {
            if direct(layout) {
                mapped::unmap(ptr, layout.size());
            } else {
                self.0.dealloc(ptr, layout);
            }
        }
        freed(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract: `new_size` rounded to `layout`'s alignment fits.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !direct(layout) && !direct(new_layout) {
            // SAFETY: the caller's contract, passed to the pool that holds the block.
            let p = unsafe { self.0.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                freed(layout.size());
                allocated(new_size);
            }
            return p;
        }
        // SAFETY: a fresh block, then the old one's bytes copied into it and the old freed.
        unsafe {
            let p = self.get(new_layout, false);
            if !p.is_null() {
                std::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            p
        }
    }
}

/// The most heap bytes in use at once (in counted blocks) since start or the last
/// [`reset_peak`]; `None` where nothing was counted: the global allocator is not [`Heap`] (the
/// tests, other binaries).
pub fn peak_bytes() -> Option<u64> {
    let peak = PEAK_BYTES.load(Ordering::Relaxed);
    (peak > 0).then_some(peak as u64)
}

/// Starts a new peak from the bytes in use now.
pub fn reset_peak() {
    PEAK_BYTES.store(IN_USE_BYTES.load(Ordering::Relaxed), Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;

    /// Blocks move between the pool and mappings as they cross the threshold, keep their bytes,
    /// and are counted while they live (only this test allocates through a `Heap`).
    #[test]
    fn blocks_cross_the_threshold_and_are_counted() {
        let heap = Heap(System);
        let layout = |bytes| Layout::from_size_align(bytes, 64).expect("layout");
        let (small, big) = (layout(DIRECT_BYTES - 4096), layout(DIRECT_BYTES + 4096));
        // SAFETY: each block is used within its size and freed once with its layout.
        unsafe {
            let p = heap.alloc(small);
            assert!(!p.is_null());
            p.write(7);
            p.add(small.size() - 1).write(9);
            let q = heap.realloc(p, small, big.size());
            assert!(!q.is_null());
            assert_eq!((q.read(), q.add(small.size() - 1).read()), (7, 9));
            let z = heap.alloc_zeroed(big);
            assert!(!z.is_null());
            assert_eq!((z.read(), z.add(big.size() - 1).read()), (0, 0));
            heap.dealloc(z, big);
            let r = heap.realloc(q, big, 1 << 20);
            assert_eq!(r.read(), 7);
            heap.dealloc(r, layout(1 << 20));
        }
        assert!(peak_bytes().expect("counted") >= 2 * big.size() as u64);
        assert_eq!(IN_USE_BYTES.load(Ordering::Relaxed), 0);
    }
}
