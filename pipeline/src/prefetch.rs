//! Software prefetch: telling the CPU which cache line the next loop
//! iteration will read, so that its miss overlaps the current work.
//!
//! The graph's word rows read a window of token ids around every
//! occurrence of a word; occurrences lie far apart in a token array of up
//! to gigabytes, so each window is a cache (and TLB) miss the hardware
//! prefetcher cannot predict, while its position is known several
//! occurrences ahead. The normalisation reads the degree of every edge's
//! column, scattered over all nodes, while the columns of the rows are
//! known ahead. The trainer's sparse product (`Â · X`) reads a row of `X`
//! for every non-zero, at a column known a few non-zeros ahead.

/// Hints that `slice[i]` will be read soon; does nothing when `i` is out
/// of bounds or on targets other than x86_64.
#[inline(always)]
pub fn prefetch<T>(slice: &[T], i: usize) {
    #[cfg(target_arch = "x86_64")]
    if i < slice.len() {
        let p = slice.as_ptr().wrapping_add(i).cast::<i8>();
        // SAFETY: `_mm_prefetch` needs SSE, which is part of the x86_64
        // baseline (every x86_64 CPU has it, and the target enables it);
        // a prefetch changes no memory and never faults, and `p` points
        // inside `slice` in any case.
        unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (slice, i);
}
