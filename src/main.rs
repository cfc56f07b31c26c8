//! `transfer-studio`: opens the app, or runs one of the engine's commands (see `--help`).

use std::process::ExitCode;

/// mimalloc, all but very large blocks (`transfer_studio::heap`).
#[global_allocator]
static GLOBAL: transfer_studio::heap::Heap<mimalloc::MiMalloc> =
    transfer_studio::heap::Heap(mimalloc::MiMalloc);

/// Keeps freed memory mapped for reuse: activations of a batch are hundreds of MB, and
/// returning them to the OS after each layer makes the kernel zero fresh pages for every
/// tensor (README, Performance).
fn tune_allocator() {
    // mimalloc's `mi_option_arena_eager_commit` and `mi_option_purge_delay` (same numbers in
    // its v2 and v3 headers).
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: plain option setters, valid at any time.
    unsafe {
        libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 1);
        libmimalloc_sys::mi_option_set(PURGE_DELAY, -1);
    }
}

fn main() -> ExitCode {
    tune_allocator();
    // SAFETY: first thing in `main`: no other thread exists yet.
    unsafe { transfer_studio::runtime::init_threads() };
    transfer_studio::cli::main()
}
