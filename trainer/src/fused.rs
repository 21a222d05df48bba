//! Elementwise passes of the training step fused into one walk over memory
//! each, on the CPU: ReLU with dropout (and the mask the backward pass
//! needs, kept as bits), the backward pass through them, and Adam's update
//! of the `[N, hidden]` first layer.
//!
//! libtorch does each of these as several passes over `[N, hidden]`
//! tensors (49 MB each on 20ng), allocating a float mask, a boolean
//! mask and three Adam temporaries; and its Bernoulli sampler draws one
//! number at a time from one generator (0.12 s of a 20ng epoch). Here the
//! dropout mask comes from a counter-based generator ([`keep_bits`]): the
//! bits of element `i` are a hash of the step's seed and `i`, so the mask
//! is the same whatever the thread count, computed in parallel, and
//! reproducible from the seed, which each step draws from libtorch's
//! generator (so `--seed` fixes it, as before).
//!
//! Also here: the one dense product of the step whose sum runs over every
//! node, the second layer's weight gradient ([`transposed_product`]), in a
//! fixed order, so a run's floats do not depend on the thread count.

use rayon::prelude::*;

/// Elements per parallel chunk (a multiple of 64, so each chunk owns whole
/// words of a [`Mask`]).
const CHUNK: usize = 1 << 16;

/// One bit per element of an `[N, hidden]` activation: whether it passed
/// ReLU and dropout.
pub struct Mask {
    bits: Vec<u64>,
    len: usize,
}

impl Mask {
    /// Whether element `i` passed.
    pub fn get(&self, i: usize) -> bool {
        assert!(i < self.len, "mask index");
        self.bits[i / 64] >> (i % 64) & 1 == 1
    }

    /// Elements that passed.
    pub fn count(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }
}

/// SplitMix64's output function: a bijection of `u64` whose outputs pass
/// BigCrush for consecutive inputs.
#[inline(always)]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The dropout decisions of elements `2j` and `2j + 1` for `seed`: each
/// keeps when its 32 bits of `mix(seed + (j + 1) · φ)` (φ the golden-ratio
/// increment of SplitMix64) fall below `threshold`.
#[inline(always)]
pub fn keep_bits(seed: u64, j: u64, threshold: u64) -> (bool, bool) {
    let r = mix(seed.wrapping_add(j.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15)));
    ((r & 0xFFFF_FFFF) < threshold, (r >> 32) < threshold)
}

/// The 32-bit threshold for keeping an element with probability `keep`
/// (`2^32` keeps all; 0.5 is exactly `2^31`).
pub fn threshold(keep: f64) -> u64 {
    (keep.clamp(0.0, 1.0) * 4_294_967_296.0).round() as u64
}

/// In place, `z ← ReLU(z) · m / keep` where `m` keeps each element with
/// probability `keep` (the mask of `seed`, see [`keep_bits`]); returns
/// which elements passed both. `keep` = 1 is plain ReLU. The same floats
/// as libtorch's `relu_`, `mul_(mask)` and `mul_(1 / keep)` for the same
/// mask (but that a NaN becomes 0).
pub fn relu_dropout(z: &mut [f32], keep: f64, seed: u64) -> Mask {
    let len = z.len();
    let mut bits = vec![0u64; len.div_ceil(64)];
    let scale = (1.0 / keep) as f32;
    let threshold = threshold(keep);
    let keep_all = threshold >= 1 << 32;
    z.par_chunks_mut(CHUNK).zip(bits.par_chunks_mut(CHUNK / 64)).enumerate().for_each(|(ci, (zs, words))| {
        let first = ci * CHUNK;
        vectorized(
            #[inline(always)]
            || {
                for (wi, (zw, word)) in zs.chunks_mut(64).zip(words.iter_mut()).enumerate() {
                    let pair0 = (first + wi * 64) as u64 / 2;
                    let mut kept = [true; 64];
                    if !keep_all {
                        for (p, k) in kept.chunks_exact_mut(2).enumerate() {
                            (k[0], k[1]) = keep_bits(seed, pair0 + p as u64, threshold);
                        }
                    }
                    let mut out = 0u64;
                    for (b, (v, &kept)) in zw.iter_mut().zip(&kept).enumerate() {
                        let pass = kept && *v > 0.0;
                        *v = if pass { if scale == 1.0 { *v } else { *v * scale } } else { 0.0 };
                        out |= (pass as u64) << b;
                    }
                    *word = out;
                }
            },
        )
    });
    Mask { bits, len }
}

