//! The run directory survives what kills and concurrent launches do to it: an advisory lock names
//! the holder, temporary files of interrupted writes go, a torn last log line is repaired.

use quarc_train::report::{EpochRecord, append_jsonl};
use quarc_train::{Error, RunDir, TrainConfig};

fn dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("quarc-rundir-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn record(epoch: usize) -> EpochRecord {
    EpochRecord {
        epoch,
        lr: 0.1,
        loss: 1.0,
        kd: 0.5,
        ce: 0.5,
        clc: vec![],
        test_accuracy: 0.5,
        coreset_size: 10,
        selected: epoch == 0,
        mixing_weights: vec![],
        scoring_secs: 0.0,
        selection_secs: 0.0,
        training_secs: 1.0,
        images_per_s: 10.0,
        noise: None,
    }
}

#[test]
fn a_second_opener_gets_a_typed_error_naming_the_holder_until_the_first_closes() {
    let d = dir("lock");
    let config = TrainConfig::default();
    let first = RunDir::open(&d, &config).unwrap();
    match RunDir::open(&d, &config) {
        Err(Error::Locked { holder, .. }) => {
            assert!(holder.contains(&format!("pid {}", std::process::id())), "{holder}")
        }
        other => panic!("expected Locked, got {:?}", other.map(|_| ())),
    }
    drop(first);
    RunDir::open(&d, &config).unwrap(); // released
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn temporary_files_of_interrupted_writes_are_removed_at_open() {
    let d = dir("tmp");
    std::fs::create_dir_all(&d).unwrap();
    for name in [".checkpoint-3.safetensors.tmp-4242", ".state.json.tmp-17"] {
        std::fs::write(d.join(name), b"half a file").unwrap();
    }
    std::fs::write(d.join(".keep.tmp-x"), b"not ours").unwrap();
    let _run = RunDir::open(&d, &TrainConfig::default()).unwrap();
    let left: Vec<String> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert_eq!(left, [".keep.tmp-x"]);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_torn_last_log_line_is_dropped_and_the_file_repaired() {
    let d = dir("torn");
    let run = RunDir::open(&d, &TrainConfig::default()).unwrap();
    let log = d.join("log.jsonl");
    for e in 0..2 {
        append_jsonl(&log, &record(e)).unwrap();
    }
    let full = std::fs::read_to_string(&log).unwrap();
    let line = serde_json::to_string(&record(2)).unwrap();
    std::fs::write(&log, format!("{full}{}", &line[..line.len() / 2])).unwrap(); // killed mid-append
    let records = run.log_before(3).unwrap();
    assert_eq!(records.iter().map(|r| r.epoch).collect::<Vec<_>>(), [0, 1]);
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        full,
        "the file was not repaired"
    );
    // a bad line in the middle is still an error, not silently skipped
    std::fs::write(&log, format!("{{oops\n{full}")).unwrap();
    assert!(run.log_before(3).is_err());
    std::fs::remove_dir_all(&d).unwrap();
}
