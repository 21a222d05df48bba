//! Classification metrics and the process's own memory accounting.

use std::path::PathBuf;

use serde::Serialize;

/// One class's row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct ClassRow {
    /// Label name.
    pub label: String,
    /// Precision (0 when nothing was predicted as this class).
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// F1.
    pub f1: f64,
    /// True documents of this class in the evaluated set.
    pub support: usize,
}

/// Accuracy, macro precision/recall/F1 (scikit-learn's `average="macro"`
/// with zero for undefined ratios) and the per-class table.
pub fn classification(truth: &[i64], pred: &[i64], labels: &[String]) -> (f64, f64, f64, f64, Vec<ClassRow>) {
    let c = labels.len();
    let (mut tp, mut fp, mut fne) = (vec![0usize; c], vec![0usize; c], vec![0usize; c]);
    let mut correct = 0;
    for (&t, &p) in truth.iter().zip(pred) {
        if t == p {
            tp[t as usize] += 1;
            correct += 1;
        } else {
            // A negative prediction is "no prediction": a miss, no class's
            // false positive.
            if p >= 0 {
                fp[p as usize] += 1;
            }
            fne[t as usize] += 1;
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let rows: Vec<ClassRow> = (0..c)
        .map(|k| {
            let p = ratio(tp[k], tp[k] + fp[k]);
            let r = ratio(tp[k], tp[k] + fne[k]);
            let f = if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) };
            ClassRow { label: labels[k].clone(), precision: p, recall: r, f1: f, support: tp[k] + fne[k] }
        })
        .collect();
    let mean = |f: fn(&ClassRow) -> f64| rows.iter().map(f).sum::<f64>() / c as f64;
    (ratio(correct, truth.len()), mean(|r| r.precision), mean(|r| r.recall), mean(|r| r.f1), rows)
}

/// The process's memory, split into the mapped graph and the rest.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Memory {
    /// Peak resident set size (VmHWM), bytes.
    pub peak_rss: u64,
    /// Resident bytes of the mapped graph files now (file-backed, shared
    /// with the page cache; counted once).
    pub mapped_graph_rss: u64,
    /// Highest anonymous resident memory seen (sampled every epoch), bytes.
    pub peak_anon: u64,
    /// Peak RSS minus the mapped graph.
    pub other_peak: u64,
    /// Sizes of the graph files on disk.
    pub mapped_graph_bytes: u64,
}

fn status_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// Current anonymous resident memory, bytes.
pub fn anon_now() -> u64 {
    status_kb("RssAnon:") * 1024
}

/// Peak RSS (VmHWM), bytes.
pub fn peak_rss() -> u64 {
    status_kb("VmHWM:") * 1024
}

/// Current RSS, bytes.
pub fn rss_now() -> u64 {
    status_kb("VmRSS:") * 1024
}

/// Resets the kernel's peak-RSS counter (VmHWM) to the current RSS.
pub fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Resident bytes of the mappings of `paths` (from /proc/self/smaps).
pub fn mapped_rss(paths: &[PathBuf]) -> u64 {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else { return 0 };
    let names: Vec<String> = paths.iter().filter_map(|p| std::fs::canonicalize(p).ok()).map(|p| p.display().to_string()).collect();
    let mut total = 0;
    let mut in_graph = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().next().is_some_and(|c| c.is_ascii_hexdigit()) && !first.ends_with(':') {
            in_graph = names.iter().any(|n| line.ends_with(n.as_str()));
        } else if in_graph && line.starts_with("Rss:") {
            total += line.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) * 1024;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macro_scores_match_sklearn_definition() {
        let labels: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        // sklearn: precision_recall_fscore_support([0,0,1,1,2,2],[0,1,1,1,0,0], average="macro")
        // per class P = [1/3, 2/3, 0], R = [1/2, 1, 0], F1 = [0.4, 0.8, 0]
        let (acc, p, r, f, rows) = classification(&[0, 0, 1, 1, 2, 2], &[0, 1, 1, 1, 0, 0], &labels);
        assert!((acc - 0.5).abs() < 1e-12);
        assert!((p - 1.0 / 3.0).abs() < 1e-12);
        assert!((r - 0.5).abs() < 1e-12);
        assert!((f - 0.4).abs() < 1e-12);
        assert_eq!(rows[2].support, 2);
    }
}