/// In place, the backward pass of [`relu_dropout`]: `g ← g / keep` where
/// the element passed, 0 elsewhere (libtorch's `masked_fill_(h <= 0, 0)`
/// and `mul_(1 / keep)`, the same floats).
pub fn relu_dropout_backward(g: &mut [f32], mask: &Mask, keep: f64) {
    assert_eq!(g.len(), mask.len, "gradient and mask sizes");
    let scale = (1.0 / keep) as f32;
    g.par_chunks_mut(CHUNK).zip(mask.bits.par_chunks(CHUNK / 64)).for_each(|(gs, words)| {
        vectorized(
            #[inline(always)]
            || {
                for (gw, &word) in gs.chunks_mut(64).zip(words) {
                    for (b, v) in gw.iter_mut().enumerate() {
                        *v = if word >> b & 1 == 1 { if scale == 1.0 { *v } else { *v * scale } } else { 0.0 };
                    }
                }
            },
        )
    });
}

/// Rows of `a` and `b` summed by one task of [`transposed_product`]; the
/// partial sums are added in this fixed order, so the floats do not depend
/// on the thread count.
const PRODUCT_ROWS: usize = 512;

/// `aᵀ · b` for row-major `a` `[n, h]` and `b` `[n, c]`: the `[h, c]`
/// gradient of a layer's weights (`dW1 = Hdᵀ · dP`), a sum over all `n`
/// rows. libtorch (MKL) splits that sum between its threads, so its floats
/// change with the thread count; here each block of `PRODUCT_ROWS` rows
/// is summed in row order, and the blocks' sums are added in block order:
/// the same floats whatever the thread count or vector width (20ng's
/// `[61603, 200]ᵀ · [61603, 20]`: 8.7 ms against MKL's 5.9 ms here).
pub fn transposed_product(a: &[f32], b: &[f32], n: usize, h: usize, c: usize) -> Vec<f32> {
    assert!(a.len() == n * h && b.len() == n * c, "aᵀ·b: a is [n, h] and b is [n, c]");
    if h == 0 || c == 0 {
        return vec![0.0; h * c];
    }
    let cp = c.next_multiple_of(LANES);
    let block = |(a, b): (&[f32], &[f32])| transposed_product_block(a, b, h, c);
    // Two blocks or fewer are summed here: waking the pool costs more.
    let partials: Vec<Vec<f32>> = if n <= 2 * PRODUCT_ROWS { a.chunks(PRODUCT_ROWS * h).zip(b.chunks(PRODUCT_ROWS * c)).map(block).collect() } else { a.par_chunks(PRODUCT_ROWS * h).zip(b.par_chunks(PRODUCT_ROWS * c)).map(block).collect() };
    let mut out = vec![0f32; h * c];
    for p in &partials {
        for (o, x) in out.chunks_exact_mut(c).zip(p.chunks_exact(cp)) {
            for (o, &x) in o.iter_mut().zip(x) {
                *o += x;
            }
        }
    }
    out
}

/// The padding of `b`'s rows in [`transposed_product`]: a multiple of
/// every vector width (16 floats in AVX-512).
const LANES: usize = 16;

/// Rows of `aᵀ·b` whose vectors of sums [`ProductBlock`] keeps in
/// registers while it walks the rows.
const TILE: usize = 8;

