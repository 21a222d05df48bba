//! The one place in the store with `unsafe`: memory maps, and the
//! fail-point self-kill.
//!
//! # Invariants
//! A mapping is only ever made of a *published object* (or, in `verify`, of a
//! file about to be hashed). Published objects are:
//! - immutable: written once to a temporary file, fsynced, then renamed into
//!   place; no code path opens a published path for writing, and the file
//!   mode is read-only (0444);
//! - never truncated: `gc` and corruption repair only *unlink* names, which
//!   leaves existing mappings valid (the inode lives until the last map goes).
//!
//! Hence the bytes behind a [`Mmap`] never change while it is alive, which
//! is what `memmap2::Mmap::map` requires of its caller. An outside actor that
//! truncates an object file in place (not something this project does) could
//! still cause SIGBUS on access; every open re-hashes the whole file first,
//! so such damage done *before* an open is reported as corruption.

use std::fs::File;
use std::io;

pub use memmap2::Mmap;

/// Maps a whole file read-only. An empty file gives an empty mapping.
pub(crate) fn map_readonly(file: &File) -> io::Result<Mmap> {
    // SAFETY: see the module invariants: published objects are never modified
    // or truncated in place while mapped.
    unsafe { Mmap::map(file) }
}

/// Drops this process's page-table entries for the whole pages inside
/// `range`, a range of addresses within a live mapping made by
/// [`map_readonly`] (`madvise(MADV_DONTNEED)`): its resident set no longer
/// counts them, the page cache keeps them, and the next read maps them
/// again. A hint: whether the kernel took it is returned, nothing else
/// depends on it.
pub(crate) fn release_pages(range: std::ops::Range<usize>) -> bool {
    const PAGE: usize = 4096;
    let (start, end) = (range.start.next_multiple_of(PAGE), range.end / PAGE * PAGE);
    if start >= end {
        return true;
    }
    // SAFETY: `start..end` lies inside a mapping of `map_readonly`: shared
    // (`MAP_SHARED`), read-only (`PROT_READ`), of an immutable file (module
    // invariants). Dropping such pages changes no byte any read returns: a
    // later read faults the same file page back in. No private or
    // anonymous page is in the range, so nothing is zeroed or lost.
    unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) == 0 }
}

/// Kills the current process with SIGKILL (used by fail-points to simulate
/// a crash at an exact step). Never returns.
pub(crate) fn kill_self() -> ! {
    // SAFETY: raise(3) has no memory-safety preconditions.
    unsafe {
        libc::raise(libc::SIGKILL);
    }
    std::process::abort()
}

/// A zeroed, page-aligned byte buffer (what O_DIRECT writes need): an
/// anonymous mapping, so that only the pages written are ever backed by
/// memory. Every object is written through one of 8 MiB, most of them
/// small: a buffer zeroed by hand (a vector of 4 KiB blocks) touched all
/// 2048 pages each time, ~12 buffers a build.
pub(crate) struct AlignedBuf {
    map: memmap2::MmapMut,
}

impl AlignedBuf {
    /// A buffer of `blocks · 4096` bytes (an error when the address space
    /// cannot be had).
    pub(crate) fn new(blocks: usize) -> io::Result<Self> {
        Ok(AlignedBuf { map: memmap2::MmapOptions::new().len(blocks * 4096).map_anon()? })
    }
    /// The bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.map
    }
    /// The bytes, mutably.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.map
    }
}
