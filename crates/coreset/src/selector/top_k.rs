//! Global top-k.

use super::base::{by_score, check_k};
use crate::{Direction, Result, SelectContext, Selector};

/// Keeps the `k` highest (or lowest) scores; ties broken by ascending dataset index, so the
/// result is deterministic. O(N) partial selection plus O(k log k).
#[derive(Clone, Copy, Debug, Default)]
pub struct TopK {
    /// Which end to keep.
    pub direction: Direction,
}

impl TopK {
    /// Keeps the highest scores.
    pub fn highest() -> Self {
        Self {
            direction: Direction::KeepHighest,
        }
    }
    /// Keeps the lowest scores.
    pub fn lowest() -> Self {
        Self {
            direction: Direction::KeepLowest,
        }
    }
}

impl Selector for TopK {
    fn name(&self) -> String {
        "top_k".into()
    }
    fn choose(&self, candidates: &[usize], scores: &[f32], k: usize, _ctx: &SelectContext) -> Result<Vec<usize>> {
        check_k(k, candidates.len(), scores.len())?;
        if k == 0 {
            return Ok(Vec::new());
        }
        let mut pos: Vec<usize> = (0..candidates.len()).collect();
        let cmp = by_score(self.direction, candidates, scores);
        if k < pos.len() {
            pos.select_nth_unstable_by(k - 1, &cmp);
            pos.truncate(k);
        }
        Ok(pos.into_iter().map(|p| candidates[p]).collect())
    }
}