/// `aᵀ·b` of one block of rows, `[h, cp]` with `cp` the next multiple of
/// [`LANES`] from `c` (the padding columns are zero): `b`'s rows are
/// copied with their columns padded to `cp`, then [`ProductBlock`] runs
/// with the widest vectors the CPU has.
fn transposed_product_block(a: &[f32], b: &[f32], h: usize, c: usize) -> Vec<f32> {
    let cp = c.next_multiple_of(LANES);
    let mut bp = vec![0f32; b.len() / c * cp];
    for (d, s) in bp.chunks_exact_mut(cp).zip(b.chunks_exact(c)) {
        d[..c].copy_from_slice(s);
    }
    let mut acc = vec![0f32; h * cp];
    let op = ProductBlock { a, bp: &bp, h, cp, acc: &mut acc };
    #[cfg(target_arch = "x86_64")]
    {
        if let Some(simd) = pulp::x86::V4::try_new() {
            pulp::Simd::vectorize(simd, op);
            return acc;
        }
        if let Some(simd) = pulp::x86::V3::try_new() {
            pulp::Simd::vectorize(simd, op);
            return acc;
        }
    }
    pulp::Simd::vectorize(pulp::Scalar::new(), op);
    acc
}

/// One block of [`transposed_product`] for a vector type: each tile of
/// [`TILE`] rows × one vector of columns of `aᵀ·bp` is a walk over the
/// block's rows with the tile's sums in registers, one broadcast of
/// `a[r, k]` and one fused multiply-add per element. Every element of the
/// result is a chain of FMAs over the rows in order, so the floats are the
/// same whatever the vector width (the scalar build computes each FMA
/// exactly too).
struct ProductBlock<'a> {
    a: &'a [f32],
    bp: &'a [f32],
    h: usize,
    cp: usize,
    acc: &'a mut [f32],
}

impl pulp::WithSimd for ProductBlock<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let ProductBlock { a, bp, h, cp, acc } = self;
        let w = S::F32_LANES;
        for j in (0..cp).step_by(w) {
            let mut k0 = 0;
            while k0 + TILE <= h {
                let sums = product_tile::<S, TILE>(simd, a, bp, h, cp, k0, j);
                for (t, s) in sums.into_iter().enumerate() {
                    simd.partial_store_f32s(&mut acc[(k0 + t) * cp + j..][..w], s);
                }
                k0 += TILE;
            }
            for k in k0..h {
                let [s] = product_tile::<S, 1>(simd, a, bp, h, cp, k, j);
                simd.partial_store_f32s(&mut acc[k * cp + j..][..w], s);
            }
        }
    }
}

/// Rows `k0..k0 + T` of `aᵀ·bp` at columns `j..j + S::F32_LANES`.
#[inline(always)]
fn product_tile<S: pulp::Simd, const T: usize>(simd: S, a: &[f32], bp: &[f32], h: usize, cp: usize, k0: usize, j: usize) -> [S::f32s; T] {
    let w = S::F32_LANES;
    let mut sums = [simd.splat_f32s(0.0); T];
    for (ar, br) in a.chunks_exact(h).zip(bp.chunks_exact(cp)) {
        let y = simd.partial_load_f32s(&br[j..j + w]);
        let x: &[f32; T] = ar[k0..k0 + T].try_into().expect("T floats");
        for t in 0..T {
            sums[t] = simd.mul_add_f32s(simd.splat_f32s(x[t]), y, sums[t]);
        }
    }
    sums
}

/// Adam's constants for one step, in TensorFlow's formulation (bias
/// correction folded into the step size, epsilon added to the root).
#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    /// `1 - β1`, the weight of the new gradient in the first moment.
    pub w1: f32,
    /// `1 - β2`, the weight of the squared gradient in the second moment.
    pub w2: f32,
    /// The step size with the bias correction folded in.
    pub lr_t: f32,
    /// Added to the root of the second moment.
    pub eps: f32,
}

