//! Train/validation/test node sets over the one graph.

use rand::SeedableRng;
use rand::seq::SliceRandom;

/// Which set a document belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// Training.
    Train,
    /// Validation (taken from the training documents).
    Val,
    /// Test.
    Test,
}

impl Split {
    /// The three, in table order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    /// The name tables and reports use.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }

    /// The split named `s` (exactly as [`Split::as_str`] writes it).
    pub fn parse(s: &str) -> Option<Split> {
        Split::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Node indices of each split (documents are nodes `0..D`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Splits {
    /// Training nodes.
    pub train: Vec<i64>,
    /// Validation nodes.
    pub val: Vec<i64>,
    /// Test nodes.
    pub test: Vec<i64>,
}

impl Splits {
    /// The nodes of `split`.
    pub fn nodes(&self, split: Split) -> &[i64] {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
            Split::Test => &self.test,
        }
    }

    /// The nodes of `split`, to add to.
    pub fn nodes_mut(&mut self, split: Split) -> &mut Vec<i64> {
        match split {
            Split::Train => &mut self.train,
            Split::Val => &mut self.val,
            Split::Test => &mut self.test,
        }
    }
}

/// The reference split: train documents shuffled (seeded), the last
/// `floor(val_fraction · n_train)` become validation; test documents are
/// shuffled too (order only). Documents with an empty split value are
/// divided at random by `random_split` (train, val, test fractions).
pub fn make(doc_splits: &[Option<Split>], seed: u64, val_fraction: f64, random_split: [f64; 3]) -> Splits {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut train: Vec<i64> = Vec::new();
    let mut test: Vec<i64> = Vec::new();
    let mut unsplit: Vec<i64> = Vec::new();
    for (i, s) in doc_splits.iter().enumerate() {
        match s {
            Some(Split::Train) => train.push(i as i64),
            Some(Split::Test) => test.push(i as i64),
            _ => unsplit.push(i as i64),
        }
    }
    let mut out = Splits::default();
    if !unsplit.is_empty() {
        unsplit.shuffle(&mut rng);
        let n = unsplit.len() as f64;
        let n_train = (random_split[0] * n).round() as usize;
        let n_val = ((random_split[1] * n).round() as usize).min(unsplit.len() - n_train);
        out.train.extend_from_slice(&unsplit[..n_train]);
        out.val.extend_from_slice(&unsplit[n_train..n_train + n_val]);
        out.test.extend_from_slice(&unsplit[n_train + n_val..]);
    }
    train.shuffle(&mut rng);
    test.shuffle(&mut rng);
    let n_val = (val_fraction * train.len() as f64).floor() as usize;
    let cut = train.len() - n_val;
    out.train.extend_from_slice(&train[..cut]);
    out.val.extend_from_slice(&train[cut..]);
    out.test.extend(test);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_fraction_and_determinism() {
        let s: Vec<Option<Split>> = (0..100).map(|i| Some(if i % 4 == 0 { Split::Test } else { Split::Train })).collect();
        let a = make(&s, 1, 0.1, [0.8, 0.1, 0.1]);
        assert_eq!((a.train.len(), a.val.len(), a.test.len()), (68, 7, 25));
        assert_eq!(a, make(&s, 1, 0.1, [0.8, 0.1, 0.1]));
        assert_ne!(a, make(&s, 2, 0.1, [0.8, 0.1, 0.1]));
        let mut all: Vec<i64> = a.train.iter().chain(&a.val).chain(&a.test).copied().collect();
        all.sort();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        let none = make(&s, 1, 0.0, [0.8, 0.1, 0.1]);
        assert!(none.val.is_empty());
        let u: Vec<Option<Split>> = vec![None; 10];
        let r = make(&u, 3, 0.1, [0.8, 0.1, 0.1]);
        assert_eq!((r.train.len(), r.val.len(), r.test.len()), (8, 1, 1));
        for k in Split::ALL {
            assert_eq!(Split::parse(k.as_str()), Some(k));
            assert_eq!(r.nodes(k).len(), [8, 1, 1][k as usize]);
        }
        assert_eq!(Split::parse("dev"), None);
    }
}
