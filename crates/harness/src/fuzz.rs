//! A fuzz harness for every parser and loader of quarc: IDX (raw and gzipped), CIFAR-10/100,
//! model checkpoints, integer exports (loaded, then run), `ScoreTable`, coreset state and
//! `TrainConfig` JSON. Each case mutates a valid file (bit flips, interesting integers, cut,
//! grown, spliced) or, one time in eight, is arbitrary bytes; it runs in-process under a panic
//! catcher. Errors are the expected outcome; a panic is a defect. (quarc writes ONNX but has no
//! ONNX reader, so there is nothing to fuzz there.)

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use quarc_coreset::{Coreset, CoresetConfig, ScoreTable};
use quarc_data::{Cifar100Labels, ImageShape, InMemoryDataset, Split};
use quarc_models::{Model, SmallCnn, checkpoint};
use quarc_quant_core::{Progress, QatConfig, SplitMix64, export::IntegerExport, export::LayerKind};
use quarc_train::TrainConfig;

type Run = Box<dyn Fn(&[u8])>;

/// One fuzzed format: a valid example to mutate and what reads it.
pub struct Target {
    /// Short name.
    pub name: &'static str,
    seed: Vec<u8>,
    run: Run,
}

/// What a fuzz run of one target did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// Target name.
    pub name: &'static str,
    /// Cases run.
    pub execs: u64,
    /// Cases that panicked.
    pub panics: u64,
    /// The first panic's message and the case's length.
    pub first_panic: Option<String>,
}

type BoxResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn toy(n: usize, shape: ImageShape, classes: usize) -> BoxResult<InMemoryDataset> {
    let pixels: Vec<u8> = (0..n * shape.len()).map(|i| (i * 37 % 251) as u8).collect();
    let labels: Vec<u32> = (0..n).map(|i| (i % classes) as u32).collect();
    Ok(InMemoryDataset::new(pixels, labels, shape, classes)?)
}

fn gzip(bytes: &[u8]) -> BoxResult<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, bytes)?;
    Ok(enc.finish()?)
}

/// Writes `bytes` to `path` (the loaders read files).
fn put(path: &Path, bytes: &[u8]) {
    let _ = std::fs::write(path, bytes);
}

fn idx_targets(dir: &Path) -> BoxResult<Vec<Target>> {
    let ds = toy(
        6,
        ImageShape {
            channels: 1,
            height: 5,
            width: 4,
        },
        10,
    )?;
    let (img, lab) = (dir.join("i.idx"), dir.join("l.idx"));
    quarc_data::write_idx(&ds, &img, &lab)?;
    let (img_bytes, lab_bytes) = (std::fs::read(&img)?, std::fs::read(&lab)?);
    let labels = lab_bytes.clone();
    let raw: Run = Box::new(move |b| {
        let _ = quarc_data::from_idx_bytes(b, Path::new("i"), &labels, Path::new("l"), 10);
        let _ = quarc_data::parse_labels(b, Path::new("l"));
    });
    let (gz_img, gz_lab) = (dir.join("g.idx.gz"), lab.clone());
    let gz: Run = Box::new(move |b| {
        put(&gz_img, b);
        let _ = quarc_data::load_idx(&gz_img, &gz_lab, 10);
    });
    Ok(vec![
        Target {
            name: "idx",
            seed: img_bytes.clone(),
            run: raw,
        },
        Target {
            name: "idx-gz",
            seed: gzip(&img_bytes)?,
            run: gz,
        },
    ])
}

fn cifar_targets(dir: &Path) -> BoxResult<Vec<Target>> {
    let shape = ImageShape {
        channels: 3,
        height: 32,
        width: 32,
    };
    let (d10, d100) = (dir.join("c10"), dir.join("c100"));
    std::fs::create_dir_all(&d10)?;
    std::fs::create_dir_all(&d100)?;
    let ds = toy(3, shape, 10)?;
    quarc_data::write_cifar10_bin(&ds, &d10.join("test_batch.bin"))?;
    let ds100 = toy(3, shape, 100)?;
    quarc_data::write_cifar100_bin(&ds100, &[1, 2, 3], &d100.join("test.bin"))?;
    let s10 = std::fs::read(d10.join("test_batch.bin"))?;
    let s100 = std::fs::read(d100.join("test.bin"))?;
    let c10: Run = Box::new(move |b| {
        put(&d10.join("test_batch.bin"), b);
        let _ = quarc_data::load_cifar10(&d10, Split::Test);
    });
    let c100: Run = Box::new(move |b| {
        put(&d100.join("test.bin"), b);
        let _ = quarc_data::load_cifar100(&d100, Split::Test, Cifar100Labels::Fine);
    });
    Ok(vec![
        Target {
            name: "cifar10",
            seed: s10,
            run: c10,
        },
        Target {
            name: "cifar100",
            seed: s100,
            run: c100,
        },
    ])
}

