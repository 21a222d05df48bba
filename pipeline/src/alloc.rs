//! Tuning glibc's allocator for the graph build and for training (its
//! only `unsafe` calls are `mallopt` and `malloc_trim`, which change
//! allocator policy and are valid at any time). Elsewhere than on glibc
//! these do nothing.

/// Makes glibc serve every allocation of 1 MiB or more with fresh pages
/// (`mallopt(M_MMAP_THRESHOLD)`) and return them on free, so that peak-RSS
/// measurements see each large allocation instead of reused heap. For
/// memory tests and measurements.
pub fn large_allocations_via_mmap() {
    allocations_via_mmap_from(1 << 20);
}

/// Makes glibc serve every allocation of `bytes` or more with fresh pages
/// and return them on free (`mallopt(M_MMAP_THRESHOLD)`; glibc's own
/// threshold starts at 128 KiB and rises to 32 MiB as large blocks are
/// freed). The graph build sets 128 KiB: its blocks of rows grow by
/// doubling in the workers and are freed by the thread that spills them,
/// and with the rising threshold those blocks stayed in per-thread heaps
/// without being reused (at a million documents under an 1800 MiB limit:
/// at least 2.15 GB with glibc's default, 2.08 GB with a 1 MiB threshold,
/// 1.89-1.92 GB with 128 KiB; see docs/benchmarks-scale.md).
pub fn allocations_via_mmap_from(bytes: usize) {
    let bytes = i32::try_from(bytes).unwrap_or(i32::MAX);
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; valid at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, bytes);
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = bytes;
}

/// Makes glibc keep and reuse large freed blocks instead of returning them
/// to the kernel (`M_MMAP_THRESHOLD` and `M_TRIM_THRESHOLD` raised). Every
/// `N × hidden` tensor of 20ng (49 MB) is above glibc's default 32 MB mmap
/// ceiling, so without this each allocation maps fresh pages, and touching
/// fresh memory costs about 0.5 s per GiB on these machines. Training
/// allocates the same shapes every epoch, so reuse is exact.
pub fn reuse_large_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; valid at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

/// Makes glibc keep and reuse freed blocks below `bytes` instead of
/// returning them to the kernel (`M_MMAP_THRESHOLD` at `bytes`,
/// `M_TRIM_THRESHOLD` raised); blocks of `bytes` or more are still mapped
/// for themselves, so a vector that grows past it moves by `mremap`, not
/// by a copy that leaves the old block in the heap. For the build's early
/// stages, which allocate and free the same buffers batch after batch.
pub fn reuse_allocations_below(bytes: usize) {
    let bytes = i32::try_from(bytes).unwrap_or(i32::MAX);
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; valid at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, bytes);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = bytes;
}

/// Returns the heap's free memory to the kernel (`malloc_trim`). Called
/// between seeds: [`reuse_large_allocations`] keeps freed blocks, which is
/// right within a run (the same shapes every epoch) but lets the heap grow
/// across runs through fragmentation.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap memory; valid at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
