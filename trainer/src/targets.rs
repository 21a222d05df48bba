//! What the documents are trained towards: one class each (softmax and
//! cross-entropy, the default) or a set of labels each (sigmoid and binary
//! cross-entropy, `train.multi_label`).
//!
//! Every model computes its loss, its gradient with respect to the logits
//! and its per-step accuracy here, so the GCN and the linear models of
//! [`crate::linear`] train on label sets the same way.
//!
//! # Label sets
//! The graph stores each document's label field as it was read. With
//! `train.multi_label = true` a field is split at `train.label_separator`
//! and each part trimmed of white space: `"earn, acq"` is `{acq, earn}`.
//! The labels of the run are every label that occurs, sorted. An empty part
//! (`"a,,b"`, or a field that is only separators) and a label repeated in
//! one field are refused, naming the document. The graph is not rebuilt:
//! the separator is read at training time.
//!
//! # Loss
//! Multi-label: the mean over documents and labels of
//! `max(z,0) - z·y + ln(1 + e^{-|z|})` (PyTorch's `BCEWithLogitsLoss`), so
//! its gradient is `(σ(z) - y) / (n·C)`. The per-step "accuracy" of the
//! epoch log is the subset accuracy at `σ(z) ≥ 0.5`; the reported metrics
//! use the threshold chosen on validation ([`crate::metrics::best_threshold`]).

use anyhow::{Result, bail};
use tch::{Device, Kind, Tensor};

/// The training targets of the graph's documents, on the training device.
pub enum Targets {
    /// A class id per document, `[D]` int64.
    Single(Tensor),
    /// Label sets.
    Multi(LabelSets),
}

/// Every document's set of labels.
pub struct LabelSets {
    /// `[D, C]` float32, 1 where the document has the label.
    pub y: Tensor,
    /// Label ids of each document, ascending (host).
    pub sets: Vec<Vec<u32>>,
    /// The separator the label fields were split at.
    pub separator: String,
}

/// The labels of one label field, split at `separator` and trimmed, in
/// the field's order; `Err` names what is wrong with the field.
pub fn split_label_field<'a>(field: &'a str, separator: &str) -> Result<Vec<&'a str>, String> {
    let parts: Vec<&str> = field.split(separator).map(str::trim).collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("label field {field:?} has an empty label (separator {separator:?}, train.label_separator)"));
    }
    for (i, p) in parts.iter().enumerate() {
        if parts[..i].contains(p) {
            return Err(format!("label field {field:?} names label {p:?} twice"));
        }
    }
    Ok(parts)
}

/// The label field a set is written as: its labels joined by `separator`.
pub fn join_label_set<S: AsRef<str>>(labels: &[S], separator: &str) -> String {
    labels.iter().map(|l| l.as_ref()).collect::<Vec<_>>().join(separator)
}

impl LabelSets {
    /// Splits the label fields: `fields` are the graph's label strings by
    /// id, `field_of_doc` each document's id among them, `doc_names` name
    /// the documents in errors. Returns the sets and the labels, sorted.
    pub fn parse(fields: &[String], field_of_doc: &[i64], doc_names: &[String], separator: &str, device: Device) -> Result<(LabelSets, Vec<String>)> {
        let mut split: Vec<Vec<&str>> = Vec::with_capacity(fields.len());
        for (k, f) in fields.iter().enumerate() {
            match split_label_field(f, separator) {
                Ok(parts) => split.push(parts),
                Err(why) => {
                    let doc = field_of_doc.iter().position(|&l| l as usize == k).map_or("?", |d| doc_names.get(d).map_or("?", String::as_str));
                    bail!("document {doc:?}: {why}");
                }
            }
        }
        let mut names: Vec<String> = split.iter().flatten().map(|s| s.to_string()).collect();
        names.sort();
        names.dedup();
        let ids: Vec<Vec<u32>> = split
            .iter()
            .map(|parts| {
                let mut v: Vec<u32> = parts.iter().map(|p| names.binary_search_by(|n| n.as_str().cmp(p)).expect("listed") as u32).collect();
                v.sort_unstable();
                v
            })
            .collect();
        let sets: Vec<Vec<u32>> = field_of_doc.iter().map(|&f| ids[f as usize].clone()).collect();
        let c = names.len();
        let mut dense = vec![0f32; sets.len() * c];
        for (d, s) in sets.iter().enumerate() {
            for &l in s {
                dense[d * c + l as usize] = 1.0;
            }
        }
        let y = Tensor::from_slice(&dense).view([sets.len() as i64, c as i64]).to_device(device);
        Ok((LabelSets { y, sets, separator: separator.to_owned() }, names))
    }

