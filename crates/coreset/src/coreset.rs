//! The `Coreset` orchestrator: scorer + selector + schedule + budget, called from a user's loop.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use candle_core::DType;
use quarc_base::Progress;
use serde::{Deserialize, Serialize};

use crate::state::{Reader, f32_raw, read_bytes, u32_raw, write};
use crate::{
    Budget, CandidatePool, Error, Needs, Result, ScoreInput, ScoreTable, Scorer, SelectContext, Selection,
    SelectionSchedule, Selector, StateRecord,
};

/// What happened at one selection, for reports (selection cost against training cost).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SelectionRecord {
    /// Epoch of the selection.
    pub epoch: usize,
    /// Mixing weights in force (e.g. `beta`).
    pub mixing_weights: Vec<(String, f64)>,
    /// Number of selected samples.
    pub size: usize,
    /// The selected dataset indices (sorted). Saved as a tensor of its own by
    /// [`Coreset::save_state`], not in the JSON history.
    #[serde(skip)]
    pub indices: Vec<usize>,
    /// Seconds from `begin_scoring` to the end of the last `feed` (the scoring pass, including
    /// the caller's forward passes).
    pub scoring_secs: f64,
    /// Seconds spent combining scores and selecting.
    pub selection_secs: f64,
    /// Samples scored for this selection: the candidate pool's size, or the data set's
    /// (0 for a selection without a scoring pass).
    #[serde(default)]
    pub scored: usize,
}

/// Ties a [`Scorer`], a [`Selector`], a [`SelectionSchedule`] and a [`Budget`] together.
///
/// A training loop asks [`Coreset::needs_scoring`] at the start of each epoch; if so it calls
/// [`Coreset::begin_scoring`], feeds every batch of the full data set (eval mode, deterministic
/// preprocessing) to [`Coreset::feed`], and trains the epoch on [`Coreset::select`]'s indices.
/// See the crate docs for a complete loop.
pub struct Coreset {
    scorer: Box<dyn Scorer>,
    selector: Box<dyn Selector>,
    schedule: SelectionSchedule,
    budget: Budget,
    seed: u64,
    labels: Vec<u32>,
    num_classes: usize,
    table: Option<ScoreTable>,
    pool: Option<CandidatePool>,
    /// The pass's candidates (sorted dataset indices) and each dataset index's row in the
    /// table (`usize::MAX` outside the pool), when a pool is in force.
    candidates: Option<(Vec<usize>, Vec<usize>)>,
    pass: Option<(Progress, Instant, f64)>,
    current: Option<Selection>,
    history: Vec<SelectionRecord>,
}

const FORMAT: &str = "quarc-coreset-state/1";

impl Coreset {
    /// A coreset over a data set with the given labels (`labels[i]` for dataset index `i`).
    pub fn new(
        scorer: Box<dyn Scorer>,
        selector: Box<dyn Selector>,
        schedule: SelectionSchedule,
        budget: Budget,
        labels: Vec<u32>,
        num_classes: usize,
        seed: u64,
    ) -> Result<Self> {
        budget.validate(labels.len())?;
        if let Some((index, &label)) = labels.iter().enumerate().find(|(_, l)| **l as usize >= num_classes) {
            return Err(Error::LabelOutOfRange {
                label,
                index,
                num_classes,
            });
        }
        Ok(Self {
            scorer,
            selector,
            schedule,
            budget,
            seed,
            labels,
            num_classes,
            table: None,
            pool: None,
            candidates: None,
            pass: None,
            current: None,
            history: Vec::new(),
        })
    }

    /// Scores only a fresh random candidate pool at each selection (see [`CandidatePool`]).
    /// Errors for a scorer whose combination needs every sample of the pass
    /// ([`Needs::whole_pass`]).
    pub fn with_candidate_pool(mut self, pool: CandidatePool) -> Result<Self> {
        pool.validate()?;
        if self.needs().whole_pass {
            return Err(Error::InvalidConfig(format!(
                "scorer `{}` combines over every sample of a pass and cannot score a candidate pool",
                self.scorer.name()
            )));
        }
        self.pool = Some(pool);
        Ok(self)
    }

    /// The dataset indices the current scoring pass must feed (sorted), or `None` for all of
    /// them.
    pub fn scoring_indices(&self) -> Option<&[usize]> {
        self.candidates.as_ref().map(|(c, _)| c.as_slice())
    }

    /// What the scorer needs from the loop.
    pub fn needs(&self) -> Needs {
        self.scorer.needs()
    }

    /// Number of samples in the data set.
    pub fn num_samples(&self) -> usize {
        self.labels.len()
    }

    /// Whether `epoch` needs a scoring pass (a selection epoch, or no selection yet).
    pub fn needs_scoring(&self, epoch: usize) -> bool {
        self.schedule.is_selection_epoch(epoch) || self.current.is_none()
    }

    /// Starts a scoring pass at `progress`; with a candidate pool, draws the pool the pass
    /// must feed ([`Coreset::scoring_indices`]).
    pub fn begin_scoring(&mut self, progress: Progress) -> Result<()> {
        self.start_pass(progress, true)
    }