/// Runs every layer of a loaded export on an input of the shape its weight implies.
fn run_export(e: &IntegerExport) {
    for l in &e.layers {
        let dims = &l.weight.shape;
        let shape: Vec<usize> = match l.kind {
            LayerKind::Conv2d { groups, .. } if dims.len() == 4 => vec![1, dims[1].saturating_mul(groups), 6, 6],
            _ if dims.len() == 2 => vec![1, dims[1]],
            _ => continue,
        };
        if shape.iter().product::<usize>() > 1 << 20 {
            continue;
        }
        if let Ok(x) = Tensor::ones(shape, DType::F32, &Device::Cpu) {
            let _ = l.forward(&x);
        }
    }
}

fn model_targets(dir: &Path) -> BoxResult<Vec<Target>> {
    let dev = Device::Cpu;
    let (fp, q) = (VarMap::new(), VarMap::new());
    SmallCnn::new(&fp, None, 10, 0, &dev)?;
    let twin = SmallCnn::new(&q, Some(QatConfig::lsq(2, 2)?), 10, 0, &dev)?;
    twin.calibrate(&Tensor::ones((2, 1, 28, 28), DType::F32, &dev)?)?;
    let (ck, ex) = (dir.join("ck.safetensors"), dir.join("ex.safetensors"));
    checkpoint::save(&fp, &ck)?;
    let mut export = twin.export()?;
    export.config = Some(QatConfig::lsq(2, 2)?);
    export.save(&ex)?;
    let (ck_seed, ex_seed) = (std::fs::read(&ck)?, std::fs::read(&ex)?);
    let target = VarMap::new();
    SmallCnn::new(&target, None, 10, 0, &dev)?;
    let ck_run: Run = Box::new(move |b| {
        put(&ck, b);
        let _ = checkpoint::load(&target, &ck);
        let _ = checkpoint::load_with(&target, &ck, checkpoint::LoadMode::Lenient);
    });
    let ex_run: Run = Box::new(move |b| {
        put(&ex, b);
        if let Ok(e) = IntegerExport::load(&ex) {
            run_export(&e);
        }
    });
    Ok(vec![
        Target {
            name: "checkpoint",
            seed: ck_seed,
            run: ck_run,
        },
        Target {
            name: "integer-export",
            seed: ex_seed,
            run: ex_run,
        },
    ])
}

fn coreset_targets(dir: &Path) -> BoxResult<Vec<Target>> {
    let mut table = ScoreTable::new(4, vec!["a".into(), "b".into()])?;
    table.record(&[0, 1, 2, 3], &[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])?;
    let (tp, sp) = (dir.join("table.safetensors"), dir.join("state.safetensors"));
    table.save(&tp)?;
    let labels: Vec<u32> = (0..40).map(|i| i % 4).collect();
    let config = CoresetConfig::preset("random_resample", 0.25, 1)?;
    let mut cs: Coreset = config.build(labels.clone(), 4, 0)?;
    cs.select_without_pass(Progress::new(0, 2))?;
    cs.save_state(&sp)?;
    let (t_seed, s_seed) = (std::fs::read(&tp)?, std::fs::read(&sp)?);
    let t_run: Run = Box::new(move |b| {
        put(&tp, b);
        let _ = ScoreTable::load(&tp);
    });
    let s_run: Run = Box::new(move |b| {
        put(&sp, b);
        if let Ok(mut fresh) = config.build(labels.clone(), 4, 0) {
            let _ = fresh.load_state(&sp);
        }
    });
    let json = serde_json::to_vec_pretty(&TrainConfig::default())?;
    let c_run: Run = Box::new(|b| {
        if let Ok(c) = serde_json::from_slice::<TrainConfig>(b) {
            let _ = c.validate();
            let _ = quarc_train::coreset_config(&c).map(|cc| cc.map(|cc| cc.build(vec![0, 1, 2, 3], 4, 0)));
        }
    });
    Ok(vec![
        Target {
            name: "score-table",
            seed: t_seed,
            run: t_run,
        },
        Target {
            name: "coreset-state",
            seed: s_seed,
            run: s_run,
        },
        Target {
            name: "train-config",
            seed: json,
            run: c_run,
        },
    ])
}

