//! `textgcn fetch`: download the standard corpora in the TextGCN format.
//!
//! The files come from the original TextGCN repository (or a mirror given
//! with `--base-url`): `<base>/corpus/<D>.txt` (the documents) and
//! `<base>/<D>.txt` (the meta file), saved as `<dir>/<D>/<D>.txt` and
//! `<dir>/<D>/<D>.meta.txt`, the layout the configs expect.
//!
//! Downloads are resumable and atomic: bytes go to `<file>.part`; an
//! interrupted download continues with an HTTP `Range` request (or starts
//! over when the server ignores it); the finished file is fsynced and
//! renamed into place. The SHA-256 of every file is recorded in
//! `<dir>/<D>/SHA256SUMS`; a later fetch verifies present files against it
//! instead of downloading them again.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use textgcn_cli::ui::{self, Verbosity};

/// The original TextGCN repository's data folder.
pub const DEFAULT_BASE: &str = "https://raw.githubusercontent.com/yao8839836/text_gcn/master/data";

/// Datasets `fetch` knows.
pub const DATASETS: [&str; 5] = ["20ng", "R8", "R52", "mr", "ohsumed"];

/// One file to fetch: URL path under the base, local path under the dataset folder.
fn files(dataset: &str) -> [(String, String); 2] {
    [(format!("corpus/{dataset}.txt"), format!("{dataset}.txt")), (format!("{dataset}.txt"), format!("{dataset}.meta.txt"))]
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

fn read_sums(path: &Path) -> Vec<(String, String)> {
    fs::read_to_string(path)
        .map(|t| t.lines().filter_map(|l| l.split_once("  ").map(|(h, f)| (f.to_owned(), h.to_owned()))).collect())
        .unwrap_or_default()
}

/// What a fetch did with one file.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Fetched {
    /// Local path.
    pub path: PathBuf,
    /// SHA-256 (hex).
    pub sha256: String,
    /// Bytes.
    pub bytes: u64,
    /// `downloaded`, `resumed` (continued from a `.part` file) or
    /// `present` (already there, matching SHA256SUMS).
    pub action: &'static str,
}

/// Fetches `dataset` into `dir/<dataset>/` from `base` (see the module doc).
pub fn fetch(dataset: &str, dir: &Path, base: &str, v: Verbosity) -> Result<Vec<Fetched>> {
    let Some(&dataset) = DATASETS.iter().find(|d| d.eq_ignore_ascii_case(dataset)) else {
        bail!("unknown dataset {dataset:?}; `textgcn fetch` knows {}", DATASETS.join(", "));
    };
    let target = dir.join(dataset);
    fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
    let sums_path = target.join("SHA256SUMS");
    let mut sums = read_sums(&sums_path);
    let agent = ureq::AgentBuilder::new().timeout_connect(std::time::Duration::from_secs(20)).timeout_read(std::time::Duration::from_secs(60)).build();
    let mut out = Vec::new();
    for (url_path, local) in files(dataset) {
        let path = target.join(&local);
        if path.is_file()
            && let Some((_, want)) = sums.iter().find(|(f, _)| *f == local)
        {
            let got = sha256_file(&path)?;
            if &got != want {
                bail!("{} does not match its recorded SHA-256 in {} (expected {want}, found {got}); delete it to download it again", path.display(), sums_path.display());
            }
            out.push(Fetched { bytes: fs::metadata(&path)?.len(), path, sha256: got, action: "present" });
            continue;
        }
        let url = format!("{}/{url_path}", base.trim_end_matches('/'));
        let f = download(&agent, &url, &path, v)?;
        sums.retain(|(f, _)| *f != local);
        sums.push((local.clone(), f.sha256.clone()));
        out.push(f);
    }
    sums.sort();
    let text: String = sums.iter().map(|(f, h)| format!("{h}  {f}\n")).collect();
    textgcn_cli::write_atomic(&sums_path, text.as_bytes())?;
    Ok(out)
}

fn download(agent: &ureq::Agent, url: &str, path: &Path, v: Verbosity) -> Result<Fetched> {
    let part = PathBuf::from(format!("{}.part", path.display()));
    let have = fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let mut req = agent.get(url);
    if have > 0 {
        req = req.set("Range", &format!("bytes={have}-"));
    }
    let resp = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(416, _)) if have > 0 => {
            // The part file is not a prefix the server can continue: start over.
            fs::remove_file(&part).ok();
            return download(agent, url, path, v);
        }
        Err(ureq::Error::Status(code, r)) => bail!("{url}: HTTP {code} {}", r.status_text()),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("downloading {url}"))),
    };
    let resumed = have > 0 && resp.status() == 206;
    let mut file = if resumed {
        OpenOptions::new().append(true).open(&part).with_context(|| format!("opening {}", part.display()))?
    } else {
        File::create(&part).with_context(|| format!("creating {}", part.display()))?
    };
    let total = resp.header("Content-Length").and_then(|l| l.parse::<u64>().ok()).map(|l| l + if resumed { have } else { 0 });
    let pb = match total {
        Some(t) => ui::bar(v, t, format!("{}", path.file_name().unwrap_or_default().to_string_lossy())),
        None => ui::spinner(v, format!("{}", path.display())),
    };
    pb.set_position(if resumed { have } else { 0 });
    let mut reader = resp.into_reader();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf).with_context(|| format!("downloading {url} (rerun to resume)"))?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n]).with_context(|| format!("writing {}", part.display()))?;
        pb.inc(n as u64);
    }
    pb.finish_and_clear();
    drop(file);
    let bytes = fs::metadata(&part)?.len();
    if let Some(t) = total
        && t != bytes
    {
        bail!("{url}: expected {t} bytes, got {bytes}; rerun to resume");
    }
    let sha256 = sha256_file(&part)?;
    // The `.part` file is the download's own temporary file (resumable, so
    // under a known name); it lands like every atomic write.
    textgcn_artifacts::atomic::rename_durably(&part, path)?;
    Ok(Fetched { path: path.to_path_buf(), sha256, bytes, action: if resumed { "resumed" } else { "downloaded" } })
}
