//! The bounded fuzz run of CI: a few hundred mutated and random cases per parser and loader, none
//! may panic (the long run: `cargo run --release --example fuzz -- --seconds N`).

use std::time::Duration;

#[test]
fn no_parser_or_loader_panics_on_mutated_or_random_input() {
    let dir = quarc_harness::fuzz::scratch_dir("test");
    let targets = quarc_harness::fuzz::targets(&dir).unwrap();
    let reports = quarc_harness::fuzz::run(&targets, Duration::from_secs(3), 400, 7);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(reports.len(), 9);
    for r in &reports {
        println!("{}: {} cases, {} panics", r.name, r.execs, r.panics);
        assert!(r.execs > 20, "{}: only {} cases ran", r.name, r.execs);
        assert_eq!(r.panics, 0, "{}: {:?}", r.name, r.first_panic);
    }
}
