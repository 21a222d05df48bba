//! Makes `textgcn-train` find libtorch by itself: an rpath to the torch
//! library directory, also given to the crate as `TEXTGCN_TORCH_LIB_DIR`
//! for loading `libtorch_cuda` at run time (`src/cuda_library.rs`). That
//! library is not linked: the linker's `--as-needed` drops it (nothing
//! names its symbols), so a CPU run does not load it and the CUDA
//! libraries it pulls in (~400 MB of RSS).

use std::path::PathBuf;
use std::process::Command;

fn torch_lib_dir() -> Option<PathBuf> {
    if let Some(l) = std::env::var_os("LIBTORCH") {
        return Some(PathBuf::from(l).join("lib"));
    }
    let python = std::env::var("PYTHON_SYS_EXECUTABLE").unwrap_or_else(|_| "python".into());
    let out = Command::new(python)
        .args(["-c", "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))"])
        .output()
        .ok()?;
    out.status.success().then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=PYTHON_SYS_EXECUTABLE");
    println!("cargo:rerun-if-env-changed=PATH");
    if let Some(dir) = torch_lib_dir() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
        println!("cargo:rustc-env=TEXTGCN_TORCH_LIB_DIR={}", dir.display());
    }
}