/// Runs `f` compiled for AVX-512 or AVX2 where the CPU has them (pulp's
/// run-time dispatch; `f` must be `#[inline(always)]`), else as built.
#[inline(always)]
fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if let Some(simd) = pulp::x86::V4::try_new() {
            return simd.vectorize(f);
        }
        if let Some(simd) = pulp::x86::V3::try_new() {
            return simd.vectorize(f);
        }
    }
    f()
}

/// Linear interpolation `a + w · (b - a)` as libtorch computes it for a
/// weight below one half (`lerp_`, vectorised: one fused multiply-add).
#[inline(always)]
fn lerp(a: f32, b: f32, w: f32) -> f32 {
    w.mul_add(b - a, a)
}

/// One Adam update of `w` in place from gradient `g`, with moments `m`
/// and `v`, in one pass: libtorch's `m.lerp_(g, 1-β1)`,
/// `v.lerp_(g², 1-β2)`, `w -= lr_t · m / (√v + ε)` without its three
/// temporaries. The moments are the same floats; a few weights differ
/// from libtorch's by a unit in the last place of the update's operands
/// (tested).
pub fn adam(w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: AdamStep) {
    assert!(w.len() == g.len() && g.len() == m.len() && m.len() == v.len(), "Adam's tensors differ in size");
    w.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)).zip(m.par_chunks_mut(CHUNK)).zip(v.par_chunks_mut(CHUNK)).for_each(|(((w, g), m), v)| {
        vectorized(
            #[inline(always)]
            || adam_run(w, g, m, v, c),
        )
    });
}

