//! The trainer's only `unsafe`: tensors that view memory-mapped artifacts.
//!
//! # Invariants
//! - **The mapping outlives every tensor that views it.** [`MappedTensor`]
//!   owns both the tensor and the mapped column (an `Arc` on the mapping),
//!   and drops the tensor first (field order). Tensors derived from it
//!   without copying (the CSR matrix built on it) live in
//!   [`crate::graph::GraphData`], which also drops them before the
//!   [`MappedTensor`]s they view.
//! - **Nothing writes through the mapping.** The mapping is read-only
//!   (`PROT_READ`); the tensors are only ever read (sparse products); no
//!   in-place operation is applied to them or to anything sharing their
//!   storage. A write would fault, not corrupt the store.
//! - **Types and alignment match.** The columns were decoded by arrow with
//!   alignment required, so an `i64`/`f32` slice is properly aligned and
//!   its length is exact.

use arrow_array::ArrowPrimitiveType;
use tch::{Device, Kind, Tensor};
use textgcn_artifacts::MappedColumn;

/// A CPU tensor viewing (part of) a mapped column, with the mapping kept
/// alive alongside. Cloning makes another view of the same memory.
pub struct MappedTensor<T: ArrowPrimitiveType> {
    tensor: Tensor,
    column: MappedColumn<T>,
}

impl<T: ArrowPrimitiveType> Clone for MappedTensor<T> {
    fn clone(&self) -> Self {
        MappedTensor { tensor: self.tensor.shallow_clone(), column: self.column.clone() }
    }
}

impl<T: ArrowPrimitiveType> MappedTensor<T> {
    /// Views `column[offset .. offset + len]` as a 1-D tensor of `kind`,
    /// without copying. Panics if the range or kind does not fit.
    pub fn view(column: &MappedColumn<T>, offset: usize, len: usize, kind: Kind) -> Self {
        let values = column.values();
        assert!(offset + len <= values.len(), "view out of range");
        assert_eq!(kind.elt_size_in_bytes(), std::mem::size_of::<T::Native>(), "element size mismatch");
        let ptr = values[offset..].as_ptr() as *const u8;
        // SAFETY: `ptr..ptr + len * size` lies inside the live mapping owned
        // by `column` (cloned into `self`, so it outlives the tensor); the
        // element type and alignment match `kind`; the tensor is never
        // written (module invariants).
        let tensor = unsafe { Tensor::from_blob(ptr, &[len as i64], &[1], kind, Device::Cpu) };
        MappedTensor { tensor, column: column.clone() }
    }

    /// The tensor (a view; never write to it).
    pub fn tensor(&self) -> &Tensor {
        &self.tensor
    }

    /// Whether the tensor's data lies inside the file mapping.
    pub fn is_zero_copy(&self) -> bool {
        inside(&self.tensor, self.column.mapping_range())
    }

    /// The viewed values (the same memory as the tensor).
    pub fn values(&self) -> &[T::Native] {
        let n = self.tensor.numel();
        let off = (self.tensor.data_ptr() as usize - self.column.values().as_ptr() as usize) / std::mem::size_of::<T::Native>();
        &self.column.values()[off..off + n]
    }

    /// The address range of the underlying file mapping.
    pub fn mapping_range(&self) -> std::ops::Range<usize> {
        self.column.mapping_range()
    }
}

/// Whether `t`'s data lies inside `range`.
pub fn inside(t: &Tensor, range: std::ops::Range<usize>) -> bool {
    let p = t.data_ptr() as usize;
    let bytes = t.numel() * t.kind().elt_size_in_bytes();
    range.start <= p && p + bytes <= range.end
}

/// Whether the CPU has AVX2 and FMA (checked once).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2_fma() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"))
}

/// A block of the sparse product compiled for AVX2 and FMA (tiles of 64).
#[cfg(target_arch = "x86_64")]
pub(crate) fn spmm_avx2(block: &crate::spmm::Block<'_>, x: &[f32], k: usize, out: &mut [f32]) {
    #[target_feature(enable = "avx2,fma")]
    fn inner(block: &crate::spmm::Block<'_>, x: &[f32], k: usize, out: &mut [f32]) {
        block.run_tiled::<64>(x, k, out)
    }
    assert!(has_avx2_fma());
    // SAFETY: the CPU has AVX2 and FMA (asserted), the only precondition of
    // calling a `target_feature` function.
    unsafe { inner(block, x, k, out) }
}

/// `y += a · x` with AVX2 and FMA. Chosen only when [`has_avx2_fma`].
#[cfg(target_arch = "x86_64")]
pub(crate) fn axpy_avx2(a: f32, x: &[f32], y: &mut [f32]) {
    #[target_feature(enable = "avx2,fma")]
    fn inner(a: f32, x: &[f32], y: &mut [f32]) {
        for (yv, xv) in y.iter_mut().zip(x) {
            *yv = a.mul_add(*xv, *yv);
        }
    }
    debug_assert!(has_avx2_fma());
    // SAFETY: only reachable when the CPU supports AVX2 and FMA (the caller
    // selects this function after `has_avx2_fma()`), the only precondition
    // of calling a `target_feature` function.
    unsafe { inner(a, x, y) }
}

/// Views a contiguous CPU float tensor's data as a slice.
pub fn f32_slice(t: &Tensor) -> &[f32] {
    assert!(t.device() == Device::Cpu && t.kind() == Kind::Float && t.is_contiguous(), "need a contiguous CPU float tensor");
    let n = t.numel();
    if n == 0 {
        return &[];
    }
    // SAFETY: a contiguous CPU float tensor holds `numel` initialised f32s
    // at `data_ptr`, valid while `t` is borrowed.
    unsafe { std::slice::from_raw_parts(t.data_ptr() as *const f32, n) }
}

/// Views a contiguous CPU float tensor's data as a mutable slice.
pub fn f32_slice_mut(t: &mut Tensor) -> &mut [f32] {
    assert!(t.device() == Device::Cpu && t.kind() == Kind::Float && t.is_contiguous(), "need a contiguous CPU float tensor");
    let n = t.numel();
    if n == 0 {
        return &mut [];
    }
    // SAFETY: as above, and `t` is borrowed mutably, so no other Rust
    // reference reads or writes it meanwhile.
    unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, n) }
}

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
