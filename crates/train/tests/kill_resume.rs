//! A run killed with SIGKILL at 20+ random points (reference training, scoring, training,
//! checkpoint writes) and resumed each time ends bit-identical to an uninterrupted run —
//! weights, optimiser state, coreset state — and leaves no temporary file behind.
//!
//! The test binary runs the training itself in a child process (`QUARC_KILL_CHILD=<dir>`), so
//! the kill hits a real process at an arbitrary instruction.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::Device;
use quarc_data::{Normalize, Split, fashion_mnist};
use quarc_train::*;

use common::tensors;

fn experiment(dir: &Path) -> Experiment {
    let train = fashion_mnist::bundled_subset(Split::Train).unwrap();
    let test = fashion_mnist::bundled_subset(Split::Test).unwrap();
    let config = TrainConfig {
        method: Method::Acs,
        fraction: 0.2,
        select_every: 2,
        epochs: 6,
        batch_size: 32,
        eval_batch_size: 100,
        reference: ReferenceConfig {
            checkpoint: None,
            epochs: 1,
            lr: 0.05,
        },
        seed: 11,
        ..TrainConfig::default()
    };
    Experiment {
        config,
        train: Arc::new(train.take(&(0..600).collect::<Vec<_>>()).unwrap()),
        test: Arc::new(test.take(&(0..200).collect::<Vec<_>>()).unwrap()),
        normalize: Some(Normalize::fashion_mnist()),
        run_dir: dir.to_path_buf(),
        device: Device::Cpu,
        verbose: false,
        noise: None,
        custom: Default::default(),
    }
}

/// The child: runs (or resumes) the experiment in the directory it was given.
#[test]
fn child_process_entry() {
    if let Some(dir) = std::env::var_os("QUARC_KILL_CHILD") {
        experiment(Path::new(&dir)).run().unwrap();
    }
}

fn child(dir: &Path) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_process_entry", "--test-threads", "1", "--quiet"])
        .env("QUARC_KILL_CHILD", dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn final_files(dir: &Path) -> Vec<(String, common::Tensors)> {
    ["model.safetensors", "optimizer-5.safetensors", "coreset-5.safetensors"]
        .iter()
        .map(|f| (f.to_string(), tensors(&dir.join(f))))
        .collect()
}

#[test]
fn killed_at_random_points_and_resumed_the_run_ends_bit_identical() {
    if std::env::var_os("QUARC_KILL_CHILD").is_some() {
        return;
    }
    let root: PathBuf = std::env::temp_dir().join(format!("quarc-kill-{}", std::process::id()));
    let (straight, killed) = (root.join("straight"), root.join("killed"));
    let t0 = Instant::now();
    assert!(child(&straight).wait().unwrap().success());
    let whole = t0.elapsed();
    let mut rng = quarc_quant_core::SplitMix64::new(2026);
    let (mut kills, mut lives) = (0, 0);
    loop {
        lives += 1;
        assert!(lives < 200, "the run never finished");
        let mut c = child(&killed);
        if kills < 24 {
            // a point in the first 15 % of an uninterrupted run's time after this launch
            let delay = whole.mul_f64(0.15 * rng.next_f64());
            std::thread::sleep(delay.max(Duration::from_millis(5)));
            if c.try_wait().unwrap().is_none() {
                c.kill().unwrap(); // SIGKILL
                c.wait().unwrap();
                kills += 1;
                continue;
            }
        }
        let status = c.wait().unwrap();
        assert!(status.success(), "a resumed run failed after {kills} kills");
        if killed.join("model.safetensors").is_file() {
            break;
        }
    }
    println!(
        "{kills} kills, {lives} launches, uninterrupted run {:.1} s",
        whole.as_secs_f64()
    );
    assert!(kills >= 20, "only {kills} kills landed");
    assert_eq!(final_files(&straight), final_files(&killed));
    let log = std::fs::read_to_string(killed.join("log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 6, "{log}");
    let leftovers: Vec<String> = std::fs::read_dir(&killed)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| quarc_quant_core::is_temp_file_name(n))
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
    std::fs::remove_dir_all(&root).unwrap();
}
