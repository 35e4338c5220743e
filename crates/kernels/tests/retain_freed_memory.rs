//! `retain_freed_memory` keeps a step's freed blocks mapped: allocating them again costs no page
//! faults. Its own test binary without libtest (`harness = false`): it runs on the main thread, whose
//! allocations come from glibc's main arena as a training loop's do, and the process-wide setting
//! reaches no other test. (On a worker thread glibc's arenas are 64 MiB heaps, and blocks that do not
//! fit one another's freed space take a fresh heap.)

use std::hint::black_box;

use quarc_kernels::{MemoryRetention, retain_freed_memory};

/// Blocks of 16 MiB (a ResNet-18 batch-64 activation: on glibc's defaults they go to the heap, which
/// is trimmed) and one of 40 MiB (above glibc's largest `mmap` threshold: on its defaults it is mapped
/// and unmapped every time, as MobileNetV2's widest activations are).
const FLOATS_PER_BLOCK: [usize; 4] = [4 << 20, 4 << 20, 4 << 20, 10 << 20];
const PAGES_PER_ROUND: u64 = (22 << 20) * 4 / 4096;

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
    let blocks: Vec<Vec<f32>> = FLOATS_PER_BLOCK.iter().map(|&n| vec![1.0; n]).collect();
    black_box(&blocks);
}

fn main() {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return;
    }
    if std::env::var_os("GLIBC_TUNABLES").is_some() {
        // glibc read the caller's settings at start-up (`.ci/run` sets some): measure in a copy of
        // this program started without them.
        let exe = std::env::current_exe().expect("the test knows its own path");
        let status = std::process::Command::new(exe)
            .env_remove("GLIBC_TUNABLES")
            .status()
            .expect("the test starts a copy of itself");
        assert!(status.success(), "the copy without GLIBC_TUNABLES failed: {status}");
        return;
    }
    freed_blocks_are_reused_without_page_faults();
    println!("retain_freed_memory: freed blocks are reused without page faults ... ok");
}

fn freed_blocks_are_reused_without_page_faults() {
    assert_eq!(retain_freed_memory(), MemoryRetention::Retained);
    one_step(); // the first touches: these pages fault once
    let before = minor_faults();
    one_step();
    one_step();
    let faults = minor_faults() - before;
    // Without the setting glibc returns the freed 88 MiB to the kernel: two steps fault about
    // 2 × 22 528 pages in again.
    assert!(
        faults < PAGES_PER_ROUND / 10,
        "{faults} page faults in two steps (a step touches {PAGES_PER_ROUND} pages)"
    );
}
