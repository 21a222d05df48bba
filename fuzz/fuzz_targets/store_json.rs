//! The store's metadata on arbitrary bytes: the first byte picks a record
//! or the ref of a small built store (and whether to re-seal it: digest and
//! ref pin recomputed, so that fuzzed content gets past the digest checks),
//! the rest replaces that file; then every reader of records and refs runs
//! (ref and record loading, verify, status, the typed `BuiltRef`, table
//! readers, export). An error is fine; a panic aborts the run.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../../pipeline/tests/common/readers.rs"]
mod readers;

fuzz_target!(|data: &[u8]| {
    static FIXTURE: std::sync::OnceLock<readers::Fixture> = std::sync::OnceLock::new();
    let fx = FIXTURE.get_or_init(readers::fixture);
    let Some((&which, rest)) = data.split_first() else { return };
    let k = which as usize % fx.files.len();
    fx.damage(k, rest, which & 0x80 != 0);
    fx.run_readers();
    fx.restore();
});
