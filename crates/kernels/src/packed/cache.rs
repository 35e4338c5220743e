//! The size of one core's L2 cache, read once from the CPU (`cpuid` leaf `0x8000_0006`, which
//! AMD and Intel CPUs both fill in), for the GEMM's block sizes.

/// Each core's L2 cache in KiB, or `None` where the CPU does not say (other architectures, or a
/// hypervisor that hides the leaf).
pub(super) fn l2_kib() -> Option<usize> {
    static L2: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    *L2.get_or_init(read_l2_kib)
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code, unused_unsafe)] // `__cpuid` is an `unsafe fn` in older Rust versions (our MSRV is 1.89), safe in newer ones
fn read_l2_kib() -> Option<usize> {
    use std::arch::x86_64::__cpuid;
    const LEAF: u32 = 0x8000_0006;
    // SAFETY: every x86_64 CPU has the `cpuid` instruction, and leaf 0x8000_0000 (the highest
    // extended leaf) is always defined; leaf `LEAF` is read only where that says it exists.
    unsafe {
        if __cpuid(0x8000_0000).eax < LEAF {
            return None;
        }
        l2_kib_of(__cpuid(LEAF).ecx)
    }
}

/// The L2 size in leaf `0x8000_0006`'s ECX: bits 31..16, in KiB (0: not reported).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn l2_kib_of(ecx: u32) -> Option<usize> {
    let kib = (ecx >> 16) as usize;
    (kib > 0).then_some(kib)
}

#[cfg(not(target_arch = "x86_64"))]
fn read_l2_kib() -> Option<usize> {
    None
}

#[cfg(test)]
mod tests {
    use super::l2_kib_of;

    /// The size sits in the top half of ECX; the low half (line size, associativity) is ignored.
    #[test]
    fn the_l2_size_is_the_top_half_of_ecx() {
        // a Zen 1 core: 512 KiB, 8-way, 64-byte lines
        assert_eq!(l2_kib_of(0x0200_6140), Some(512));
        // an Intel client core of 256 KiB
        assert_eq!(l2_kib_of(0x0100_6040), Some(256));
        assert_eq!(l2_kib_of(0x0000_6140), None);
    }
}
