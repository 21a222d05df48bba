//! Tensors that view memory without copying: memory-mapped artifacts as
//! tensors, and CPU tensors as slices for the native kernels.
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
