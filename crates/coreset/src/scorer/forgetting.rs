//! Forgetting events (Toneva et al., ICLR 2019).

use candle_core::{DType, Tensor};
use quarc_base::Progress;

use crate::{Error, Needs, Result, ScoreInput, Scorer, StateRecord};

/// Counts, per sample, how often a correct prediction turned incorrect on a later training
/// batch ([`Scorer::observe`] on every training batch). Score: the number of forgetting events;
/// samples never predicted correctly score `observations + 1`, above any sample that was learned
/// (Toneva et al. treat them as forgotten infinitely often). Samples never observed score 0.
#[derive(Clone, Debug)]
pub struct Forgetting {
    last_correct: Vec<bool>,
    learned: Vec<bool>,
    events: Vec<u32>,
    observations: Vec<u32>,
}

impl Forgetting {
    /// A tracker for a data set of `num_samples` samples.
    pub fn new(num_samples: usize) -> Result<Self> {
        if num_samples == 0 {
            return Err(Error::Empty("forgetting tracker for an empty data set".into()));
        }
        Ok(Self {
            last_correct: vec![false; num_samples],
            learned: vec![false; num_samples],
            events: vec![0; num_samples],
            observations: vec![0; num_samples],
        })
    }

    fn check(&self, indices: &[usize]) -> Result<()> {
        let n = self.events.len();
        match indices.iter().find(|&&i| i >= n) {
            Some(&index) => Err(Error::IndexOutOfRange { index, num_samples: n }),
            None => Ok(()),
        }
    }

    /// Every sample's score, by dataset index (see the type's docs).
    pub fn scores(&self) -> Vec<f32> {
        (0..self.events.len()).map(|i| self.score_of(i)).collect()
    }

    fn score_of(&self, i: usize) -> f32 {
        if self.learned[i] || self.observations[i] == 0 {
            self.events[i] as f32
        } else {
            (self.observations[i] + 1) as f32
        }
    }

    /// Forgetting events of sample `i`.
    pub fn events(&self, i: usize) -> Option<u32> {
        self.events.get(i).copied()
    }
}

fn as_f32<T: Copy + Into<f64>>(v: &[T]) -> Vec<f32> {
    v.iter().map(|&x| x.into() as f32).collect()
}

impl Scorer for Forgetting {
    fn name(&self) -> String {
        "forgetting".into()
    }
    fn needs(&self) -> Needs {
        Needs {
            labels: true,
            observe_training: true,
            ..Needs::default()
        }
    }
    fn observe(&mut self, input: &ScoreInput<'_>, _p: &Progress) -> Result<()> {
        self.check(input.indices)?;
        let pred = input.student.logits.argmax(1)?.to_dtype(DType::U32)?.to_vec1::<u32>()?;
        let labels = input.labels_vec()?;
        for ((&i, p), y) in input.indices.iter().zip(pred).zip(labels) {
            let correct = p == y;
            if self.last_correct[i] && !correct {
                self.events[i] += 1;
            }
            self.last_correct[i] = correct;
            self.learned[i] |= correct;
            self.observations[i] += 1;
        }
        Ok(())
    }
    fn score(&mut self, input: &ScoreInput<'_>, _p: &Progress) -> Result<Tensor> {
        self.check(input.indices)?;
        let v: Vec<f32> = input.indices.iter().map(|&i| self.score_of(i)).collect();
        Ok(Tensor::from_vec(v, input.indices.len(), input.student.logits.device())?)
    }
    fn state(&self) -> StateRecord {
        let mut r = StateRecord::default();
        r.entries.insert(
            "last_correct".into(),
            self.last_correct.iter().map(|&b| b as u8 as f32).collect(),
        );
        r.entries
            .insert("learned".into(), self.learned.iter().map(|&b| b as u8 as f32).collect());
        r.entries.insert("events".into(), as_f32(&self.events));
        r.entries.insert("observations".into(), as_f32(&self.observations));
        r
    }
    fn load_state(&mut self, state: &StateRecord) -> Result<()> {
        let n = self.events.len();
        let get = |k: &str| -> Result<&Vec<f32>> {
            let v = state
                .entries
                .get(k)
                .ok_or_else(|| Error::InvalidConfig(format!("forgetting state lacks `{k}`")))?;
            if v.len() != n {
                return Err(Error::ShapeMismatch {
                    context: format!("forgetting state `{k}`"),
                    expected: vec![n],
                    got: vec![v.len()],
                });
            }
            Ok(v)
        };
        let (lc, le, ev, ob) = (
            get("last_correct")?,
            get("learned")?,
            get("events")?,
            get("observations")?,
        );
        self.last_correct = lc.iter().map(|&x| x != 0.0).collect();
        self.learned = le.iter().map(|&x| x != 0.0).collect();
        self.events = ev.iter().map(|&x| x as u32).collect();
        self.observations = ob.iter().map(|&x| x as u32).collect();
        Ok(())
    }
}
