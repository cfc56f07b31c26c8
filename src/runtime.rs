//! Process-wide compute settings: the thread pool and the device.

use candle_core::Device;

/// The compute thread count: `RAYON_NUM_THREADS` when set to a positive number, else the
/// available parallelism.
pub fn thread_count() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(std::num::NonZeroUsize::get)
                .unwrap_or(1)
        })
}

/// Builds the global rayon pool with `threads` named threads. Safe to call from any thread;
/// a second call leaves the first pool in place.
pub fn init_thread_pool(threads: usize) {
    // Fails only if the pool already exists (a second call): then it is already set up.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("compute-{i}"))
        .build_global();
}

/// Sets the compute thread count once, before any candle op runs, and returns it.
///
/// candle reads `RAYON_NUM_THREADS` on every matrix product and, when it is unset, re-reads
/// `/proc/cpuinfo` each time; so the variable is set here when the user has not set it, and
/// the global rayon pool is built with named threads.
///
/// # Safety
///
/// Setting an environment variable is sound only while no other thread reads or writes the
/// environment: call this first thing in `main`, while the process has a single thread.
/// (Tests, which run on many threads, use [`init_thread_pool`] alone.)
pub unsafe fn init_threads() -> usize {
    let threads = thread_count();
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // SAFETY: the caller guarantees that no other thread exists yet.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    }
    init_thread_pool(threads);
    threads
}

/// The device training and inference run on: the first CUDA GPU when the binary was built
/// with the `cuda` feature and one is present, the CPU otherwise.
pub fn compute_device() -> Device {
    #[cfg(feature = "cuda")]
    if let Ok(device) = Device::new_cuda(0) {
        return device;
    }
    Device::Cpu
}

/// A short description of a device for logs and the window.
pub fn describe_device(device: &Device) -> String {
    match device {
        Device::Cpu => format!("CPU ({} threads)", rayon::current_num_threads()),
        Device::Cuda(_) => "CUDA GPU".into(),
        Device::Metal(_) => "Metal GPU".into(),
    }
}