    /// The multi-hot rows of documents `docs`, flattened (host).
    pub fn truth_rows(&self, docs: &[i64], classes: usize) -> Vec<u8> {
        let mut t = vec![0u8; docs.len() * classes];
        for (r, &d) in docs.iter().enumerate() {
            for &l in &self.sets[d as usize] {
                t[r * classes + l as usize] = 1;
            }
        }
        t
    }
}

impl Targets {
    /// The documents (nodes `0..D`) there are targets for.
    pub fn documents(&self) -> usize {
        match self {
            Targets::Single(t) => t.size()[0] as usize,
            Targets::Multi(s) => s.sets.len(),
        }
    }

    /// Whether the documents have label sets.
    pub fn is_multi(&self) -> bool {
        matches!(self, Targets::Multi(_))
    }

    /// Mean loss and accuracy of `logits` rows `idx` (NaN for an empty set).
    pub fn loss_acc(&self, logits: &Tensor, idx: &Tensor) -> (f64, f64) {
        if idx.numel() == 0 {
            return (f64::NAN, f64::NAN);
        }
        let (loss, acc, _) = self.evaluate(&logits.index_select(0, idx), idx, false);
        (loss, acc)
    }

    /// Mean loss, accuracy and `dL/dz` `[n, C]` of `z`, the logits of the
    /// documents `idx` (in that order).
    pub fn loss_grad(&self, z: &Tensor, idx: &Tensor) -> (f64, f64, Tensor) {
        let (loss, acc, g) = self.evaluate(z, idx, true);
        (loss, acc, g.expect("asked for"))
    }

    fn evaluate(&self, z: &Tensor, idx: &Tensor, grad: bool) -> (f64, f64, Option<Tensor>) {
        let n = idx.numel() as f64;
        match self {
            Targets::Single(labels) => {
                let y = labels.index_select(0, idx);
                let logp = z.log_softmax(-1, Kind::Float);
                // The mean in a fixed order, rounded to float32 as before.
                let loss = -(crate::ordered::mean(&logp.gather(1, &y.unsqueeze(1), false)) as f32 as f64);
                let acc = z.argmax(-1, false).eq_tensor(&y).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
                // (softmax - onehot) / n
                let g = grad.then(|| {
                    let mut g = logp.exp() - y.one_hot(z.size()[1]).to_kind(Kind::Float);
                    let _ = g.g_mul_scalar_(1.0 / n);
                    g
                });
                (loss, acc, g)
            }
            Targets::Multi(sets) => {
                let y = sets.y.index_select(0, idx);
                let per = z.clamp_min(0.0) - z * &y + z.abs().neg().exp().log1p();
                let loss = crate::ordered::mean(&per);
                let predicted = z.ge(0.0).to_kind(Kind::Float);
                let acc = predicted.eq_tensor(&y).all_dim(1, false).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
                // (σ(z) - y) / (n·C)
                let g = grad.then(|| {
                    let mut g = z.sigmoid() - &y;
                    let _ = g.g_mul_scalar_(1.0 / (n * z.size()[1] as f64));
                    g
                });
                (loss, acc, g)
            }
        }
    }

    /// Probabilities from logits: softmax over the classes, or each label's
    /// sigmoid.
    pub fn probabilities(&self, logits: &Tensor) -> Tensor {
        match self {
            Targets::Single(_) => logits.softmax(-1, Kind::Float),
            Targets::Multi(_) => logits.sigmoid(),
        }
    }

