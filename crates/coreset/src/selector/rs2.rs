//! RS2: repeated random sampling without replacement (Okanovic et al. 2023).

use quarc_base::{SplitMix64, mix};

use super::base::check_k;
use crate::{Result, SelectContext, Selector};

/// A fresh random subset at every selection, drawn **without replacement across selections**:
/// the candidates are walked through in a seeded random order, `k` at a time, so a data set of
/// `n` is seen whole every `⌈n / k⌉` selections before any sample repeats; then a new order
/// starts. The last chunk of an order is topped up from the start of the same order, so a
/// selection never holds a sample twice.
///
/// Stateless: the subset is a pure function of `(seed, epoch, candidates)`, so a resumed run
/// draws what an uninterrupted one would. Wrap it in [`crate::ClassBalanced`] for per-class
/// budgets (the `rs2` preset does), with the schedule re-selecting every epoch.
///
/// ```
/// use quarc_coreset::{Rs2, SelectContext, Selector};
/// let candidates: Vec<usize> = (0..10).collect();
/// let mut seen = std::collections::BTreeSet::new();
/// for epoch in 0..4 {                        // ⌈10 / 3⌉ = 4 selections cover all ten
///     let ctx = SelectContext { seed: 1, epoch };
///     seen.extend(Rs2.choose(&candidates, &[0.0; 10], 3, &ctx)?);
/// }
/// assert_eq!(seen.len(), 10);
/// # Ok::<(), quarc_coreset::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Rs2;

impl Selector for Rs2 {
    fn name(&self) -> String {
        "rs2".into()
    }
    fn choose(&self, candidates: &[usize], scores: &[f32], k: usize, ctx: &SelectContext) -> Result<Vec<usize>> {
        check_k(k, candidates.len(), scores.len())?;
        let n = candidates.len();
        if k == 0 {
            return Ok(Vec::new());
        }
        let per_round = n.div_ceil(k);
        let (round, slot) = (ctx.epoch / per_round, ctx.epoch % per_round);
        let order = shuffled(candidates, ctx.seed, round);
        let start = slot * k;
        let mut chosen: Vec<usize> = order[start..(start + k).min(n)].to_vec();
        let missing = k - chosen.len();
        chosen.extend_from_slice(&order[..missing]); // disjoint from the tail since k ≤ n
        Ok(chosen)
    }
}

/// The candidates in the random order of `round` (full Fisher–Yates), independent per candidate set.
fn shuffled(candidates: &[usize], seed: u64, round: usize) -> Vec<usize> {
    let stream = mix(round as u64 ^ 0x5253_325F_524F_554E) ^ candidates.first().map_or(0, |&c| mix(c as u64 + 11));
    let mut rng = SplitMix64::derive(seed, stream);
    let mut order = candidates.to_vec();
    rng.shuffle(&mut order);
    order
}
