//! The artifact decoders on arbitrary bytes (what `open` runs after the
//! hash check): Arrow IPC columns of each kind and Parquet tables. An error
//! or a column whose values lie inside the input, never a panic that
//! escapes: `decode_table` turns panics of the parquet crate into format
//! errors (two such inputs are in fuzz/regressions/artifact/), so this
//! target silences caught panics; one that escapes still aborts the run.
#![no_main]
use arrow_array::types::{Float32Type, Int64Type};
use libfuzzer_sys::fuzz_target;
use textgcn_artifacts::{EdgeIndex, ObjectId, decode_column, decode_table};

fuzz_target!(|data: &[u8]| {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let Some((&which, rest)) = data.split_first() else { return };
    let id = ObjectId::parse(&"0".repeat(64)).expect("a valid id");
    // A heap copy (16-byte aligned by the allocator; a mapping is
    // page-aligned): decoding requires the columns' alignment.
    let bytes = bytes::Bytes::from(rest.to_vec());
    match which % 4 {
        0 => {
            if let Ok(c) = decode_column::<Int64Type>(bytes, &id, "edge_index") {
                assert!(c.is_zero_copy());
                let _ = EdgeIndex::from_column(c);
            }
        }
        1 => {
            if let Ok(c) = decode_column::<Float32Type>(bytes, &id, "edge_attr") {
                assert!(c.is_zero_copy());
            }
        }
        2 => drop(decode_column::<Int64Type>(bytes, &id, "row_ptr")),
        _ => drop(decode_table(bytes, &id, None)),
    }
});
