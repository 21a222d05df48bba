//! libtorch's CUDA library is not loaded until a run asks for it, and
//! loading it at run time gives libtorch its CUDA backend. One test in its
//! own binary (process): it observes the process's mappings before and
//! after loading.

use tch::{Device, Kind, Tensor};
use textgcn_trainer::cuda_library;

/// Whether a file whose name contains `lib` is mapped into this process.
fn mapped(lib: &str) -> bool {
    std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps").lines().any(|l| l.contains(lib))
}

#[test]
fn the_cuda_library_loads_only_when_asked_and_then_gives_libtorch_its_backend() {
    // libtorch is in use (a tensor on the CPU), its CUDA library is not.
    let cpu = Tensor::ones([2], (Kind::Float, Device::Cpu));
    assert_eq!(cpu.sum(Kind::Float).double_value(&[]), 2.0);
    assert!(mapped("libtorch_cpu.so"), "libtorch_cpu is linked");
    assert!(!mapped("libtorch_cuda.so"), "a CPU process must not load libtorch_cuda (and CUDA's libraries)");
    assert!(!mapped("libcublas"), "nor cuBLAS");
    // Without it, libtorch has no CUDA backend at all: a CUDA tensor fails
    // in the dispatcher, whether or not this machine has a GPU.
    let before = Tensor::f_zeros([1], (Kind::Float, Device::Cuda(0))).expect_err("no CUDA backend before loading");
    assert!(before.to_string().contains("from the 'CUDA' backend"), "{before}");

    cuda_library::load().expect("the project's libtorch (the CUDA wheel) has libtorch_cuda.so");
    assert!(mapped("libtorch_cuda.so"));
    assert_eq!(cuda_library::load(), Ok(()), "a second call gives the first result");
    // With it, the backend is there: the tensor is made where a GPU and its
    // driver are, and otherwise fails for want of them, not of a backend.
    match Tensor::f_zeros([1], (Kind::Float, Device::Cuda(0))) {
        Ok(t) => assert_eq!(t.device(), Device::Cuda(0)),
        Err(after) => {
            assert!(!cuda_library::driver_present() || !tch::Cuda::is_available(), "a device is visible, yet: {after}");
            // Here, without a GPU: "Found no NVIDIA driver on your system".
            assert!(!after.to_string().contains("from the 'CUDA' backend"), "loading gave no CUDA backend: {after}");
        }
    }
}
