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

/// Where to compute: `--device` on the command line, the picker in the window.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// The first CUDA GPU when this build has CUDA and one is present, else the CPU.
    #[default]
    Auto,
    Cpu,
    /// The first CUDA GPU; an error where there is none or the build lacks CUDA.
    Cuda,
}

impl DeviceChoice {
    pub const ALL: [DeviceChoice; 3] = [DeviceChoice::Auto, DeviceChoice::Cpu, DeviceChoice::Cuda];

    pub fn title(self) -> &'static str {
        match self {
            DeviceChoice::Auto => "auto",
            DeviceChoice::Cpu => "CPU",
            DeviceChoice::Cuda => "CUDA GPU",
        }
    }
}

/// Why the chosen device cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(
        "this build has no CUDA support: build with `cargo build --release --features cuda` \
         (see README: GPU)"
    )]
    NoCudaBuild,
    #[error("no usable CUDA GPU: {0}")]
    NoGpu(String),
}

/// The device for `choice`.
pub fn device_for(choice: DeviceChoice) -> Result<Device, DeviceError> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Auto => Ok(cuda_device().unwrap_or(Device::Cpu)),
        DeviceChoice::Cuda => cuda_device(),
    }
}

#[cfg(feature = "cuda")]
fn cuda_device() -> Result<Device, DeviceError> {
    Device::new_cuda(0).map_err(|e| DeviceError::NoGpu(e.to_string()))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device() -> Result<Device, DeviceError> {
    Err(DeviceError::NoCudaBuild)
}

/// The device chosen for this process (`--device`), set once before any work starts.
static CHOSEN: std::sync::OnceLock<Device> = std::sync::OnceLock::new();

/// Chooses the device for this process's commands; an error if it cannot be used.
pub fn choose_device(choice: DeviceChoice) -> Result<(), DeviceError> {
    let device = device_for(choice)?;
    // A second call keeps the first choice (tests and the window call this at most once).
    let _ = CHOSEN.set(device);
    Ok(())
}

/// The device training and inference run on: the one chosen with [`choose_device`], else
/// the first CUDA GPU when the build has CUDA and one is present, else the CPU.
pub fn compute_device() -> Device {
    match CHOSEN.get() {
        Some(device) => device.clone(),
        None => device_for(DeviceChoice::Auto).unwrap_or(Device::Cpu),
    }
}

/// A short description of a device for logs and the window.
pub fn describe_device(device: &Device) -> String {
    match device {
        Device::Cpu if !cpu_kernels_enabled() => format!(
            "CPU ({} threads, device-generic ops)",
            rayon::current_num_threads()
        ),
        Device::Cpu => format!("CPU ({} threads)", rayon::current_num_threads()),
        Device::Cuda(_) => "CUDA GPU".into(),
        Device::Metal(_) => "Metal GPU".into(),
    }
}

/// Environment variable: `1` makes every operation take its device-generic path (compositions
/// of stock candle ops, candle's AdamW) on the CPU too — exactly the code a CUDA build runs —
/// so that the GPU path is exercised and checked on machines without a GPU.
pub const GENERIC_OPS_VAR: &str = "TRANSFER_STUDIO_GENERIC_OPS";

/// Whether the CPU's hand-written kernels may be used (not when [`GENERIC_OPS_VAR`] is `1`).
/// Read once per process.
pub fn cpu_kernels_enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| !env_flag(GENERIC_OPS_VAR))
}

/// Environment variable: `1` makes training recompute cheap convolutions in backward instead of
/// keeping their outputs (every depthwise convolution, and 1×1 convolutions with few inputs):
/// about a seventh less memory in a Lite0 fine-tune step, for about a tenth of its speed.
pub const LOW_MEMORY_VAR: &str = "TRANSFER_STUDIO_LOW_MEMORY";

/// Whether [`LOW_MEMORY_VAR`] is `1`. Read once per process.
pub fn low_memory() -> bool {
    static LOW: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *LOW.get_or_init(|| env_flag(LOW_MEMORY_VAR))
}

/// Whether the environment variable `var` is set to `1`.
fn env_flag(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v.trim() == "1")
}

/// Minor page faults of this process so far, all threads (Linux, `/proc/self/stat`; 0
/// elsewhere): each is a page the kernel mapped on first touch, usually zeroing it first,
/// which a buffer reused from the allocator does not cost.
pub fn minor_page_faults() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // After the command name in parentheses: state, ppid, …, the 8th is minflt.
            let rest = &s[s.rfind(')')? + 1..];
            rest.split_whitespace().nth(7)?.parse().ok()
        })
        .unwrap_or(0)
}
