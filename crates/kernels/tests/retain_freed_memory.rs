//! `retain_freed_memory` keeps a step's freed blocks mapped: allocating them again costs no page
//! faults. Its own test binary, so the process-wide setting reaches no other test.

use std::hint::black_box;

use quarc_kernels::{MemoryRetention, retain_freed_memory};

/// Three blocks of 16 MiB, about what one ResNet-18 batch-64 layer's activations take.
const BLOCKS: usize = 3;
const FLOATS_PER_BLOCK: usize = 4 << 20;
const PAGES_PER_ROUND: u64 = (BLOCKS * FLOATS_PER_BLOCK * 4 / 4096) as u64;

/// Minor page faults of this process so far: field 10 of `/proc/self/stat`, counted after the
/// parenthesised command name (which may itself hold spaces).
fn minor_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat is readable");
    let after_name = &stat[stat.rfind(')').expect("stat has the command in parentheses") + 2..];
    // After the name: state (field 3), …, minflt (field 10) is the eighth.
    after_name
        .split(' ')
        .nth(7)
        .and_then(|f| f.parse().ok())
        .expect("minflt is a number")
}

/// Allocates and writes every block (as a forward pass), then frees them all (as the backward).
fn one_step() {
    let blocks: Vec<Vec<f32>> = (0..BLOCKS).map(|i| vec![1.0 + i as f32; FLOATS_PER_BLOCK]).collect();
    black_box(&blocks);
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn freed_blocks_are_reused_without_page_faults() {
    let outcome = retain_freed_memory();
    if std::env::var_os("GLIBC_TUNABLES").is_some() {
        return; // the allocator runs on the caller's settings, not ours
    }
    assert_eq!(outcome, MemoryRetention::Retained);
    one_step(); // the first touches: these pages fault once
    let before = minor_faults();
    one_step();
    one_step();
    let faults = minor_faults() - before;
    // Without the setting glibc returns the freed 48 MiB to the kernel: two steps fault about
    // 2 × 12 288 pages in again.
    assert!(
        faults < PAGES_PER_ROUND / 10,
        "{faults} page faults in two steps (a step touches {PAGES_PER_ROUND} pages)"
    );
}
