//! Loading libtorch's CUDA library when a run may use a GPU, and only then.
//!
//! `libtorch_cuda.so` is not linked into the trainer (see `build.rs`):
//! loading it maps CUDA's libraries (cuBLAS, cuDNN, cuSPARSE, NCCL, ...)
//! and runs their initialisers, ~400 MB of resident memory measured on
//! this project's torch 2.13 wheel (a process that loads only
//! `libtorch_cpu` peaks at 126 MB, one that also loads `libtorch_cuda`
//! at 520 MB) that a CPU run never uses. [`load`] opens it at run time,
//! before the first question to libtorch about CUDA: its initialisers
//! register the CUDA backend with `libtorch_cpu`, exactly as when it is
//! linked. Until it is loaded, libtorch answers that no CUDA device
//! exists.

use std::ffi::CString;
use std::sync::OnceLock;

/// The library's file name.
const LIBRARY: &str = "libtorch_cuda.so";

/// Whether this machine has an NVIDIA driver loaded: without one, CUDA
/// cannot have a device, and the library need not be loaded to say so.
pub fn driver_present() -> bool {
    std::path::Path::new("/proc/driver/nvidia/version").exists() || std::path::Path::new("/dev/nvidiactl").exists()
}

/// Loads `libtorch_cuda.so` (once; later calls give the first result):
/// from the torch library directory the trainer was built against, else
/// wherever the dynamic loader finds it. An error says why it could not
/// be loaded (a CPU-only libtorch has no such file).
pub fn load() -> Result<(), String> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED.get_or_init(open).clone()
}

fn open() -> Result<(), String> {
    let built_against = option_env!("TEXTGCN_TORCH_LIB_DIR").map(|d| std::path::Path::new(d).join(LIBRARY));
    let candidates: Vec<String> = built_against.iter().filter(|p| p.exists()).map(|p| p.display().to_string()).chain(std::iter::once(LIBRARY.to_owned())).collect();
    let mut errors = Vec::new();
    for name in candidates {
        let c = CString::new(name.clone()).map_err(|_| format!("{name}: a path with a NUL byte"))?;
        // SAFETY: `dlopen` is given a NUL-terminated path that outlives the
        // call. Invariants: the handle is never closed (the CUDA backend it
        // registers lives as long as the process), and this runs before any
        // CUDA query or tensor (callers load before choosing the device), so
        // no libtorch code observes the registration half done. Loading runs
        // the library's initialisers, which only register with libtorch_cpu
        // (already loaded: it is linked) and touch no state of ours.
        let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        if !handle.is_null() {
            tracing::debug!("loaded {name}");
            return Ok(());
        }
        // SAFETY: `dlerror` returns null or a NUL-terminated message that
        // stays valid until the next dl* call on this thread; it is copied
        // out before any.
        let msg = unsafe {
            let e = libc::dlerror();
            if e.is_null() { "unknown error".to_owned() } else { std::ffi::CStr::from_ptr(e).to_string_lossy().into_owned() }
        };
        errors.push(msg);
    }
    Err(format!("cannot load libtorch's CUDA library ({})", errors.join("; ")))
}