    fn start_pass(&mut self, progress: Progress, pooled: bool) -> Result<()> {
        self.candidates = match (pooled, self.pool) {
            (true, Some(pool)) => pool
                .draw(&self.labels, self.budget, self.seed, progress.epoch)?
                .map(|c| {
                    let mut row = vec![usize::MAX; self.labels.len()];
                    c.iter().enumerate().for_each(|(r, &i)| row[i] = r);
                    (c, row)
                }),
            _ => None,
        };
        let rows = self.scoring_indices().map_or(self.labels.len(), <[usize]>::len);
        self.table = Some(ScoreTable::new(rows, self.scorer.columns())?);
        self.pass = Some((progress, Instant::now(), 0.0));
        tracing::debug!(epoch = progress.epoch, samples = rows, scorer = %self.scorer.name(), "scoring pass started");
        Ok(())
    }

    /// The table rows of `indices`: the indices themselves, or their pool positions.
    fn rows_of(&self, indices: &[usize]) -> Result<Vec<usize>> {
        let Some((_, row)) = &self.candidates else {
            return Ok(indices.to_vec());
        };
        indices
            .iter()
            .map(|&i| match row.get(i) {
                Some(&r) if r != usize::MAX => Ok(r),
                _ => Err(Error::NotInPool { index: i }),
            })
            .collect()
    }

    /// Scores one batch of the pass.
    pub fn feed(&mut self, input: &ScoreInput<'_>) -> Result<()> {
        let (progress, started, _) = self.pass.ok_or(Error::NoScores)?;
        input.validate(self.labels.len(), self.num_classes)?;
        if self.needs().reference && input.reference.is_none() {
            return Err(Error::MissingInput {
                scorer: self.scorer.name(),
                what: "the full-precision reference outputs".into(),
            });
        }
        let scores = self.scorer.score(input, &progress)?.to_dtype(DType::F32)?;
        let b = input.len();
        let c = self.scorer.columns().len();
        let expected: &[usize] = if c == 1 && scores.rank() == 1 { &[b] } else { &[b, c] };
        if scores.dims() != expected {
            return Err(Error::ShapeMismatch {
                context: format!("scores of `{}`", self.scorer.name()),
                expected: expected.to_vec(),
                got: scores.dims().to_vec(),
            });
        }
        let flat = scores.flatten_all()?.to_vec1::<f32>()?;
        let rows = self.rows_of(input.indices)?;
        let recorded = self.table.as_mut().ok_or(Error::NoScores)?.record(&rows, &flat);
        if let (Err(Error::DuplicateIndex { index: row }), Some((pool, _))) = (&recorded, &self.candidates) {
            // Name the dataset index, not its row in the pool's table.
            return Err(Error::DuplicateIndex {
                index: pool.get(*row).copied().unwrap_or(*row),
            });
        }
        recorded?;
        self.pass = Some((progress, started, started.elapsed().as_secs_f64()));
        Ok(())
    }

    /// A selection at `progress` with no scoring pass, for scorers whose scores depend on the
    /// dataset index alone ([`Needs::index_only`]: random, `random_resample`, `rs2`): the loop
    /// runs no forward pass over the data set. Errors for any other scorer.
    pub fn select_without_pass(&mut self, progress: Progress) -> Result<&Selection> {
        if !self.needs().index_only {
            return Err(Error::MissingInput {
                scorer: self.scorer.name(),
                what: "a scoring pass over the data set (its scores read model outputs)".into(),
            });
        }
        self.start_pass(progress, false)?;
        let indices: Vec<usize> = (0..self.labels.len()).collect();
        let scores = self
            .scorer
            .score_indices(&indices, &progress)
            .ok_or_else(|| Error::MissingInput {
                scorer: self.scorer.name(),
                what: "a score for every dataset index (needs() says index_only, but score_indices gave none: given scores shorter than the data set?)".into(),
            })?;
        self.table.as_mut().ok_or(Error::NoScores)?.record(&indices, &scores)?;
        self.select()?;
        if let Some(r) = self.history.last_mut() {
            r.scored = 0; // no forward pass ran
        }
        self.current.as_ref().ok_or(Error::NoScores)
    }

    /// Passes a training batch to scorers that observe training (forgetting).
    pub fn observe(&mut self, input: &ScoreInput<'_>, progress: &Progress) -> Result<()> {
        if self.needs().observe_training {
            input.validate(self.labels.len(), self.num_classes)?;
            self.scorer.observe(input, progress)?;
        }
        Ok(())
    }

