//! Process-wide compute settings: the thread pool and the device.

use candle_core::Device;

/// Sets the compute thread count once, before any candle op runs.
///
/// candle reads `RAYON_NUM_THREADS` on every matrix product and, when it is unset, re-reads
/// `/proc/cpuinfo` each time (a third of forward time on a 2-core machine). Setting it here, and
/// building the global rayon pool with named threads, avoids that.
///
/// Call it first thing in `main`, while the process has a single thread. Returns the count.
pub fn init_threads() -> usize {
    let from_env = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0);
    let threads = from_env.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(std::num::NonZeroUsize::get)
            .unwrap_or(1)
    });
    if from_env.is_none() {
        // SAFETY: called at the start of `main`, before any other thread exists, so nothing
        // reads the environment concurrently.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    }
    // Fails only if the pool already exists (a second call): then it is already set up.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("compute-{i}"))
        .build_global();
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
        Device::Cpu => format!(
            "CPU ({} threads)",
            std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "?".into())
        ),
        Device::Cuda(_) => "CUDA GPU".into(),
        Device::Metal(_) => "Metal GPU".into(),
    }
}
