//! The config parser and validator on arbitrary text: an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(c) = textgcn_pipeline::config::parse(text, std::path::Path::new("fuzz.toml")) {
            let _ = c.validate();
        }
    }
});