    /// Ends the pass: combines the scores, selects, records, and returns the subset. With a
    /// candidate pool the selector sees the pool alone, with the budget's share of each class.
    pub fn select(&mut self) -> Result<&Selection> {
        let (progress, _, scoring_secs) = self.pass.ok_or(Error::NoScores)?;
        let table = self.table.as_ref().ok_or(Error::NoScores)?;
        table.ensure_complete()?;
        let t0 = Instant::now();
        let candidates = self.scoring_indices();
        let pool_labels: Option<Vec<u32>> = candidates.map(|c| c.iter().map(|&i| self.labels[i]).collect());
        let labels = pool_labels.as_deref().unwrap_or(&self.labels);
        let scores = self.scorer.combine(&table.columns(), labels, &progress)?;
        if scores.len() != labels.len() {
            return Err(Error::ShapeMismatch {
                context: "combined scores".into(),
                expected: vec![labels.len()],
                got: vec![scores.len()],
            });
        }
        let ctx = SelectContext {
            seed: self.seed,
            epoch: progress.epoch,
        };
        let selection = match (candidates, self.pool) {
            (Some(c), Some(pool)) => {
                let budget = pool.budget_within(self.budget, self.labels.len(), c.len());
                let local = self.selector.select(&scores, labels, budget, &ctx)?;
                let indices = local.indices.iter().map(|&r| {
                    c.get(r).copied().ok_or(Error::IndexOutOfRange {
                        index: r,
                        num_samples: c.len(),
                    })
                });
                Selection {
                    indices: indices.collect::<Result<_>>()?,
                }
            }
            _ => self.selector.select(&scores, labels, self.budget, &ctx)?,
        };
        self.history.push(SelectionRecord {
            epoch: progress.epoch,
            mixing_weights: self.scorer.mixing_weights(&progress),
            size: selection.len(),
            indices: selection.indices.clone(),
            scoring_secs,
            selection_secs: t0.elapsed().as_secs_f64(),
            scored: table.num_samples(),
        });
        self.pass = None;
        self.candidates = None;
        if let Some(r) = self.history.last() {
            tracing::info!(
                epoch = r.epoch,
                size = r.size,
                of = self.labels.len(),
                scored = r.scored,
                scoring_secs = r.scoring_secs,
                selection_secs = r.selection_secs,
                mixing = ?r.mixing_weights,
                selector = %self.selector.name(),
                "coreset selected"
            );
        }
        Ok(self.current.insert(selection))
    }

    /// The subset in force.
    pub fn current(&self) -> Option<&Selection> {
        self.current.as_ref()
    }

    /// One record per selection so far.
    pub fn history(&self) -> &[SelectionRecord] {
        &self.history
    }

    /// The raw score table of the last pass (with a candidate pool, row `r` is the pass's
    /// `r`-th candidate in sorted order, not dataset index `r`).
    pub fn table(&self) -> Option<&ScoreTable> {
        self.table.as_ref()
    }

    /// Writes the current selection, the history (with each selection's indices) and the
    /// scorer's state to `path` atomically.
    pub fn save_state(&self, path: impl AsRef<Path>) -> Result<()> {
        let as_u32 = |v: &[usize]| v.iter().map(|&i| i as u32).collect::<Vec<_>>();
        let state = self.scorer.state();
        let mut tensors: Vec<_> = state
            .entries
            .iter()
            .map(|(k, v)| f32_raw(format!("scorer.{k}"), v))
            .collect();
        if let Some(s) = &self.current {
            tensors.push(u32_raw("selection".into(), &as_u32(&s.indices)));
        }
        for (k, rec) in self.history.iter().enumerate() {
            tensors.push(u32_raw(format!("history.{k}"), &as_u32(&rec.indices)));
        }
        let mut meta = HashMap::new();
        meta.insert("quarc.format".into(), FORMAT.into());
        let history = serde_json::to_string(&self.history).map_err(|e| Error::InvalidConfig(e.to_string()))?;
        meta.insert("quarc.history".into(), history);
        write(path.as_ref(), tensors, meta)
    }

    fn read_indices(&self, r: &Reader<'_>, name: &str) -> Result<Vec<usize>> {
        let idx: Vec<usize> = r.u32s(name, None)?.into_iter().map(|i| i as usize).collect();
        if idx.iter().any(|&i| i >= self.labels.len()) || idx.windows(2).any(|w| w[0] >= w[1]) {
            return Err(r.corrupt(format!("`{name}`: indices out of range or not sorted")));
        }
        Ok(idx)
    }

    /// Restores what [`Coreset::save_state`] wrote.
    pub fn load_state(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = read_bytes(path)?;
        let r = Reader::new(path, &bytes)?;
        if r.meta("quarc.format")? != FORMAT {
            return Err(r.corrupt(format!("format tag is not {FORMAT:?}")));
        }
        let mut history: Vec<SelectionRecord> =
            serde_json::from_str(r.meta("quarc.history")?).map_err(|e| r.corrupt(format!("history: {e}")))?;
        for (k, rec) in history.iter_mut().enumerate() {
            rec.indices = self.read_indices(&r, &format!("history.{k}"))?;
        }
        let mut state = StateRecord::default();
        for name in r.names() {
            if let Some(key) = name.strip_prefix("scorer.") {
                state.entries.insert(key.to_string(), r.f32s(&name, None)?);
            }
        }
        let current = if r.names().iter().any(|n| n == "selection") {
            Some(Selection {
                indices: self.read_indices(&r, "selection")?,
            })
        } else {
            None
        };
        self.scorer.load_state(&state)?;
        self.history = history;
        self.current = current;
        Ok(())
    }
}
