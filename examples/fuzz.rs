//! Fuzzes every parser and loader of quarc (see `quarc_harness::fuzz`): structured mutations of
//! valid files and arbitrary bytes, each case in-process under a panic catcher.
//!
//! `cargo run --release --example fuzz -- --seconds N [--seed S]` (N seconds per target); prints
//! the cases run and the panics per target and exits non-zero if any case panicked.

use std::time::Duration;

use clap::Parser;
use quarc_harness::fuzz;

#[derive(Parser, Debug)]
struct Args {
    /// Seconds per target.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seed of the mutations.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = Args::parse();
    let dir = fuzz::scratch_dir("example");
    let targets = fuzz::targets(&dir)?;
    let reports = fuzz::run(&targets, Duration::from_secs(a.seconds), u64::MAX, a.seed);
    let _ = std::fs::remove_dir_all(&dir);
    println!("| target | cases | panics | first panic |\n|---|---|---|---|");
    for r in &reports {
        println!(
            "| {} | {} | {} | {} |",
            r.name,
            r.execs,
            r.panics,
            r.first_panic.as_deref().unwrap_or("")
        );
    }
    let (execs, panics): (u64, u64) = reports.iter().fold((0, 0), |(e, p), r| (e + r.execs, p + r.panics));
    println!(
        "total: {execs} cases, {panics} panics ({} s per target, seed {})",
        a.seconds, a.seed
    );
    if panics > 0 {
        std::process::exit(1);
    }
    Ok(())
}
