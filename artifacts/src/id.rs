//! Object names: the BLAKE3 hash of an object's bytes, and the hashing
//! (of slices, of files read with `read(2)`, of a stream while it is
//! written).

use std::fs::File;
use std::io::{self, Write};

use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};

/// Name of an object: the lowercase hex BLAKE3 hash of its bytes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ObjectId(pub(crate) String);

impl ObjectId {
    /// Parses a 64-digit lowercase hex id.
    pub fn parse(s: &str) -> Result<Self> {
        if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(ObjectId(s.to_owned()))
        } else {
            Err(StoreError::BadId(s.to_owned()))
        }
    }
    /// The id of these bytes.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        ObjectId(hash_bytes(bytes).to_hex().to_string())
    }
    /// The hex string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// A short prefix for messages.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl std::fmt::Display for ObjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl TryFrom<String> for ObjectId {
    type Error = StoreError;
    fn try_from(s: String) -> Result<Self> {
        ObjectId::parse(&s)
    }
}
impl From<ObjectId> for String {
    fn from(id: ObjectId) -> String {
        id.0
    }
}

/// BLAKE3 of a byte slice, multi-threaded for large inputs.
pub fn hash_bytes(bytes: &[u8]) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    if bytes.len() >= 1 << 20 {
        h.update_rayon(bytes);
    } else {
        h.update(bytes);
    }
    h.finalize()
}

/// BLAKE3 of a file's contents read with read(2) in large chunks.
pub(crate) fn hash_reader(mut f: &File) -> io::Result<String> {
    use std::io::Read;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 8 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if n >= 1 << 20 {
            h.update_rayon(&buf[..n]);
        } else {
            h.update(&buf[..n]);
        }
    }
    Ok(h.finalize().to_hex().to_string())
}

/// A writer that hashes what passes through it.
pub(crate) struct HashWriter<W: Write> {
    pub(crate) inner: W,
    pub(crate) hasher: blake3::Hasher,
}

impl<W: Write + Send> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() >= 1 << 20 {
            // Large buffers: hash on one core while the other copies and
            // writes (measured faster than hashing on both, then writing).
            let (hasher, inner) = (&mut self.hasher, &mut self.inner);
            let (_, written) = rayon::join(|| hasher.update(buf), || inner.write_all(buf));
            written?;
            return Ok(buf.len());
        }
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
