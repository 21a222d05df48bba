//! `textgcn fetch` against a local HTTP server that serves the data
//! directory in the original repository's layout: a full download, a
//! resumed one (a `.part` file continued with a Range request), a server
//! that ignores ranges, a verified re-fetch, a damaged file, a 404.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use sha2::Digest;
use textgcn_e2e::*;

struct Server {
    base: String,
    ranged: Arc<AtomicUsize>,
    honour_ranges: Arc<AtomicBool>,
}

/// Serves `/corpus/<D>.txt` from `data/<D>/<D>.txt` and `/<D>.txt` from
/// `data/<D>/<D>.meta.txt`, with `Range: bytes=N-` support (switchable).
fn serve(data: PathBuf) -> Server {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let base = format!("http://{}", server.server_addr().to_ip().unwrap());
    let ranged = Arc::new(AtomicUsize::new(0));
    let honour_ranges = Arc::new(AtomicBool::new(true));
    let (r, h) = (ranged.clone(), honour_ranges.clone());
    std::thread::spawn(move || {
        for req in server.incoming_requests() {
            let url = req.url().trim_start_matches('/').to_owned();
            let file = match url.strip_prefix("corpus/") {
                Some(f) => f.strip_suffix(".txt").map(|d| data.join(d).join(format!("{d}.txt"))),
                None => url.strip_suffix(".txt").map(|d| data.join(d).join(format!("{d}.meta.txt"))),
            };
            let Some(bytes) = file.and_then(|f| std::fs::read(f).ok()) else {
                let _ = req.respond(tiny_http::Response::from_string("not found").with_status_code(404));
                continue;
            };
            let range = req.headers().iter().find(|x| x.field.equiv("Range")).and_then(|x| x.value.as_str().strip_prefix("bytes=").and_then(|v| v.strip_suffix('-')).and_then(|v| v.parse::<usize>().ok()));
            match range {
                Some(from) if h.load(Ordering::SeqCst) && from < bytes.len() => {
                    r.fetch_add(1, Ordering::SeqCst);
                    let hdr = tiny_http::Header::from_bytes("Content-Range", format!("bytes {from}-{}/{}", bytes.len() - 1, bytes.len())).unwrap();
                    let _ = req.respond(tiny_http::Response::from_data(bytes[from..].to_vec()).with_status_code(206).with_header(hdr));
                }
                _ => {
                    let _ = req.respond(tiny_http::Response::from_data(bytes));
                }
            }
        }
    });
    Server { base, ranged, honour_ranges }
}

fn fetch(dir: &Path, dataset: &str, base: &str) -> std::process::Output {
    let mut c = std::process::Command::new(bin("textgcn"));
    c.args(["fetch", dataset, "--json", "--base-url", base]).arg("--dir").arg(dir);
    run(c)
}

fn sha256(p: &Path) -> String {
    format!("{:x}", sha2::Sha256::digest(std::fs::read(p).unwrap()))
}

#[test]
fn fetch_downloads_resumes_verifies_and_reports_errors() {
    let data = data_dir();
    let srv = serve(data.clone());
    let dir = tempfile::tempdir().unwrap();
    let want = [data.join("R8/R8.txt"), data.join("R8/R8.meta.txt")];

    // A full download: the same bytes, SHA-256 recorded, no part file left.
    let o = fetch(dir.path(), "R8", &srv.base);
    assert!(o.status.success(), "{}", text(&o));
    let got: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(got.as_array().unwrap().iter().all(|f| f["action"] == "downloaded"), "{got}");
    let local = [dir.path().join("R8/R8.txt"), dir.path().join("R8/R8.meta.txt")];
    for (a, b) in local.iter().zip(&want) {
        assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap(), "{} differs", a.display());
    }
    let sums = std::fs::read_to_string(dir.path().join("R8/SHA256SUMS")).unwrap();
    assert!(sums.contains(&format!("{}  R8.txt", sha256(&want[0]))) && sums.contains(&format!("{}  R8.meta.txt", sha256(&want[1]))), "{sums}");
    assert!(files_under(dir.path()).iter().all(|f| !f.ends_with(".part")));

    // Present and matching: verified, not downloaded again.
    let o = fetch(dir.path(), "R8", &srv.base);
    let got: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(got.as_array().unwrap().iter().all(|f| f["action"] == "present"), "{got}");

    // An interrupted download (a part file) continues with a Range request.
    std::fs::remove_file(&local[0]).unwrap();
    let bytes = std::fs::read(&want[0]).unwrap();
    std::fs::write(dir.path().join("R8/R8.txt.part"), &bytes[..bytes.len() / 3]).unwrap();
    let o = fetch(dir.path(), "R8", &srv.base);
    assert!(o.status.success(), "{}", text(&o));
    let got: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(got[0]["action"], "resumed", "{got}");
    assert_eq!(srv.ranged.load(Ordering::SeqCst), 1);
    assert_eq!(std::fs::read(&local[0]).unwrap(), bytes);

    // A server that ignores ranges: the download starts over, still exact.
    srv.honour_ranges.store(false, Ordering::SeqCst);
    std::fs::remove_file(&local[0]).unwrap();
    std::fs::write(dir.path().join("R8/R8.txt.part"), b"garbage that is not a prefix").unwrap();
    let o = fetch(dir.path(), "R8", &srv.base);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read(&local[0]).unwrap(), bytes);

    // A file damaged after download no longer matches its recorded sum.
    std::fs::write(&local[1], b"tampered").unwrap();
    let o = fetch(dir.path(), "R8", &srv.base);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("does not match its recorded SHA-256"), "{}", text(&o));

    // Unknown datasets and missing files are clear errors.
    let o = fetch(dir.path(), "R9", &srv.base);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("unknown dataset \"R9\"; `textgcn fetch` knows 20ng, R8, R52, mr, ohsumed"), "{}", text(&o));
    let o = fetch(dir.path(), "R52", &srv.base);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("HTTP 404"), "{}", text(&o));
}