/// [`adam`] on one chunk. `#[inline(always)]`: compiled into each
/// [`vectorized`] build.
#[inline(always)]
fn adam_run(w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: AdamStep) {
    for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        *m = lerp(*m, g, c.w1);
        *v = lerp(*v, g * g, c.w2);
        *w -= *m / (v.sqrt() + c.eps) * c.lr_t;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

    fn floats(t: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()
    }

    /// `aᵀ·b` equals a sum in f64 to float precision, and has the same bits
    /// on one thread, on three, and compiled without SIMD (the scalar path
    /// this machine would take without AVX).
    #[test]
    fn transposed_product_is_exact_and_independent_of_threads() {
        let (n, h, c) = (2 * PRODUCT_ROWS + 77, 13, 5);
        let mut state = 1u64;
        let mut next = || {
            state = mix(state);
            // A quarter of `a` is zero, as after ReLU and dropout.
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * if state & 3 == 0 { 0.0 } else { 1.0 }
        };
        let a: Vec<f32> = (0..n * h).map(|_| next()).collect();
        let b: Vec<f32> = (0..n * c).map(|_| next()).collect();
        let got = transposed_product(&a, &b, n, h, c);
        // Two blocks or fewer are summed without the pool: the same floats.
        let m = 2 * PRODUCT_ROWS;
        let head = transposed_product(&a[..m * h], &b[..m * c], m, h, c);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let halves: Vec<Vec<f32>> = pool.install(|| [0, PRODUCT_ROWS].par_iter().map(|&r| transposed_product(&a[r * h..(r + PRODUCT_ROWS) * h], &b[r * c..(r + PRODUCT_ROWS) * c], PRODUCT_ROWS, h, c)).collect());
        assert_eq!(head, halves[0].iter().zip(&halves[1]).map(|(x, y)| x + y).collect::<Vec<_>>(), "two blocks");
        for k in 0..h {
            for j in 0..c {
                let want: f64 = (0..n).map(|r| a[r * h + k] as f64 * b[r * c + j] as f64).sum();
                assert!((got[k * c + j] as f64 - want).abs() < 1e-4, "({k}, {j}): {} vs {want}", got[k * c + j]);
            }
        }
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            assert_eq!(pool.install(|| transposed_product(&a, &b, n, h, c)), got, "{threads} threads");
        }
        // Every build this CPU runs (AVX-512, AVX2), and the scalar one.
        let build = |run: &dyn Fn(ProductBlock)| {
            let mut sum = vec![0f32; h * c];
            for (ab, bb) in a.chunks(PRODUCT_ROWS * h).zip(b.chunks(PRODUCT_ROWS * c)) {
                let cp = c.next_multiple_of(LANES);
                let mut bp = vec![0f32; bb.len() / c * cp];
                for (d, s) in bp.chunks_exact_mut(cp).zip(bb.chunks_exact(c)) {
                    d[..c].copy_from_slice(s);
                }
                let mut acc = vec![0f32; h * cp];
                run(ProductBlock { a: ab, bp: &bp, h, cp, acc: &mut acc });
                for (o, x) in sum.chunks_exact_mut(c).zip(acc.chunks_exact(cp)) {
                    for (o, &x) in o.iter_mut().zip(x) {
                        *o += x;
                    }
                }
            }
            sum
        };
        let scalar = build(&|op| pulp::Simd::vectorize(pulp::Scalar::new(), op));
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(simd) = pulp::x86::V4::try_new() {
                assert_eq!(build(&|op| pulp::Simd::vectorize(simd, op)), scalar, "AVX-512 and scalar builds");
            }
            if let Some(simd) = pulp::x86::V3::try_new() {
                assert_eq!(build(&|op| pulp::Simd::vectorize(simd, op)), scalar, "AVX2 and scalar builds");
            }
        }
        assert_eq!(scalar, got, "scalar build and the product");
        assert_eq!(transposed_product(&[], &[], 0, h, c), vec![0.0; h * c]);
    }

    /// The fused ReLU/dropout and its backward give libtorch's floats for
    /// the same mask, and the mask keeps about `keep` of the elements.
    #[test]
    fn relu_dropout_matches_libtorch_ops() {
        let _rng = crate::torch_rng_lock();
        tch::manual_seed(1);
        let (n, h) = (1000i64, 67i64); // not a multiple of 64 or of a chunk
        for keep in [0.5, 0.3, 1.0] {
            let z = Tensor::randn([n, h], (Kind::Float, Device::Cpu));
            let mut fused = floats(&z);
            let mask = relu_dropout(&mut fused, keep, 42);
            // The same mask as a float tensor, applied the libtorch way.
            let keep_all = threshold(keep) >= 1 << 32;
            let kept: Vec<f32> = (0..(n * h) as usize).map(|i| {
                let (a, b) = if keep_all { (true, true) } else { keep_bits(42, i as u64 / 2, threshold(keep)) };
                (if i % 2 == 0 { a } else { b }) as u8 as f32
            }).collect();
            let m = Tensor::from_slice(&kept).reshape([n, h]);
            let mut want = z.relu();
            let _ = want.g_mul_(&m);
            if keep != 1.0 {
                let _ = want.g_mul_scalar_(1.0 / keep);
            }
            assert_eq!(fused.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), floats(&want).iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "keep {keep}");
            for (i, v) in fused.iter().enumerate() {
                assert_eq!(mask.get(i), *v > 0.0, "mask bit {i}");
            }
            let rate = kept.iter().sum::<f32>() as f64 / (n * h) as f64;
            assert!((rate - keep).abs() < 0.01, "keep {keep}: kept {rate}");
            // Backward: masked where the activation is not positive, scaled.
            let g = Tensor::randn([n, h], (Kind::Float, Device::Cpu));
            let mut fused_g = floats(&g);
            relu_dropout_backward(&mut fused_g, &mask, keep);
            let mut want_g = g.copy();
            let _ = want_g.masked_fill_(&want.le(0.0), 0.0);
            if keep != 1.0 {
                let _ = want_g.g_mul_scalar_(1.0 / keep);
            }
            assert_eq!(fused_g.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), floats(&want_g).iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "backward, keep {keep}");
        }
    }

    /// Masks of different seeds differ; a seed's mask is the same each time
    /// and does not depend on the thread count (chunks are fixed).
    #[test]
    fn masks_are_seeded() {
        let mut a = vec![1f32; 200_003];
        let mut b = a.clone();
        let mut c = a.clone();
        let ma = relu_dropout(&mut a, 0.5, 7);
        let mb = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(|| relu_dropout(&mut b, 0.5, 7));
        let mc = relu_dropout(&mut c, 0.5, 8);
        assert_eq!(ma.bits, mb.bits);
        assert_ne!(ma.bits, mc.bits);
        assert!((ma.count() as f64 / 200_003.0 - 0.5).abs() < 0.01);
    }

    /// The fused Adam update gives the floats of the libtorch operations
    /// it replaces (those of `model::Adam::step`).
    #[test]
    fn adam_matches_libtorch_ops() {
        let _rng = crate::torch_rng_lock();
        tch::manual_seed(2);
        let shape = [513i64, 37];
        let w = Tensor::randn(shape, (Kind::Float, Device::Cpu));
        let mut m = Tensor::randn(shape, (Kind::Float, Device::Cpu)) * 0.01;
        let mut v = Tensor::rand(shape, (Kind::Float, Device::Cpu)) * 0.001;
        let (mut fm, mut fv) = (floats(&m), floats(&v));
        let mut w = w;
        for t in 1..=3 {
            let g = Tensor::randn(shape, (Kind::Float, Device::Cpu)) * 0.1;
            let lr_t = 0.02 * (1.0 - 0.999f64.powi(t)).sqrt() / (1.0 - 0.9f64.powi(t));
            // libtorch, as model::Adam::step does it.
            let _ = m.lerp_(&g, 1.0 - 0.9);
            let _ = v.lerp_(&g.square(), 1.0 - 0.999);
            let mut denom = v.sqrt();
            let _ = denom.g_add_scalar_(1e-8);
            let mut upd = &m / &denom;
            let _ = upd.g_mul_scalar_(lr_t);
            // Each step from libtorch's weights (the moments are equal).
            let before = floats(&w);
            let mut fw = before.clone();
            let _ = w.g_sub_(&upd);
            adam(&mut fw, &floats(&g), &mut fm, &mut fv, AdamStep { w1: (1.0 - 0.9f64) as f32, w2: (1.0 - 0.999f64) as f32, lr_t: lr_t as f32, eps: 1e-8 });
            for (name, ours, theirs) in [("m", &fm, &m), ("v", &fv, &v)] {
                assert_eq!(ours.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), floats(theirs).iter().map(|x| x.to_bits()).collect::<Vec<_>>(), "{name} after step {t}");
            }
            // The weights: exactly the float formula, each operation rounded
            // as IEEE 754 says (square root and division included), whatever
            // SIMD build ran.
            for i in 0..fw.len() {
                let want = before[i] - fm[i] / (fv[i].sqrt() + 1e-8f32) * lr_t as f32;
                assert_eq!(fw[i].to_bits(), want.to_bits(), "w after step {t} at {i}: {} vs {want}", fw[i]);
            }
            // libtorch's floats: within a few units in the last place of
            // the update. Its float square root is not correctly rounded on
            // every CPU (on the AMD EPYC hosts, sqrt(2.5293144e-4) comes
            // out one unit above IEEE's), and an update whose denominator
            // is one unit off is up to about three units off.
            let theirs = floats(&w);
            let upd = floats(&upd);
            let mut differ = 0;
            for i in 0..fw.len() {
                let bound = (before[i].abs() + 4.0 * upd[i].abs()) * f32::EPSILON;
                assert!((fw[i] - theirs[i]).abs() <= bound, "w after step {t} at {i}: {} vs libtorch's {}", fw[i], theirs[i]);
                differ += (fw[i] != theirs[i]) as usize;
            }
            assert!(differ * 100 < fw.len(), "w after step {t}: {differ} floats differ");
        }
    }
}
