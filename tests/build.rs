//! Says, before any end-to-end test runs, when the corpora they need are
//! missing: `cargo test` then stops with one line naming the setting,
//! instead of every test failing deep inside.

fn main() {
    println!("cargo::rerun-if-env-changed=TEXTGCN_DATA_DIR");
    println!("cargo::rustc-check-cfg=cfg(textgcn_no_data)");
    let ok = std::env::var_os("TEXTGCN_DATA_DIR").map(std::path::PathBuf::from).is_some_and(|d| d.join("R8/R8.txt").is_file());
    if !ok {
        println!("cargo::rustc-cfg=textgcn_no_data");
    }
}
