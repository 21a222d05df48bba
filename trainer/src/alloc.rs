//! Tuning glibc's allocator for training (its only `unsafe` calls are
//! `mallopt` and `malloc_trim`, which change allocator policy and are
//! valid at any time).

/// Makes glibc serve every allocation of 1 MiB or more with fresh pages
/// (`mallopt(M_MMAP_THRESHOLD)`) and return them on free, so that peak-RSS
/// measurements see each large allocation instead of reused heap. For
/// memory tests and measurements.
pub fn large_allocations_via_mmap() {
    // SAFETY: mallopt only changes allocator tuning; valid at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Makes glibc keep and reuse large freed blocks instead of returning them
/// to the kernel (`M_MMAP_THRESHOLD` and `M_TRIM_THRESHOLD` raised). Every
/// `N × hidden` tensor of 20ng (49 MB) is above glibc's default 32 MB mmap
/// ceiling, so without this each allocation maps fresh pages, and touching
/// fresh memory costs about 0.5 s per GiB on these machines. Training
/// allocates the same shapes every epoch, so reuse is exact.
pub fn reuse_large_allocations() {
    // SAFETY: mallopt only changes allocator tuning; valid at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

/// Returns the heap's free memory to the kernel (`malloc_trim`). Called
/// between seeds: [`reuse_large_allocations`] keeps freed blocks, which is
/// right within a run (the same shapes every epoch) but lets the heap grow
/// across runs through fragmentation.
pub fn release_free_memory() {
    // SAFETY: malloc_trim only releases free heap memory; valid at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