/// Every target, with its files under `dir`.
pub fn targets(dir: &Path) -> BoxResult<Vec<Target>> {
    std::fs::create_dir_all(dir)?;
    let mut t = idx_targets(dir)?;
    t.extend(cifar_targets(dir)?);
    t.extend(model_targets(dir)?);
    t.extend(coreset_targets(dir)?);
    Ok(t)
}

const INTERESTING: [u32; 9] = [0, 1, 2, 0x7f, 0x80, 0xff, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff];

/// One mutation of `seed` (or, one time in eight, arbitrary bytes).
pub fn mutate(rng: &mut SplitMix64, seed: &[u8]) -> Vec<u8> {
    if rng.below(8) == 0 {
        let n = rng.below(2 * seed.len().max(1) + 1);
        return (0..n).map(|_| rng.below(256) as u8).collect();
    }
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = b.len();
        match rng.below(6) {
            0 if len > 0 => {
                let i = rng.below(len);
                b[i] ^= 1 << rng.below(8);
            }
            1 if len >= 4 => {
                let i = rng.below(len - 3);
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let bytes = if rng.below(2) == 0 {
                    v.to_le_bytes()
                } else {
                    v.to_be_bytes()
                };
                b[i..i + 4].copy_from_slice(&bytes);
            }
            2 => b.truncate(rng.below(len + 1)),
            3 => b.extend((0..rng.below(64)).map(|_| rng.below(256) as u8)),
            4 if len > 0 => {
                let i = rng.below(len);
                b[i] = INTERESTING[rng.below(6)] as u8;
            }
            _ if len > 8 => {
                let (from, to) = (rng.below(len - 4), rng.below(len - 4));
                let chunk: Vec<u8> = b[from..from + 4].to_vec();
                b[to..to + 4].copy_from_slice(&chunk);
            }
            _ => {}
        }
    }
    b
}

/// Runs every target for `per_target` (time) or `max_execs` cases, whichever comes first.
pub fn run(targets: &[Target], per_target: Duration, max_execs: u64, seed: u64) -> Vec<Report> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {})); // panics are counted, not printed
    let mut reports = Vec::new();
    for (k, t) in targets.iter().enumerate() {
        let mut rng = SplitMix64::new(seed ^ (k as u64) << 32);
        let mut r = Report {
            name: t.name,
            ..Default::default()
        };
        let t0 = Instant::now();
        while r.execs < max_execs && t0.elapsed() < per_target {
            let case = if r.execs == 0 {
                t.seed.clone()
            } else {
                mutate(&mut rng, &t.seed)
            };
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| (t.run)(&case))) {
                r.panics += 1;
                if r.first_panic.is_none() {
                    let msg = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    r.first_panic = Some(format!("{msg} (case of {} bytes)", case.len()));
                }
            }
            r.execs += 1;
        }
        reports.push(r);
    }
    std::panic::set_hook(previous);
    reports
}

/// A scratch folder for the targets' files (in memory where the system has one).
pub fn scratch_dir(tag: &str) -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    base.join(format!("quarc-fuzz-{tag}-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The harness counts a panicking case and keeps going (a catcher that misses panics would
    /// make the whole fuzz run meaningless).
    #[test]
    fn panics_are_caught_and_counted() {
        let t = Target {
            name: "boom",
            seed: vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
            run: Box::new(|b| {
                if b.len() < 10 {
                    panic!("short input");
                }
            }),
        };
        let r = &run(&[t], Duration::from_secs(5), 200, 1)[0];
        assert_eq!(r.execs, 200);
        assert!(r.panics > 0 && r.panics < 200, "{r:?}");
        assert!(r.first_panic.as_deref().unwrap().starts_with("short input"));
    }
}
