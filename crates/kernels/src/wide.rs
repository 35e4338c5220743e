//! Runtime dispatch of plain element-wise loops to the widest x86 vectors the CPU has.
//!
//! The crate is compiled for baseline x86-64 (SSE2), so the loops the compiler vectorises on
//! its own (axpy, dot products, copies) use 4-lane vectors even on an AVX-512 machine. [`wide`]
//! runs a [`Kernel`] inside a function compiled with AVX-512F or AVX2 enabled (checked at run
//! time); its `run`, marked `#[inline(always)]`, is compiled there with 16- or 8-lane vectors. No
//! FMA is enabled and floating-point operations are never reassociated, so every path computes
//! the same bits.

/// A loop nest to compile for several vector widths: implement `run` with `#[inline(always)]`
/// (and the helpers it calls too), or it is compiled once, for SSE2.
pub(crate) trait Kernel {
    /// What the loop returns.
    type Out;
    /// The loop.
    fn run(self) -> Self::Out;
}

/// The widest x86 vectors the kernels use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Isa {
    /// Baseline x86-64 (and every other architecture).
    Sse2,
    /// AVX2.
    Avx2,
    /// AVX-512F.
    Avx512,
}

/// The CPU's widest vectors, capped by the environment variable `QUARC_CPU_ISA` (`avx2` or
/// `sse2`, read once; like oneDNN's `ONEDNN_MAX_CPU_ISA`), so that the narrower paths can be
/// measured and tested on a wider machine. Any other value is ignored.
pub(crate) fn isa() -> Isa {
    static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *ISA.get_or_init(|| {
        let cap = match std::env::var("QUARC_CPU_ISA").as_deref() {
            Ok("avx2") => Isa::Avx2,
            Ok("sse2") => Isa::Sse2,
            _ => Isa::Avx512,
        };
        detected().min(cap)
    })
}

fn detected() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Isa::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return Isa::Avx2;
        }
    }
    Isa::Sse2
}

/// The vectors quarc's own kernels use on this machine (see `QUARC_CPU_ISA`): `"avx512f"`,
/// `"avx2"` or `"sse2"` (baseline, and every non-x86 target). The GEMM crate dispatches on its own.
pub fn vector_isa() -> &'static str {
    match isa() {
        Isa::Avx512 => "avx512f",
        Isa::Avx2 => "avx2",
        Isa::Sse2 => "sse2",
    }
}

/// Runs `k`, compiled for AVX-512F or AVX2 when [`isa`] allows (bit-identical results).
#[inline(always)]
pub(crate) fn wide<K: Kernel>(k: K) -> K::Out {
    #[cfg(target_arch = "x86_64")]
    match isa() {
        // SAFETY: `isa` reports AVX-512F only when the CPU has it.
        #[allow(unsafe_code)]
        Isa::Avx512 => return unsafe { with_avx512(k) },
        // SAFETY: `isa` reports AVX2 only when the CPU has it.
        #[allow(unsafe_code)]
        Isa::Avx2 => return unsafe { with_avx2(k) },
        Isa::Sse2 => {}
    }
    k.run()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn with_avx512<K: Kernel>(k: K) -> K::Out {
    k.run()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn with_avx2<K: Kernel>(k: K) -> K::Out {
    k.run()
}

/// Planes shorter than this are not prefetched: the hardware prefetcher keeps up with them
/// (prefetching the depthwise 8² planes measured slower), while a 14² or larger plane's first
/// lines otherwise come at memory latency (prefetching one plane ahead measured up to 2.6×
/// faster on the depthwise 32² stride-2 layer, 1.08× on SmallCnn's 14² im2col).
const PREFETCH_MIN: usize = 128;

/// Prefetches plane `i` of `data` (planes `len` long) when it exists and is not small.
#[inline(always)]
pub(crate) fn prefetch_plane(data: &[f32], i: usize, len: usize) {
    if len >= PREFETCH_MIN
        && let Some(plane) = data.get(i * len..(i + 1) * len)
    {
        prefetch(plane);
    }
}

/// Asks the CPU to bring `data` into its caches ahead of use (a hint: nothing is read, nothing
/// can fault). A plane about to be read is usually one 4 KiB page or more, where the hardware
/// prefetcher starts over and the first lines come at memory latency.
#[inline(always)]
pub(crate) fn prefetch(data: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in data.chunks(16) {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: a prefetch never dereferences its address; the pointer is in bounds anyway.
        #[allow(unsafe_code)]
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast())
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}