    /// The class ids (single-label; `None` for label sets), on the CPU.
    pub fn class_ids(&self) -> Option<Vec<i64>> {
        match self {
            Targets::Single(t) => Some(Vec::<i64>::try_from(t.to_device(Device::Cpu)).expect("int64 labels")),
            Targets::Multi(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_fields_split_trim_and_refuse_empty_or_repeated_labels() {
        assert_eq!(split_label_field("earn, acq", ",").unwrap(), ["earn", "acq"]);
        assert_eq!(split_label_field("a", ",").unwrap(), ["a"]);
        assert_eq!(split_label_field("a b", " ").unwrap(), ["a", "b"]);
        assert!(split_label_field("a,,b", ",").unwrap_err().contains("empty label"));
        assert!(split_label_field(",", ",").unwrap_err().contains("empty label"));
        assert!(split_label_field("a;b;a", ";").unwrap_err().contains("\"a\" twice"));
        let fields: Vec<String> = ["b,a", "c", "a"].iter().map(|s| s.to_string()).collect();
        let docs: Vec<String> = (0..4).map(|d| format!("d{d}")).collect();
        let (sets, names) = LabelSets::parse(&fields, &[0, 1, 2, 0], &docs, ",", Device::Cpu).unwrap();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(sets.sets, [vec![0, 1], vec![2], vec![0], vec![0, 1]]);
        assert_eq!(Vec::<f32>::try_from(sets.y.flatten(0, -1)).unwrap(), [1., 1., 0., 0., 0., 1., 1., 0., 0., 1., 1., 0.]);
        assert_eq!(sets.truth_rows(&[1, 3], 3), [0, 0, 1, 1, 1, 0]);
        let bad: Vec<String> = ["a", "x,,y"].iter().map(|s| s.to_string()).collect();
        let e = LabelSets::parse(&bad, &[0, 0, 1], &docs, ",", Device::Cpu).err().unwrap().to_string();
        assert!(e.starts_with("document \"d2\": label field \"x,,y\" has an empty label"), "{e}");
    }

    /// Binary cross-entropy, its gradient and the subset accuracy against
    /// autograd and by hand.
    #[test]
    fn multi_label_loss_and_gradient_match_autograd() {
        let fields: Vec<String> = ["a", "a,b", "c"].iter().map(|s| s.to_string()).collect();
        let docs: Vec<String> = (0..4).map(|d| format!("d{d}")).collect();
        let (sets, _) = LabelSets::parse(&fields, &[0, 1, 2, 1], &docs, ",", Device::Cpu).unwrap();
        let t = Targets::Multi(sets);
        let logits = Tensor::from_slice(&[2.0f32, -1.0, -3.0, 0.5, -0.2, -0.1, -2.0, -2.0, 40.0, 1.0, 1.0, -1.0]).view([4, 3]);
        let idx = Tensor::from_slice(&[0i64, 1, 3]);
        let z = logits.index_select(0, &idx).detach().set_requires_grad(true);
        let y = Tensor::from_slice(&[1.0f32, 0., 0., 1., 1., 0., 1., 1., 0.]).view([3, 3]);
        let want = z.binary_cross_entropy_with_logits::<Tensor>(&y, None, None, tch::Reduction::Mean);
        want.backward();
        let (loss, acc, g) = t.loss_grad(&z.detach(), &idx);
        assert!((loss - want.double_value(&[])).abs() < 1e-6, "{loss} vs {}", want.double_value(&[]));
        assert!(g.allclose(&z.grad(), 1e-5, 1e-7, false));
        // Rows at σ ≥ 0.5: {a} right, {a} for {a,b} wrong, {a,b} right.
        assert!((acc - 2.0 / 3.0).abs() < 1e-6, "{acc}");
        assert_eq!(t.loss_acc(&logits, &idx).1, acc);
        let p = t.probabilities(&logits);
        assert!(p.allclose(&logits.sigmoid(), 1e-7, 1e-7, false));
    }
}
