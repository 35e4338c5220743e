//! Keeping freed memory in the process, so a training step does not page-fault its activations in again.
//!
//! A training step allocates its activations on the way forward and frees them on the way back. With
//! glibc's default settings the freed top of the heap is handed back to the kernel once it exceeds the
//! trim threshold (twice the largest block freed so far, at most 64 MiB), and every step then takes a
//! fresh page fault, and a page cleared by the kernel, for each 4 KiB it touches again: about 55 000
//! faults (215 MB) per ResNet-18 batch-64 step. Blocks above 32 MiB (glibc's largest `mmap` threshold)
//! are mapped for each allocation and unmapped when freed, so they fault every step whatever the trim:
//! MobileNetV2's widest activations at batch 64 are such blocks (about 46 000 faults a step with the
//! trim off alone). [`retain_freed_memory`] turns the trim off and stops glibc from mapping blocks on
//! their own, so freed blocks stay in the heap and are reused by the next step. The peak resident
//! memory does not change; what changes is that the process no longer shrinks after its peak.
//!
//! The setting is process-wide, so the library never applies it on its own: call it once at the start
//! of a training program. The same settings can be given from outside with
//! `GLIBC_TUNABLES=glibc.malloc.trim_threshold=2147483647:glibc.malloc.mmap_max=0`; when that variable
//! already sets `glibc.malloc` tunables they are left as the user chose.

/// What [`retain_freed_memory`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryRetention {
    /// glibc now keeps freed memory mapped (trim threshold 2 GiB − 1, no block mapped on its own).
    Retained,
    /// `GLIBC_TUNABLES` already sets `glibc.malloc` tunables; nothing was changed.
    UserTunables,
    /// Not a glibc target (nothing changed), or glibc refused one of the two settings (the other
    /// may have been applied).
    Unsupported,
}

/// Keeps freed memory mapped for reuse instead of returning it to the kernel (glibc on Linux; a
/// no-op elsewhere). Call once, before training.
///
/// A training step frees its activations on the way back and allocates them again in the next
/// step; on glibc's defaults the freed memory goes back to the kernel and is page-faulted in again
/// (about 55 000 faults, 215 MB, per ResNet-18 batch-64 step). This sets glibc's trim threshold to
/// 2 GiB − 1 and its count of blocks mapped on their own to 0 (a block above 32 MiB would otherwise
/// be mapped and unmapped on every allocation), so freed blocks stay in the heap. If the heap cannot
/// grow, glibc still falls back to mapping the block. The peak resident memory does not change, but
/// the process no longer shrinks after its peak. The setting is process-wide, which is why the
/// library never applies it on its own. When `GLIBC_TUNABLES` already sets `glibc.malloc`
/// tunables, nothing is changed.
///
/// ```
/// use quarc_kernels::{MemoryRetention, retain_freed_memory};
/// let outcome = retain_freed_memory();
/// if cfg!(all(target_os = "linux", target_env = "gnu")) && std::env::var_os("GLIBC_TUNABLES").is_none() {
///     assert_eq!(outcome, MemoryRetention::Retained);
/// }
/// ```
pub fn retain_freed_memory() -> MemoryRetention {
    let user_set = std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc."));
    if user_set {
        return MemoryRetention::UserTunables;
    }
    apply()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply() -> MemoryRetention {
    use std::ffi::c_int;
    const M_TRIM_THRESHOLD: c_int = -1;
    const M_MMAP_MAX: c_int = -4;
    #[allow(unsafe_code)]
    // SAFETY: `mallopt` is glibc's, declared with its C signature (`int mallopt(int, int)`). It
    // takes two integers by value and changes only the allocator's settings, under the allocator's
    // own lock, so it is sound from any thread at any time; a value it refuses returns 0.
    let (trim, mmap) = unsafe {
        unsafe extern "C" {
            fn mallopt(param: c_int, value: c_int) -> c_int;
        }
        (mallopt(M_TRIM_THRESHOLD, c_int::MAX), mallopt(M_MMAP_MAX, 0))
    };
    if trim == 1 && mmap == 1 {
        MemoryRetention::Retained
    } else {
        MemoryRetention::Unsupported
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() -> MemoryRetention {
    MemoryRetention::Unsupported
}
