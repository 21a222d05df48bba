//! Classification metrics and the process's own memory accounting.

use std::path::PathBuf;

use serde::Serialize;

/// One class's row of the report.
#[derive(Debug, Clone, Serialize, PartialEq)]
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

/// Multi-label scores of one document set at one decision threshold.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MultiLabelScores {
    /// A label is predicted when its probability is at least this.
    pub threshold: f64,
    /// Micro precision (over all document-label pairs).
    pub micro_precision: f64,
    /// Micro recall.
    pub micro_recall: f64,
    /// Micro F1.
    pub micro_f1: f64,
    /// Macro precision (mean over labels; 0 for a label never predicted).
    pub macro_precision: f64,
    /// Macro recall.
    pub macro_recall: f64,
    /// Macro F1.
    pub macro_f1: f64,
    /// Documents whose predicted set is exactly their true set.
    pub subset_accuracy: f64,
    /// Share of document-label pairs predicted wrongly.
    pub hamming_loss: f64,
    /// Precision at k (k = 1, 3, 5 where there are that many labels): the
    /// mean share of each document's k most probable labels that are true.
    pub precision_at: Vec<PrecisionAt>,
    /// Per-label precision, recall, F1 and support.
    pub per_label: Vec<ClassRow>,
}

/// One precision-at-k value.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PrecisionAt {
    /// k.
    pub k: usize,
    /// P@k.
    pub precision: f64,
}

/// Multi-label scores (scikit-learn's definitions, `zero_division=0`) of
/// `probs` against `truth`, both row-major `[n, C]` with `C = labels.len()`:
/// label `j` is predicted for a document when `probs ≥ threshold`. P@k
/// ranks each document's labels by probability (ties: the lower label id
/// first); a label of probability 0 is never among a document's top k (so
/// a document the model cannot score gets no hits).
pub fn multi_label(truth: &[u8], probs: &[f32], labels: &[String], threshold: f64) -> MultiLabelScores {
    let c = labels.len();
    let n = truth.len().checked_div(c).unwrap_or(0);
    assert_eq!(truth.len(), probs.len(), "truth and probabilities of the same shape");
    let (mut tp, mut fp, mut fne) = (vec![0usize; c], vec![0usize; c], vec![0usize; c]);
    let (mut exact, mut wrong_pairs) = (0usize, 0usize);
    let ks: Vec<usize> = [1, 3, 5].into_iter().filter(|&k| k <= c).collect();
    let mut hits = vec![0usize; ks.len()];
    let mut order: Vec<usize> = Vec::with_capacity(c);
    for d in 0..n {
        let (t, p) = (&truth[d * c..(d + 1) * c], &probs[d * c..(d + 1) * c]);
        let mut all_right = true;
        for j in 0..c {
            let predicted = p[j] as f64 >= threshold;
            match (t[j] != 0, predicted) {
                (true, true) => tp[j] += 1,
                (false, true) => fp[j] += 1,
                (true, false) => fne[j] += 1,
                (false, false) => continue,
            }
            if t[j] == 0 || !predicted {
                all_right = false;
                wrong_pairs += 1;
            }
        }
        exact += all_right as usize;
        order.clear();
        order.extend(0..c);
        order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
        for (h, &k) in hits.iter_mut().zip(&ks) {
            *h += order[..k].iter().filter(|&&j| t[j] != 0 && p[j] > 0.0).count();
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let f1 = |p: f64, r: f64| if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) };
    let per_label: Vec<ClassRow> = (0..c)
        .map(|j| {
            let (p, r) = (ratio(tp[j], tp[j] + fp[j]), ratio(tp[j], tp[j] + fne[j]));
            ClassRow { label: labels[j].clone(), precision: p, recall: r, f1: f1(p, r), support: tp[j] + fne[j] }
        })
        .collect();
    let (stp, sfp, sfn) = (tp.iter().sum::<usize>(), fp.iter().sum::<usize>(), fne.iter().sum::<usize>());
    let (mp, mr) = (ratio(stp, stp + sfp), ratio(stp, stp + sfn));
    let mean = |f: fn(&ClassRow) -> f64| if c == 0 { 0.0 } else { per_label.iter().map(f).sum::<f64>() / c as f64 };
    MultiLabelScores {
        threshold,
        micro_precision: mp,
        micro_recall: mr,
        micro_f1: ratio(2 * stp, 2 * stp + sfp + sfn),
        macro_precision: mean(|r| r.precision),
        macro_recall: mean(|r| r.recall),
        macro_f1: mean(|r| r.f1),
        subset_accuracy: ratio(exact, n),
        hamming_loss: ratio(wrong_pairs, n * c),
        precision_at: ks.iter().zip(&hits).map(|(&k, &h)| PrecisionAt { k, precision: ratio(h, n * k) }).collect(),
        per_label,
    }
}

