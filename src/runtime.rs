//! Process-level settings for quarc's binaries.

/// Keeps freed memory mapped for the next training step (glibc on Linux; a no-op elsewhere).
/// quarc's examples call it first thing in `main`; a program that embeds quarc's crates in its own
/// training loop can do the same. See [`quarc_kernels::retain_freed_memory`].
pub use quarc_kernels::{MemoryRetention, retain_freed_memory};
