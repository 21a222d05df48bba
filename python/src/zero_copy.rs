//! NumPy arrays over the store's memory maps, without a copy. The one
//! `unsafe` block of the package is here.

use numpy::ndarray::{ArrayView, Dimension, ShapeBuilder};
use numpy::{Element, PyArray};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// A read-only NumPy array of `shape` over `data`, whose base is `owner`:
/// NumPy keeps `owner` alive for as long as the array (or any view of it)
/// lives, and `owner` keeps the mapping that `data` lies in.
///
/// The caller passes a `data` that `owner` holds, unchanged and at the same
/// address for `owner`'s whole life: a slice of a memory map held by a
/// frozen `#[pyclass]` (never remapped, never mutated; dropping `owner` is
/// the only way to unmap it).
pub fn borrowed_array<'py, T: Element, D: Dimension>(owner: &Bound<'py, PyAny>, data: &[T], shape: impl ShapeBuilder<Dim = D>) -> PyResult<Bound<'py, PyArray<T, D>>> {
    let view = ArrayView::from_shape(shape, data).map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("cannot view the mapped column with that shape: {e}")))?;
    // SAFETY: `borrow_from_array` needs the memory `view` points to to stay
    // valid, unmoved, until `owner` (set as the array's base, so released
    // only after the array) is dropped. `data` lies in a mapping that
    // `owner` holds for its whole life and never remaps (the contract of
    // this function, kept by its callers: the frozen `Graph` class). The
    // array is made read-only below, before any Python code can see it, so
    // nothing writes through it into the (read-only) mapping.
    let array = unsafe { PyArray::borrow_from_array(&view, owner.clone()) };
    let no_write = PyDict::new(owner.py());
    no_write.set_item("write", false)?;
    array.call_method("setflags", (), Some(&no_write))?;
    Ok(array)
}