/// The decision threshold that maximises the micro F1 of `probs` against
/// `truth` (row-major, any shape): every distinct probability is tried as
/// the lowest one predicted, and the threshold returned is the midpoint
/// between it and the next lower probability (0 below the lowest), so that
/// it separates the same pairs on new documents. Ties go to the higher
/// threshold. `None` when there is nothing to choose on (no pairs, or no
/// true pair).
pub fn best_threshold(truth: &[u8], probs: &[f32]) -> Option<f64> {
    let positives = truth.iter().filter(|&&t| t != 0).count();
    if positives == 0 {
        return None;
    }
    let mut pairs: Vec<(f32, bool)> = probs.iter().zip(truth).map(|(&p, &t)| (p, t != 0)).collect();
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    // Sweep from the highest probability down: predicting every pair at or
    // above pairs[i].0 has `tp` true and `fp` false positives.
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut best: Option<(f64, usize)> = None; // (F1, index of the last pair predicted)
    let mut i = 0;
    while i < pairs.len() {
        let v = pairs[i].0;
        while i < pairs.len() && pairs[i].0 == v {
            if pairs[i].1 {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        let f = 2.0 * tp as f64 / (tp + fp + positives) as f64;
        if best.is_none_or(|(b, _)| f > b) {
            best = Some((f, i - 1));
        }
    }
    let (_, last) = best?;
    let lowest_in = pairs[last].0 as f64;
    let next_out = pairs.get(last + 1).map_or(0.0, |p| p.0 as f64);
    Some((lowest_in + next_out) / 2.0)
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

/// Memory this process can still have: what the system has available
/// (`MemAvailable`, which counts cached file pages as reclaimable, a
/// mapped graph's own included), or, under a cgroup memory limit, that
/// limit less this process's anonymous memory, whichever is lower. `None`
/// where `/proc/meminfo` cannot be read.
pub fn memory_room() -> Option<u64> {
    let available = textgcn_pipeline::config::meminfo_bytes("MemAvailable:")?;
    let limit = textgcn_pipeline::config::available_memory();
    Some(available.min(limit.saturating_sub(anon_now())))
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

    #[test]
    fn the_threshold_maximises_micro_f1_between_probabilities() {
        // Pairs by probability: .9 T, .8 F, .7 T, .6 T, .2 F, .1 F.
        // Predicting down to .6 gives tp 3, fp 1: F1 6/7, the best.
        let truth = [1, 0, 1, 1, 0, 0];
        let probs = [0.9f32, 0.8, 0.7, 0.6, 0.2, 0.1];
        let t = best_threshold(&truth, &probs).unwrap();
        assert!((t - 0.4).abs() < 1e-6, "{t}");
        assert_eq!(best_threshold(&[0, 0], &[0.5, 0.2]), None);
        // One positive at the bottom: everything predicted, threshold half its probability.
        assert!((best_threshold(&[0, 1], &[0.5, 0.2]).unwrap() - 0.1).abs() < 1e-7);
    }

    #[test]
    fn multi_label_scores_by_hand() {
        let labels: Vec<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        // Truth {a}, {a,b}, {}; predicted at 0.5: {a}, {a}, {b}.
        let truth = [1, 0, 1, 1, 0, 0];
        let probs = [0.9f32, 0.1, 0.8, 0.4, 0.3, 0.6];
        let s = multi_label(&truth, &probs, &labels, 0.5);
        // a: tp 2; b: fn 1, fp 1.
        assert_eq!((s.per_label[0].precision, s.per_label[0].recall, s.per_label[0].support), (1.0, 1.0, 2));
        assert_eq!((s.per_label[1].precision, s.per_label[1].recall, s.per_label[1].support), (0.0, 0.0, 1));
        assert!((s.micro_precision - 2.0 / 3.0).abs() < 1e-12 && (s.micro_recall - 2.0 / 3.0).abs() < 1e-12);
        assert!((s.macro_f1 - 0.5).abs() < 1e-12);
        assert!((s.subset_accuracy - 1.0 / 3.0).abs() < 1e-12);
        assert!((s.hamming_loss - 2.0 / 6.0).abs() < 1e-12);
        // P@1: a, a, b -> hits 1, 1, 0.
        assert_eq!(s.precision_at, [PrecisionAt { k: 1, precision: 2.0 / 3.0 }]);
    }
}
